"""Hostile evaluator output: each bad result fails its trial with one line; the search and
the store go on (in process, and through Ray, where results are pickled back)."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pyglove as pg
import pytest
import torch
from click.testing import CliRunner

import memnas
from memnas.cli import main
from memnas.dashboard import analysis, data
from memnas.measurement import MAX_VALUES, Context, Measurement, MeasurementError, as_number
from memnas.runner._trial import run_trial
from memnas.store import Store, reader
from memnas.store.artifacts import MAX_ARTIFACT_BYTES
from pgtools import POSTGRES_URL, reset_postgres

BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


class Opaque:
    """A value that is not a number, not JSON, not an array."""


def _report(step, **values):
    def evaluate(ctx):
        ctx.report(0, loss=1.0)
        ctx.report(step, **values)
        return {"accuracy": 0.1}
    return evaluate


def _with_artifact(artifact):
    return lambda ctx: Measurement(metrics={"accuracy": 0.2}, artifact=artifact)


# Trial number -> (what the evaluator does with ctx, the stored error or None if it completes).
CASES = [
    (lambda ctx: "a string", "evaluator must return a memnas.Measurement or a dict of numbers, "
                             "got str: 'a string'"),
    (lambda ctx: None, "evaluator must return a memnas.Measurement or a dict of numbers, got "
                       "NoneType: None (did the evaluator forget to return?)"),
    (lambda ctx: {"accuracy": np.array([0.5, 0.6])},
     "metric 'accuracy' must be a number, got ndarray of shape [2]: array([0.5, 0.6]) "
     "(2 elements: which one is meant is ambiguous)"),
    (lambda ctx: {"accuracy": torch.ones(3)},
     "metric 'accuracy' must be a number, got Tensor of shape [3]: tensor([1., 1., 1.]) "
     "(3 elements: which one is meant is ambiguous)"),
    (lambda ctx: {"accuracy": torch.tensor(0.25), "half": np.float32(0.5), "flag": True,
                  "one": np.array([0.75]), "t11": torch.ones(1, 1), "n": np.int64(7)}, None),
    (lambda ctx: {"accuracy": {1, 2}}, "metric 'accuracy' must be a number, got set: {1, 2}"),
    (lambda ctx: {"accuracy": Opaque()}, "metric 'accuracy' must be a number, got Opaque: "
                                         "<test_hostile_output.Opaque object at 0x"),
    (lambda ctx: {"accuracy": {"top1": 0.5}}, "metric 'accuracy' must be a number, got dict: "
                                              "{'top1': 0.5}"),
    (lambda ctx: {"accuracy": 0.5, 3: 1.0}, "metric names must be printable strings of 1 to 100 "
                                            "characters, got int: 3"),
    (lambda ctx: {"accuracy": "0.5"}, "metric 'accuracy' must be a number, got str: '0.5'"),
    (lambda ctx: {f"m{i}": 1.0 for i in range(10_000)},
     f"evaluator returned 10000 metrics and costs, more than the {MAX_VALUES} memnas stores "
     f"(memnas.measurement.MAX_VALUES)"),
    (_with_artifact({"w": np.zeros(100 * 2**20, dtype=np.uint8)}),
     "the evaluator's artifact cannot be stored: ValueError: artifact of 100.0 MiB "
     "(104,857,602 bytes) is over the limit of 64.0 MiB (67,108,864 bytes) "
     "(memnas.store.artifacts.MAX_ARTIFACT_BYTES)"),
    (_with_artifact({"w": {1, 2}}), "the evaluator's artifact cannot be stored: TypeError: "
                                    "artifact entry 'w' must be an array or JSON-able, got set"),
    (_with_artifact([1, 2]), "the evaluator's artifact cannot be stored: TypeError: an artifact "
                             "must be a mapping, got list"),
    (_with_artifact({"w": torch.ones(3), "meta": {"step": 4}}), None),
    (_report(1, loss="x"), "ctx.report: 'loss' at step 1 must be a number, got str: 'x'"),
    (_report(1, loss=np.ones(4)), "ctx.report: 'loss' at step 1 must be a number, got ndarray "
                                  "of shape [4]: array([1., 1., 1., 1.]) (4 elements: which one "
                                  "is meant is ambiguous)"),
    (_report(1.5, loss=0.5), "ctx.report: the step of 'loss' must be a whole number below "
                             "2**31 in size, got float: 1.5"),
    (_report(1, loss=math.nan), None),  # a diverged run's NaN is left out of the curve
    (_report(1, **{"x" * 101: 0.5}), "ctx.report: curve point names must be printable strings "
                                     "of 1 to 100 characters, got str: 'xxxxxxxxxxxxxxx"),
]
GOOD = 2  # trials after the cases, which return a plain result


def hostile(candidate, ctx):
    """Case ``ctx.trial`` of `CASES` (one per trial number), then good results."""
    if ctx.trial < len(CASES):
        return CASES[ctx.trial][0](ctx)
    return {"accuracy": candidate["x"]}


def _experiment(url, name="hostile"):
    return memnas.Experiment(name=name, space=pg.Dict(x=pg.floatv(0.0, 1.0)), evaluator=hostile,
                             algorithm="random", objectives={"accuracy": "max"}, store=url,
                             cache=False)


@pytest.fixture(scope="module", params=BACKENDS)
def hostile_store(request, tmp_path_factory):
    """A store filled by one in-process run through every case, on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('hostile')}/hostile.db"
    else:
        reset_postgres(POSTGRES_URL)
        url = POSTGRES_URL
    _experiment(url).run(max_trials=len(CASES) + GOOD, executor="local")
    return url


