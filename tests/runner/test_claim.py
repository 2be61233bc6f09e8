"""One driver per experiment (8 drivers started at one instant), and no experiment left unusable."""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import os
import socket
import time

import pyglove as pg
import pytest

import memnas
import toyspace
from memnas.errors import ConfigError, StoreError
from memnas.store import Store, utcnow

DRIVERS = 8
ROUNDS = int(os.environ.get("MEMNAS_RACE_ROUNDS", "3"))  # more: a longer hunt for races
NEW_TRIALS = 6
_refused = None  # in a driver process: a shared count of the drivers refused so far


class _Logged:
    """`toyspace.evaluate`, appending one line per evaluation to a file.

    With ``wait``, an evaluation first waits (up to 20 s) until that many drivers were
    refused, so that no driver can start after the one that runs has ended.
    """

    def __init__(self, path: str, wait: int = 0) -> None:
        self.path, self.wait = path, wait

    def __call__(self, p, ctx):
        deadline = time.monotonic() + 20
        while self.wait and _refused.value < self.wait and time.monotonic() < deadline:
            time.sleep(0.01)
        with open(self.path, "a") as f:
            f.write(f"{os.getpid()} {ctx.trial} {p.x!r} {p.y} {p.kind}\n")
        return toyspace.evaluate(p, ctx)


def _race_exp(url, name, log, wait=0):
    return memnas.Experiment(name=name, space=toyspace.point_space(), evaluator=_Logged(log, wait),
                             algorithm="random", store=url, cache=False)


def _drive(url, name, max_trials, workers, log, refused, start, out):
    """One driver process: waits at the barrier with the others, then runs."""
    global _refused
    _refused = refused
    exp = _race_exp(url, name, log, wait=DRIVERS - 1)
    start.wait()
    try:
        exp.run(max_trials=max_trials, workers=workers, executor="local")
        out.put((os.getpid(), workers, "ran"))
    except BaseException as e:  # reported, whatever it is
        if isinstance(e, ConfigError):
            with refused.get_lock():
                refused.value += 1
        out.put((os.getpid(), workers, f"{type(e).__name__}: {e}"))


@pytest.mark.parametrize("existing", [False, True], ids=["new_name", "existing"])
def test_one_of_eight_simultaneous_drivers_runs(store_url, tmp_path, existing):
    ctx = mp.get_context("fork")  # the drivers start at once, without importing anew
    host = socket.gethostname()
    for r in range(ROUNDS):
        name, log = f"race-{r}", str(tmp_path / f"race-{r}.log")
        first = 2 if existing else 0
        if existing:  # settings that the run below must replace
            _race_exp(store_url, name, log).run(max_trials=first, workers=9, executor="local")
        refused, start, out = ctx.Value("i", 0), ctx.Barrier(DRIVERS), ctx.Queue()
        procs = [ctx.Process(target=_drive, args=(store_url, name, first + NEW_TRIALS, w, log,
                                                  refused, start, out))
                 for w in range(1, DRIVERS + 1)]
        try:
            for p in procs:
                p.start()
            results = [out.get(timeout=120) for _ in procs]
        finally:
            for p in procs:
                p.join(30)
                if p.is_alive():
                    p.kill()
        ran = [x for x in results if x[2] == "ran"]
        assert len(ran) == 1, results
        pid, workers, _ = ran[0]
        errors = [x[2] for x in results if x[2] != "ran"]
        assert len(errors) == DRIVERS - 1
        for e in errors:
            assert e.startswith(f"ConfigError: experiment {name!r} is being run by driver "
                                f"{host}:{pid} (heartbeat ") and "\n" not in e, results
        with open(log) as f:
            lines = [ln.split(" ", 2) for ln in f.read().splitlines()]
        assert len(lines) == first + NEW_TRIALS
        assert {who for who, _, _ in lines[first:]} == {str(pid)}  # only the one that ran
        assert sorted(int(n) for _, n, _ in lines) == list(range(first + NEW_TRIALS))
        assert len({c for _, _, c in lines}) == first + NEW_TRIALS  # none trained twice
        store = Store(store_url)
        row = store.experiment(name)
        trials = store.trials(row["id"])
        assert [t["number"] for t in trials] == list(range(first + NEW_TRIALS))
        assert {t["status"] for t in trials} == {"completed"} and row["status"] == "completed"
        assert row["config"]["last_run"]["workers"] == workers  # the one that ran
        store.close()


def _exp(url, **kw):
    args = dict(name="toy", space=toyspace.point_space(), evaluator=toyspace.evaluate,
                algorithm="random", objectives={"accuracy": "max", "params": "min"}, store=url)
    args.update(kw)
    return memnas.Experiment(**args)


def _hold(url, name, driver, age_s=0.0):
    """Marks experiment ``name`` as run by ``driver``, its last heartbeat ``age_s`` ago."""
    store = Store(url)
    row = store.experiment(name)
    store.update_experiment(row["id"], status="running", driver=driver,
                            heartbeat_at=utcnow() - dt.timedelta(seconds=age_s))
    store.close()


def _dead_pid() -> int:
    ctx = mp.get_context("fork")
    p = ctx.Process(target=int)
    p.start()
    p.join()
    return p.pid


