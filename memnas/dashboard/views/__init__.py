"""Page scripts that `memnas.dashboard.app` runs through ``st.navigation`` (not for import)."""
