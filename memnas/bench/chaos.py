"""`memnas bench chaos`: thousands of short trials on local Ray while workers are SIGKILLed and the database restarts."""

from __future__ import annotations

import collections
import dataclasses
import os
import random
import signal
import tempfile
import threading
import time
from typing import Any

import pyglove as pg


@dataclasses.dataclass(frozen=True)
class ChaosTrial:
    """A short trial: sleeps ``seconds``, then appends its trial number to ``log`` (one
    line per evaluation that finished, from any worker) and returns its accuracy."""

    log: str
    seconds: float

    def __call__(self, candidate: Any, ctx: Any) -> dict[str, float]:
        time.sleep(self.seconds)
        with open(self.log, "a") as f:
            f.write(f"{ctx.trial}\n")
        return {"accuracy": float(candidate.x) * candidate.k}


def _space() -> Any:
    return pg.Dict(x=pg.floatv(0.0, 1.0), k=pg.oneof([1, 2, 3]))


def _ray_workers() -> list[int]:
    """Pids of the Ray workers of this process's local Ray running a trial now.

    Read from /proc (Linux): descendants of this process whose title Ray set to
    ``ray::run_trials`` (Ray's own agents, also titled ``ray::...``, are left alone).
    """
    parent: dict[int, int] = {}
    title: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                title[int(entry)] = f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    me = os.getpid()

    def mine(pid: int) -> bool:
        for _ in range(10):
            pid = parent.get(pid, 0)
            if pid == me:
                return True
            if pid <= 1:
                return False
        return False
    return [p for p, t in title.items() if t == "ray::run_trials" and mine(p)]


class _Chaos(threading.Thread):
    """SIGKILLs a busy Ray worker every ``every_s`` seconds (jittered) and, once half the
    trials have finished, restarts the PostgreSQL ``server`` (down ``outage_s``)."""

    def __init__(self, every_s: float, log: str, half: int, server: Any, outage_s: float,
                 seed: int) -> None:
        super().__init__(daemon=True)
        self.every_s, self.log, self.half = every_s, log, half
        self.server, self.outage_s = server, outage_s
        self.rng = random.Random(seed)
        self.kills = 0
        self.restarts = 0
        self.stopping = threading.Event()

    def _finished(self) -> int:
        try:
            with open(self.log, "rb") as f:
                return f.read().count(b"\n")
        except OSError:
            return 0

    def run(self) -> None:
        while not self.stopping.wait(self.every_s * self.rng.uniform(0.5, 1.5)):
            busy = _ray_workers()
            if busy:
                try:
                    os.kill(self.rng.choice(busy), signal.SIGKILL)
                    self.kills += 1
                except ProcessLookupError:
                    pass
            if self.server is not None and not self.restarts and self._finished() >= self.half:
                self.restarts = 1
                self.server.outage(self.outage_s)


def _one_run(url: str, name: str, trials: int, seconds: float, workers: int,
             chaos: dict[str, Any] | None, folder: str) -> dict[str, Any]:
    import memnas
    from memnas.store import Store

    log = os.path.join(folder, f"{name}.log")
    exp = memnas.Experiment(name=name, space=_space(), evaluator=ChaosTrial(log, seconds),
                            algorithm="random", objectives={"accuracy": "max"}, seed=11,
                            store=url, cache=False, max_attempts=20)
    thread = None
    if chaos is not None:
        thread = _Chaos(chaos["every_s"], log, trials // 2, chaos["server"],
                        chaos["outage_s"], seed=7)
    start = time.perf_counter()
    if thread is not None:
        thread.start()
    try:
        exp.run(max_trials=trials, workers=workers, executor="ray", store_patience_s=300)
    finally:
        if thread is not None:
            thread.stopping.set()
            thread.join()
    wall = time.perf_counter() - start
    store = Store(url, read_only=True)
    rows = store.trials(store.require_experiment(name)["id"])
    store.close()
    status = collections.Counter(t["status"] for t in rows)
    completed = [t for t in rows if t["status"] == "completed"]
    numbers = collections.Counter(t["number"] for t in completed)
    proposals = collections.Counter((str(t["dna"]), t["seed"]) for t in completed)
    with open(log) as f:
        evaluated = collections.Counter(int(line) for line in f if line.strip())
    return {
        "wall_s": round(wall, 2),
        "completed": len(completed),
        "statuses": dict(status),
        "lost": trials - len(completed),
        "duplicated": sum(n - 1 for n in numbers.values()) + sum(n - 1 for n in proposals.values()),
        "left_running": status.get("running", 0) + status.get("pending", 0),
        "retries": sum(int(t["attempt"] or 1) - 1 for t in rows),
        "reevaluated": sum(n - 1 for n in evaluated.values()),
        "kills": thread.kills if thread else 0,
        "store_restarts": thread.restarts if thread else 0,
    }


