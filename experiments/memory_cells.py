"""Memory cells: evolve mixers composed from primitives on MQAR; the cache answers their isomorphs."""

import memnas
from memnas.evaluators import MQAR, TrainEvaluator
from memnas.searchspace import memory_cell_space

experiment = memnas.Experiment(
    name="memory-cells",
    # 1-2 layers, each a cell: a DAG over 7 nodes (NAS-Bench-101's encoding) of linear
    # projections, gates, products, sums, short convolutions, norms, linear attention,
    # GLA's decayed scan, the delta rule and softmax attention.
    space=memory_cell_space(vocab_size=64, max_len=16, max_layers=2, d_model=(16, 32)),
    # MQAR(vocab 64, 16 tokens, 4 key-value pairs), 400 AdamW steps, held-out accuracy.
    evaluator=TrainEvaluator(task=MQAR(vocab_size=64, seq_len=16, num_kv_pairs=4), steps=400,
                             eval_examples=256),
    # Evolution proposes many cells that are one computation written differently: the
    # equivalence cache answers them (`memnas show memory-cells` counts hits by kind).
    algorithm="evolution",
    objectives={"accuracy": "max", "state_bytes": "min"},
    store="sqlite:///memnas.db",
)
