"""Tabular benchmarks: precomputed evaluations of whole spaces, for comparing search algorithms."""

from memnas.tabular.table import (TABLE_PATH, TabularEvaluator, Table, dna_key, load_table,
                                  tabular_space, top_threshold)

__all__ = ["TABLE_PATH", "Table", "TabularEvaluator", "dna_key", "load_table", "tabular_space",
           "top_threshold"]