def test_a_refused_driver_leaves_the_live_runs_settings(store_url):
    _exp(store_url).run(max_trials=2, workers=3, executor="local")
    _hold(store_url, "toy", "elsewhere:123")
    with pytest.raises(ConfigError, match=r"^experiment 'toy' is being run by driver "
                                          r"elsewhere:123 \(heartbeat \d+ s ago\); stop it"):
        _exp(store_url).run(max_trials=4, workers=5, executor="local")
    store = Store(store_url)
    row = store.experiment("toy")
    assert row["config"]["last_run"]["workers"] == 3 and row["status"] == "running"
    assert row["driver"] == "elsewhere:123" and len(store.trials(row["id"])) == 2


def test_a_dead_or_silent_driver_is_taken_over(store_url):
    _exp(store_url).run(max_trials=2, executor="local")
    _hold(store_url, "toy", f"{socket.gethostname()}:{_dead_pid()}")  # gone: at once
    _exp(store_url).run(max_trials=3, workers=2, executor="local")
    _hold(store_url, "toy", "elsewhere:123", age_s=120)                 # silent: stale
    result = _exp(store_url).run(max_trials=4, workers=4, executor="local")
    assert len(result.trials()) == 4 and result.experiment["status"] == "completed"
    assert result.experiment["config"]["last_run"]["workers"] == 4


def test_store_claim_is_one_conditional_update(store_url):
    store = Store(store_url)
    exp_id = _exp(store_url).run(max_trials=1, executor="local").experiment["id"]
    assert store.claim_experiment(exp_id, "a:1", stale_after_s=30) is None
    assert store.claim_experiment(exp_id, "a:1", stale_after_s=30) is None  # its own
    held = store.claim_experiment(exp_id, "b:2", stale_after_s=30)
    assert held["driver"] == "a:1" and held["status"] == "running"
    assert store.claim_experiment(exp_id, "b:2", 30, is_dead=lambda d: d == "a:1") is None
    assert store.experiment("toy")["driver"] == "b:2"
    with pytest.raises(StoreError, match="no experiment with id 999"):
        store.claim_experiment(999, "b:2", stale_after_s=30)


def test_an_objective_typo_leaves_nothing_behind(store_url):
    with pytest.raises(ConfigError, match="objective 'acuracy' is not among the metrics"):
        _exp(store_url, objectives={"acuracy": "max"}).run(max_trials=3, executor="local")
    assert Store(store_url).experiment("toy") is None
    result = _exp(store_url, objectives={"accuracy": "max"}).run(max_trials=3, executor="local")
    assert list(result.trials()["status"]) == ["completed"] * 3


def _interrupt_first(p, ctx):
    raise KeyboardInterrupt


def _fail_then_interrupt(p, ctx):
    if ctx.trial >= 2:
        raise KeyboardInterrupt
    raise RuntimeError(f"cannot evaluate trial {ctx.trial}")


def test_a_run_stopped_before_any_trial_finished_leaves_nothing(store_url):
    with pytest.raises(KeyboardInterrupt):
        _exp(store_url, evaluator=_interrupt_first).run(max_trials=3, executor="local")
    assert Store(store_url).experiment("toy") is None
    with pytest.raises(KeyboardInterrupt):  # failed trials tell why: they are kept
        _exp(store_url, evaluator=_fail_then_interrupt).run(max_trials=5, executor="local")
    store = Store(store_url)
    row = store.experiment("toy")
    assert row["status"] == "interrupted"
    assert [t["status"] for t in store.trials(row["id"])] == ["failed", "failed", "pending"]


def _no_params_on_trial_2(p, ctx):
    values = toyspace.evaluate(p, ctx)
    if ctx.trial == 2:
        del values["params"]
    return values


def test_a_run_after_a_result_missing_an_objective_continues(store_url):
    exp = _exp(store_url, evaluator=_no_params_on_trial_2, algorithm="evolution")
    with pytest.raises(ConfigError, match="objective 'params' is not among"):
        exp.run(max_trials=6, executor="local")
    store = Store(store_url)
    row = store.experiment("toy")  # kept: it has results
    assert row["status"] == "interrupted"
    assert [t["status"] for t in store.trials(row["id"])] == ["completed"] * 2 + ["failed"]
    result = exp.run(max_trials=6, executor="local")  # no KeyError: 'params'
    df = result.trials()
    assert list(df["status"]) == ["completed"] * 2 + ["failed"] + ["completed"] * 3
    assert "objective 'params' is not among" in df["error"].iloc[2]
    assert result.experiment["status"] == "completed"


def test_a_refused_driver_never_deletes_the_live_experiment(store_url):
    store = Store(store_url)
    exp = _exp(store_url)
    store.create_experiment("toy", **exp.describe())
    _hold(store_url, "toy", "elsewhere:123")
    with pytest.raises(ConfigError, match="is being run by driver elsewhere:123"):
        exp.run(max_trials=2, executor="local")
    assert store.experiment("toy")["driver"] == "elsewhere:123"


def test_space_is_checked_before_the_claim(store_url):
    _exp(store_url).run(max_trials=1, executor="local")
    with pytest.raises(ConfigError, match="different search space"):
        _exp(store_url, space=toyspace.Point(x=pg.floatv(0.0, 2.0), y=1, kind="a")).run(
            max_trials=2, executor="local")
    assert Store(store_url).experiment("toy")["status"] == "completed"
