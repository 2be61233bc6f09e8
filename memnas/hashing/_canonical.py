"""Canonical symbolic form: each component's own normalisation rules, then sorted JSON."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import pyglove as pg


def canonicalize(value: Any) -> Any:
    """Returns ``value`` with every component's ``canonical()`` rule applied, bottom-up.

    A symbolic class declares what cannot change its function by defining
    ``canonical(self) -> object``: it returns an equivalent, normalised object, e.g.
    hyperparameters of a switched-off branch reset to their defaults, values clamped
    to the range where they have an effect, or a simpler object it reduces to (a
    one-memory mixture is its memory). Children are normalised before their parent,
    so a rule sees canonical children. The input is never modified.
    """
    if isinstance(value, pg.Object):
        args = {k: canonicalize(v) for k, v in value.sym_init_args.items()}
        out = type(value).partial(**args) if value.is_partial else type(value)(**args)
        rule = getattr(out, "canonical", None)
        if callable(rule):
            reduced = rule()
            if reduced is not out and not pg.eq(reduced, out):
                return canonicalize(reduced)  # a rule may reduce to another class
            return reduced
        return out
    if isinstance(value, pg.List) or isinstance(value, list):
        return [canonicalize(v) for v in value]
    if isinstance(value, pg.Dict) or isinstance(value, dict):
        return {k: canonicalize(v) for k, v in value.items()}
    if isinstance(value, float) and value == 0.0:
        return 0.0  # -0.0 and 0.0 are one value
    return value


def canonical_json(obj: Any, normalise: bool = True) -> str:
    """JSON of a (canonicalised) symbolic value with sorted keys and no spaces.

    A value with nothing to normalise (no component declaring ``canonical()``, no
    ``-0.0``), as plain hyperparameter dicts are, is written as it is: rebuilding it
    would give the same JSON at a far higher cost.
    """
    value = canonicalize(obj) if normalise and _has_rules(obj) else obj
    return json.dumps(pg.to_json(value), sort_keys=True, separators=(",", ":"), default=repr)


def symbolic_hash(obj: Any) -> str:
    """sha256 of the canonical JSON: equal across processes, machines and Python hash seeds.

    Two candidates that differ only in what their components declare irrelevant
    (see `canonicalize`) hash equal. Never Python's salted ``hash()``/``sym_hash()``.
    """
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def _has_rules(value: Any) -> bool:
    """Whether `canonicalize` could change ``value``'s JSON: a ``canonical()`` rule or a -0.0."""
    if isinstance(value, pg.Object):
        if callable(getattr(value, "canonical", None)):
            return True
        return any(_has_rules(v) for v in value.sym_init_args.values())
    if isinstance(value, (list, tuple)):
        return any(_has_rules(v) for v in value)
    if isinstance(value, dict):
        return any(_has_rules(v) for v in value.values())
    return isinstance(value, float) and value == 0.0 and math.copysign(1.0, value) < 0
