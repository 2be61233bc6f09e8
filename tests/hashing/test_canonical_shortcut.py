"""canonical_json skips rebuilding values with nothing to normalise, with the same hashes."""

import hashlib
import json
import random

import pyglove as pg
import pytest

import toyspace
from memnas.hashing import _canonical, canonicalize, symbolic_hash


def _full_hash(obj):
    text = json.dumps(pg.to_json(canonicalize(obj)), sort_keys=True, separators=(",", ":"),
                      default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


@pg.members([("a", pg.typing.Float()), ("b", pg.typing.Int())])
class _Ruled(pg.Object):
    def canonical(self):
        return _Ruled(a=self.a, b=0) if self.a == 0.0 else self


@pytest.mark.parametrize("space", [
    toyspace.point_space(),
    pg.Dict(x=pg.floatv(-1.0, 1.0), l=[pg.oneof([0.0, -0.0, 1.0])]),
    pg.Dict(r=_Ruled(a=pg.oneof([0.0, 1.0]), b=pg.oneof([1, 2]))),
])
def test_shortcut_gives_the_full_hash(space):
    spec = pg.dna_spec(space)
    rng = random.Random(0)
    for _ in range(60):
        c = pg.materialize(space, pg.random_dna(spec, random_generator=rng))
        assert symbolic_hash(c) == _full_hash(c)


def test_what_has_rules():
    assert not _canonical._has_rules(pg.Dict(x=0.5, y=[1, "a", 0.0]))
    assert _canonical._has_rules(pg.Dict(x=[-0.0]))
    assert _canonical._has_rules(pg.Dict(r=_Ruled(a=1.0, b=2)))
    assert not _canonical._has_rules(toyspace.Point(x=0.1, y=2, kind="a"))
