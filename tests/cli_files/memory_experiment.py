"""A tiny real memory-architecture search for the CLI tests: accuracy against state_bytes."""

import memnas
from memnas.evaluators import MQAR, TrainEvaluator
from memnas.searchspace import memory_space

experiment = memnas.Experiment(
    name="cli-memory",
    space=memory_space(vocab_size=16, max_layers=1, d_model=(16,), max_len=12,
                       mixers=["SoftmaxAttention", "Mamba", "GatedDeltaNet"]),
    evaluator=TrainEvaluator(task=MQAR(vocab_size=16, seq_len=12, num_kv_pairs=2), steps=4,
                             batch_size=4, eval_examples=16),
    algorithm="random",
    objectives={"accuracy": "max", "state_bytes": "min"},
    store="sqlite:///memory.db",
)
