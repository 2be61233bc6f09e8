"""Modular arithmetic for grokking: the split, the masked AdamW trainer, IMP through a store."""

import numpy as np
import pytest
import torch

import memnas
from memnas.algorithms.lottery import LotteryTicketIMP, lottery_space
from memnas.errors import ConfigError
from memnas.evaluators import ModularArithmetic, ModularMLP, ModularTrainEvaluator
from memnas.evaluators.modular import train_modular
from memnas.measurement import Context
from memnas.searchspace.sparse import SparseNet, full_masks, prunable

TASK = ModularArithmetic(p=23, train_fraction=0.5)
TINY = ModularMLP(p=23, embed=16, hidden=32)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("op", ["+", "-", "*", "x", "/"])
def test_split_covers_every_pair_once_with_the_right_answers(op):
    split = ModularArithmetic(p=13, op=op, train_fraction=0.3).split()
    x = np.concatenate([split.x_train, split.x_heldout])
    y = np.concatenate([split.y_train, split.y_heldout])
    pairs = {(int(a), int(b)) for a, b in x}
    n = 13 * 12 if op == "/" else 13 * 13
    assert len(x) == len(pairs) == n and len(split.x_train) == round(0.3 * n)
    a, b = x[:, 0], x[:, 1]
    if op == "/":
        assert (b != 0).all() and np.array_equal((y * b) % 13, a)
    else:
        expect = {"+": a + b, "-": a - b, "*": a * b, "x": a * b}[op] % 13
        assert np.array_equal(y, expect)
    assert y.min() >= 0 and y.max() < 13


def test_split_is_fixed_by_its_seed():
    a, b = ModularArithmetic(seed=0).split(), ModularArithmetic(seed=0).split()
    c = ModularArithmetic(seed=1).split()
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_heldout, b.y_heldout)
    assert not np.array_equal(a.x_train, c.x_train)
    assert (len(a.x_train), len(a.x_heldout)) == (3764, 5645)  # 40% of 97 * 97 trained


def test_bad_tasks_name_the_value():
    with pytest.raises(ConfigError, match="op='%'"):
        ModularArithmetic(op="%").split()
    with pytest.raises(ConfigError, match="prime p, got 15"):
        ModularArithmetic(p=15, op="/").split()
    with pytest.raises(ConfigError, match="train_fraction=1.0"):
        ModularArithmetic(p=7, train_fraction=1.0).split()
    with pytest.raises(ConfigError, match="p=31 does not match the task's p=23"):
        ModularTrainEvaluator(task=TASK)(ModularMLP(p=31, embed=4, hidden=4))


def test_the_trainer_fits_the_training_pairs_quickly():
    m = ModularTrainEvaluator(task=TASK, steps=150, lr=1e-2, weight_decay=0.1,
                              report_every=25)(TINY, Context(seed=0))
    assert m.metrics["train_accuracy"] == 1.0
    assert m.costs["steps"] == 150 and m.costs["remaining"] == 1.0
    names = {p["name"] for p in m.curve}
    assert names == {"loss", "train_accuracy", "heldout_accuracy"}
    train = [p["value"] for p in m.curve if p["name"] == "train_accuracy"]
    assert train[0] < 0.5 and len(train) == 6
    # steps_to_target is the first curve step at 95% held out, or the steps run if none.
    held = {p["step"]: p["value"] for p in m.curve if p["name"] == "heldout_accuracy"}
    hits = [s for s in sorted(held) if held[s] >= 0.95]
    assert m.metrics["reached_target"] == float(bool(hits))
    assert m.metrics["steps_to_target"] == (hits[0] if hits else 150)


def test_masks_hold_on_every_layer_and_costs_are_known_before_training():
    candidate = SparseNet(parent=TINY, sparsity=0.5)
    evaluator = ModularTrainEvaluator(task=TASK, steps=40, return_weights=True)
    m = evaluator(candidate, Context(seed=3))
    art = m.artifact
    assert art["prunable"] == ["embed.weight", "hidden.weight", "out.weight"]
    for n in art["prunable"]:
        assert (art["final"][n][~art["masks"][n]] == 0).all()
    assert art["masks"]["embed.weight"].mean() == 0.5 and art["masks"]["out.weight"].all()
    before = evaluator.costs(candidate)
    assert before == {k: m.costs[k] for k in before}
    assert m.costs["sparsity"] == pytest.approx(0.5)


def test_stopping_after_the_target_and_rewinding_to_step_zero():
    split = TASK.split()
    torch.manual_seed(0)
    model = TINY.build()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    run = train_modular(model, full_masks(model), split, steps=400, lr=1e-2,
                        weight_decay=1.0, rewind_step=0, report_every=10, target=0.0,
                        steps_after_target=20)
    assert run.steps_to_target == 10 and run.steps_run == 30
    assert all(torch.equal(run.rewind[k], init[k]) for k in init)
    assert not torch.equal(run.final["hidden.weight"], init["hidden.weight"])
    assert prunable(model)[-1] == "out.weight"


def test_imp_on_the_grokking_task_runs_through_an_experiment(sqlite_url):
    space = lottery_space(TINY, rounds=2, rate=0.5)
    algorithm = LotteryTicketIMP(seed=0, chains=1, rounds=2, rate=0.5,
                                 controls=["random_prune"])
    result = memnas.Experiment(
        name="grok", space=space, algorithm=algorithm, store=sqlite_url,
        evaluator=ModularTrainEvaluator(task=TASK, steps=30, report_every=10),
        objectives={"accuracy": "max", "remaining": "min"}).run(max_trials=5, executor="local")
    trials = result.trials()
    assert len(trials) == 3 and set(trials["status"]) == {"completed"}
    assert set(result.artifact(1, "input")) >= {"masks", "weights", "start_step"}
    assert set(result.artifact(0)) >= {"masks", "final", "rewind"}
    assert {"train_accuracy", "heldout_accuracy"} <= set(result.curve(1)["name"])
    assert sorted(trials["sparsity"].round(3)) == [0.0, 0.5, 0.5]


def test_the_fast_forward_equals_the_concatenated_embeddings_reference():
    torch.manual_seed(0)
    fast, ref = TINY.build(), TINY.build()
    ref.load_state_dict(fast.state_dict())
    x = torch.from_numpy(TASK.split().x_train[:64])
    out = fast(x)
    expect = ref.out(torch.relu(ref.hidden(ref.embed.weight.t()[x].reshape(len(x), -1))))
    torch.testing.assert_close(out, expect)
    out.square().sum().backward()
    expect.square().sum().backward()
    for (name, a), b in zip(fast.named_parameters(), ref.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)
