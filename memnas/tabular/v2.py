"""Tabular benchmark v2: 544 second-wave memory architectures, a learning curve of 4 budgets each."""

from __future__ import annotations

import os
from typing import Any

TABLE_V2_PATH = os.path.join(os.path.dirname(__file__), "data", "mqar_memory_v2.json.gz")
"""The shipped v2 table (regenerate with ``python -m memnas.tabular.build_table --v2``)."""

TABLE_V2_BUDGETS = (50, 100, 200, 400)
"""Training steps at which every architecture's held-out accuracy is recorded (one run each)."""

TABLE_V2_TASK = {"vocab_size": 64, "seq_len": 16, "num_kv_pairs": 4}
"""The MQAR task of the v2 table (`memnas.evaluators.MQAR` fields; the quickstart's task)."""


def table_v2_mixers() -> list[Any]:
    """The 16 mixer configurations each layer of the v2 space chooses from.

    Softmax attention (full, 4-token window), Hopfield (learned beta), dense Hopfield
    (degree 3), linear attention, DeltaNet, Gated DeltaNet (conv 4 / none), GLA,
    Retention (conv 4 / none), Mamba, Mamba2, mLSTM (sigmoid forget with conv 4,
    exponential forget without), Mixture-of-Memories; 2 heads where a mixer has heads.
    """
    from memnas.searchspace import mixers as m

    registry = m.registered_mixers()
    return [
        m.SoftmaxAttention(num_heads=2),
        m.SoftmaxAttention(num_heads=2, window=4),
        m.HopfieldLayer(num_heads=2, beta="learned"),
        registry["DenseHopfield"](num_heads=2, degree=3),
        m.LinearAttention(num_heads=2),
        registry["DeltaNet"](num_heads=2),
        registry["GatedDeltaNet"](num_heads=2, conv_kernel=4),
        registry["GatedDeltaNet"](num_heads=2, conv_kernel=0),
        registry["GatedLinearAttention"](num_heads=2, expand_k=0.5, conv_kernel=4),
        registry["Retention"](num_heads=2, conv_kernel=4),
        registry["Retention"](num_heads=2, conv_kernel=0),
        registry["Mamba"](d_state=8, expand=2, conv_kernel=4),
        registry["Mamba2"](num_heads=2, d_state=16, expand=2, conv_kernel=4),
        registry["MLSTM"](num_heads=2, forget="sigmoid", conv_kernel=4),
        registry["MLSTM"](num_heads=2, forget="exp", conv_kernel=0),
        registry["MixtureOfMemories"](num_memories=4, top_k=2, shared_memory=True),
    ]


def tabular_space_v2() -> Any:
    """The v2 space: width 16 or 32, 1 or 2 pre-norm blocks (MLP ratio 2), each block one of
    `table_v2_mixers` (16 + 16 * 16 stacks per width: 544 architectures, no floats)."""
    import pyglove as pg

    from memnas.searchspace import memory_space

    return memory_space(
        vocab_size=TABLE_V2_TASK["vocab_size"], max_len=TABLE_V2_TASK["seq_len"], max_layers=2,
        d_model=(16, 32), mlp_ratio=(2,), mixers=[pg.oneof(table_v2_mixers())])


def table_v2_trainer(steps: int = TABLE_V2_BUDGETS[-1]) -> Any:
    """The v2 training setting: MQAR(vocab 64, 16 tokens, 4 pairs), held-out accuracy at
    every budget of `TABLE_V2_BUDGETS` (one run of ``steps``), 32 sequences a step,
    lr 3e-3, weight decay 0.1, 512 held-out sequences."""
    from memnas.evaluators import MQAR, TrainEvaluator

    budgets = tuple(b for b in TABLE_V2_BUDGETS if b <= steps)
    return TrainEvaluator(task=MQAR(**TABLE_V2_TASK), steps=steps, batch_size=32, lr=3e-3,
                          weight_decay=0.1, eval_examples=512, eval_at=budgets)


def retrain_row(table: Any, key: str, seed: int) -> dict[str, float]:
    """Trains row ``key`` of a table again with the table's recorded task and training.

    The check of a table's reproducibility: the result should fall within the
    spread of the table's seeds (on the same machine and torch build, equal to the
    recorded seed's figures).

    Args:
      table: A `memnas.tabular.Table` built from an MQAR task.
      key: The row's key.
      seed: The training seed.

    Returns:
      ``{"accuracy": ..., "loss": ...}`` of the new run.
    """
    import pyglove as pg

    from memnas.evaluators import MQAR, TrainEvaluator
    from memnas.measurement import Context
    from memnas.tabular.build_table import SeededTraining
    from memnas.tabular.table import all_dnas, dna_key

    task = {k: v for k, v in table.metadata["task"].items() if k != "name"}
    training = dict(table.metadata["training"])
    for name in ("eval_at", "lr_sweep"):
        if name in training:
            training[name] = tuple(training[name])
    trainer = TrainEvaluator(task=MQAR(**task), **training)
    space = table.space()
    dna = next(d for d in all_dnas(space) if dna_key(d) == key)
    m = SeededTraining(trainer=trainer, seeds=(seed,))(pg.materialize(space, dna), Context())
    return {"accuracy": m.metrics["accuracy"], "loss": m.metrics["loss"]}
