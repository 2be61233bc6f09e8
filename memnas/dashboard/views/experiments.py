"""Dashboard page: the table of experiments in the store."""

from memnas.dashboard._page_experiments import experiments_page

experiments_page()
