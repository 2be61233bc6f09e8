"""canonical_json composes the canonical JSON without rebuilding objects, with the same hashes."""

import hashlib
import json
import random

import pyglove as pg
import pytest

import memnas.searchspace
import toyspace
from memnas.hashing import canonical_json, canonicalize, symbolic_hash
from memnas.searchspace import cell_space, memory_cell_space, memory_space


def _rebuild_all(value):
    """The reference: every object rebuilt bottom-up, each rule run on objects."""
    if isinstance(value, pg.Object):
        args = {k: _rebuild_all(v) for k, v in value.sym_init_args.items()}
        out = type(value)(**args)
        rule = getattr(out, "canonical", None)
        if callable(rule):
            reduced = rule()
            if reduced is not out and not pg.eq(reduced, out):
                return _rebuild_all(reduced)
            return reduced
        return out
    if isinstance(value, (list, pg.List)):
        return [_rebuild_all(v) for v in value]
    if isinstance(value, (dict, pg.Dict)):
        return {k: _rebuild_all(v) for k, v in value.items()}
    if isinstance(value, float) and value == 0.0:
        return 0.0
    return value


def _full_hash(obj):
    text = json.dumps(pg.to_json(_rebuild_all(obj)), sort_keys=True, separators=(",", ":"),
                      default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


@pg.members([("a", pg.typing.Float()), ("b", pg.typing.Int())])
class _Ruled(pg.Object):
    def canonical(self):
        return _Ruled(a=self.a, b=0) if self.a == 0.0 else self


@pg.members([("inner", pg.typing.Any()), ("n", pg.typing.Int())])
class _Parent(pg.Object):
    """A rule on objects above a rule on JSON: it sees its child canonical."""

    def canonical(self):
        return _Parent(inner=self.inner, n=0) if self.inner.b == 0 else self


@pytest.mark.parametrize("space", [
    toyspace.point_space(),
    pg.Dict(x=pg.floatv(-1.0, 1.0), l=[pg.oneof([0.0, -0.0, 1.0])]),
    pg.Dict(r=_Ruled(a=pg.oneof([0.0, 1.0]), b=pg.oneof([1, 2]))),
    _Parent(inner=_Ruled(a=pg.oneof([0.0, 1.0]), b=pg.oneof([1, 2])), n=pg.oneof([3, 4])),
    memory_space(vocab_size=32, max_len=16, max_layers=2),
    memory_cell_space(vocab_size=32, max_len=16, max_layers=2),
    _Parent(inner=_Ruled(a=0.0, b=1), n=pg.oneof([3, 4])),
], ids=["point", "floats", "ruled", "parent", "memory", "cells", "parent-fixed"])
def test_composed_json_gives_the_full_hash(space):
    spec = pg.dna_spec(space)
    rng = random.Random(0)
    for _ in range(12 if isinstance(space, memnas.searchspace.SequenceModel) else 40):
        c = pg.materialize(space, pg.random_dna(spec, random_generator=rng))
        assert symbolic_hash(c) == _full_hash(c)
        assert pg.eq(canonicalize(c), _rebuild_all(c))


def test_rules_on_json_agree_with_their_objects():
    """A cell's rule on JSON returns what building its canonical cell and writing it gives,
    and applied again changes nothing."""
    rng = random.Random(1)
    spec = pg.dna_spec(cell_space())
    for _ in range(30):
        cell = pg.materialize(cell_space(), pg.random_dna(spec, random_generator=rng))
        data = pg.to_json(cell)
        out = cell.canonical_data(data)
        assert out == pg.to_json(cell.canonical())
        again = pg.from_json(out)
        assert again.canonical_data(out) == out


def test_input_left_alone_and_unchanged_parts_not_copied():
    c = toyspace.Point(x=0.1, y=2, kind="a")
    assert canonicalize(c) is c
    data = pg.to_json(pg.Dict(l=[-0.0, 1.0]))
    before = json.dumps(data)
    assert canonical_json(pg.Dict(l=[-0.0, 1.0]), data=data) == '{"l":[0.0,1.0]}'
    assert json.dumps(data) == before
