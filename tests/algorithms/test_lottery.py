"""Lottery-ticket IMP: mask steps, rewinding, controls, the driver (local, Ray, resume), bench."""

import numpy as np
import pyglove as pg
import pytest
import torch

import memnas
from memnas.algorithms import make_algorithm
from memnas.algorithms.lottery import LotteryTicketIMP, lottery_space, next_masks
from memnas.bench import lth
from memnas.evaluators.sparse_training import SparseTrainEvaluator, train_masked
from memnas.evaluators.digits import Digits
from memnas.searchspace.sparse import MLP

SMALL = MLP(in_features=64, hidden=[32, 16], out_features=10)
STEPS = 60


pytestmark = pytest.mark.usefixtures("one_thread")


def _imp(**options):
    defaults = dict(seed=0, chains=1, rounds=3, controls=["reinit", "random_prune"])
    return LotteryTicketIMP(**{**defaults, **options})


def _exp(url, name="imp", **options):
    rounds = options.get("rounds", 3)
    return memnas.Experiment(
        name=name, space=lottery_space(SMALL, rounds=rounds), evaluator=SparseTrainEvaluator(
            steps=STEPS), algorithm=_imp(**options),
        objectives={"accuracy": "max", "remaining": "min"}, store=url)


def _by_key(result):
    """{(chain, round, role): (test accuracy, sparsity)} from the store."""
    rows = result._store.trials(result.experiment["id"])  # the DNA metadata names the chain
    out = {}
    for t in rows:
        meta = t["dna"]["metadata"]
        out[(meta["chain"], meta["round"], meta["role"])] = (t["metrics"]["test_accuracy"],
                                                             t["costs"]["sparsity"])
    return out


def test_next_masks_prunes_a_fifth_of_kept_weights_per_layer_and_spares_the_output():
    rng = np.random.default_rng(0)
    final = {"a": rng.normal(size=(30, 20)), "b": rng.normal(size=(10, 30))}
    masks = {"a": np.ones((30, 20), bool), "b": np.ones((10, 30), bool)}
    one = next_masks(final, masks, ["a", "b"], 0.2)
    two = next_masks(final, one, ["a", "b"], 0.2)
    assert (one["a"].sum(), two["a"].sum()) == (480, 384) and two["b"].all()
    assert np.abs(final["a"][two["a"]]).min() >= np.abs(final["a"][~two["a"]]).max()
    half = next_masks(final, masks, ["a", "b"], 0.2, output_rate=0.5)
    assert half["b"].sum() == 270
    glob = next_masks(final, masks, ["a", "b"], 0.5, scope="global", output_rate=1.0)
    assert glob["a"].sum() == 300 and glob["b"].sum() == 150


def test_rounds_rewind_to_the_initial_weights_and_controls_follow_the_ticket():
    trials = lth.run_inline(_imp(), lottery_space(SMALL, rounds=3), SparseTrainEvaluator(
        steps=STEPS))
    keys = [(m["chain"], m["round"], m["role"]) for m, _ in trials]
    assert keys == [(0, 0, "imp"), (0, 1, "imp"), (0, 1, "reinit"), (0, 1, "random_prune"),
                    (0, 2, "imp"), (0, 2, "reinit"), (0, 2, "random_prune")]
    sparsity = [m.costs["sparsity"] for meta, m in trials if meta["role"] == "imp"]
    assert sparsity == pytest.approx([0.0, 0.2, 0.36], abs=1e-3)
    # Rewinding: the round-0 "rewind" weights are the freshly initialised network.
    algo = _imp()
    algo.setup(pg.dna_spec(lottery_space(SMALL, rounds=3)))
    first = algo._propose()
    art = algo.artifact_for(first)
    torch.manual_seed(art["init_seed"])
    init = SMALL.build().state_dict()
    rewind = trials[0][1].artifact["rewind"]
    assert all(np.array_equal(rewind[k], init[k].numpy()) for k in init)
    # The next rounds start from exactly those weights, under the pruned mask.
    algo.feedback_artifact(first, trials[0][1].artifact)
    proposals = {d.metadata["role"]: d for d in (algo._propose() for _ in range(3))}
    ticket = algo.artifact_for(proposals["imp"])
    assert all(np.array_equal(ticket["weights"][k], rewind[k]) for k in rewind)
    reinit = algo.artifact_for(proposals["reinit"])
    assert "weights" not in reinit and reinit["init_seed"] != ticket["init_seed"]
    assert all(np.array_equal(reinit["masks"][k], ticket["masks"][k]) for k in ticket["masks"])
    rnd = algo.artifact_for(proposals["random_prune"])
    for k, m in ticket["masks"].items():
        assert rnd["masks"][k].sum() == m.sum()
    assert not np.array_equal(rnd["masks"]["layers.0.weight"], ticket["masks"]["layers.0.weight"])
    assert all(np.array_equal(rnd["weights"][k], rewind[k]) for k in rewind)


