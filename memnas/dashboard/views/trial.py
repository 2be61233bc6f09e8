"""Dashboard page: one trial's architecture, decisions, curves and errors."""

from memnas.dashboard._page_trial import trial_page

trial_page()
