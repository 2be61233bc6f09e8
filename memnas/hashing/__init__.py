"""Hashes that find equal candidates: canonical symbolic hash and functional hash."""

from memnas.hashing._canonical import canonical_json, canonicalize, symbolic_hash
from memnas.hashing.cache import EquivalenceCache
from memnas.hashing._functional import (
    default_probe,
    evaluator_fingerprint,
    functional_hash,
    quantize,
)

__all__ = ["EquivalenceCache", "canonical_json", "canonicalize", "default_probe", "evaluator_fingerprint",
           "functional_hash", "quantize", "symbolic_hash"]
