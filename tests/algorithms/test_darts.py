"""sharpDARTS: supernets from spaces, weightings, Cosine Power Annealing, derivation, the flow."""

from __future__ import annotations

import math
import os

import numpy as np
import pyglove as pg
import pytest
import torch

import dartsuserspace as user
import memnas
from memnas.algorithms import SharpDARTS, SupernetEvaluator, make_algorithm
from memnas.algorithms._supernet import MixedOp, build_supernet, derive, op_weights
from memnas.algorithms._supernet_train import SupernetSettings, cosine_power_annealing, \
    train_supernet
from memnas.evaluators import MQAR, TrainEvaluator
from memnas.searchspace import LinearAttention, SoftmaxAttention, memory_space
from memnas.runner import dna_from_json
from memnas.store import Store

torch.set_num_threads(1)
TASK = MQAR(vocab_size=64, seq_len=16, num_kv_pairs=4)


def _memory_space(d_model=(16,)):
    return memory_space(64, max_len=16, d_model=d_model, min_layers=2, max_layers=2,
                        mlp_ratio=(1,), mixers=[SoftmaxAttention(num_heads=2),
                                                LinearAttention(num_heads=2)])


# -- supernet construction ---------------------------------------------------------------
def test_supernet_from_memory_space_mixes_every_mixer_decision():
    space = memory_space(64, max_len=16, d_model=(16, 32), min_layers=1, max_layers=2,
                         mlp_ratio=(1, 2), mixers=[SoftmaxAttention(num_heads=pg.oneof([1, 2])),
                                                   LinearAttention(num_heads=2)])
    net = build_supernet(space, default="last")
    # "last": width 32, two layers, mlp ratio 2; the mixers of both layers are mixed.
    assert [d.id for d in net.decisions] == ["layers[=1/2][0].mixer", "layers[=1/2][1].mixer"]
    assert net.decisions[0].choices == ["SoftmaxAttention", "LinearAttention"]
    assert net.fixed["d_model"] == [1] and net.fixed["layers"] == [1]
    assert net.fixed["layers[=1/2][0].mixer[=0/2].num_heads"] == [1]
    mixed = [m for m in net.modules() if isinstance(m, MixedOp)]
    assert len(mixed) == 2 and mixed[0].ops[0].num_heads == 2  # "last" head count
    tokens, _ = TASK.batch(3, 0)
    assert net(tokens).shape == (3, 16, 64)
    assert len(net.arch_parameters()) == 2
    assert not {id(p) for p in net.arch_parameters()} & {id(p) for p in net.weight_parameters()}


def test_supernet_from_a_user_space_with_specs_manyof_and_torch_modules():
    net = build_supernet(user.space(), fixed={"width": 1})
    assert [(d.id, d.num_choices) for d in net.decisions] == [("op", 1), ("extras", 2), ("act", 1)]
    assert net.net.inp.out_features == 16  # fixed={"width": 1}
    assert len(net.net.extras) == 3  # a manyof keeps all its choices, each scaled
    x, _ = user.Teacher().batch(5, 0)
    out = net(x)
    assert out.shape == (5, 3)
    out.sum().backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in net.arch_parameters())


def test_supernet_does_not_train_the_spaces_own_module_instances():
    space = user.space()
    before = [p.clone() for p in space.act.candidates[0].parameters()]  # Tanh: none
    net = build_supernet(space)
    assert net.net.act.ops[0] is not space.act.candidates[0]
    assert before == []


def test_a_space_without_module_choices_is_refused():
    with pytest.raises(memnas.ConfigError, match="nothing to mix"):
        build_supernet(user.Net(in_dim=2, width=pg.oneof([2, 4]), classes=2, op=user.Dense(),
                                extras=[], act=torch.nn.ReLU()))
    with pytest.raises(memnas.ConfigError, match="fixed"):
        build_supernet(user.space(), fixed={"width": 5})


# -- weightings and the schedule ---------------------------------------------------------
def test_softmax_and_max_w_weightings():
    alpha = torch.tensor([0.3, -1.0, 2.0, 0.0])
    w = torch.softmax(alpha, -1)
    assert torch.allclose(op_weights(alpha, "softmax"), w)
    mw = op_weights(alpha, "max_w")
    assert torch.allclose(mw, 1 - w.max() + w)
    assert mw[2] == pytest.approx(1.0) and (mw[[0, 1, 3]] < 1).all()
    with pytest.raises(ValueError, match="weighting"):
        op_weights(alpha, "hard")


