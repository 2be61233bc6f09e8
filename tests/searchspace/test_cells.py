"""Memory cells: published mixers as cells, every DNA builds, canonical form with 0 false merges."""

from __future__ import annotations

import random
import time

import pyglove as pg
import pytest
import torch

from memnas.evaluators import MQAR, TrainEvaluator
from memnas.hashing import canonical_json, canonicalize, symbolic_hash
from memnas.searchspace import (
    Block,
    Cell,
    LinearAttention,
    SequenceModel,
    SoftmaxAttention,
    cell_space,
    gated_deltanet_cell,
    gla_cell,
    linear_attention_cell,
    memory_cell_space,
    softmax_attention_cell,
)
from memnas.searchspace._cell_graph import SLOTS
from memnas.searchspace.cell_ops import (
    Attention,
    Conv,
    DecayedScan,
    DeltaScan,
    Gate,
    Linear,
    LinearAttn,
    Norm,
    Product,
    Sum,
)
from memnas.searchspace.mixers.gated_deltanet import GatedDeltaNet
from memnas.searchspace.mixers.gla import GATE_LOW_RANK, GatedLinearAttention
from mixertools import random_init

D = 8


def _nodes(cell: Cell, kind: type) -> list[int]:
    return [j for j, op in enumerate(cell.ops, start=1) if isinstance(op, kind)]


def _copy(dst: torch.nn.Parameter, src: torch.Tensor) -> None:
    with torch.no_grad():
        dst.copy_(src)


def _copy_attention(mixer: torch.nn.Module, cell: Cell, module: torch.nn.Module) -> None:
    q, k, v, out = _nodes(cell, Linear)
    for node, w in zip((q, k, v), mixer.qkv.weight.chunk(3)):
        _copy(module.nodes[str(node)].weight, w)
    _copy(module.nodes[str(out)].weight, mixer.out.weight)


def _copy_gated(mixer: torch.nn.Module, cell: Cell, module: torch.nn.Module) -> None:
    """GLA's / Gated DeltaNet's fused projections split over the cell's nodes."""
    d, n = mixer.d_model, lambda j: module.nodes[str(j)]
    q, k, v, gate, out = _nodes(cell, Linear)
    (scan,) = _nodes(cell, (DecayedScan, DeltaScan))
    w = mixer.in_proj.weight
    for node, rows in zip((q, k, v, gate), w[: 4 * d].chunk(4)):
        _copy(n(node).weight, rows)
    _copy(n(out).weight, mixer.out.weight)
    _copy(n(scan).norm_weight, mixer.norm_weight)
    if hasattr(mixer, "A_log"):  # Gated DeltaNet
        _copy(n(scan).gate.weight, w[4 * d:])
        _copy(n(scan).A_log, mixer.A_log)
        _copy(n(scan).dt_bias, mixer.dt_bias)
    else:
        _copy(n(scan).gate_down.weight, w[4 * d: 4 * d + GATE_LOW_RANK])
        _copy(n(scan).gate_up.weight, mixer.gate_up.weight)
        _copy(n(scan).gate_up.bias, mixer.gate_up.bias)
    for node, part in zip(_nodes(cell, Conv), range(3)):
        conv = mixer.conv.conv
        _copy(n(node).conv.weight, conv.weight[part * d:(part + 1) * d])
        _copy(n(node).conv.bias, conv.bias[part * d:(part + 1) * d])


PUBLISHED = [
    (LinearAttention(num_heads=2, feature_map="elu+1"), linear_attention_cell(2), _copy_attention),
    (LinearAttention(num_heads=1, feature_map="identity"),
     linear_attention_cell(1, "identity"), _copy_attention),
    (SoftmaxAttention(num_heads=2), softmax_attention_cell(2), _copy_attention),
    (GatedLinearAttention(num_heads=2, expand_k=1.0, conv_kernel=4), gla_cell(2, 4), _copy_gated),
    (GatedLinearAttention(num_heads=4, expand_k=1.0, conv_kernel=0), gla_cell(4, 0), _copy_gated),
    (GatedDeltaNet(num_heads=2, conv_kernel=4), gated_deltanet_cell(2, 4), _copy_gated),
    (GatedDeltaNet(num_heads=1, conv_kernel=0), gated_deltanet_cell(1, 0), _copy_gated),
]


