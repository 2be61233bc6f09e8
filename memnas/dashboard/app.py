"""Streamlit entry script of the memnas dashboard; reads the store URL from $MEMNAS_STORE."""

from memnas.dashboard._ui import main

main()
