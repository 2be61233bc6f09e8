"""Readable decisions: a trial's stored ``{path: label}`` and how old stores' forms read."""

from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DECISION_PREFIX", "decision_column", "decision_table", "key_order",
           "label_from_text", "readable_decisions"]

DECISION_PREFIX = "decision:"
"""Put before a decision's column name that another column (a metric...) already has."""
_LEGACY = re.compile(r"^(\d+)/(\d+) \((.*)\)$", re.S)
_BRANCH = re.compile(r"\[=\d+/\d+\]")
_CLASS = re.compile(r"^([A-Za-z_][\w.]*)\(")
_ENTRY = re.compile(r"\d+: ")
SHORT = 40
"""Longest text kept as a label."""


def decision_column(name: str, taken: Iterable[str]) -> str:
    """``name``, or ``decision:name`` when another column already has it."""
    return f"{DECISION_PREFIX}{name}" if name in set(taken) else name


def key_order(dicts: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every key of ``dicts``, each placed after the key it follows in the first dict
    that has it (so ``layers[1].mixer`` stays after ``layers[0]``'s decisions)."""
    order: list[str] = []
    members: set[str] = set()
    seen: set[tuple] = set()
    for d in dicts:
        shape = tuple(d)
        if shape in seen:
            continue
        seen.add(shape)
        previous = None
        for k in shape:
            if k not in members:
                order.insert(order.index(previous) + 1 if previous is not None else len(order), k)
                members.add(k)
            previous = k
    return order


def decision_table(dicts: Sequence[Mapping[str, Any]], keys: Sequence[str],
                   names: Sequence[str], index: Any) -> "pd.DataFrame":
    """Columns ``names`` holding each dict's value of ``keys`` (None where it has none):
    nullable integer, float, boolean or string columns where the labels allow."""
    import pandas as pd

    data = {}
    for key, name in zip(keys, names):
        values = [d.get(key) for d in dicts]
        try:
            data[name] = pd.array(values)
        except (TypeError, ValueError):
            data[name] = pd.array(values, dtype=object)
    return pd.DataFrame(data, index=index, columns=list(names))


def readable_decisions(stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """A stored trial's decisions as ``{path: label}``, old stores' forms converted.

    Trials stored before decisions were readable hold ``{PyGlove id: "i/n (formatted
    candidate)"}``; their ids lose the ``[=i/n]`` branch marks and their values become
    labels (`label_from_text`, else ``"i/n"``). Newer ones are returned as they are.
    """
    stored = dict(stored or {})
    if not any(isinstance(v, str) and _LEGACY.match(v) for v in stored.values()):
        return stored
    out: dict[str, Any] = {}
    for key, value in stored.items():
        m = _LEGACY.match(value) if isinstance(value, str) else None
        if m:
            label = label_from_text(m.group(3))
            value = f"{m.group(1)}/{m.group(2)}" if label is None else label
        path = _BRANCH.sub("", key)
        out[key if path in out else path] = value
    return out


def label_from_text(text: str) -> Any:
    """The short label of a candidate as PyGlove formats it: a literal as its value
    (None as ``"None"``), an object as its class name, a list as its length, other
    short text as it is; None when there is no short label (long or cut-off text)."""
    text = text.strip()
    try:
        value = ast.literal_eval(text)
        if value is None or isinstance(value, (bool, int, float, str)):
            return "None" if value is None else value
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        pass
    m = _CLASS.match(text)
    if m:
        return m.group(1).rsplit(".", 1)[-1]
    if text.startswith("[0: ") and not text.endswith("..."):
        return _top_level_items(text)
    return text if len(text) <= SHORT else None


def _top_level_items(text: str) -> int:
    """Entries of a formatted list ``[0: A(...), 1: B(...)]``."""
    depth, count = 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
            count += depth == 1 and ch == "[" and bool(_ENTRY.match(text, i + 1))
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 1 and text.startswith(" ", i + 1) and \
                _ENTRY.match(text, i + 2):
            count += 1
    return count
