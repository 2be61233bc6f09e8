"""`memnas bench hashing`: figures per space, hits by kind, savings beyond duplicates, false merges."""

import json

import pyglove as pg
import pytest
import torch

from memnas.bench import hashing, run_bench

FIELDS = {"trials", "hits", "saved_beyond_duplicates", "hash_time_fraction", "checked",
          "false_merges"}


class _Times(torch.nn.Module):
    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


@pg.members([("a", pg.typing.Int()), ("b", pg.typing.Int(default=0)),
             ("note", pg.typing.Str(default=""))])
class Dial(pg.Object):
    """Computes ``x * a``: ``b`` is declared irrelevant (canonical rule), ``note`` is not."""

    def canonical(self):
        return self.clone(override={"b": 0})

    def build(self):
        return _Times(self.a)

    def probe_input(self, seed):
        return torch.randn(2, 3, generator=torch.Generator().manual_seed(seed))


def honest(c, ctx):
    return {"accuracy": float(c.a)}


def deceived(c, ctx):  # the note changes the result, though not what build() computes
    return {"accuracy": float(c.a) + len(c.note)}


def _dial(evaluator):
    space = Dial(a=pg.oneof([0, 1, 2]), b=pg.oneof([0, 1, 2]), note=pg.oneof(["", "x", "yy"]))
    return lambda quick: hashing.Setup("dials", space, evaluator, trials=24, population=6,
                                       tournament=3, checks=100,
                                       objectives={"accuracy": "max"})


def test_quick_run_writes_every_space(tmp_path):
    path = tmp_path / "hashing.json"
    run_bench("hashing", json_path=str(path), quick=True, trials=4)
    figures = json.loads(path.read_text())
    assert set(figures) == {"cells", "memory"}
    for name, f in figures.items():
        if "skipped" in f:  # the cell space, until memnas.searchspace has it
            assert name == "cells"
            with pytest.raises(ImportError):
                from memnas.searchspace import memory_cell_space  # noqa: F401
            continue
        assert FIELDS <= set(f) and set(f["hits"]) == set(hashing.KINDS)
        assert f["trials"] == 4
        assert f["false_merges"] == 0 and 0 <= f["saved_beyond_duplicates"] <= 1


def test_canonical_and_functional_hits_are_counted_and_checked():
    f = hashing.run(quick=True, spaces={"dials": _dial(honest)})["dials"]
    assert f["trials"] == 24 and f["evaluated"] <= 3  # three functions: x*0, x*1, x*2
    assert f["hits"]["canonical"] and f["hits"]["functional"]
    assert sum(f["hits"].values()) == 24 - f["evaluated"]
    # kinds follow the dedup rule: a candidate proposed before is a duplicate
    assert f["saved_beyond_duplicates"] * 24 == pytest.approx(
        f["hits"]["canonical"] + f["hits"]["functional"])
    assert f["checked"] == f["hits"]["canonical"] + f["hits"]["functional"]
    assert f["false_merges"] == 0 and f["max_difference"] == 0


def test_a_false_merge_is_found():
    f = hashing.run(quick=True, spaces={"dials": _dial(deceived)})["dials"]
    assert f["checked"] and f["false_merges"] >= 1 and f["max_difference"] >= 1


def test_an_unknown_space_is_refused_in_one_line_naming_it():
    with pytest.raises(ValueError) as err:
        hashing.run(quick=True, spaces=["cellz"])
    assert "'cellz'" in str(err.value) and "\n" not in str(err.value)
