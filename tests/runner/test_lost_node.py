"""A worker node lost while it runs trials: they run again on a node that is left, each stored once.

Ray fails a task of a lost node at once with `ray.exceptions.NodeDiedError` (the trial
function runs with ``max_retries=0``: memnas, not Ray, decides what runs again); the
driver counts it as a lost attempt and runs the trial again while it has attempts.
Losing the node that runs the driver is the driver-crash case, resumed by the next
`memnas run` / `memnas resume` (tests/runner/test_killed_driver.py).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

import memnas
import toyspace
from memnas.store import Store

pytestmark = pytest.mark.slow


class Marked:
    """An evaluator that leaves a file naming the trial and its Ray node, then sleeps.

    Args:
      folder: where the files go (``TRIAL-NODEID``, one per run of a trial).
      seconds: how long each trial takes.
    """

    def __init__(self, folder: str, seconds: float) -> None:
        self.folder, self.seconds = folder, seconds

    def __call__(self, p: Any, ctx: memnas.Context) -> dict[str, float]:
        import ray

        node = ray.get_runtime_context().get_node_id()
        open(os.path.join(self.folder, f"{ctx.trial}-{node}"), "w").close()
        time.sleep(self.seconds)
        return {"accuracy": p.x}


def _runs(folder: str) -> list[tuple[int, str]]:
    """``(trial number, node id)`` of every run of a trial so far."""
    return [(int(n), node) for n, node in (f.split("-", 1) for f in os.listdir(folder))]


def test_trials_of_a_lost_node_run_again_on_a_node_left_and_are_stored_once(sqlite_url,
                                                                              tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()   # a Ray left initialized here would be used instead of the cluster
    folder = str(tmp_path / "runs")
    os.mkdir(folder)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    stop, removed = threading.Event(), threading.Event()
    try:
        worker = cluster.add_node(num_cpus=1)

        def remove_when_busy() -> None:
            while not stop.wait(0.05):
                if any(node == worker.node_id for _, node in _runs(folder)):  # 1.5 s to go
                    cluster.remove_node(worker, allow_graceful=False)  # as if unplugged
                    removed.set()
                    return

        remover = threading.Thread(target=remove_when_busy, daemon=True)
        remover.start()
        exp = memnas.Experiment(name="lost-node", space=toyspace.point_space(),
                                evaluator=Marked(folder, 1.5), algorithm="random",
                                objectives={"accuracy": "max"}, store=sqlite_url)
        exp.run(max_trials=4, workers=2, executor="ray", ray_address=cluster.address)
        stop.set()
        remover.join()
    finally:
        stop.set()
        cluster.shutdown()
    assert removed.is_set(), f"no trial ran on the worker node: {_runs(folder)}"
    store = Store(sqlite_url, read_only=True)
    row = store.experiment("lost-node")
    trials = store.trials(row["id"])
    assert row["status"] == "completed"
    assert [t["number"] for t in trials] == [0, 1, 2, 3]          # one row per trial
    assert {t["status"] for t in trials} == {"completed"}         # none running or pending
    assert len({t["candidate"] for t in trials}) == 4             # each result stored once
    runs = _runs(folder)
    lost = {n for n, node in runs if node == worker.node_id}
    assert lost, runs
    for t in trials:
        on = [node for n, node in runs if n == t["number"]]
        if t["number"] in lost:
            assert t["attempt"] >= 2, t
            assert t["node"].split(":")[1] != worker.node_id[:12], t       # ran again...
            assert any(node != worker.node_id for node in on), (t, on)    # ...elsewhere
        else:
            assert t["attempt"] == 1 and len(on) == 1, (t, on)
