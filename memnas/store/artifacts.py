"""Artifact payloads as bytes: numpy's portable ``.npz`` for arrays, JSON for the rest.

An artifact is what an algorithm and an evaluator pass each other beside the scalar
reward (masks, rewind weights, architecture weights). It is stored by value in the
store's ``artifacts`` table, never pickled: ``np.load(..., allow_pickle=False)`` reads it
back anywhere, with or without memnas.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any, Mapping

import numpy as np

_JSON_KEY = "__json__"   # the non-array leaves, as one JSON string inside the .npz
_SEP = "/"                # nested mappings are flattened with this separator


def _as_array(value: Any) -> np.ndarray | None:
    if isinstance(value, np.ndarray):
        return value
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return None


def encode(payload: Mapping[str, Any]) -> bytes:
    """Serialises a mapping whose leaves are arrays (numpy or torch) or JSON-able values.

    Nested mappings are kept (keys must be strings without ``/``).

    Raises:
      TypeError: a key is not a string or contains ``/``, or a leaf is neither an
        array nor JSON-able.
    """
    arrays: dict[str, np.ndarray] = {}
    rest: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        arr = _as_array(value)
        if arr is not None:
            if arr.dtype == object:
                raise TypeError(f"artifact entry {prefix!r} is an object array; only numeric "
                                "and boolean arrays are stored")
            arrays[prefix] = arr
        elif isinstance(value, Mapping) and value:
            for k, v in value.items():
                if not isinstance(k, str) or _SEP in k:
                    raise TypeError(f"artifact key {k!r} under {prefix or '(top)'!r} must be a "
                                    f"string without {_SEP!r}")
                walk(f"{prefix}{_SEP}{k}" if prefix else k, v)
        else:
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                raise TypeError(f"artifact entry {prefix!r} must be an array or JSON-able, got "
                                f"{type(value).__name__}") from None
            rest[prefix] = value

    if not isinstance(payload, Mapping):
        raise TypeError(f"an artifact must be a mapping, got {type(payload).__name__}")
    walk("", payload)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays, **{_JSON_KEY: np.array(json.dumps(rest))})
    return buf.getvalue()


def decode(data: bytes) -> dict[str, Any]:
    """Reads back what `encode` wrote, nested mappings rebuilt."""
    out: dict[str, Any] = {}
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        flat: dict[str, Any] = {k: npz[k] for k in npz.files if k != _JSON_KEY}
        flat.update(json.loads(str(npz[_JSON_KEY][()])))
    for key, value in flat.items():
        if key == "":
            return value  # an artifact that is a single leaf (not produced by encode of a mapping)
        node = out
        *parents, leaf = key.split(_SEP)
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def describe(payload: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{flattened key: "float32[300, 784]" or the JSON type}`` for listings."""
    out = {}
    for k, v in payload.items():
        key = f"{prefix}{_SEP}{k}" if prefix else k
        arr = _as_array(v)
        if arr is not None:
            out[key] = f"{arr.dtype}{list(arr.shape)}"
        elif isinstance(v, Mapping) and v:
            out.update(describe(v, key))
        else:
            out[key] = type(v).__name__
    return out


def digest(data: bytes) -> str:
    """sha256 hex digest of stored bytes."""
    return hashlib.sha256(data).hexdigest()