@pytest.mark.parametrize("weighting", ["softmax", "max_w"])
def test_mixed_op_is_the_weighted_sum_of_its_choices(weighting):
    torch.manual_seed(0)
    net = build_supernet(user.space(), weighting=weighting)
    with torch.no_grad():
        net.alphas[0].copy_(torch.tensor([0.5, 1.5, -0.2]))
    mixed, h = net.net.op, torch.randn(4, 8)
    w = op_weights(net.alphas[0], weighting)
    expected = sum(w[i] * op(h) for i, op in enumerate(mixed.ops))
    assert torch.allclose(mixed(h), expected)


def test_cosine_power_annealing():
    hi, lo, epochs = 0.1, 1e-3, 20
    for order in (1, 2, 10):
        assert cosine_power_annealing(0, epochs, hi, lo, order) == pytest.approx(hi)
        assert cosine_power_annealing(epochs, epochs, hi, lo, order) == pytest.approx(lo)
        values = [cosine_power_annealing(e, epochs, hi, lo, order) for e in range(epochs + 1)]
        assert all(a >= b for a, b in zip(values, values[1:]))
    for e in range(epochs + 1):  # order 1 is plain cosine annealing, and its limit
        cosine = lo + (hi - lo) * (1 + math.cos(math.pi * e / epochs)) / 2
        assert cosine_power_annealing(e, epochs, hi, lo, 1) == pytest.approx(cosine)
        assert cosine_power_annealing(e, epochs, hi, lo, 1.0001) == pytest.approx(cosine, rel=1e-3)
        if 0 < e < epochs:  # a higher order leaves the high rates sooner
            assert cosine_power_annealing(e, epochs, hi, lo, 10) < cosine
    p = (1 + math.cos(math.pi * 5 / 20)) / 2
    assert cosine_power_annealing(5, 20, 1.0, 0.0, 10) == pytest.approx((10 ** (p + 1) - 10) / 90)
    with pytest.raises(ValueError):
        cosine_power_annealing(0, 0, hi, lo)


# -- derivation -------------------------------------------------------------------------
def test_derivation_takes_argmax_and_top_k():
    space = user.space()
    spec = pg.dna_spec(space)
    dna = derive(spec, {"op": [0.1, 2.0, -1.0], "extras": [3.0, -2.0, 1.0], "act": [0.0, 0.5]},
                 fixed={"width": 1})
    model = pg.materialize(space, dna)
    assert model.width == 16 and model.op == user.Dense()
    assert list(model.extras) == [user.Zero(), user.Skip()]  # top 2, sorted
    assert isinstance(model.act, torch.nn.ReLU)
    mem = _memory_space()
    d = derive(pg.dna_spec(mem), {"layers[0].mixer": [0.0, 1.0], "layers[1].mixer": [2.0, 1.0]})
    layers = pg.materialize(mem, d).layers
    assert isinstance(layers[0].mixer, LinearAttention)
    assert isinstance(layers[1].mixer, SoftmaxAttention)


def test_training_moves_alphas_and_records_their_trajectory():
    torch.manual_seed(0)
    net = build_supernet(user.space(), weighting="softmax")
    points = []
    out = train_supernet(net, user.Teacher(), SupernetSettings(epochs=3, steps_per_epoch=15,
                                                               batch_size=64, lr=1e-2),
                         seed=0, report=lambda step, **v: points.append((step, v)))
    assert out["trajectory"]["op"].shape == (4, 3)
    assert not np.allclose(out["trajectory"]["op"][0], out["trajectory"]["op"][-1])
    assert [s for s, v in points if "alpha/op/Dense" in v] == [0, 15, 30, 45]
    assert out["accuracy"] > 0.5  # three classes: well above chance
    # Zero cannot help: the op decision turns away from it.
    probs = net.probabilities()["op"]
    assert probs[0] < probs[1]


def test_second_order_gradients_train_too():
    torch.manual_seed(0)
    net = build_supernet(user.space())
    out = train_supernet(net, user.Teacher(), SupernetSettings(epochs=2, steps_per_epoch=5,
                                                               batch_size=32, first_order=False),
                         seed=1)
    assert np.isfinite(out["trajectory"]["op"]).all()
    assert not np.allclose(out["trajectory"]["op"][0], out["trajectory"]["op"][-1])


# -- the full flow through the store ------------------------------------------------------
def _dna(row):
    return dna_from_json(row["dna"], pg.dna_spec(_memory_space()))


