"""DynamicSparse: sparse computation equals its masked reference, FLOPs counted as computed,
the heads learn their top-k targets, and the space is searchable."""

import math

import pyglove as pg
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import memnas
from memnas.algorithms import ALGORITHMS, AlgorithmHooks, make_algorithm
from memnas.evaluators import DynamicTrainEvaluator
from memnas.evaluators.dynamic_training import measure_flops
from memnas.measurement import Context
from memnas.searchspace import DynamicSparse, dynamic_sparse_space
from memnas.searchspace.sparse import MLP

PARENT = MLP(in_features=64, hidden=[32, 16], out_features=10)


def _flops(fn, *args):
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops()


def test_builds_and_the_sparse_pass_equals_the_masked_reference():
    torch.manual_seed(0)
    model = DynamicSparse(parent=PARENT, keep=[0.5, 0.25], head_rank=4).build()
    x = torch.randn(9, 64)
    assert model(x).shape == (9, 10)                      # training: masked, predicted gates
    out = model.masked_forward(x)
    assert out.logits.shape == (9, 10) and out.predictor_loss.ndim == 0
    assert 0.0 <= float(out.recall) <= 1.0
    model.eval()
    assert torch.allclose(model(x), out.logits, atol=1e-5)
    assert torch.allclose(model.sparse_forward(x), out.logits, atol=1e-5)
    # Target gating differs from predicted gating on an untrained head.
    assert not torch.allclose(model.masked_forward(x, "target").logits, out.logits)
    with pytest.raises(ValueError, match="gate must be"):
        model.masked_forward(x, "all")


def test_the_sparse_pass_never_reads_the_weights_of_unpicked_units():
    torch.manual_seed(1)
    model = DynamicSparse(parent=PARENT, keep=0.25, head_rank=4).build().eval()
    x = torch.randn(1, 64)
    before = model.sparse_forward(x)
    with torch.no_grad():
        scores = model.heads["0"](x)
        picked = torch.topk(scores, model.kept[0]).indices[0]
        dropped = torch.ones(32, dtype=torch.bool)
        dropped[picked] = False
        model.layers[0].weight[dropped] = math.nan        # rows never computed
        model.layers[1].weight[:, dropped] = math.nan     # columns never read
    after = model.sparse_forward(x)
    assert torch.isfinite(after).all() and torch.allclose(after, before)
    assert torch.isnan(model.dense_forward(x)).all()


def test_flops_at_keep_one_equal_the_dense_parent():
    spec = DynamicSparse(parent=PARENT, keep=1.0)
    model = spec.build().eval()
    assert len(model.heads) == 0
    x = torch.randn(5, 64)
    dense = _flops(PARENT.build(), x) / 5                 # the parent's own MLPModule
    assert dense == 2 * (64 * 32 + 32 * 16 + 16 * 10)
    assert _flops(model.sparse_forward, x) / 5 == dense
    assert spec.flops()["flops_spent"] == spec.flops()["flops_dense"] == dense
    assert measure_flops(model, x) == {"flops_spent": dense, "flops_dense": dense,
                                       "flops_saved": 0.0}


@pytest.mark.parametrize("keep,rank", [([0.5, 0.25], 4), (0.25, 0), ([1.0, 0.5], 8)])
def test_flops_at_keep_r_follow_the_formula(keep, rank):
    spec = DynamicSparse(parent=PARENT, keep=keep, head_rank=rank)
    k1, k2 = spec.kept()
    assert (k1, k2) == tuple(max(1, round(r * w)) for r, w in
                             zip(keep if isinstance(keep, list) else [keep] * 2, (32, 16)))

    def head(a, width, k):
        return 0 if k == width else (2 * rank * (a + width) if rank else 2 * width * a)

    layers = 2 * k1 * 64 + 2 * k2 * k1 + 2 * 10 * k2
    heads = head(64, 32, k1) + head(k1, 16, k2)
    model = spec.build().eval()
    x = torch.randn(7, 64)
    assert _flops(model.sparse_forward, x) / 7 == layers + heads
    expected = {"flops_spent": layers + heads, "flops_layers": layers, "flops_heads": heads,
                "flops_dense": 2 * (64 * 32 + 32 * 16 + 16 * 10)}
    assert {k: spec.flops()[k] for k in expected} == expected
    assert spec.flops()["flops_saved"] == pytest.approx(1 - (layers + heads) / expected[
        "flops_dense"])


