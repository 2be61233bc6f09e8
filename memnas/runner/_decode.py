"""DNA to candidate: `pg.materialize`, or a checked fast path for spaces of plain values."""

from __future__ import annotations

import random
from typing import Any

import pyglove as pg

from memnas.runner._records import decisions_of

_LITERALS = (bool, int, float, str, type(None))


class Decoder:
    """Turns a DNA of ``space`` into its candidate, as ``pg.materialize(space, dna)`` does.

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
            self._plan()
            self.fast = self._agrees()
        except Exception:  # anything unexpected: the general path is always right
            self.fast = False

    def __call__(self, dna: pg.DNA) -> Any:
        """The candidate ``dna`` stands for."""
        return self._fast(dna) if self.fast else pg.materialize(self.space, dna)

    def decisions(self, dna: pg.DNA) -> dict[str, Any]:
        """`decisions_of(dna)`, from labels PyGlove formatted once (fast spaces only)."""
        return self._decisions(dna) if self.fast else decisions_of(dna)

    def _children(self, dna: pg.DNA) -> list[pg.DNA] | None:
        """The DNA's node per slot, or None when its shape is not the space's."""
        children = [dna] if len(self._slots) == 1 else dna.children
        return children if len(children) == len(self._slots) else None

    def _decisions(self, dna: pg.DNA) -> dict[str, Any]:
        children = self._children(dna)
        if children is None:
            return decisions_of(dna)
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
        primitives = getattr(template, "_hyper_primitives", None)
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
        self._spec = pg.dna_spec(self.space)
        points = self._spec.decision_points
        if len(points) != len(self._slots):
            raise ValueError("decision points and hyper values differ")
        self._names = [p.name or str(p.id) for p in points]
        self._labels = [None if isinstance(p, pg.geno.Float) else
                        [p.format_candidate(i) for i in range(len(p.candidates))]
                        for p in points]

    def _agrees(self) -> bool:
        for seed in range(3):
            dna = pg.random_dna(self._spec, random_generator=random.Random(seed))
            slow, fast = pg.materialize(self.space, dna), self._fast(dna)
            if type(slow) is not type(fast) or not pg.eq(slow, fast) or \
                    pg.to_json_str(slow) != pg.to_json_str(fast) or \
                    decisions_of(dna) != self._decisions(dna):
                return False
        return True


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
