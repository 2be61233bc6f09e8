"""Tests of the Zoology/MAD protocol helpers: sweep selection, families, matched comparisons."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import memnas
from memnas.evaluators import MQAR, TrainEvaluator
from memnas.evaluators.protocol import (
    best_of_sweep,
    check_lr_sweep,
    compare_at_matched,
    family_of,
    sweep_prefix,
)
from memnas.measurement import Measurement
from memnas.searchspace import memory_space

NAN = float("nan")
COLUMNS = ["lo", "hi", "family", "accuracy", "params", "number", "count"]


def _run(accuracy: float, loss: float, tag: str) -> Measurement:
    return Measurement(metrics={"accuracy": accuracy, "loss": loss},
                       costs={"params": 10.0, "latency_ms": len(tag)},
                       curve=[{"step": 1, "name": f"{tag}/loss", "value": 1.0}])


def test_best_of_sweep_picks_by_the_metric_then_the_other() -> None:
    runs = [_run(0.9, 1.0, "a"), _run(0.8, 0.5, "bb"), _run(0.9, 0.9, "ccc"),
            _run(0.9, 0.9, "dddd")]
    lrs = (1e-3, 3e-3, 1e-2, 3e-2)
    m = best_of_sweep(lrs, runs)  # accuracy 0.9 three times: the lowest loss, the first
    assert m.metrics["best_lr"] == 1e-2 and m.metrics["accuracy"] == 0.9
    assert m.metrics["loss"] == 0.9 and m.costs["latency_ms"] == 3
    assert [m.metrics[f"lr_{i}"] for i in range(4)] == list(lrs)
    assert [m.metrics[f"loss_lr_{i}"] for i in range(4)] == [1.0, 0.5, 0.9, 0.9]
    assert [p["name"] for p in m.curve] == ["a/loss", "bb/loss", "ccc/loss", "dddd/loss"]
    by_loss = best_of_sweep(lrs, runs, metric="loss")
    assert by_loss.metrics["best_lr"] == 3e-3 and by_loss.metrics["accuracy"] == 0.8
    tie = best_of_sweep((1.0, 2.0), [_run(0.5, 0.5, "x"), _run(0.7, 0.5, "y")], "loss")
    assert tie.metrics["best_lr"] == 2.0  # equal loss: the higher accuracy


def test_best_of_sweep_ranks_non_finite_last_and_leaves_it_out() -> None:
    m = best_of_sweep((10.0, 1e-3), [_run(NAN, NAN, "x"), _run(0.1, 3.0, "y")])
    assert m.metrics["best_lr"] == 1e-3
    assert "accuracy_lr_0" not in m.metrics and "loss_lr_0" not in m.metrics
    assert not m.non_finite()
    m = best_of_sweep((10.0, 1e-3), [_run(0.6, NAN, "x"), _run(0.5, 3.0, "y")], "loss")
    assert m.metrics["best_lr"] == 1e-3 and m.metrics["accuracy_lr_0"] == 0.6
    diverged = best_of_sweep((10.0, 1e-3), [_run(0.99, NAN, "x"), _run(0.1, 3.0, "y")])
    assert diverged.metrics["best_lr"] == 1e-3  # a diverged run's accuracy means nothing
    assert best_of_sweep((10.0,), [_run(0.6, NAN, "x")]).non_finite() == ["loss"]
    with pytest.raises(ValueError, match=r"got 1 runs for lrs \(0.1, 0.2\)"):
        best_of_sweep((0.1, 0.2), [_run(0.5, 1.0, "x")])
    with pytest.raises(ValueError, match="'bits'"):
        best_of_sweep((0.1,), [_run(0.5, 1.0, "x")], metric="bits")


def test_sweep_values_and_prefixes() -> None:
    assert check_lr_sweep(()) == () and check_lr_sweep([1, 3e-3]) == (1.0, 3e-3)
    assert check_lr_sweep(np.array([1e-3, 1e-2])) == (1e-3, 1e-2)
    for bad in ({"lr": 1e-3}, 1e-3):
        with pytest.raises(ValueError, match="lr_sweep must be a tuple of learning rates"):
            check_lr_sweep(bad)
    assert sweep_prefix(3e-3) == "lr=0.003/" and sweep_prefix(1e-7) == "lr=1e-07/"
    with pytest.raises(ValueError, match="got True"):
        check_lr_sweep((True,))


def test_family_of_a_summary() -> None:
    assert family_of("d=32 | attn(h=2) > linear(h=1,elu+1) | mlp x2") == "attn+linear"
    assert family_of("d=32 | linear(h=1,relu) > attn(h=4,w=8) | mlp x2,x4 | post-norm") \
        == "attn+linear"
    assert family_of("d=16 | attn(h=2) > attn(h=4) | mlp x1") == "attn"
    assert family_of("d=16 | hmt(attn(h=2),s=8,n=2) | glu x2") == "hmt"
    assert family_of(" Dict(y=2) ") == "Dict(y=2)"
    with pytest.raises(ValueError, match="got None"):
        family_of(None)  # type: ignore[arg-type]


def _frame() -> pd.DataFrame:
    attn, mamba = "SoftmaxAttention", "Mamba"
    rows = [  # number, layers[0].mixer, layers[1].mixer, params, accuracy, status, supernet
        (0, attn, None, 100, 0.5, "completed", NAN),
        (1, attn, None, 150, 0.7, "cached", NAN),
        (2, mamba, None, 120, 0.6, "completed", NAN),
        (3, attn, mamba, 2000, 0.8, "completed", NAN),
        (4, mamba, attn, 5000, 0.9, "completed", NAN),   # a hybrid of the same two
        (5, attn, None, 10000, 0.95, "completed", NAN),  # the top edge: in the last bin
        (6, attn, None, 1000, 0.99, "failed", NAN),      # no result: dropped
        (7, attn, None, 1000, NAN, "completed", NAN),    # no accuracy: dropped
        (8, attn, None, 1000, 0.99, "completed", 1.0),   # a supernet run: dropped
        (9, None, None, 3000, 0.4, "completed", NAN),    # no decision: from its summary
        (10, attn, None, 1000, 0.3, "completed", NAN),   # the bin's bottom edge
    ]
    df = pd.DataFrame(rows, columns=["number", "layers[0].mixer", "layers[1].mixer", "params",
                                     "accuracy", "status", "supernet"])
    df["layers[0].mixer.num_heads"] = 2  # a mixer's own decision: not a family
    df["summary"] = "d=16 | mamba(n4,e2,c4) | mlp x2"
    df["state_bytes"] = df["params"] * 2
    return df


def _cells(out: pd.DataFrame) -> list[tuple]:
    return [tuple(r) for r in out.itertuples(index=False)]


def test_compare_at_matched_known_answers() -> None:
    df = _frame()
    out = compare_at_matched(df, bins=2)
    assert list(out.columns) == COLUMNS
    hybrid = "Mamba+SoftmaxAttention"
    assert _cells(out) == [
        (100.0, 1000.0, "SoftmaxAttention", 0.7, 150.0, 1, 2),
        (100.0, 1000.0, "Mamba", 0.6, 120.0, 2, 1),
        (1000.0, 10000.0, "SoftmaxAttention", 0.95, 10000.0, 5, 2),
        (1000.0, 10000.0, hybrid, 0.9, 5000.0, 4, 2),
        (1000.0, 10000.0, "mamba", 0.4, 3000.0, 9, 1),
    ]
    assert _cells(compare_at_matched(df, bins=[100, 1000, 10000])) == _cells(out)
    low = compare_at_matched(df, bins=2, mode="min")
    assert _cells(low)[:2] == [(100.0, 1000.0, "SoftmaxAttention", 0.5, 100.0, 0, 2),
                               (100.0, 1000.0, "Mamba", 0.6, 120.0, 2, 1)]
    assert _cells(low)[2][2:6] == ("SoftmaxAttention", 0.3, 1000.0, 10)
    # Explicit edges drop what lies outside them; one bin holds everything.
    narrow = compare_at_matched(df, bins=[200, 2500])
    assert _cells(narrow) == [(200.0, 2500.0, hybrid, 0.8, 2000.0, 3, 1),
                              (200.0, 2500.0, "SoftmaxAttention", 0.3, 1000.0, 10, 1)]
    one = compare_at_matched(df, bins=1)
    assert one["count"].sum() == 8 and one.iloc[0]["family"] == "SoftmaxAttention"
    # Matched state size; a family column; a family function; a table per family.
    state = compare_at_matched(df, by="state_bytes", bins=2)
    assert list(state.columns) == COLUMNS[:4] + ["state_bytes"] + COLUMNS[5:]
    assert list(state["lo"]) == [200.0] * 2 + [2000.0] * 3
    assert list(state["number"]) == list(out["number"])
    by_col = compare_at_matched(df.assign(kind=np.where(df["params"] > 1000, "big", "small")),
                                family="kind", bins=2)
    assert _cells(by_col) == [(100.0, 1000.0, "small", 0.7, 150.0, 1, 3),
                              (1000.0, 10000.0, "big", 0.95, 10000.0, 5, 4),
                              (1000.0, 10000.0, "small", 0.3, 1000.0, 10, 1)]
    by_fn = compare_at_matched(df, family=lambda row: row["status"], bins=2)
    assert set(by_fn["family"]) == {"completed", "cached"}
    table = out.pivot(index="lo", columns="family", values="accuracy")
    assert table.loc[100.0, "Mamba"] == 0.6 and math.isnan(table.loc[100.0, hybrid])


def test_compare_at_matched_plain_frames_and_bad_input() -> None:
    plain = pd.DataFrame({"params": [10.0, 20.0, 30.0], "loss": [3.0, 1.0, 2.0],
                          "summary": ["d=8 | attn(h=1) | mlp x1"] * 3})
    out = compare_at_matched(plain, metric="loss", mode="min", bins=3)
    assert list(out["number"]) == [0, 1, 2] and set(out["family"]) == {"attn"}
    empty = compare_at_matched(plain.assign(loss=NAN), metric="loss")
    assert empty.empty and list(empty.columns) == ["lo", "hi", "family", "loss", "params",
                                                   "number", "count"]
    df = _frame()
    for kwargs, match in (({"by": "flops"}, "'flops'"), ({"metric": "bpb"}, "'bpb'"),
                          ({"bins": 0}, "got 0"), ({"bins": True}, "got True"),
                          ({"bins": [10, 5]}, r"got \[10, 5\]"), ({"bins": [0, 5]}, "got"),
                          ({"bins": "many"}, "'many'"), ({"mode": "best"}, "'best'"),
                          ({"family": "nope"}, "'nope'"), ({"family": 3}, "got 3")):
        with pytest.raises(ValueError, match=match):
            compare_at_matched(df, **kwargs)
    with pytest.raises(ValueError, match="params must be positive .* got 0.0"):
        compare_at_matched(df.assign(params=df["params"] - 100))
    with pytest.raises(ValueError, match="pass family="):
        compare_at_matched(plain.drop(columns="summary"), metric="loss")


def test_a_real_sweep_search_compared_at_matched_size(sqlite_url: str) -> None:
    """A search whose every trial sweeps a diverging and a sane rate: all complete."""
    space = memory_space(vocab_size=16, max_len=12, max_layers=2, d_model=(8, 16),
                         mlp_ratio=(1,), mixers=["SoftmaxAttention", "LinearAttention"])
    evaluator = TrainEvaluator(task=MQAR(vocab_size=16, seq_len=12, num_kv_pairs=2), steps=6,
                               batch_size=8, eval_examples=32, report_every=3, grad_clip=0.0,
                               lr_sweep=(1e4, 1e-2))
    memnas.Experiment(name="sweep", space=space, evaluator=evaluator, algorithm="random",
                      objectives={"accuracy": "max", "state_bytes": "min"},
                      store=sqlite_url).run(max_trials=5, workers=1, executor="local")
    result = memnas.load("sweep", sqlite_url)
    df = result.trials()
    assert set(df["status"]) <= {"completed", "cached"} and len(df) == 5
    assert (df["best_lr"] == 1e-2).all() and (df["lr_0"] == 1e4).all()
    for number in df["number"]:
        curve = result.curve(int(number))
        prefixes = {name.split("/", 1)[0] for name in curve["name"]}
        assert prefixes == {"lr=10000.0", "lr=0.01"} and curve["value"].notna().all()
    for by in ("params", "state_bytes"):
        out = compare_at_matched(df, by=by, bins=2)
        assert out["count"].sum() == len(df)
        mixers = [c for c in df.columns if c.endswith(".mixer") and c.startswith("layers[")]
        families = df[mixers].apply(lambda r: "+".join(sorted(set(r.dropna()))), axis=1)
        for row in out.itertuples(index=False):
            size = df[by]
            top = row.hi == size.max()  # the last bin holds its top edge
            inside = (size >= row.lo) & ((size < row.hi) | (top & (size == row.hi)))
            cell = df[(families == row.family) & inside]
            assert row.accuracy == cell["accuracy"].max() and row.count == len(cell)
            chosen = df[df["number"] == row.number].iloc[0]
            assert chosen["accuracy"] == row.accuracy and chosen[by] == getattr(row, by)
