"""Quickstart: search memory architectures on MQAR for accuracy against state size (~2 min on 2 CPUs)."""

import memnas
from memnas.evaluators import quickstart_evaluator
from memnas.searchspace import memory_space

# Every mixer memnas ships, pinned by name so that a later mixer does not change the
# meaning of this experiment's stored DNA.
MIXERS = [
    "DeltaNet", "DenseHopfield", "ELMNeuron", "EpisodicMemory", "GatedDeltaNet",
    "GatedLinearAttention", "HopfieldLayer", "LinearAttention", "MLSTM", "Mamba", "Mamba2",
    "MirasMemory", "MixtureOfMemories", "Retention", "SegmentMemory", "SoftmaxAttention",
    "TitansMemory",
]

experiment = memnas.Experiment(
    name="quickstart",
    # 1-3 layers, each choosing one of the mixers (with its own decisions).
    space=memory_space(vocab_size=64, max_len=16, mixers=MIXERS),
    # MQAR(vocab 64, 16 tokens, 4 key-value pairs), 500 AdamW steps, held-out accuracy;
    # every trial also stores params, latency_ms, flops_per_token and state_bytes.
    evaluator=quickstart_evaluator(),
    algorithm="nsga2",
    # The memory trade-off: recall against the bytes a model carries per sequence at
    # inference (KV cache of attention after max_len tokens, fixed state of a recurrent mixer).
    objectives={"accuracy": "max", "state_bytes": "min"},
    store="sqlite:///memnas.db",
)
