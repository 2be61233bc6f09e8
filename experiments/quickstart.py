"""Quickstart: search memory architectures on MQAR for accuracy and size (about a minute on 2 CPUs)."""

import memnas
from memnas.evaluators import quickstart_evaluator
from memnas.searchspace import memory_space

experiment = memnas.Experiment(
    name="quickstart",
    # 1-3 layers, each choosing softmax attention, linear attention or a Hopfield layer.
    space=memory_space(vocab_size=64, max_len=16, mixers=["SoftmaxAttention", "LinearAttention", "HopfieldLayer"]),
    # MQAR(vocab 64, 16 tokens, 4 key-value pairs), 500 AdamW steps, held-out accuracy.
    evaluator=quickstart_evaluator(),
    algorithm="nsga2",
    objectives={"accuracy": "max", "params": "min"},
    store="sqlite:///memnas.db",
)
