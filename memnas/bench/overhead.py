"""`memnas bench overhead`: no-op trials per second through memnas, plain Ray Tune and Optuna+SQLite."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any

# One no-op search, the same in all three systems: a float and a three-way choice drawn
# at random, an objective that returns a constant at once, every trial recorded.
_WIDTHS = (16, 32, 64)


def noop_evaluate(candidate: Any, ctx: Any) -> dict[str, float]:
    """The memnas evaluator: returns at once."""
    return {"accuracy": 0.0}


def noop_trainable(config: dict[str, Any]) -> dict[str, float]:
    """The Ray Tune function trainable: returns at once (its return value is the result)."""
    return {"accuracy": 0.0}


def run(quick: bool = False, trials: int | None = None, workers: int = 2) -> dict[str, Any]:
    """Runs ``trials`` no-op trials through memnas (Ray, SQLite), Ray Tune and Optuna+SQLite.

    Ray is started once, with its workers warmed (memnas's `RayExecutor` runs a no-op
    trial per CPU when it starts Ray), timed on its own (``ray_start_s``), and shared by
    the memnas and Tune runs, so ``memnas_tps`` and ``tune_tps`` are rates on a running
    Ray: each is ``trials`` over the wall time of one whole run (``Experiment.run`` /
    ``Tuner.fit``, with their own setup, first tasks and teardown). memnas runs twice:
    first with one trial per Ray task (its default; ``memnas_batch1_tps``, this run also
    pays the process's one-time costs), then with ``batch="auto"`` (several no-op trials
    per task once they are timed: the setting for trials this short, as
    ``reuse_actors=True`` is Tune's; ``memnas_tps``). The ``*_tps_with_start`` figures add
    the Ray start. Optuna needs no Ray.

    Args:
      quick: a small run (tests): 40 trials.
      trials: trials per system (default 500; quick 40).
      workers: trials in flight at once in memnas and Tune (Optuna runs one at a time,
        in the calling thread, as `study.optimize` does by default).

    Returns:
      ``trials``, ``workers``, ``ray_start_s``, ``memnas_tps``, ``memnas_batch1_tps``,
      ``tune_tps``, ``optuna_sqlite_tps``, the ``*_wall_s`` of each run,
      ``*_tps_with_start``, the ratios ``memnas_vs_tune``, ``memnas_vs_optuna``,
      ``memnas_batch1_vs_tune`` and ``memnas_batch1_vs_optuna``, and ``recorded``: what
      each run left behind, read back after it (trials per status in memnas's store,
      results in Tune's grid, trials per state in Optuna's SQLite storage).
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    # Everything each system imports, imported before any clock starts.
    import optuna  # noqa: F401
    import ray
    from ray import tune  # noqa: F401

    import memnas.result  # noqa: F401
    import memnas.runner.driver  # noqa: F401
    from memnas.runner.executors import warm_up

    trials = trials or (40 if quick else 500)
    folder = tempfile.mkdtemp(prefix="memnas-bench-overhead-")
    out: dict[str, Any] = {"trials": trials, "workers": workers, "cpus": os.cpu_count(),
                           "load_avg_before": os.getloadavg()[0], "recorded": {}}
    recorded = out["recorded"]
    try:
        started_here = not ray.is_initialized()
        t0 = time.perf_counter()
        if started_here:
            ray.init(address="local", num_cpus=max(workers, os.cpu_count() or 1),
                     include_dashboard=False, logging_level="ERROR")
            ray.get(warm_up(max(workers, os.cpu_count() or 1)))  # as memnas's RayExecutor does
        out["ray_start_s"] = time.perf_counter() - t0
        try:
            # One trial per Ray task (the default), then batches sized from trial times
            # (batch="auto": the setting for trials this short, as reuse_actors is Tune's).
            out["memnas_batch1_wall_s"], recorded["memnas_batch1"] = _memnas(
                trials, workers, folder, "batch1", 1)
            out["memnas_wall_s"], recorded["memnas"] = _memnas(
                trials, workers, folder, "auto", "auto")
            out["tune_wall_s"], recorded["tune"] = _tune(trials, workers, folder)
        finally:
            if started_here:
                ray.shutdown()
        out["optuna_sqlite_wall_s"], recorded["optuna_sqlite"] = _optuna(trials, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    out["load_avg"] = os.getloadavg()[0]    # other work on the machine shows here
    for name in ("memnas", "memnas_batch1", "tune", "optuna_sqlite"):
        out[f"{name}_tps"] = trials / out[f"{name}_wall_s"]
    for name in ("memnas", "tune"):
        out[f"{name}_tps_with_start"] = trials / (out[f"{name}_wall_s"] + out["ray_start_s"])
    out["memnas_vs_tune"] = out["memnas_tps"] / out["tune_tps"]
    out["memnas_vs_optuna"] = out["memnas_tps"] / out["optuna_sqlite_tps"]
    out["memnas_batch1_vs_tune"] = out["memnas_batch1_tps"] / out["tune_tps"]
    out["memnas_batch1_vs_optuna"] = out["memnas_batch1_tps"] / out["optuna_sqlite_tps"]
    _print(out)
    return out


def _memnas(trials: int, workers: int, folder: str, name: str,
            batch: int | str) -> tuple[float, dict[str, int]]:
    """Wall time of one memnas run, and its trials per status as read back from its store."""
    import pyglove as pg

    import memnas

    exp = memnas.Experiment(
        name=f"overhead-{name}",
        space=pg.Dict(x=pg.floatv(0.0, 1.0), width=pg.oneof(list(_WIDTHS))),
        evaluator=noop_evaluate, algorithm="random", objectives={"accuracy": "max"},
        store=f"sqlite:///{os.path.join(folder, f'memnas-{name}.db')}")
    start = time.perf_counter()
    result = exp.run(max_trials=trials, workers=workers, executor="ray", batch=batch)
    wall = time.perf_counter() - start
    counts = result.counts()  # read from the store
    if sum(counts.values()) != trials or counts.get("failed"):
        raise RuntimeError(f"memnas overhead run stored {counts}, expected {trials} finished")
    return wall, counts


def _tune(trials: int, workers: int, folder: str) -> tuple[float, dict[str, int]]:
    """Wall time of one Ray Tune run, and its results and errors."""
    from ray import tune

    tuner = tune.Tuner(
        noop_trainable,
        param_space={"x": tune.uniform(0.0, 1.0), "width": tune.choice(list(_WIDTHS))},
        tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=workers,
                                    reuse_actors=True),
        run_config=tune.RunConfig(name="overhead", storage_path=os.path.join(folder, "tune"),
                                  verbose=0))
    quiet = {"RAY_AIR_NEW_OUTPUT": "0"}  # with verbose=0: no tables on the console
    old = {k: os.environ.get(k) for k in quiet}
    os.environ.update(quiet)
    try:
        start = time.perf_counter()
        grid = tuner.fit()
        wall = time.perf_counter() - start
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if len(grid) != trials or grid.errors:
        raise RuntimeError(f"Ray Tune ran {len(grid)} trials with {len(grid.errors)} errors, "
                           f"expected {trials}")
    return wall, {"results": len(grid), "errors": len(grid.errors)}


def _optuna(trials: int, folder: str) -> tuple[float, dict[str, int]]:
    """Wall time of one Optuna study, and its trials per state as read back from SQLite."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: Any) -> float:
        trial.suggest_float("x", 0.0, 1.0)
        trial.suggest_categorical("width", list(_WIDTHS))
        return 0.0

    storage = f"sqlite:///{os.path.join(folder, 'optuna.db')}"
    start = time.perf_counter()
    study = optuna.create_study(storage=storage,
                                sampler=optuna.samplers.RandomSampler(seed=0),
                                direction="maximize")
    study.optimize(objective, n_trials=trials)
    wall = time.perf_counter() - start
    stored = optuna.load_study(study_name=study.study_name, storage=storage).trials
    states: dict[str, int] = {}
    for t in stored:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    if len(stored) != trials:
        raise RuntimeError(f"Optuna stored {len(stored)} trials, expected {trials}")
    return wall, states


def _print(o: dict[str, Any]) -> None:
    print(f"memnas bench overhead: {o['trials']} no-op trials per system, {o['workers']} in "
          f"flight (memnas, Tune), {o['cpus']} CPUs, load average {o['load_avg_before']:.1f} "
          f"before, {o['load_avg']:.1f} after")
    print(f"  Ray start and worker warm-up (shared by memnas and Tune, not in their rates): "
          f"{o['ray_start_s']:.2f} s")
    print(f"  memnas, batch='auto' (random, Ray, SQLite): {o['memnas_tps']:7.1f} trials/s "
          f"({o['memnas_wall_s']:.2f} s; {o['memnas_tps_with_start']:.1f}/s with Ray start)")
    print(f"  memnas, one trial per Ray task (default): {o['memnas_batch1_tps']:8.1f} trials/s "
          f"({o['memnas_batch1_wall_s']:.2f} s; the first run in the process)")
    print(f"  Ray Tune (reuse_actors=True):              {o['tune_tps']:8.1f} trials/s "
          f"({o['tune_wall_s']:.2f} s; {o['tune_tps_with_start']:.1f}/s with Ray start)")
    print(f"  Optuna (RandomSampler, SQLite):            {o['optuna_sqlite_tps']:8.1f} trials/s "
          f"({o['optuna_sqlite_wall_s']:.2f} s)")
    print(f"  memnas / Tune: {o['memnas_vs_tune']:.1f}x (one per task: "
          f"{o['memnas_batch1_vs_tune']:.1f}x); memnas / Optuna+SQLite: "
          f"{o['memnas_vs_optuna']:.2f}x (one per task: {o['memnas_batch1_vs_optuna']:.2f}x)")
