"""Several short trials per task: sizes, bookkeeping, failures, and the options' errors."""

import pytest

import failing
import memnas
import toyspace
from memnas.errors import ConfigError
from memnas.records import Outcome, TrialStatus
from memnas.runner.driver import BatchSizer, drive
from memnas.runner.executors import LocalExecutor
from memnas.runner.state import SearchState
from memnas.store import Store


class CountingExecutor(LocalExecutor):
    """The in-process executor, remembering how many trials each task carried."""

    def __init__(self):
        super().__init__()
        self.sizes = []

    def submit(self, fn, *args, **kw):
        self.sizes.append(len(args[1]))
        return super().submit(fn, *args, **kw)


def _exp(url, name="b", evaluator=toyspace.evaluate, **kw):
    return memnas.Experiment(name=name, space=toyspace.point_space(), evaluator=evaluator,
                             algorithm="random", objectives={"accuracy": "max", "params": "min"},
                             store=url, **kw)


def test_sizer_fixed_auto_and_share_of_what_is_left():
    assert BatchSizer(1).size(100, 2) == 1
    assert BatchSizer(8).size(100, 2) == 8
    assert BatchSizer(8).size(5, 2) == 3           # the last trials spread over workers
    auto = BatchSizer("auto")
    assert auto.size(1000, 2) == 1                 # nothing timed yet
    auto.observe([Outcome(TrialStatus.COMPLETED, wall_time=0.002)] * 20)
    assert auto.size(1000, 2) == 10                # ~20 ms of evaluation per task
    auto.observe([Outcome(TrialStatus.COMPLETED, wall_time=0.00001)] * 50)
    assert auto.size(1000, 2) == BatchSizer.MAX_BATCH
    auto.observe([Outcome(TrialStatus.COMPLETED, wall_time=0.5)] * 20)
    assert auto.size(1000, 2) == 1                 # long trials: one per task again
    assert BatchSizer(8, timeout_s=10).size(100, 2) == 1   # off with a time limit


@pytest.mark.parametrize("bad", [0, -2, 1.5, "many", True, None])
def test_bad_batch_is_a_one_line_error(sqlite_url, bad):
    with pytest.raises(ConfigError, match=r"batch must be a positive integer or 'auto', got"):
        _exp(sqlite_url).run(max_trials=2, executor="local", batch=bad)
    assert Store(sqlite_url).experiment("b") is None    # refused before anything is written


def test_batch_with_tune_is_refused(sqlite_url):
    with pytest.raises(ConfigError, match=r"batch=4 needs executor='ray' or 'local'"):
        _exp(sqlite_url).run(max_trials=2, executor="tune", batch=4)


def test_batches_store_every_trial_once_and_feed_all_back(sqlite_url):
    store = Store(sqlite_url)
    exp = _exp(sqlite_url, cache=False)
    state = SearchState(exp, store)
    fed = []
    feedback = state.algorithm.feedback
    state.algorithm.feedback = lambda dna, reward: (fed.append(reward), feedback(dna, reward))
    ex = CountingExecutor()
    with state.session(max_trials=23):
        drive(state, ex, workers=2, batch=5)
    assert ex.sizes == [5, 5, 5, 5, 2, 1]
    trials = store.trials(state.exp_id)
    assert [t["number"] for t in trials] == list(range(23))
    assert {t["status"] for t in trials} == {"completed"} and len(fed) == 23
    assert len({t["seed"] for t in trials}) == 23


def test_auto_grows_batches_for_fast_trials(sqlite_url):
    store = Store(sqlite_url)
    state = SearchState(_exp(sqlite_url, cache=False), store)
    ex = CountingExecutor()
    with state.session(max_trials=200):
        drive(state, ex, workers=2, batch="auto")
    assert ex.sizes[0] == 1 and max(ex.sizes) > 1 and sum(ex.sizes) == 200
    assert [t["status"] for t in store.trials(state.exp_id)] == ["completed"] * 200


