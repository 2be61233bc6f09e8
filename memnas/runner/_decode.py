"""DNA to candidate and to readable decisions; a checked fast path for spaces of plain values."""

from __future__ import annotations

import random
import re
from typing import Any

import pyglove as pg

from memnas.store.decisions import SHORT, label_from_text

_LITERALS = (bool, int, float, str, type(None))
_BRANCH = re.compile(r"\[=(\d+)/\d+\]")
"""The ``[=i/n]`` marks PyGlove puts in a decision id after a choice's path (candidate i)."""


class Decoder:
    """Turns a DNA of ``space`` into its candidate, as ``pg.materialize(space, dna)`` does,
    and into its decisions as a person reads them (`decisions`).

    ``pg.materialize`` deep-copies the whole template, hyper values included, then
    rebinds the decisions: about 2 ms even for two decisions, which dominates a trial
    that returns at once. For a space whose decisions are all ``pg.floatv`` or
    ``pg.oneof`` over plain values (numbers, strings, booleans, None) at fixed places,
    the candidate is instead rebuilt from the space's JSON with the chosen values put
    in: the same classes, built with the same arguments. The fast path is used only
    after it gave exactly what ``pg.materialize`` gives on a few random DNAs; any other
    space (conditional choices, ``manyof``, symbolic candidates, derived values...)
    goes through ``pg.materialize``.

    Args:
      space: the experiment's PyGlove hyper value.
    """

    def __init__(self, space: Any) -> None:
        self.space = space
        self.fast = False
        try:
            self._spec = pg.dna_spec(space)
            self._columns = decision_columns(space, self._spec)
        except Exception:  # a space PyGlove cannot spec fails later, where it is used
            self._columns = {}
        try:
            self._plan()
            self.fast = self._agrees()
        except Exception:  # anything unexpected: the general path is always right
            self.fast = False

    def __call__(self, dna: pg.DNA) -> Any:
        """The candidate ``dna`` stands for."""
        return self._fast(dna) if self.fast else pg.materialize(self.space, dna)

    def decisions(self, dna: pg.DNA) -> dict[str, Any]:
        """The DNA's active decisions as ``{readable path: short label}``.

        The path is the decision's place in the candidate with PyGlove's branch marks
        dropped (``layers[0].mixer.structure``; a named decision keeps its name); the
        label is the chosen value (a literal, a float, the class name of a chosen
        object, the length of a chosen list). Inactive branches are left out. Labels and
        paths are worked out once per space (`decision_columns`).
        """
        return self._decisions(dna) if self.fast else self._general(dna)

    def _general(self, dna: pg.DNA) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for point, v in dna.to_dict(key_type="dna_spec", value_type="value").items():
            key = str(point.id)
            info = self._columns.get(key)
            if info is None:  # a spec this decoder did not see: label from PyGlove's text
                info = self._columns[key] = (_path(point), _labels(point, None))
            name, labels = info
            if labels is not None and isinstance(v, int) and 0 <= v < len(labels):
                out[name] = labels[v]
            else:
                out[name] = v if isinstance(v, _LITERALS) else str(v)
        return out

    def _children(self, dna: pg.DNA) -> list[pg.DNA] | None:
        """The DNA's node per slot, or None when its shape is not the space's."""
        children = [dna] if len(self._slots) == 1 else dna.children
        return children if len(children) == len(self._slots) else None

    def _decisions(self, dna: pg.DNA) -> dict[str, Any]:
        children = self._children(dna)
        if children is None:
            return self._general(dna)
        out = {}
        for name, labels, child in zip(self._names, self._labels, children):
            v = child.value
            out[name] = v if labels is None else labels[v]
        return out

    def _fast(self, dna: pg.DNA) -> Any:
        children = self._children(dna)
        if children is None:
            return pg.materialize(self.space, dna)  # let PyGlove say what is wrong
        value = _copy(self._skeleton)
        for (parent, key, choices), child in zip(self._slots, children):
            v = child.value
            if choices is not None:
                if not isinstance(v, int) or not 0 <= v < len(choices):
                    return pg.materialize(self.space, dna)
                v = choices[v]
            _at(value, parent)[key] = v
        return pg.from_json(value)

    def _plan(self) -> None:
        template = pg.template(self.space)
        primitives = template.hyper_primitives
        if not primitives:
            raise ValueError("no hyper primitives to decode")
        self._skeleton = pg.to_json(self.space)
        self._slots: list[tuple[list[Any], Any, list[Any] | None]] = []
        for location, primitive in primitives:
            keys = list(location.keys)
            if not keys:
                raise ValueError("the space is a single hyper value")
            if type(primitive) is pg.hyper.Float:
                choices = None
            elif type(primitive) is pg.hyper.OneOf and \
                    all(type(c) in _LITERALS for c in primitive.candidates):
                choices = list(primitive.candidates)
            else:
                raise ValueError(f"no fast path for {type(primitive).__name__}")
            _at(self._skeleton, keys[:-1])[keys[-1]]  # the place exists in the JSON
            self._slots.append((keys[:-1], keys[-1], choices))
        points = self._spec.decision_points
        if len(points) != len(self._slots):
            raise ValueError("decision points and hyper values differ")
        self._names = [self._columns[str(p.id)][0] for p in points]
        self._labels = [self._columns[str(p.id)][1] for p in points]

    def _agrees(self) -> bool:
        for seed in range(3):
            dna = pg.random_dna(self._spec, random_generator=random.Random(seed))
            slow, fast = pg.materialize(self.space, dna), self._fast(dna)
            if type(slow) is not type(fast) or not pg.eq(slow, fast) or \
                    pg.to_json_str(slow) != pg.to_json_str(fast) or \
                    self._general(dna) != self._decisions(dna):
                return False
        return True