def test_bad_specs_name_the_value():
    with pytest.raises(ValueError, match=r"keep ratios must lie in \(0, 1\], got \[1.5, 1.5\]"):
        DynamicSparse(parent=PARENT, keep=1.5).build()
    with pytest.raises(ValueError, match="one ratio per hidden layer"):
        DynamicSparse(parent=PARENT, keep=[0.5]).build()
    with pytest.raises(ValueError, match="needs an MLP parent"):
        DynamicSparse(parent=pg.Dict(a=1), keep=0.5).build()
    with pytest.raises(ValueError, match="head_rank must be >= 0"):
        DynamicSparse(parent=PARENT, keep=0.5, head_rank=-1).build()
    with pytest.raises(memnas.ConfigError, match="DynamicSparse or an MLP"):
        DynamicTrainEvaluator(steps=1)(pg.Dict(a=1))


def test_training_teaches_the_heads_their_top_k_targets():
    spec = DynamicSparse(parent=PARENT, keep=0.25, head_rank=8)
    ev = DynamicTrainEvaluator(steps=150, report_every=25)
    m = ev(spec, Context(seed=0))
    head_loss = [p["value"] for p in m.curve if p["name"] == "predictor_loss"]
    assert head_loss[-1] < 0.8 * head_loss[0]
    assert m.metrics["mask_recall"] > 0.5                 # chance: 0.25
    assert m.metrics["accuracy"] > 0.3                    # chance: 0.1
    assert m.costs["flops_spent"] == spec.flops()["flops_spent"]
    assert m.costs == ev.costs(spec)                      # the hook announces what is stored
    assert 0.0 < m.costs["flops_saved"] < 1.0




def _uses_artifacts(name):
    algo = make_algorithm(name, seed=0)
    return isinstance(algo, AlgorithmHooks) and (
        type(algo).artifact_for is not AlgorithmHooks.artifact_for
        or type(algo).feedback_artifact is not AlgorithmHooks.feedback_artifact)


GENERIC = [name for name in sorted(ALGORITHMS) if not _uses_artifacts(name)]
OPTIONS = {"evolution": {"population_size": 4}, "nsga2": {"population_size": 4},
           "tpe": {"n_startup_trials": 3}, "gp": {"n_startup_trials": 3},
           "optuna_nsga2": {"population_size": 4}}


@pytest.mark.parametrize("name", GENERIC)
def test_every_generic_algorithm_proposes_valid_candidates(name):
    space = dynamic_sparse_space(PARENT, keep=(0.25, 0.5, 1.0), head_rank=(4, 8))
    space = space.clone(override={"keep[0]": pg.floatv(0.05, 1.0)})  # a float decision too
    algo = make_algorithm(name, seed=0, **OPTIONS.get(name, {}))
    algo.setup(pg.dna_spec(space))
    for _ in range(6 if name != "gp" else 4):
        dna = algo.propose()
        candidate = pg.materialize(space, dna)
        assert isinstance(candidate, DynamicSparse) and candidate.head_rank in (4, 8)
        assert 0.05 <= candidate.keep[0] <= 1.0 and candidate.keep[1] in (0.25, 0.5, 1.0)
        flops = candidate.flops()
        saved = flops["flops_saved"]
        algo.feedback(dna, (saved, -flops["flops_heads"]) if algo.multi_objective else saved)


EVOLUTION = {"population_size": 4, "tournament_size": 2}  # 6 trials: 2 past the first 4


@pytest.mark.parametrize("algorithm", ["random", "evolution"])
def test_the_space_is_searched_through_an_experiment(sqlite_url, algorithm):
    space = dynamic_sparse_space(PARENT, keep=(0.25, 0.5, 1.0))
    ev = DynamicTrainEvaluator(steps=20, report_every=10)
    result = memnas.Experiment(
        name=f"dyn-{algorithm}", space=space, evaluator=ev, algorithm=algorithm,
        algorithm_options=EVOLUTION if algorithm == "evolution" else {},
        objectives={"accuracy": "max", "flops_spent": "min"}, store=sqlite_url,
        seed=1).run(max_trials=6, executor="local")
    df = result.trials()
    assert len(df) == 6 and set(df["status"]) <= {"completed", "cached"}
    for _, t in df.iterrows():
        keep = [float(t[f"keep[{i}]"]) for i in range(2)]
        spec = DynamicSparse(parent=PARENT, keep=keep, head_rank=8)
        assert t["flops_spent"] == spec.flops()["flops_spent"]
        assert t["flops_dense"] == spec.flops()["flops_dense"]
    assert {"predictor_loss", "val_accuracy"} <= set(result.curve(0)["name"])
