"""The driver's fast paths keep their guarantees: fast decode, insert-as-running, batched
finish, throttled heartbeats and progress lines."""

import io

import pyglove as pg
import pytest

import memnas
import toyspace
from memnas.runner import _records
from memnas.runner._decode import Decoder
from memnas.runner.executors import LocalExecutor
from memnas.runner.driver import drive
from memnas.runner.progress import Progress
from memnas.records import Outcome, TrialStatus
from memnas.runner.state import SearchState
from memnas.store import Store


@pytest.mark.parametrize("space, fast", [
    (toyspace.point_space(), True),
    (pg.Dict(a=pg.oneof(["u", "v"]),
             n=pg.Dict(y=pg.floatv(-1.0, 1.0), z=[1, pg.oneof([None, True])])), True),
    (pg.Dict(k=pg.oneof(["u", "v"], name="kind"), x=pg.floatv(0.0, 1.0)), True),  # named
    (pg.oneof([1, 2]), False),                                    # the space is one decision
    (pg.Dict(m=pg.manyof(2, [1, 2, 3])), False),                  # manyof
    (pg.Dict(c=pg.oneof([pg.Dict(u=1), pg.Dict(u=pg.floatv(0.0, 1.0))])), False),  # conditional
])
def test_decoder_equals_materialize(space, fast):
    decoder = Decoder(space)
    assert decoder.fast is fast
    slow = Decoder(space)
    slow.fast = False  # the general path: pg.materialize, decisions through PyGlove's DNA
    spec = pg.dna_spec(space)
    for seed in range(25):
        dna = pg.random_dna(spec, random_generator=__import__("random").Random(seed))
        want, got = pg.materialize(space, dna), decoder(dna)
        assert type(got) is type(want) and pg.eq(got, want)
        assert pg.to_json_str(got) == pg.to_json_str(want)
        assert decoder.decisions(dna) == slow.decisions(dna)


def _exp(url, name="fast", **kw):
    return memnas.Experiment(name=name, space=toyspace.point_space(),
                             evaluator=toyspace.evaluate, algorithm="random",
                             objectives={"accuracy": "max", "params": "min"}, store=url, **kw)


def _started(url):
    """An experiment, its open store and a started search state over it."""
    exp = _exp(url)
    store = Store(url)
    state = SearchState(exp, store, max_trials=100)
    state.start()
    return exp, store, state


def test_a_trial_that_will_run_is_stored_running_with_its_seed(sqlite_url):
    exp, store, state = _started(sqlite_url)
    pending = state.next_trial()
    row = store.trials(state.exp_id)[0]
    assert pending.launch and pending.marked_running
    assert row["status"] == "running" and row["started_at"] is not None
    assert row["heartbeat_at"] is not None and row["attempt"] == 1
    assert row["seed"] == pending.trial["seed"] == _records.trial_seed(exp.seed, row["number"])
    ctx = state.context(pending)  # no second write, same seed
    assert ctx.seed == row["seed"]
    state.close("interrupted")            # a trial in flight goes back to pending
    assert store.trials(state.exp_id)[0]["status"] == "pending"


def test_requeued_trial_is_marked_running_again_with_its_new_attempt(sqlite_url):
    _, store, state = _started(sqlite_url)
    pending = state.next_trial()
    state.lost(pending, "worker died: test")
    again = state.next_trial()            # the lost trial comes first
    assert again.id == pending.id and not again.marked_running
    state.context(again)
    row = store.trials(state.exp_id)[0]
    assert row["status"] == "running" and row["attempt"] == 2 and again.marked_running


def test_finish_many_stores_all_before_any_feedback(sqlite_url, monkeypatch):
    _, store, state = _started(sqlite_url)
    pendings = [state.next_trial() for _ in range(3)]
    seen = []

    def feedback(dna, reward):  # every trial of the batch is committed before the first feedback
        seen.append([t["status"] for t in Store(sqlite_url).trials(state.exp_id)])

    monkeypatch.setattr(state.algorithm, "feedback", feedback)
    outcome = Outcome(TrialStatus.COMPLETED, metrics={"accuracy": 0.5}, costs={"params": 1.0},
                      curve=[{"step": 0, "name": "loss", "value": 1.0}], node="n", wall_time=0.01)
    assert state.finish_many([(p, outcome) for p in pendings]) == ["completed"] * 3
    assert seen == [["completed"] * 3] * 3
    assert all(len(store.curve(p.id)) == 1 for p in pendings)
    assert state.finished == 3


def test_heartbeats_are_throttled_not_one_per_trial(sqlite_url, monkeypatch):
    beats = []
    original = Store.heartbeat
    monkeypatch.setattr(Store, "heartbeat", lambda self, *a: (beats.append(a), original(self, *a)))
    result = _exp(sqlite_url).run(max_trials=30, workers=2, executor="local")
    assert result.counts() == {"completed": 30}
    assert len(beats) <= 2   # a 30-trial in-process run takes well under HEARTBEAT_S
    monkeypatch.setattr("memnas.runner.driver.HEARTBEAT_S", 0.0)
    beats.clear()
    store = Store(sqlite_url)
    exp = _exp(sqlite_url, name="fast2", cache=False)  # same seed: all would be cache hits
    state = SearchState(exp, store)
    with state.session(max_trials=5):
        drive(state, LocalExecutor(), workers=1)
    assert len(beats) >= 4   # due on every turn when the interval is 0


def test_progress_lines_are_throttled_but_the_last_is_shown():
    out = io.StringIO()
    bar = Progress(100, stream=out, min_interval=3600)
    for done in range(1, 51):
        bar.update(done, 0, "accuracy=0.5")
    bar.close()                         # shows the held-back 50/100
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "1/100 done" in lines[0] and "50/100 done" in lines[1]
    out = io.StringIO()
    bar = Progress(3, stream=out, min_interval=3600)
    for done in (1, 2, 3):
        bar.update(done, 0)
    bar.close()
    assert [ln.split("]")[1].split("|")[0].strip() for ln in out.getvalue().splitlines()] == \
        ["1/3 done", "3/3 done"]