def _experiment(url, name="darts", **options):
    space = _memory_space()
    evaluator = SupernetEvaluator(TrainEvaluator(task=TASK, steps=30, eval_examples=64), space)
    algorithm = SharpDARTS(epochs=2, steps_per_epoch=6, batch_size=16, **options)
    return memnas.Experiment(name=name, space=space, evaluator=evaluator, algorithm=algorithm,
                             objectives={"accuracy": "max"}, store=url)


def test_supernet_trial_then_derived_trial_in_the_store(sqlite_url):
    result = _experiment(sqlite_url).run(max_trials=2, executor="local")
    df = result.trials().sort_values("number")
    assert list(df["status"]) == ["completed", "completed"]
    assert df["supernet"].iloc[0] == 1.0 and np.isnan(df["supernet"].iloc[1])
    store = Store(sqlite_url)
    rows = store.trials(store.experiment("darts")["id"])
    assert [_dna(r).metadata["sharp_darts"] for r in rows] == ["supernet", "derived"]
    request = result.artifact(0, "input")["sharp_darts"]
    assert request["settings"]["epochs"] == 2 and request["settings"]["weighting"] == "softmax"
    out = result.artifact(0)
    assert [d["id"] for d in out["decisions"]] == ["layers[0].mixer", "layers[1].mixer"]
    assert out["trajectory"]["d0"].shape == (3, 2)
    names = set(result.curve(0)["name"])
    assert {"alpha/layers[0].mixer/SoftmaxAttention", "alpha/layers[1].mixer/LinearAttention",
            "loss", "val_accuracy", "lr"} <= names
    # The derived trial is the argmax of the stored alphas, evaluated by the task evaluator.
    alphas = {d["id"]: out["alphas"][f"d{i}"] for i, d in enumerate(out["decisions"])}
    expected = derive(pg.dna_spec(_memory_space()), alphas)
    assert _dna(rows[1]).to_numbers() == expected.to_numbers()
    assert result.artifact(1, "input") is None and result.artifact(1) is None
    assert "eval_accuracy" in {p["name"] for p in store.curve(rows[1]["id"])}


def test_resume_derives_from_the_stored_supernet_output(sqlite_url):
    _experiment(sqlite_url, rounds=2).run(max_trials=1, executor="local")  # supernet only
    result = _experiment(sqlite_url, rounds=2).run(max_trials=4, executor="local")
    store = Store(sqlite_url)
    rows = store.trials(store.experiment("darts")["id"])
    roles = [(_dna(r).metadata["sharp_darts"], _dna(r).metadata["round"])
             for r in rows]
    assert roles == [("supernet", 0), ("derived", 0), ("supernet", 1), ("derived", 1)]
    out = result.artifact(0)
    alphas = {d["id"]: out["alphas"][f"d{i}"] for i, d in enumerate(out["decisions"])}
    assert _dna(rows[1]).to_numbers() == \
        derive(pg.dna_spec(_memory_space()), alphas).to_numbers()
    assert set(result.trials()["status"]) == {"completed"}


def test_two_workers_wait_for_the_supernet(sqlite_url):
    result = _experiment(sqlite_url).run(max_trials=3, workers=2, executor="local")
    df = result.trials()
    assert len(df) == 2 and set(df["status"]) == {"completed"}  # one round: exactly two trials


def test_ray_workers_run_the_supernet_then_the_derived_trial(sqlite_url):
    result = _experiment(sqlite_url).run(max_trials=2, workers=2, executor="ray")
    df = result.trials().sort_values("number")
    assert list(df["status"]) == ["completed", "completed"]
    assert df["supernet"].iloc[0] == 1.0 and result.artifact(0)["alphas"]["d0"].shape == (2,)


def test_by_name_and_a_user_space(sqlite_url):
    space = user.space()
    algo = make_algorithm("sharp_darts", epochs=2, steps_per_epoch=5, batch_size=32)
    assert isinstance(algo, SharpDARTS)
    exp = memnas.Experiment(name="user", space=space, algorithm=algo,
                            evaluator=SupernetEvaluator(user.TeacherEvaluator(), space),
                            objectives={"accuracy": "max"}, store=sqlite_url)
    result = exp.run(max_trials=2, executor="local")
    df = result.trials().sort_values("number")
    assert list(df["status"]) == ["completed", "completed"]
    assert df["accuracy"].iloc[1] > 0.4


