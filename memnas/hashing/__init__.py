"""Stable hashes of candidates: sha256 of canonical JSON, equal across processes and machines."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pyglove as pg

__all__ = ["canonical_json", "symbolic_hash"]


def canonical_json(obj: Any) -> str:
    """JSON of a symbolic (or plain JSON-able) value with sorted keys and no spaces."""
    return json.dumps(pg.to_json(obj), sort_keys=True, separators=(",", ":"), default=repr)


def symbolic_hash(obj: Any) -> str:
    """sha256 hex digest of `canonical_json`; never Python's process-salted ``hash()``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()
