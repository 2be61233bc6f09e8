"""Canonical symbolic form: each component's own normalisation rules, then sorted JSON."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Callable

import pyglove as pg

_TYPE = pg.JSONConvertible.TYPE_NAME_KEY


def canonicalize(value: Any) -> Any:
    """Returns ``value`` with every component's ``canonical()`` rule applied, bottom-up.

    A symbolic class declares what cannot change its function by defining
    ``canonical(self) -> object``: it returns an equivalent, normalised object, e.g.
    hyperparameters of a switched-off branch reset to their defaults, values clamped
    to the range where they have an effect, or a simpler object it reduces to (a
    one-memory mixture is its memory). Children are normalised before their parent,
    so a rule sees canonical children. The input is never modified; a part that no
    rule changes is returned as it is, not copied.

    A class may write its rule on JSON instead, as ``canonical_data(self, data) ->
    dict``: ``data`` is the object's `pg.to_json` with its children already canonical
    (read them from ``data``, not from ``self``, whose children are as written); it
    returns ``data`` itself when nothing changes, else the canonical object's JSON
    (applying the rule to it again changes nothing). Its ``canonical()`` is then that
    rule through JSON. `symbolic_hash` runs such rules without building any object:
    PyGlove validates every field of every object it builds (a cell: ~1 ms), which was
    most of the driver's hashing time.
    """
    return _canon(value, pg.to_json(value))[2]()


def canonical_json(obj: Any, normalise: bool = True, data: Any = None) -> str:
    """JSON of a (canonicalised) symbolic value with sorted keys and no spaces.

    ``data``: ``pg.to_json(obj)`` where the caller has it already (it is not modified).
    """
    raw = pg.to_json(obj) if data is None else data
    return _dumps(_canon(obj, raw)[0] if normalise else raw)


def symbolic_hash(obj: Any, data: Any = None) -> str:
    """sha256 of the canonical JSON: equal across processes, machines and Python hash seeds.

    Two candidates that differ only in what their components declare irrelevant
    (see `canonicalize`) hash equal. Never Python's salted ``hash()``/``sym_hash()``.
    ``data``: ``pg.to_json(obj)`` where the caller has it already.
    """
    return hashlib.sha256(canonical_json(obj, data=data).encode()).hexdigest()


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)


# The canonical JSON is composed from the value's JSON (`pg.to_json`, computed once)
# while the rules run on the objects: an object is rebuilt only where a rule changed
# something below it and a rule above needs to see the change. Rebuilding every PyGlove
# object bottom-up, as a plain recursion would, cost ~10x more on a cell candidate (8 ms:
# PyGlove validates every field and copies every child it is given on construction).
def _canon(value: Any, data: Any) -> tuple[Any, bool, Callable[[], Any]]:
    """``(canonical JSON, changed, canonical object thunk)`` of ``value`` (its JSON: ``data``)."""
    if not isinstance(data, (dict, list)):  # a leaf
        if isinstance(data, float) and data == 0.0 and math.copysign(1.0, data) < 0:
            return 0.0, True, lambda: 0.0  # -0.0 and 0.0 are one value
        return data, False, lambda: value
    if isinstance(data, list) and all(isinstance(d, (int, str, type(None))) for d in data):
        return data, False, lambda: value  # e.g. a cell's adjacency rows: nothing to apply
    if isinstance(value, pg.Object) and isinstance(data, dict):
        kids = {k: _canon(value.sym_getattr(k), v) for k, v in data.items() if k != _TYPE}
        changed = any(c for _, c, _ in kids.values())
        text = {**data, **{k: j for k, (j, _, _) in kids.items()}} if changed else data
        built: list[Any] = []

        def build() -> Any:
            if not built:
                built.append(_rebuild(value, {k: f() for k, (_, c, f) in kids.items() if c})
                             if changed else value)
            return built[0]

        data_rule = getattr(value, "canonical_data", None)
        if callable(data_rule):
            out = data_rule(text)
            if out is text or out == text:
                return text, changed, build
            if out.get(_TYPE) == text.get(_TYPE):  # canonical JSON of this class
                return out, True, lambda: pg.from_json(out)
            reduced = pg.from_json(out)  # reduced to another class: its rules apply too
            j, _, f = _canon(reduced, out)
            return j, True, f
        rule = getattr(value, "canonical", None)
        if not callable(rule):
            return text, changed, build
        out = build()
        reduced = out.canonical()
        if reduced is out or pg.eq(reduced, out):
            return text, changed, lambda: reduced
        j, _, f = _canon(reduced, pg.to_json(reduced))  # a rule may reduce to another class
        return j, True, f
    if isinstance(value, (list, pg.List)) and isinstance(data, list) and len(data) == len(value):
        items = [_canon(v, d) for v, d in zip(value, data)]
        if not any(c for _, c, _ in items):
            return data, False, lambda: value
        return [j for j, _, _ in items], True, lambda: [f() for _, _, f in items]
    if isinstance(value, (dict, pg.Dict)) and isinstance(data, dict):
        kids = {k: _canon(value[k], v) for k, v in data.items() if k in value}
        if not any(c for _, c, _ in kids.values()):
            return data, False, lambda: value
        return ({**data, **{k: j for k, (j, _, _) in kids.items()}}, True,
                lambda: {**value, **{k: f() for k, (_, _, f) in kids.items()}})
    return data, False, lambda: value


def _rebuild(value: pg.Object, changed: dict[str, Any]) -> pg.Object:
    """A copy of ``value`` with the ``changed`` arguments (canonical children) put in."""
    args = {**value.sym_init_args, **changed}
    return type(value).partial(**args) if value.is_partial else type(value)(**args)