def test_bench_derives_attention_from_every_seed_small(sqlite_url):
    from memnas.bench import darts as bench

    cfg = {**bench.QUICK, "eval_steps": 20}  # 4 x 25 supernet steps per seed
    r = bench.search("softmax", cfg, sqlite_url, "bench-small")
    assert r["seeds"] == 3 and len({row["seed"] for row in r["per_seed"]}) == 3
    assert r["derived_best"] == 3, r["per_seed"]
    # Every seed derived the same model: the equivalence cache answers the repeats.
    assert [row["derived_status"] for row in r["per_seed"]] == ["completed", "cached", "cached"]
    for row in r["per_seed"]:
        for alphas in row["alphas"].values():
            assert alphas["SoftmaxAttention"] > alphas["LinearAttention"]


# -- the supernet run is shown as such, never as a candidate ------------------------------
def _poor(candidate, ctx):
    """A task evaluator under which every candidate scores below any trained supernet."""
    return memnas.Measurement(metrics={"accuracy": 0.0}, costs={"params": 1.0})


def test_the_supernet_trial_is_never_best_nor_on_the_front(sqlite_url):
    from click.testing import CliRunner

    from memnas.cli import main
    from memnas.dashboard import data
    from memnas.store import reader

    space = _memory_space()
    exp = memnas.Experiment(
        name="honest", space=space, evaluator=SupernetEvaluator(_poor, space, task=TASK),
        algorithm=SharpDARTS(epochs=2, steps_per_epoch=6, batch_size=16),
        objectives={"accuracy": "max", "params": "min"}, store=sqlite_url)
    result = exp.run(max_trials=2, executor="local")
    df = result.trials().sort_values("number")
    assert df["accuracy"].iloc[0] > 0.0 and df["params"].iloc[0] > 1.0  # the mixed network
    # Before: the supernet was "best" and on the front under the summary of an
    # architecture of the defaults, which was never evaluated on its own.
    assert result.best()["number"] == 1
    assert list(result.pareto_front()["number"]) == [1]
    summary = df["summary"].iloc[0]
    assert summary.startswith("supernet run, not a candidate: layers[0].mixer: ")
    assert "SoftmaxAttention 0." in summary and "LinearAttention 0." in summary
    assert not df["summary"].iloc[1].startswith("supernet")
    # The dashboard reads the same: best values, the front, the trial page's summary.
    store = Store(sqlite_url, read_only=True)
    exp_id = store.experiment("honest")["id"]
    assert reader.best_values(store, exp_id, result.objectives) == {"accuracy": 0.0,
                                                                    "params": 1.0}
    lean = reader.trials_frame(store, exp_id, result.objectives)
    info = data.pareto_info(lean, "accuracy", "params", result.objectives)
    assert list(info.points["number"]) == [1] and list(info.front["number"]) == [1]
    assert data.best_value(lean, "accuracy", "max") == 0.0
    assert reader.trial_row(store, exp_id, 0)["summary"] == summary
    r = CliRunner().invoke(main, ["show", "honest", "--store", sqlite_url])
    assert r.exit_code == 0, r.output
    assert "best accuracy (max): 0  trial 1:" in r.output
    assert "Pareto front (accuracy vs params): 1 trials" in r.output
    assert "supernet runs (not candidates: never best, not on the front): 1" in r.output
    assert "    #0    completed  accuracy=" in r.output and summary in r.output


def test_the_progress_line_never_counts_a_supernet_as_best():
    from memnas.runner.progress import Tally

    tally = Tally({"accuracy": "max"})
    tally.count("completed", {"accuracy": 0.26, "supernet": 1.0})
    tally.count("completed", {"accuracy": 0.03})
    assert tally.best == 0.03 and tally.finished == 2


@pytest.mark.parametrize("algorithm", ["sharp_darts", SharpDARTS(epochs=1)])
def test_sharp_darts_without_a_supernet_evaluator_is_refused_in_one_line(sqlite_url, algorithm):
    with pytest.raises(memnas.ConfigError) as refused:
        memnas.Experiment(name="plain", space=_memory_space(), algorithm=algorithm,
                          evaluator=TrainEvaluator(task=TASK, steps=5), store=sqlite_url)
    message = str(refused.value)
    assert message.startswith("algorithm sharp_darts needs evaluator=SupernetEvaluator("
                              "task_evaluator, space), got TrainEvaluator: TrainEvaluator(")
    assert "\n" not in message
    assert not os.path.exists(sqlite_url[len("sqlite:///"):])  # refused before any store