def test_late_rewinding_returns_to_the_weights_of_step_k():
    space = lottery_space(SMALL, rounds=2)
    trials = lth.run_inline(_imp(rounds=2, rewind_step=10, controls=[]), space,
                            SparseTrainEvaluator(steps=STEPS))
    algo = _imp(rounds=2, rewind_step=10)
    algo.setup(pg.dna_spec(space))
    art = algo.artifact_for(algo._propose())
    torch.manual_seed(art["init_seed"])
    model = SMALL.build()
    run = train_masked(model, {}, Digits().load(), steps=10, data_seed=art["data_seed"])
    rewind = trials[0][1].artifact["rewind"]
    assert all(np.array_equal(rewind[k], run.final[k].numpy()) for k in rewind)
    # Round 1 trains from step 10 on: its curve starts after the rewind point.
    assert min(p["step"] for p in trials[1][1].curve) > 10


def test_imp_through_the_driver_matches_the_inline_bench_loop(sqlite_url):
    result = _exp(sqlite_url).run(max_trials=20, executor="local")
    stored = _by_key(result)
    assert len(stored) == 7 and set(result.trials()["status"]) == {"completed"}
    inline = lth.run_inline(_imp(), lottery_space(SMALL, rounds=3), SparseTrainEvaluator(
        steps=STEPS))
    for meta, m in inline:
        acc, sparsity = stored[(meta["chain"], meta["round"], meta["role"])]
        assert acc == pytest.approx(m.metrics["test_accuracy"], abs=1e-9)
        assert sparsity == pytest.approx(m.costs["sparsity"], abs=1e-9)
    # Masks and rewind weights travel as artifacts; the front is accuracy vs remaining weights.
    assert set(result.artifact(1, "input")) >= {"masks", "weights", "start_step"}
    assert set(result.artifact(0)) >= {"masks", "final", "rewind"}
    curve = result.curve(4)  # round 2's ticket: its training curve is stored
    assert {"loss", "val_accuracy"} <= set(curve["name"])
    front = result.pareto_front()
    assert len(front) >= 1 and front["remaining"].min() < 1.0


def test_resume_continues_the_chains_exactly(sqlite_url, tmp_path):
    _exp(sqlite_url, chains=2).run(max_trials=4, executor="local")
    resumed = _by_key(_exp(sqlite_url, chains=2).run(max_trials=30, executor="local"))
    fresh = _by_key(_exp(f"sqlite:///{tmp_path}/fresh.db", chains=2).run(max_trials=30,
                                                                         executor="local"))
    assert len(resumed) == 14 and resumed.keys() == fresh.keys()
    for k in fresh:
        assert resumed[k] == pytest.approx(fresh[k], abs=1e-9)


def test_ray_workers_run_chains_side_by_side_and_the_driver_waits_for_tickets(sqlite_url):
    # One chain, two workers: after round 0 is launched nothing is ready until it reports.
    result = _exp(sqlite_url, chains=1, rounds=3, controls=["reinit"]).run(
        max_trials=10, workers=2, executor="ray")
    stored = _by_key(result)
    assert len(stored) == 5 and set(result.trials()["status"]) == {"completed"}


def test_registered_by_name_and_refuses_a_foreign_space():
    algo = make_algorithm("imp", seed=1, chains=2, rounds=4)
    assert isinstance(algo, LotteryTicketIMP) and algo.chains == 2
    with pytest.raises(memnas.ConfigError, match="no sparsity level for round 3"):
        make_algorithm("imp", rounds=4).setup(pg.dna_spec(lottery_space(SMALL, rounds=3)))
    with pytest.raises(memnas.ConfigError, match="decision at 'x'"):
        make_algorithm("imp").setup(pg.dna_spec(pg.Dict(x=pg.oneof([1, 2]))))


def test_bench_quick_returns_the_figures():
    out = lth.run(quick=True)
    assert {"dense_acc", "rows", "seeds"} <= set(out)
    assert [set(r) >= {"sparsity", "imp", "reinit", "random_prune"} for r in out["rows"]]
    assert out["rows"][0]["sparsity"] == 0.0 and out["rows"][-1]["sparsity"] > 0.3
    assert 0.5 < out["dense_acc"] <= 1.0
