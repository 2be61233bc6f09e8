"""Ready-made evaluator configurations."""

from __future__ import annotations

from memnas.evaluators.mad import mad_suite
from memnas.evaluators.mqar import MQAR
from memnas.evaluators.multitask import MultiTaskEvaluator
from memnas.evaluators.training import TrainEvaluator


def quickstart_evaluator() -> TrainEvaluator:
    """MQAR small enough for a one-minute search on two CPU cores.

    Task ``MQAR(vocab_size=64, seq_len=16, num_kv_pairs=4)``; 500 AdamW steps of 32
    sequences (lr 3e-3, weight decay 0.1), held-out accuracy on 512 sequences. One
    trial takes about 1-4 s on one CPU thread for the models of
    ``memory_space(64, max_len=16)``. Two-layer softmax attention with
    ``d_model >= 32`` reaches ~100% accuracy; linear attention and one-layer models
    stay near the 1/num_kv_pairs of guessing a value from the context.

    Pair it with ``memnas.searchspace.memory_space(vocab_size=64, max_len=16)``.
    """
    return TrainEvaluator(
        task=MQAR(vocab_size=64, seq_len=16, num_kv_pairs=4),
        steps=500,
        batch_size=32,
        lr=3e-3,
        weight_decay=0.1,
        eval_examples=512,
    )


def mad_evaluator(scale: str = "small", steps: int = 500) -> MultiTaskEvaluator:
    """The six MAD tasks, one model per task trained from scratch (MAD's protocol).

    Metrics ``acc_<task>`` for ``in_context_recall``, ``fuzzy_recall``,
    ``noisy_recall``, ``selective_copying``, ``compression`` and ``memorization``,
    and ``accuracy``, their mean. Pair it with a space whose ``vocab_size`` covers
    the largest task (64 at ``"small"``, 256 at ``"paper"``) and whose ``max_len``
    covers the longest sequence (64 at ``"small"``, 256 at ``"paper"``). At
    ``"small"`` one candidate of width 64 with two attention layers trains all six
    in 1-2 minutes on one CPU thread (500 steps each); two-layer attention
    then solves in-context and noisy recall, compression and memorization, and
    not yet fuzzy recall or selective copying.

    Args:
      scale: ``"small"`` or ``"paper"``, see `mad_suite`.
      steps: AdamW steps per task (batch 32, lr 3e-3, weight decay 0.1).
    """
    return MultiTaskEvaluator(tasks=mad_suite(scale), steps=steps, batch_size=32, lr=3e-3,
                              weight_decay=0.1, eval_examples=512)
