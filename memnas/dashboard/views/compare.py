"""Dashboard page: several experiments overlaid."""

from memnas.dashboard._page_compare import compare_page

compare_page()
