"""`memnas bench scaling`: CPU-bound trials of about 1 s on 1 and 2 Ray workers; speed-up, overhead."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from typing import Any


def spin(iterations: int) -> int:
    """Single-threaded pure-Python busy work: ``iterations`` steps of a linear congruence."""
    x = 1
    for _ in range(iterations):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    return x


def calibrate(seconds: float, probe: int = 200_000, repeats: int = 3) -> int:
    """Iterations of `spin` that take about ``seconds`` here (the fastest of ``repeats`` probes)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        spin(probe)
        best = min(best, time.perf_counter() - start)
    return max(1, int(probe * seconds / best))


@dataclasses.dataclass(frozen=True)
class BusyEvaluator:
    """An evaluator that spins for a fixed number of iterations (one CPU, no I/O)."""

    iterations: int

    def __call__(self, candidate: Any, ctx: Any) -> dict[str, float]:
        start, cpu = time.perf_counter(), time.process_time()
        spin(self.iterations)
        return {"accuracy": float(candidate["x"]), "busy_s": time.perf_counter() - start,
                "cpu_s": time.process_time() - cpu}


def run(quick: bool = False, trials: int | None = None, seconds: float | None = None,
        repeats: int | None = None) -> dict[str, Any]:
    """Runs the same CPU-bound trials through memnas on Ray with 1, then 2 workers.

    Ray is started once, its workers warmed, and a first short run made (one-time
    imports and caches of a process) before the timed runs; each timed run is one whole
    ``Experiment.run`` (store, driver, Ray tasks) on a fresh SQLite store.

    Args:
      quick: a small run (tests): 4 trials of about 0.2 s.
      trials: trials per run (default 12).
      seconds: busy time per trial (default 1.0).
      repeats: runs per worker count, alternating; the fastest counts (default 2;
        quick 1), so a burst of load from other processes hurts less.

    Returns:
      ``trials``, ``trial_s`` (the mean measured busy time), ``wall_1_worker_s``,
      ``wall_2_workers_s``, ``speedup_2_workers`` (wall with 1 / wall with 2) and
      ``overhead_share`` (of the 2-worker run: the share of its worker-seconds,
      2 x wall, not spent inside the evaluator), ``overhead_share_1_worker``,
      ``trial_s_2_workers``, ``trial_cpu_share`` (CPU time / wall time of the trials,
      per worker count: below 1 when other processes took the CPUs) and
      ``speedup_2_workers_same_trial_time`` (the speed-up had the trials taken as long
      with 2 workers as with 1: memnas's share of the loss, without the machine's);
      ``speedup_2_plain_processes`` (the same busy work split over 1 vs 2 plain forked
      processes, interleaved with the memnas runs, fastest of each: what this machine
      allows) and ``scaling_efficiency_vs_plain`` (memnas's speed-up over that one).
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    import memnas.result  # noqa: F401  (imported before the clock starts)
    from memnas.runner.executors import warm_up

    trials = trials or (4 if quick else 12)
    seconds = seconds or (0.2 if quick else 1.0)
    repeats = repeats or (1 if quick else 2)
    evaluator = BusyEvaluator(calibrate(seconds))
    folder = tempfile.mkdtemp(prefix="memnas-bench-scaling-")
    out: dict[str, Any] = {"trials": trials, "seconds": seconds, "repeats": repeats,
                           "iterations": evaluator.iterations, "cpus": os.cpu_count()}
    started_here = not ray.is_initialized()
    try:
        if started_here:
            ray.init(address="local", num_cpus=max(2, os.cpu_count() or 1),
                     include_dashboard=False, logging_level="ERROR")
        ray.get(warm_up(2))
        _timed(BusyEvaluator(1000), 4, 2, folder, -1)  # one-time costs of a first run in a process
        busy, cpu, walls = {}, {}, {1: [], 2: []}
        plain: dict[int, list[float]] = {1: [], 2: []}
        for round_ in range(repeats):       # 1, 2, 1, 2: each keeps its fastest run
            for workers in (1, 2):
                wall, b, c = _timed(evaluator, trials, workers, folder, round_)
                walls[workers].append(wall)
                if wall == min(walls[workers]):
                    busy[workers], cpu[workers] = b, c
                plain[workers].append(_plain(evaluator.iterations, trials, workers))
        out["walls_s"] = walls
        out["plain_walls_s"] = plain
        # What the machine itself gives: the same work in 1 vs 2 plain processes.
        out["speedup_2_plain_processes"] = min(plain[1]) / min(plain[2])
        out["wall_1_worker_s"], out["wall_2_workers_s"] = min(walls[1]), min(walls[2])
        out["trial_s"] = busy[1] / trials
        out["trial_s_2_workers"] = busy[2] / trials
        out["trial_cpu_share"] = {w: cpu[w] / busy[w] for w in (1, 2)}
        out["speedup_2_workers"] = out["wall_1_worker_s"] / out["wall_2_workers_s"]
        out["overhead_share"] = 1 - busy[2] / (2 * out["wall_2_workers_s"])
        out["overhead_share_1_worker"] = 1 - busy[1] / out["wall_1_worker_s"]
        # The speed-up had each trial taken as long with 2 workers as with 1 (on a busy
        # machine the two workers' trials slow down from CPU contention, not from memnas).
        out["speedup_2_workers_same_trial_time"] = \
            2 * (1 - out["overhead_share"]) / (1 - out["overhead_share_1_worker"])
        out["scaling_efficiency_vs_plain"] = \
            out["speedup_2_workers"] / out["speedup_2_plain_processes"]
    finally:
        if started_here:
            ray.shutdown()
        shutil.rmtree(folder, ignore_errors=True)
    _print(out)
    return out


def _spin_many(iterations: int, count: int) -> None:
    for _ in range(count):
        spin(iterations)


def _plain(iterations: int, trials: int, processes: int) -> float:
    """Wall time of the trials' busy work split over plain forked processes (no memnas,
    no Ray task): the speed-up the machine itself allows."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")  # no re-import: the clock sees only the work
    shares = [trials // processes + (i < trials % processes) for i in range(processes)]
    start = time.perf_counter()
    procs = [ctx.Process(target=_spin_many, args=(iterations, n)) for n in shares]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return time.perf_counter() - start


def _timed(evaluator: BusyEvaluator, trials: int, workers: int, folder: str,
           round_: int) -> tuple[float, float, float]:
    """Wall time of one run, and the busy (wall) and CPU seconds its trials report."""
    import pyglove as pg

    import memnas

    exp = memnas.Experiment(
        name=f"scaling-{workers}-{round_}", space=pg.Dict(x=pg.floatv(0.0, 1.0)),
        evaluator=evaluator,
        algorithm="random", objectives={"accuracy": "max"},
        store=f"sqlite:///{os.path.join(folder, f'w{workers}-{round_}.db')}")
    start = time.perf_counter()
    result = exp.run(max_trials=trials, workers=workers, executor="ray")
    wall = time.perf_counter() - start
    df = result.trials()
    if len(df) != trials or (df["status"] != "completed").any():
        raise RuntimeError(f"scaling run with {workers} workers stored {result.counts()}")
    return wall, float(df["busy_s"].sum()), float(df["cpu_s"].sum())


def _print(o: dict[str, Any]) -> None:
    share = o["trial_cpu_share"]
    print(f"memnas bench scaling: {o['trials']} CPU-bound trials (pure Python, one thread, "
          f"calibrated to {o['seconds']:g} s here) through memnas on Ray, {o['cpus']} CPUs; "
          f"fastest of {o['repeats']} runs each")
    print(f"  1 worker:  {o['wall_1_worker_s']:6.2f} s; trials took {o['trial_s']:.2f} s "
          f"({share[1]:.0%} of it on a CPU); overhead share {o['overhead_share_1_worker']:.1%}")
    print(f"  2 workers: {o['wall_2_workers_s']:6.2f} s; trials took "
          f"{o['trial_s_2_workers']:.2f} s "
          f"({share[2]:.0%} of it on a CPU); overhead share {o['overhead_share']:.1%}")
    print(f"  speed-up with 2 workers: {o['speedup_2_workers']:.2f}x "
          f"({o['speedup_2_workers_same_trial_time']:.2f}x had the trials taken as long as "
          "with 1 worker)")
    print(f"  the same work in 1 vs 2 plain processes (no memnas, no Ray task): "
          f"{o['speedup_2_plain_processes']:.2f}x; memnas reaches "
          f"{o['scaling_efficiency_vs_plain']:.1%} of it")
