"""Dashboard page: one experiment's counts, best-so-far, Pareto front and trials."""

from memnas.dashboard._page_experiment import experiment_page

experiment_page()
