"""Evaluators: tasks (MQAR), the training evaluator and cost metrics."""

from memnas.evaluators.costs import count_params, measure_latency
from memnas.evaluators.mqar import IGNORE_INDEX, MQAR
from memnas.evaluators.presets import quickstart_evaluator
from memnas.evaluators.training import SequenceTask, TrainEvaluator, evaluate

__all__ = [
    "IGNORE_INDEX",
    "MQAR",
    "SequenceTask",
    "TrainEvaluator",
    "count_params",
    "evaluate",
    "measure_latency",
    "quickstart_evaluator",
]
