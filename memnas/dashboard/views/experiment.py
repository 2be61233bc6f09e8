"""Dashboard page: one experiment's counts, best-so-far, Pareto front and trials."""

from memnas.dashboard._pages import experiment_page

experiment_page()