def _trials(url, name="hostile"):
    s = Store(url, read_only=True)
    try:
        exp = s.experiment(name)
        return exp, s.trials(exp["id"])
    finally:
        s.close()


def test_each_bad_result_fails_its_trial_with_one_line_and_the_search_goes_on(hostile_store):
    exp, trials = _trials(hostile_store)
    assert exp["status"] == "completed" and len(trials) == len(CASES) + GOOD
    for t, (_, expected) in zip(trials, CASES):
        if expected is None:
            assert t["status"] == "completed", (t["number"], t["error"])
        else:
            assert t["status"] == "failed", t["number"]
            assert t["error"].startswith(expected) and "\n" not in t["error"], t["error"]
    assert all(t["status"] == "completed" for t in trials[len(CASES):])


def test_numbers_in_arrays_and_tensors_are_read_and_the_artifact_stored(hostile_store):
    _, trials = _trials(hostile_store)
    values = trials[4]["metrics"]
    assert values == {"accuracy": 0.25, "half": 0.5, "flag": 1.0, "one": 0.75, "t11": 1.0,
                      "n": 7.0}
    assert all(type(v) is float for v in values.values())
    s = Store(hostile_store, read_only=True)
    art = s.load_artifact(trials[14]["id"], "output")
    assert isinstance(art["w"], np.ndarray) and art["w"].tolist() == [1.0, 1.0, 1.0]
    assert art["meta"] == {"step": 4}
    nan_curve = s.curve(trials[18]["id"])  # the NaN point is left out, the others kept
    assert [(p["step"], p["name"], p["value"]) for p in nan_curve] == [(0, "loss", 1.0)]
    assert [p["value"] for p in s.curve(trials[15]["id"])] == [1.0]  # reported before the bad one
    s.close()


def test_the_store_stays_readable_by_reader_dashboard_and_cli(hostile_store):
    exp, trials = _trials(hostile_store)
    failed = sum(1 for _, e in CASES if e is not None)
    s = Store(hostile_store, read_only=True)
    df = reader.trials_frame(s, exp["id"], exp["objectives"])
    row = reader.trial_row(s, exp["id"], 0)
    rows = s.experiments()
    bests = {exp["id"]: reader.best_values(s, exp["id"], exp["objectives"])}
    summary = analysis.experiments_summary(rows, reader.experiment_times(s), bests)
    s.close()
    assert len(df) == len(trials) and row["status"] == "failed"
    assert data.counts_of(rows[0]["counts"]).failed == failed
    assert summary.set_index("name").loc["hostile", "failed"] == failed
    best = data.best_so_far(df, "accuracy", "max")
    assert len(best) == len(trials) - failed
    r = CliRunner().invoke(main, ["show", "hostile", "--store", hostile_store])
    assert r.exit_code == 0 and "failed #0: evaluator must return" in r.output, r.output
    r = CliRunner().invoke(main, ["export", "hostile", "--store", hostile_store, "--format",
                                  "json"])
    assert r.exit_code == 0 and len(json.loads(r.output)) == len(trials)


def test_numbers_memnas_reads_and_refuses():
    assert as_number(True, "m") == 1.0 and as_number(np.bool_(False), "m") == 0.0
    assert as_number(np.float16(0.5), "m") == 0.5 and as_number(torch.tensor([[2]]), "m") == 2.0
    for bad in (1 + 2j, b"1", None, [1.0], np.array([]), torch.zeros(0), 10**400):
        with pytest.raises(MeasurementError) as e:
            as_number(bad, "metric 'm'")
        assert str(e.value).startswith("metric 'm' must be a number") and "\n" not in str(e.value)
    assert MAX_ARTIFACT_BYTES == 64 * 2**20


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_are_read_in_the_worker_so_the_outcome_unpickles_without_torch():
    def on_gpu(candidate, ctx):
        ctx.report(0, loss=torch.tensor(0.5, device="cuda"))
        return Measurement(metrics={"accuracy": torch.tensor([0.25], device="cuda")},
                           artifact={"w": torch.ones(2, device="cuda")})

    outcome = run_trial(on_gpu, None, Context())
    assert outcome.status == "completed", outcome.error
    assert outcome.metrics == {"accuracy": 0.25} and outcome.curve[0]["value"] == 0.5
    assert type(outcome.artifact["w"]) is np.ndarray
    assert b"torch" not in pickle.dumps(outcome)


@pytest.mark.slow
def test_bad_results_on_ray_workers_fail_with_one_line_and_are_not_retried(tmp_path):
    url = f"sqlite:///{tmp_path}/ray.db"
    _experiment(url, "ray-hostile").run(max_trials=len(CASES) + 1, workers=2, executor="ray")
    exp, trials = _trials(url, "ray-hostile")
    assert exp["status"] == "completed" and len(trials) == len(CASES) + 1
    for t, (_, expected) in zip(trials, CASES):
        assert t["attempt"] == 1, t["error"]  # a refused result is no dead worker
        if expected is None:
            assert t["status"] == "completed", (t["number"], t["error"])
        else:
            assert t["status"] == "failed" and t["error"].startswith(expected), t["error"]
    assert trials[-1]["status"] == "completed"
    s = Store(url, read_only=True)
    assert s.load_artifact(trials[14]["id"], "output")["w"].tolist() == [1.0, 1.0, 1.0]
    s.close()