def decision_columns(space: Any, spec: pg.DNASpec | None = None
                     ) -> dict[str, tuple[str, list[Any] | None]]:
    """Per decision point of ``space`` (by its PyGlove id): its readable path and the
    short labels of its candidates (None for a float or custom decision).

    ``spec`` is ``pg.dna_spec(space)`` when the caller has it already.

    Paths that two decisions active together would share (a choice directly inside a
    choice) keep PyGlove's full id for the later one, so that a trial's decisions never
    overwrite each other.
    """
    spec = spec if spec is not None else pg.dna_spec(space)
    candidates: dict[str, list[Any]] = {}
    try:
        _walk(spec, space, candidates)
    except Exception:  # labels then come from PyGlove's formatted candidates
        candidates = {}
    out: dict[str, tuple[str, list[Any] | None]] = {}
    taken: dict[str, list[str]] = {}
    for point in spec.decision_points:
        key, path = str(point.id), _path(point)
        if any(not _exclusive(key, other) for other in taken.get(path, ())):
            path = key
        taken.setdefault(path, []).append(key)
        out[key] = (path, _labels(point, candidates.get(key)))
    return out


def _path(point: Any) -> str:
    """A decision's name, else its id without the branch marks (``layers[0].mixer``)."""
    if point.name:
        return str(point.name)
    return _BRANCH.sub("", str(point.id)) or "decision"


def _exclusive(a: str, b: str) -> bool:
    """Whether decisions ``a`` and ``b`` (ids) lie in different candidates of one choice."""
    marks = {a[:m.start()]: m.group(1) for m in _BRANCH.finditer(a)}
    return any(marks.get(b[:m.start()], m.group(1)) != m.group(1) for m in _BRANCH.finditer(b))


def _walk(spec: Any, value: Any, out: dict[str, list[Any]]) -> None:
    """Pairs each choice of ``spec`` (a ``pg.geno.Space``) with the candidates of the
    hyper value it was made from, in ``value``."""
    if isinstance(value, pg.hyper.HyperPrimitive):
        primitives = [value]
    elif isinstance(value, pg.Symbolic):
        primitives = [p for _, p in pg.template(value).hyper_primitives]
    else:
        primitives = []
    if len(primitives) != len(spec.elements):
        raise ValueError("the spec and the space differ")
    for point, primitive in zip(spec.elements, primitives):
        if not isinstance(point, pg.geno.Choices):
            continue
        found = list(primitive.candidates)
        subs = [point] if point.num_choices == 1 else \
            [point.subchoice(i) for i in range(point.num_choices)]
        for sub in subs:
            if len(sub.candidates) != len(found):
                raise ValueError("the spec and the space differ")
            out[str(sub.id)] = found
            for sub_spec, candidate in zip(sub.candidates, found):
                _walk(sub_spec, candidate, out)


def _labels(point: Any, candidates: list[Any] | None) -> list[Any] | None:
    """Short labels of a choice's candidates, distinct within the choice."""
    if not isinstance(point, pg.geno.Choices):
        return None
    n = len(point.candidates)
    if candidates is None:  # PyGlove's formatted candidates: their short form, else i/n
        labels = []
        for i, v in enumerate(point.literal_values):
            label = label_from_text(v) if isinstance(v, str) else _label(v)
            labels.append(f"{i}/{n}" if label is None else label)
    else:
        lists = [c for c in candidates if isinstance(c, (list, tuple))]
        by_length = len(lists) == len(candidates) and \
            len({len(c) for c in lists}) == len(lists)
        labels = [len(c) if by_length else _label(c) for c in candidates]
    keys = [(type(v), v) for v in labels]
    return [v if keys.count(k) == 1 else f"{v}#{i}" for i, (k, v) in enumerate(zip(keys, labels))]


def _label(value: Any) -> Any:
    """A literal as itself (None as ``"None"``, so that it differs from an inactive
    branch), an object as its class name, anything else as its short form."""
    if value is None:
        return "None"
    if isinstance(value, _LITERALS):
        return value
    if isinstance(value, (pg.Object, pg.hyper.HyperValue)) or not isinstance(
            value, (pg.Symbolic, list, tuple, dict)):
        return getattr(value, "__name__", None) or type(value).__name__
    text = pg.format(value, compact=True) if isinstance(value, pg.Symbolic) else repr(value)
    return text if len(text) <= SHORT else type(value).__name__


def _at(node: Any, keys: list[Any]) -> Any:
    for k in keys:
        node = node[k]
    return node


def _copy(node: Any) -> Any:
    """A copy of a JSON value (dicts and lists copied, leaves shared)."""
    if isinstance(node, dict):
        return {k: _copy(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_copy(v) for v in node]
    return node
