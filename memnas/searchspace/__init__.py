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

__all__ = [
    "Block",
    "HopfieldLayer",
    "LinearAttention",
    "Mixer",
    "SequenceModel",
    "SoftmaxAttention",
    "get_mixer",
    "memory_space",
    "register_mixer",
    "registered_mixers",
]
