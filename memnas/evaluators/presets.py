"""Ready-made evaluator configurations."""

from __future__ import annotations

from memnas.evaluators.mqar import MQAR
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
