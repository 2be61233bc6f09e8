"""Evaluators: tasks (MQAR, the MAD suite, memory-horizon tasks), trainers and cost metrics."""

from memnas.evaluators.costs import count_params, flops_per_token, measure_latency, state_bytes
from memnas.evaluators.dynamic_training import DynamicTrainEvaluator
from memnas.evaluators.mad import (
    Compression,
    FuzzyInContextRecall,
    InContextRecall,
    Memorization,
    NoisyInContextRecall,
    SelectiveCopying,
    mad_suite,
)
from memnas.evaluators.memory_tasks import DelayedMatchToSample, NParity
from memnas.evaluators.modular import ModularArithmetic, ModularMLP, ModularTrainEvaluator
from memnas.evaluators.mqar import IGNORE_INDEX, MQAR, MQAR_LEVELS, mqar_levels
from memnas.evaluators.multitask import MultiTaskEvaluator
from memnas.evaluators.presets import mad_evaluator, quickstart_evaluator
from memnas.evaluators.protocol import best_of_sweep, compare_at_matched, family_of
from memnas.evaluators.text_lm import LanguageModelEvaluator, TextCorpus
from memnas.evaluators.training import SequenceTask, TrainEvaluator, evaluate

__all__ = [
    "IGNORE_INDEX",
    "MQAR",
    "MQAR_LEVELS",
    "Compression",
    "DelayedMatchToSample",
    "DynamicTrainEvaluator",
    "FuzzyInContextRecall",
    "InContextRecall",
    "LanguageModelEvaluator",
    "Memorization",
    "ModularArithmetic",
    "ModularMLP",
    "ModularTrainEvaluator",
    "MultiTaskEvaluator",
    "NParity",
    "NoisyInContextRecall",
    "SelectiveCopying",
    "SequenceTask",
    "TextCorpus",
    "TrainEvaluator",
    "best_of_sweep",
    "compare_at_matched",
    "count_params",
    "evaluate",
    "family_of",
    "flops_per_token",
    "mad_evaluator",
    "mad_suite",
    "measure_latency",
    "mqar_levels",
    "quickstart_evaluator",
    "state_bytes",
]
