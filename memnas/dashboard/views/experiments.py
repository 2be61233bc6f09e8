"""Dashboard page: the table of experiments in the store."""

from memnas.dashboard._pages import experiments_page

experiments_page()