@pytest.mark.parametrize("mixer, cell, copy", PUBLISHED, ids=[p[0].summary() for p in PUBLISHED])
def test_published_mixers_are_cells_computing_the_same_function(mixer, cell, copy) -> None:
    mod, cmod = mixer.build(D).double(), cell.build(D).double()
    random_init(mod)
    copy(mod, cell, cmod)
    for sub in (mod, *cmod.nodes.values()):
        if hasattr(sub, "chunk_size"):
            sub.chunk_size = 4  # cross chunk boundaries (T = 11)
    x = torch.randn(2, 11, D, dtype=torch.float64)
    torch.testing.assert_close(cmod(x), mod(x), rtol=0, atol=1e-9)
    # Same parameters, same state: the costs agree too.
    assert sum(p.numel() for p in cmod.parameters()) == sum(p.numel() for p in mod.parameters())
    assert cell.state_numbers(D, 32) == mixer.state_numbers(D, 32)


def _forward(cell: Cell, seed: int, x: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(seed)
    module = cell.build(D).double()
    with torch.no_grad():
        return module(x)


SPACES = {
    "default": cell_space(),  # NAS-Bench-101's 7 nodes, 9 edges, every primitive
    "commutative": cell_space(num_nodes=6, max_edges=None, ops=[  # sums, products and slots
        Sum(), Product(), Linear(), Gate(fn="sigmoid"), LinearAttn(num_heads=2),
        DeltaScan(num_heads=2, gated=True)]),
}
# The same choices as plain specs, to draw many cells fast (pg.random_sample takes ~50 ms).
CHOICES = {
    "default": (7, 9, [Linear(), Gate(fn="sigmoid"), Gate(fn="silu"), Product(), Sum(), Conv(),
                       Norm(), *(op(num_heads=h) for op in (LinearAttn, DecayedScan, Attention)
                                 for h in (1, 2, 4)),
                       *(DeltaScan(num_heads=h, gated=g) for h in (1, 2, 4)
                         for g in (True, False))]),
    "commutative": (6, None, [Sum(), Product(), Linear(), Gate(fn="sigmoid"),
                              LinearAttn(num_heads=2), DeltaScan(num_heads=2, gated=True)]),
}


def _random_cells(space: str, count: int, seed: int) -> list[Cell]:
    n, cap, ops = CHOICES[space]
    rng = random.Random(seed)
    return [Cell(ops=[rng.choice(ops) for _ in range(n - 2)],
                 matrix=[[int(j > i and rng.random() < 0.5) for j in range(n)] for i in range(n)],
                 max_edges=cap) for _ in range(count)]


def _renumbered(cell: Cell, rng: random.Random) -> Cell:
    """The same graph under a random node order that keeps every slot's input."""
    m, n = cell.adjacency(), len(cell.ops) + 2
    preds = {j: [i for i in range(j) if m[i][j]] for j in range(n)}
    before = {j: set(ps) for j, ps in preds.items()}
    for j in range(1, n - 1):
        if cell.ops[j - 1].COMBINE == SLOTS:  # keep the inputs' order: they fill the slots
            for a, b in zip(preds[j], preds[j][1:]):
                before[b].add(a)
    order, placed = [0], {0}
    while len(order) < n - 1:
        v = rng.choice([v for v in range(1, n - 1) if v not in placed and before[v] <= placed])
        order.append(v)
        placed.add(v)
    order.append(n - 1)
    pos = {v: i for i, v in enumerate(order)}
    matrix = [[0] * n for _ in range(n)]
    for j, ps in preds.items():
        for i in ps:
            matrix[pos[i]][pos[j]] = 1
    return Cell(ops=[cell.ops[v - 1] for v in order[1:-1]], matrix=matrix,
                max_edges=cell.max_edges)


@pytest.mark.parametrize("space", sorted(SPACES))
def test_every_dna_builds_a_causal_module(space: str) -> None:
    first = pg.materialize(SPACES[space], pg.dna_spec(SPACES[space]).first_dna())
    n = len(first.ops) + 2
    full = first.clone(override={"matrix": [[int(j > i) for j in range(n)] for i in range(n)]})
    cells = [first, full, full.clone(override={"max_edges": None})]
    cells += list(pg.random_sample(SPACES[space], num_examples=3, seed=2))
    cells += _random_cells(space, 20, seed=2)
    x = torch.randn(1, 6, D, dtype=torch.float64)
    later = x.clone()
    later[:, 4:] = torch.randn(1, 2, D, dtype=torch.float64)
    for cell in cells:
        y = _forward(cell, 0, x)
        assert y.shape == x.shape and torch.isfinite(y).all(), cell.summary()
        torch.testing.assert_close(_forward(cell, 0, later)[:, :4], y[:, :4])  # causal
    assert any(not c.analysis().valid for c in cells)  # the space has empty cells ...
    assert not _forward(cells[0], 0, x).any()  # ... which output zeros


@pytest.mark.parametrize("space, count", [("default", 200), ("commutative", 60)])
def test_canonical_equal_cells_compute_the_same_function(space: str, count: int) -> None:
    """0 false merges: every cell, a renumbering of it, and all cells with its canonical
    form compute the canonical cell's function, with their parameters tied through the
    canonical labelling (``build`` draws them in canonical order: the same seed ties them)."""
    rng = random.Random(0)
    groups: dict[str, list[Cell]] = {}
    for cell in _random_cells(space, count, seed=3):
        for c in (cell, _renumbered(cell, rng)):
            groups.setdefault(canonical_json(c), []).append(c)  # what symbolic_hash hashes
    assert len(groups) < count  # renumbered twins, dead nodes, empty cells, identities
    x = torch.randn(1, 5, D, dtype=torch.float64)
    checked = 0
    for key, members in groups.items():
        want = _forward(pg.from_json_str(key), 7, x)
        for c in members[:4]:
            torch.testing.assert_close(_forward(c, 7, x), want, rtol=1e-9, atol=1e-9)
            checked += 1
    assert checked >= count


def test_isomorphic_cells_hash_equal() -> None:
    gdn = gated_deltanet_cell(2, 4)
    # The same Gated DeltaNet with the output gate's branch numbered first.
    ops = [Linear(), Gate(fn="silu"), Linear(), Linear(), Linear(), Conv(), Conv(), Conv(),
           Gate(fn="silu"), Gate(fn="silu"), Gate(fn="silu"), DeltaScan(num_heads=2),
           Product(), Linear()]
    other = Cell.from_inputs(ops, [[0], [1], [0], [0], [0], [3], [4], [5], [6], [7], [8],
                                   [0, 9, 10, 11], [2, 12], [13]], [14])
    assert pg.to_json_str(gdn) != pg.to_json_str(other)
    assert symbolic_hash(gdn) == symbolic_hash(other)
    x = torch.randn(1, 6, D, dtype=torch.float64)
    torch.testing.assert_close(_forward(gdn, 1, x), _forward(other, 1, x))


def test_dead_nodes_identities_and_commutative_inputs() -> None:
    la = linear_attention_cell(2)
    # Node 1 reaches no output; node 7 no input reaches (its edge to the output is dropped).
    dead = Cell.from_inputs([Norm(), Linear(), Linear(), Linear(), LinearAttn(num_heads=2),
                             Linear(), Linear()],
                            [[0], [0], [0], [0], [2, 3, 4], [5], []], [6, 7])
    assert symbolic_hash(dead) == symbolic_hash(la)
    assert dead.summary() == la.summary() and dead.state_numbers(D, 8) == la.state_numbers(D, 8)
    # Single-input sums and products pass their input on; not when it would double it.
    wrapped = Cell.from_inputs([Linear(), Sum(), Linear(), Linear(), LinearAttn(num_heads=2),
                                Product(), Linear()],
                               [[0], [1], [0], [0], [2, 3, 4], [5], [6]], [7])
    assert symbolic_hash(wrapped) == symbolic_hash(la)
    doubled = Cell.from_inputs([Linear(), Sum(), Linear()], [[0], [1], [1, 2]], [3])
    plain = Cell.from_inputs([Linear(), Linear()], [[0], [1]], [2])
    assert symbolic_hash(doubled) != symbolic_hash(plain)
    # Commutative inputs: a product's (and the output's) inputs have no order.
    a = Cell.from_inputs([Linear(), Gate(fn="sigmoid"), Product()], [[0], [0], [1, 2]], [3])
    b = Cell.from_inputs([Gate(fn="sigmoid"), Linear(), Product()], [[0], [0], [1, 2]], [3])
    assert pg.to_json_str(a) != pg.to_json_str(b) and symbolic_hash(a) == symbolic_hash(b)
    # Slots are ordered: q and k from different nodes swapped is another function.
    qk = [Linear(), Conv(), Linear(), LinearAttn(num_heads=1)]
    q_lin = Cell.from_inputs(qk, [[0], [0], [0], [1, 2, 3]], [4])
    q_conv = Cell.from_inputs([Conv(), Linear(), Linear(), LinearAttn(num_heads=1)],
                              [[0], [0], [0], [1, 2, 3]], [4])
    assert symbolic_hash(q_lin) != symbolic_hash(q_conv)
    x = torch.randn(1, 6, D, dtype=torch.float64)
    assert not torch.allclose(_forward(q_lin, 0, x), _forward(q_conv, 0, x))


def test_different_cells_hash_differently() -> None:
    cells = [linear_attention_cell(1), linear_attention_cell(2), softmax_attention_cell(2),
             gla_cell(2, 4), gla_cell(2, 0), gated_deltanet_cell(2, 4),
             Cell(ops=[], matrix=[[0, 1], [0, 0]]), Cell(ops=[], matrix=[[0, 0], [0, 0]])]
    assert len({symbolic_hash(c) for c in cells}) == len(cells)


def test_invalid_cells_are_the_empty_cell() -> None:
    cut = Cell.from_inputs([Linear(), Linear()], [[0], []], [2])  # output not reachable
    capped = Cell.from_inputs([Linear(), Linear()], [[0], [0, 1]], [1, 2], max_edges=4)
    assert cut.summary() == capped.summary() == "cell(empty)"
    assert symbolic_hash(cut) == symbolic_hash(capped)
    assert canonicalize(capped.clone(override={"max_edges": 5})).summary() != "cell(empty)"
    with pytest.raises(ValueError, match=r"matrix\[1\]\[0\]"):
        Cell(ops=[Linear()], matrix=[[0, 1, 0], [1, 0, 1], [0, 0, 0]]).build(D)
    with pytest.raises(ValueError, match="3x3"):
        Cell(ops=[Linear()], matrix=[[0, 1], [0, 0]]).build(D)
    with pytest.raises(ValueError, match="num_heads"):
        linear_attention_cell(3).build(D)


def test_canonical_form_is_idempotent_fast_and_json_stable() -> None:
    cells = _random_cells("default", 200, seed=4)
    start = time.perf_counter()
    for c in cells:
        c.analysis()
    per_cell = (time.perf_counter() - start) / len(cells)
    assert per_cell < 2e-3, f"canonical labelling took {per_cell * 1e6:.0f} us per cell"
    for c in cells[:20]:
        canonical = canonicalize(c)
        assert pg.eq(canonicalize(canonical), canonical)
        text = pg.to_json_str(c)
        assert pg.to_json_str(pg.from_json_str(text)) == text
        assert pg.eq(pg.from_json_str(text), c)


def test_cells_train_in_sequence_models_with_costs() -> None:
    space = memory_cell_space(16, max_layers=2, d_model=(8,), mlp_ratio=(1,), max_len=8)
    sample = next(pg.random_sample(space, seed=0))
    assert all(isinstance(b.mixer, Cell) and len(b.mixer.ops) == 5 for b in sample.layers)
    assert sample.build()(torch.zeros(2, 8, dtype=torch.long)).shape == (2, 8, 16)
    model = SequenceModel(vocab_size=16, d_model=8, max_len=8, layers=[
        Block(mixer=gated_deltanet_cell(2, 4), mlp_ratio=1),
        Block(mixer=linear_attention_cell(2), mlp_ratio=1)])
    assert model.summary().startswith("d=8 | cell(linear,conv4,silu")
    trainer = TrainEvaluator(task=MQAR(vocab_size=16, seq_len=8, num_kv_pairs=2), steps=2,
                             batch_size=4, eval_examples=4, report_every=1)
    m = trainer(model)
    assert 0.0 <= m.metrics["accuracy"] <= 1.0
    assert m.costs["params"] > 0 and m.costs["flops_per_token"] > 0
    # Gated DeltaNet: 2 heads of 4x4 and 3 convs' last 3 inputs; linear attention: 2 x 4 x (4 + 1).
    assert m.costs["state_bytes"] == 4 * (8 * 8 // 2 + 3 * 8 * 3 + 2 * 4 * 5)
    with pytest.raises(ValueError, match="num_heads=4 does not divide"):
        memory_cell_space(16, d_model=(6,))
