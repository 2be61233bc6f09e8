"""The Ray executor end to end: a real local Ray runtime into a temporary SQLite store."""

import pyglove as pg
import pytest

import memnas
import toyspace
from memnas.store import Store

pytestmark = pytest.mark.slow


def test_toy_search_on_ray_stores_every_row(sqlite_url):
    exp = memnas.Experiment(name="ray-toy", space=toyspace.point_space(),
                            evaluator=toyspace.evaluate_flaky, algorithm="nsga2",
                            objectives={"accuracy": "max", "params": "min"}, store=sqlite_url,
                            resources={"num_cpus": 0.5})
    result = exp.run(max_trials=10, workers=2, executor="ray")
    df = result.trials()
    assert list(df["number"]) == list(range(10))
    assert set(df["status"]) <= {"completed", "failed"}
    assert df["node"].notna().all()
    failed = df[df["status"] == "failed"]
    assert failed["error"].str.contains("RuntimeError: cannot evaluate|non-finite").all()
    s = Store(sqlite_url)
    exp_row = s.experiment("ray-toy")
    assert exp_row["status"] == "completed"
    done = s.trials(exp_row["id"], statuses=["completed"])
    assert all(len(s.curve(t["id"])) == 3 for t in done)


def test_tiny_mqar_search_trains_on_ray_workers(sqlite_url):
    from memnas.evaluators import MQAR, TrainEvaluator
    from memnas.searchspace import memory_space

    exp = memnas.Experiment(
        name="tiny-mqar", space=memory_space(vocab_size=32, max_layers=2, d_model=(16,), max_len=12),
        evaluator=TrainEvaluator(task=MQAR(vocab_size=32, seq_len=12, num_kv_pairs=2), steps=20,
                                 batch_size=8, eval_examples=32),
        algorithm="evolution", objectives={"accuracy": "max", "params": "min"}, store=sqlite_url)
    result = exp.run(max_trials=4, workers=2, executor="ray")
    df = result.trials()
    assert list(df["status"]) == ["completed"] * 4
    assert df["accuracy"].between(0, 1).all() and (df["params"] > 0).all()
    assert (df["latency_ms"] > 0).all()
    assert df["summary"].str.startswith("d=16 |").all()
    s = Store(sqlite_url)
    for t in s.trials(s.experiment("tiny-mqar")["id"]):
        names = {p["name"] for p in s.curve(t["id"])}
        assert "loss" in names
        assert isinstance(pg.from_json_str(t["candidate"]), memnas.searchspace.SequenceModel)


def test_two_node_cluster_runs_trials_on_both_nodes(sqlite_url):
    import os

    from ray.cluster_utils import Cluster

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        exp = memnas.Experiment(name="cluster", space=toyspace.point_space(),
                                evaluator=toyspace.evaluate_sleepy, algorithm="random",
                                objectives={"accuracy": "max"}, store=sqlite_url)
        result = exp.run(max_trials=8, workers=2, executor="ray", ray_address=cluster.address)
    finally:
        cluster.shutdown()
    df = result.trials()
    assert list(df["status"]) == ["completed"] * 8
    nodes = set(df["node"])
    assert len(nodes) == 2 and all(":" in n for n in nodes), nodes


def test_fractional_gpus_are_accounted_by_ray(sqlite_url):
    """Two trials of half a GPU share one (declared) GPU; the evaluator sees its GPU id.

    This machine has no GPU, so torch reports no CUDA and ctx.device stays "cpu".
    """
    import os

    import ray

    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False,
             logging_level="ERROR", runtime_env={"env_vars": {
                 "PYTHONPATH": os.path.dirname(os.path.abspath(toyspace.__file__))}})
    try:
        exp = memnas.Experiment(name="gpu", space=toyspace.point_space(),
                                evaluator=toyspace.evaluate_gpu_view, algorithm="random",
                                objectives={"accuracy": "max"}, store=sqlite_url,
                                resources={"num_cpus": 0.5, "num_gpus": 0.5})
        result = exp.run(max_trials=4, workers=2, executor="ray")
    finally:
        ray.shutdown()
    df = result.trials()
    assert list(df["status"]) == ["completed"] * 4
    assert (df["gpu_ids"] == 1.0).all()
    import torch

    assert (df["on_cuda"] == float(torch.cuda.is_available())).all()
