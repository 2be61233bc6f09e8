"""Search spaces: symbolic specs of memory-architecture sequence models and their spaces."""

from memnas.searchspace.mixers import (
    HopfieldLayer,
    LinearAttention,
    Mixer,
    SoftmaxAttention,
    get_mixer,
    register_mixer,
    registered_mixers,
)
from memnas.searchspace.model import Block, SequenceModel
from memnas.searchspace.space import memory_space
from memnas.searchspace.cells import (
    Cell,
    CellModule,
    cell_space,
    gated_deltanet_cell,
    gla_cell,
    linear_attention_cell,
    memory_cell_space,
    softmax_attention_cell,
)
from memnas.searchspace.cell_ops import CellOp
from memnas.searchspace.dynamic_sparse import DynamicSparse, dynamic_sparse_space

__all__ = [
    "Block",
    "Cell",
    "CellModule",
    "CellOp",
    "DynamicSparse",
    "HopfieldLayer",
    "LinearAttention",
    "Mixer",
    "SequenceModel",
    "SoftmaxAttention",
    "cell_space",
    "dynamic_sparse_space",
    "gated_deltanet_cell",
    "get_mixer",
    "gla_cell",
    "linear_attention_cell",
    "memory_cell_space",
    "memory_space",
    "register_mixer",
    "registered_mixers",
    "softmax_attention_cell",
]