def run(quick: bool = False, trials: int | None = None, workers: int = 2,
        trial_s: float | None = None, kill_every_s: float | None = None,
        backend: str | None = None) -> dict[str, Any]:
    """Runs ``trials`` short trials twice on local Ray: quietly, then under chaos.

    Ray is started once for both runs (its start is in neither wall time). Under chaos a thread SIGKILLs a Ray worker process running a trial every
    ``kill_every_s`` seconds (0.5-1.5 times it, at random), and on PostgreSQL restarts
    the server once, when half the trials have finished (down 5 s). The figures are
    read back from the store and from the log the trials write as they finish.

    Args:
      quick: a small run (tests): 300 trials of 20 ms, a kill every 0.5 s, SQLite.
      trials: trials per run (default 5,000).
      workers: Ray workers (trials at once).
      trial_s: seconds one trial sleeps (default 0.04).
      kill_every_s: mean seconds between kills (default 2).
      backend: "postgres" (a throwaway PostgreSQL 15 server of the benchmark's own,
        restarted once; the default where one can be started) or "sqlite".

    Returns:
      ``trials``; ``kills`` (worker deaths injected); ``retries`` (attempts beyond the
      first); ``lost`` (trials asked for without a stored result: must be 0);
      ``duplicated`` (stored completions of a trial or proposal beyond one: must be 0);
      ``left_running`` (trials left running or pending: must be 0); ``reevaluated``
      (evaluations that finished but whose worker was killed before the result left it,
      so the trial ran again: work redone, not a result stored twice); ``store_restarts``;
      ``wall_s`` and ``quiet_wall_s``; ``slowdown`` (their ratio); and each run's details.
    """
    from memnas import testing as _pgserver
    from memnas.errors import ConfigError
    from memnas.runner.executors import start_ray, stop_ray

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    trials = trials or (300 if quick else 5000)
    trial_s = trial_s if trial_s is not None else (0.02 if quick else 0.04)
    kill_every_s = kill_every_s or (0.5 if quick else 2.0)
    if backend is None:
        backend = "sqlite" if quick or _pgserver.why_not() else "postgres"
    if backend not in ("sqlite", "postgres"):
        raise ConfigError(f"backend must be 'sqlite' or 'postgres', got {backend!r}")
    folder = tempfile.mkdtemp(prefix="memnas-chaos-")
    server = None
    if backend == "postgres":
        why = _pgserver.why_not()
        if why:
            raise ConfigError(f"backend 'postgres' needs a PostgreSQL server of its own: {why}")
        server = _pgserver.PgServer()
        server.start()
        url = server.url
    else:
        url = f"sqlite:///{os.path.join(folder, 'chaos.db')}"
    started = start_ray(None, max(os.cpu_count() or 1, workers))  # once, for both runs
    try:
        quiet = _one_run(url, "quiet", trials, trial_s, workers, None, folder)
        chaos = _one_run(url, "chaos", trials, trial_s, workers,
                         {"every_s": kill_every_s, "server": server, "outage_s": 5.0}, folder)
    finally:
        if started:
            stop_ray()
        if server is not None:
            server.close()
    figures = {"trials": trials, "workers": workers, "trial_s": trial_s,
               "kill_every_s": kill_every_s, "backend": backend,
               **{k: chaos[k] for k in ("kills", "retries", "lost", "duplicated",
                                        "left_running", "reevaluated", "store_restarts")},
               "wall_s": chaos["wall_s"], "quiet_wall_s": quiet["wall_s"],
               "slowdown": round(chaos["wall_s"] / quiet["wall_s"], 2),
               "quiet": quiet, "chaos": chaos}
    print(f"chaos: {trials} trials of {trial_s * 1000:.0f} ms on local Ray with {workers} "
          f"workers, {backend} store")
    print(f"  quiet: {quiet['completed']} completed in {quiet['wall_s']:.1f} s")
    print(f"  chaos: {chaos['completed']} completed in {chaos['wall_s']:.1f} s "
          f"(x{figures['slowdown']}); {chaos['kills']} workers killed, "
          f"{chaos['store_restarts']} store restart(s), {chaos['retries']} retries, "
          f"{chaos['reevaluated']} evaluations redone")
    print(f"  lost {chaos['lost']}, duplicated {chaos['duplicated']}, "
          f"left running {chaos['left_running']}")
    return figures
