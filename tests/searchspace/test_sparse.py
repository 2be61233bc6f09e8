"""Sparse subnetworks: exact pruning counts, scopes, the node space, spaces and generators."""

import pyglove as pg
import pytest
import torch

from memnas.algorithms import ALGORITHMS, make_algorithm
from memnas.searchspace.sparse import (
    MLP,
    SparseNet,
    apply_masks,
    full_masks,
    node_masks,
    node_space,
    prunable,
    prune,
    random_like,
    remaining,
    sparse_memory_space,
    sparse_space,
)

LENET = MLP(in_features=64, hidden=[300, 100], out_features=10)


def _weights(seed=0):
    torch.manual_seed(seed)
    module = LENET.build()
    return module, dict(module.named_parameters())


def test_layerwise_pruning_removes_exactly_the_fraction_of_kept_weights_each_round():
    module, w = _weights()
    masks = full_masks(module)
    for _ in range(4):
        before = {n: int(m.sum()) for n, m in masks.items()}
        masks = prune(w, masks, 0.2, scope="layer")
        for n in ["layers.0.weight", "layers.1.weight"]:
            assert int(masks[n].sum()) == before[n] - round(0.2 * before[n])
        assert bool(masks["layers.2.weight"].all())  # output layer excluded by default
    body = 64 * 300 + 300 * 100
    kept = int(masks["layers.0.weight"].sum()) + int(masks["layers.1.weight"].sum())
    assert abs(kept / body - 0.8 ** 4) < 1e-3


def test_magnitude_pruning_keeps_the_largest_weights_and_never_revives_pruned_ones():
    module, w = _weights()
    first = prune(w, full_masks(module), 0.5)
    second = prune(w, first, 0.5)
    for n in ["layers.0.weight", "layers.1.weight"]:
        a = w[n].detach().abs()
        assert a[second[n]].min() >= a[~second[n]].max()
        assert not bool((second[n] & ~first[n]).any())


def test_global_scope_ranks_across_layers_and_output_rate_prunes_the_output_at_half_rate():
    module, w = _weights()
    masks = prune(w, full_masks(module), 0.6, scope="global", output_rate=0.5)
    body = ["layers.0.weight", "layers.1.weight"]
    removed = sum(m.numel() - int(m.sum()) for n, m in masks.items() if n in body)
    assert removed == round(0.6 * (64 * 300 + 300 * 100))
    # Default init has larger weights in the 64-input layer: global keeps more of it.
    frac = [float(masks[n].float().mean()) for n in body]
    assert frac[0] > frac[1]
    kept_threshold = min(w[n].detach().abs()[masks[n]].min() for n in body)
    pruned_max = max(w[n].detach().abs()[~masks[n]].max() for n in body)
    assert kept_threshold >= pruned_max
    out = masks["layers.2.weight"]
    assert out.numel() - int(out.sum()) == round(0.3 * 1000)


def test_random_like_keeps_per_layer_counts_but_moves_the_weights():
    module, w = _weights()
    masks = prune(w, full_masks(module), 0.9)
    rnd = random_like(masks, torch.Generator().manual_seed(0))
    for n in masks:
        assert int(rnd[n].sum()) == int(masks[n].sum())
    assert not torch.equal(rnd["layers.0.weight"], masks["layers.0.weight"])


def test_sparsenet_build_zeroes_pruned_weights_and_keeps_them_zero_under_adamw():
    spec = SparseNet(parent=LENET, sparsity=[0.5, 0.9, 0.2], criterion="random")
    torch.manual_seed(0)
    model = spec.build()
    assert [round(float(model.masks[n].float().mean()), 3) for n in prunable(model)] == \
        [0.5, 0.1, 0.8]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    params = dict(model.named_parameters())
    for n, m in model.masks.items():
        assert float(params[n].detach()[~m].abs().max()) == 0.0
        assert float(params[n].detach()[m].abs().min()) > 0.0


def test_node_masks_drop_whole_units_with_their_rows_columns_and_biases():
    torch.manual_seed(0)
    module = LENET.build()
    masks = node_masks(module, [[0, 3], [9]], groups=10)
    apply_masks(module, masks)
    alive0 = torch.zeros(300, dtype=torch.bool)
    alive0[0:30] = alive0[90:120] = True
    assert torch.equal(masks["layers.0.weight"].all(dim=1), alive0)
    assert torch.equal(masks["layers.1.weight"].any(dim=0), alive0)
    assert int(masks["layers.1.weight"].any(dim=1).sum()) == 10
    assert float(module.layers[0].bias.detach()[~alive0].abs().max()) == 0.0
    expected = (60 * 64 + 60 * 10 + 10 * 10) / (64 * 300 + 300 * 100 + 1000)
    assert remaining(masks) == pytest.approx(expected)
    with pytest.raises(ValueError, match="one list per hidden layer"):
        node_masks(module, [[0]], groups=10)


def test_bad_values_are_named():
    with pytest.raises(ValueError, match="criterion must be one of"):
        SparseNet(parent=LENET, criterion="l1").build()
    with pytest.raises(ValueError, match="per-layer sparsity needs scope='layer'"):
        SparseNet(parent=LENET, sparsity=[0.5, 0.5, 0.5], scope="global").build()
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        SparseNet(parent=LENET, sparsity=1.0).build()


@pytest.mark.parametrize("space", [
    sparse_space(LENET), sparse_space(LENET, per_layer=True), node_space(LENET, keep=[4, 6])])
def test_spaces_work_with_random_sample_and_every_registered_generator(space):
    for candidate in pg.random_sample(space, num_examples=3, seed=0):
        assert isinstance(candidate.build(), torch.nn.Module)
    general = {"random", "evolution", "nsga2", "mcts", "tpe", "optuna_nsga2"}  # not imp, darts
    for name in sorted(general & set(ALGORITHMS)):
        algo = make_algorithm(name, seed=0)
        algo.setup(pg.dna_spec(space))
        for i in range(4):
            dna = algo.propose()
            model = pg.materialize(space, dna).build()
            algo.feedback(dna, (float(i), -remaining(model.masks)) if algo.multi_objective
                          else float(i))


def test_node_space_keeps_the_chosen_number_of_groups():
    candidate = next(pg.random_sample(node_space(LENET, keep=[4, 6]), seed=3))
    assert [len(u) for u in candidate.units] == [4, 6]
    model = candidate.build()
    assert int(model.masks["layers.0.weight"].all(dim=1).sum()) == 120


def test_sparse_memory_models_build_and_mask_their_linear_layers():
    space = sparse_memory_space(sparsity=(0.8,))
    for candidate in pg.random_sample(space, num_examples=2, seed=0):
        model = candidate.build()
        tokens = torch.randint(0, 32, (2, 16))
        assert model(tokens).shape[:2] == (2, 16)
        names = prunable(model)
        body = names[:-1]
        kept = sum(int(model.masks[n].sum()) for n in body) / sum(model.masks[n].numel()
                                                                    for n in body)
        if candidate.scope == "layer":
            assert kept == pytest.approx(0.2, abs=0.01)
        params = dict(model.named_parameters())
        assert all(float(params[n].detach()[~model.masks[n]].abs().sum()) == 0.0 for n in names)


def test_mlp_defaults_to_lenet_300_100():
    net = MLP()  # the README's default parent: LeNet-300-100 on 28 x 28 MNIST images
    assert net.summary() == "MLP 784-300-100-10"
    module = net.build()
    assert [(l.in_features, l.out_features) for l in module.layers] == \
        [(784, 300), (300, 100), (100, 10)]
    assert sum(p.numel() for p in module.parameters()) == 266_610