def test_run_remembers_batch_for_resume(sqlite_url):
    _exp(sqlite_url).run(max_trials=6, workers=2, executor="local", batch=3)
    assert Store(sqlite_url).experiment("b")["config"]["last_run"]["batch"] == 3


@pytest.mark.slow
def test_worker_killed_under_a_batch_reruns_its_trials(tmp_path, monkeypatch, sqlite_url):
    monkeypatch.setenv("MEMNAS_TEST_DIR", str(tmp_path))
    result = _exp(sqlite_url, evaluator=failing.killed_once, cache=False).run(
        max_trials=9, workers=2, executor="ray", batch=3)
    df = result.trials()
    assert list(df["number"]) == list(range(9)) and set(df["status"]) == {"completed"}
    assert int(df.loc[df["number"] == 2, "attempt"].iloc[0]) == 2   # killed once, run again
    assert (tmp_path / "killed-2").exists()


EVALUATED = []


def _evaluate_small(candidate, ctx):
    EVALUATED.append((candidate["y"], candidate["kind"]))
    return {"accuracy": float(candidate["y"]), "params": 1.0}


def test_twins_proposed_in_one_batch_are_evaluated_once(sqlite_url):
    """Eight candidates, 24 trials in batches of 8: repeats inside a batch attach to their
    first (stored in the same transaction) and later ones hit the store; none runs twice."""
    import pyglove as pg

    EVALUATED.clear()
    exp = memnas.Experiment(name="twins", space=pg.Dict(y=pg.oneof([1, 2, 3, 4]),
                                                        kind=pg.oneof(["a", "b"])),
                            evaluator=_evaluate_small, algorithm="random",
                            objectives={"accuracy": "max"}, store=sqlite_url)
    state = SearchState(exp, Store(sqlite_url))
    ex = CountingExecutor()
    with state.session(max_trials=24):
        drive(state, ex, workers=1, batch=8)
    df = memnas.load("twins", sqlite_url).trials()
    assert len(df) == 24 and set(df["status"]) <= {"completed", "cached"}
    assert len(EVALUATED) == len(set(EVALUATED)) == (df["status"] == "completed").sum()
    attached = df[df["cache_kind"] == "attached"]
    assert len(attached) > 0                      # some twins met inside one batch
    by_id = df.set_index("id")
    for _, row in attached.iterrows():            # linked to an evaluated trial of the same hash
        source = by_id.loc[row["cached_from"]]
        assert source["status"] == "completed" and source["sym_hash"] == row["sym_hash"]
        assert source["accuracy"] == row["accuracy"]


def _evaluate_fails_on_b(candidate, ctx):
    if candidate["kind"] == "b":
        raise ValueError(f"kind b cannot be evaluated (y={candidate['y']})")
    return {"accuracy": float(candidate["y"])}


def test_a_twin_of_a_failed_trial_fails_with_its_reason_in_one_line(sqlite_url):
    import pyglove as pg

    exp = memnas.Experiment(name="twinfail", space=pg.Dict(y=pg.oneof([1, 2]),
                                                           kind=pg.oneof(["a", "b"])),
                            evaluator=_evaluate_fails_on_b, algorithm="random",
                            objectives={"accuracy": "max"}, store=sqlite_url)
    state = SearchState(exp, Store(sqlite_url))
    with state.session(max_trials=12):
        drive(state, LocalExecutor(), workers=1, batch=12)
    df = memnas.load("twinfail", sqlite_url).trials()
    twins = df[(df["cache_kind"] == "attached") & (df["status"] == "failed")]
    assert len(twins) > 0
    for _, row in twins.iterrows():
        source = df.set_index("id").loc[row["cached_from"]]
        reason = source["error"].strip().splitlines()[-1]   # the traceback's exception line
        assert reason.startswith("ValueError: kind b cannot be evaluated (y=")
        assert row["error"] == f"its twin trial #{source['number']} failed: {reason}"
        assert "\n" not in row["error"] and "[" not in row["error"]
