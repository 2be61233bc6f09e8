"""Hashes that find equal candidates: canonical symbolic hash and functional hash."""

from memnas.hashing._canonical import canonical_json, canonicalize, symbolic_hash
from memnas.hashing.cache import HASH_DEFAULTS, HIT_KINDS, EquivalenceCache, match_kind
from memnas.hashing._functional import (
    default_probe,
    evaluator_fingerprint,
    functional_hash,
    quantize,
)

__all__ = ["HASH_DEFAULTS", "HIT_KINDS", "EquivalenceCache", "canonical_json", "canonicalize",
           "default_probe", "evaluator_fingerprint", "functional_hash", "match_kind", "quantize",
           "symbolic_hash"]
