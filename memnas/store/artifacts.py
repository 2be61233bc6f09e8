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

MAX_ARTIFACT_BYTES = 64 * 2**20
"""Largest artifact an evaluation may return: 64 MiB, counted uncompressed (the arrays'
bytes plus the JSON text), checked by `checked` in the worker before the result travels
back; a larger one fails its trial with one line. memnas's own artifacts are far below
it: a trainer's checkpoint is about 12 bytes per parameter (float32 weights and AdamW's
two moments; the largest of memory_space(vocab_size=256, max_layers=4, d_model up to
128) take about 11 MiB), so 64 MiB holds one of a model of about 5 million parameters;
IMP's masks, final and rewind weights are 9 bytes per prunable weight (2.4 MB for
LeNet-300-100). Algorithms' input artifacts are not limited."""


def _as_array(value: Any) -> np.ndarray | None:
    if isinstance(value, np.ndarray):
        return value
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return None


def encode(payload: Mapping[str, Any]) -> bytes:
    """Serialises a mapping whose leaves are arrays (numpy or torch) or JSON-able values.

    Nested mappings are kept (keys must be non-empty strings without ``/``).

    Raises:
      TypeError: a key is not a non-empty string or contains ``/``, or a leaf is neither an
        array nor JSON-able.
    """
    arrays, rest = _flatten(payload)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays, **{_JSON_KEY: np.array(json.dumps(rest))})
    return buf.getvalue()


def checked(payload: Any, limit: int = MAX_ARTIFACT_BYTES) -> dict[str, Any]:
    """``payload`` as `encode` would store it, without encoding it: nested dicts whose
    leaves are numpy arrays (torch tensors moved to the CPU) or JSON-able values.

    The worker's check of an evaluator's artifact before it travels back (a CUDA
    tensor would not unpickle on a driver without a GPU) and is stored.

    Raises:
      TypeError: what `encode` raises.
      ValueError: the payload is over ``limit`` bytes, uncompressed (see
        `MAX_ARTIFACT_BYTES`); the message names both sizes.
    """
    arrays, rest = _flatten(payload)
    size = sum(a.nbytes for a in arrays.values()) + len(json.dumps(rest).encode())
    if size > limit:
        raise ValueError(f"artifact of {_size(size)} is over the limit of {_size(limit)} "
                         f"(memnas.store.artifacts.MAX_ARTIFACT_BYTES)")
    return _nest({**arrays, **rest})


def _flatten(payload: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and the JSON-able leaves of a payload, by flattened key."""
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
                if not isinstance(k, str) or not k or _SEP in k:
                    raise TypeError(f"artifact key {k!r:.80} under {prefix or '(top)'!r} must "
                                    f"be a non-empty string without {_SEP!r}")
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
    return arrays, rest


def decode(data: bytes) -> dict[str, Any]:
    """Reads back what `encode` wrote, nested mappings rebuilt."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        flat: dict[str, Any] = {k: npz[k] for k in npz.files if k != _JSON_KEY}
        flat.update(json.loads(str(npz[_JSON_KEY][()])))
    return _nest(flat)


def _nest(flat: Mapping[str, Any]) -> Any:
    """Nested mappings rebuilt from flattened keys."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if key == "":
            return value  # an artifact that is a single leaf (not produced by encode of a mapping)
        node = out
        *parents, leaf = key.split(_SEP)
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB ({n:,} bytes)"


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
