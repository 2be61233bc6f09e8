"""Tests of the ELM neuron, HMT segment memory, EM-LLM episodic memory and dense Hopfield."""

from __future__ import annotations

import math
import random
import statistics

import pyglove as pg
import pytest
import torch
import torch.nn.functional as F

from memnas.hashing import symbolic_hash
from memnas.searchspace import memory_space, registered_mixers
from memnas.searchspace.mixers import HopfieldLayer, LinearAttention, Mixer, SoftmaxAttention
from memnas.searchspace.mixers.elm import ELMNeuron
from memnas.searchspace.mixers.episodic import EpisodicMemory
from memnas.searchspace.mixers.hmt import SegmentMemory
from memnas.searchspace.mixers.hopfield import DenseHopfield
from mixertools import random_init as _random_init

D_MODEL = 8
F64 = torch.float64


def _build64(spec: Mixer, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    module = spec.build(D_MODEL).double()
    _random_init(module, seed)
    return module


# ----------------------------------------------------------------------------- ELM

ELMS = [ELMNeuron(m, h, tau) for m, h, tau in [(16, 32, False), (32, 64, True), (64, 32, True)]]


def _elm_slow(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The ELM recurrence written out per sequence and per token."""
    kappa = torch.exp(-1.0 / module.log_tau.exp())
    w1x, b1 = module.mlp_in.weight, module.mlp_in.bias
    w1m, w2, b2 = module.mlp_mem.weight, module.mlp_out.weight, module.mlp_out.bias
    out = torch.zeros(x.shape[0], x.shape[1], module.readout.weight.shape[0], dtype=x.dtype)
    for b in range(x.shape[0]):
        m = torch.zeros(module.num_memory, dtype=x.dtype)
        for t in range(x.shape[1]):
            hidden = torch.relu(w1x @ x[b, t] + b1 + w1m @ (kappa * m))
            delta = torch.tanh(w2 @ hidden + b2)
            m = kappa * m + (1 - kappa) * delta
            out[b, t] = module.readout.weight @ m
    return out


@pytest.mark.parametrize("spec", ELMS, ids=lambda s: s.summary())
def test_elm_matches_slow_loop(spec: ELMNeuron) -> None:
    module = _build64(spec)
    assert not hasattr(module, "reference_forward") and module.per_token_only
    x = torch.randn(2, 11, D_MODEL, dtype=F64)
    torch.testing.assert_close(module(x), _elm_slow(module, x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("learn_tau", [False, True])
def test_elm_timescales_and_state(learn_tau: bool) -> None:
    spec = ELMNeuron(num_memory=16, mlp_hidden=32, learn_tau=learn_tau)
    module = spec.build(D_MODEL)
    tau = module.log_tau.exp()
    torch.testing.assert_close(tau, torch.logspace(0, 3, 16), rtol=1e-5, atol=0)
    assert ("log_tau" in dict(module.named_parameters())) == learn_tau
    memories = module.memories(torch.randn(3, 5, D_MODEL))
    assert memories.shape == (3, 5, 16)
    assert spec.state_numbers(D_MODEL, 10**6) == memories[0, -1].numel() == 16
    assert spec.summary() == ("elm(m=16,h=32,tau)" if learn_tau else "elm(m=16,h=32)")


# ----------------------------------------------------------------------------- HMT

HMTS = [
    SegmentMemory(SoftmaxAttention(num_heads=1), segment=4, num_memories=1),
    SegmentMemory(SoftmaxAttention(num_heads=2), segment=3, num_memories=2),
    SegmentMemory(LinearAttention(num_heads=2), segment=4, num_memories=2),
    SegmentMemory(LinearAttention(num_heads=1, feature_map="identity"), segment=2, num_memories=3),
]


def _hmt_slow(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Segment by segment: inner mixer alone on each segment, then recall token by token."""
    d, size, n_mem = x.shape[-1], module.segment, module.num_memories
    hs, mems = [], []
    for j in range(math.ceil(x.shape[1] / size)):
        h = module.inner(x[:, j * size : (j + 1) * size])  # the last segment is shorter
        hs.append(h)
        weights = torch.softmax(module.pool_key(h) @ module.pool_query / math.sqrt(d), dim=-1)
        mems.append((weights[..., None] * module.pool_value(h)).sum(dim=1))
    out = []
    for j, h in enumerate(hs):
        past = mems[max(0, j - n_mem) : j]
        for i in range(h.shape[1]):
            y = h[:, i]
            if past:
                mem = torch.stack(past, dim=1)  # (B, n, D)
                keys = torch.cat([module.null_key.expand(len(y), 1, d), module.recall_key(mem)], 1)
                values = torch.cat([torch.zeros_like(mem[:, :1]), module.recall_value(mem)], 1)
                q = module.recall_query(y)
                w = torch.softmax(torch.einsum("bd,bnd->bn", q, keys) / math.sqrt(d), dim=-1)
                y = y + module.recall_out(torch.einsum("bn,bnd->bd", w, values))
            out.append(y)
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("spec", HMTS, ids=lambda s: s.summary())
def test_hmt_matches_slow_loop(spec: SegmentMemory) -> None:
    module = _build64(spec)
    x = torch.randn(2, 11, D_MODEL, dtype=F64)
    torch.testing.assert_close(module(x), _hmt_slow(module, x), rtol=0, atol=1e-10)


def test_hmt_first_segment_is_the_inner_mixer_alone() -> None:
    module = _build64(HMTS[0])
    x = torch.randn(2, 9, D_MODEL, dtype=F64)
    y = module(x)
    torch.testing.assert_close(y[:, :4], module.inner(x[:, :4]), rtol=0, atol=1e-12)
    assert not torch.allclose(y[:, 4:8], module.inner(x[:, 4:8]))  # recall adds something


def test_hmt_state_numbers() -> None:
    spec = SegmentMemory(SoftmaxAttention(num_heads=2), segment=16, num_memories=4)
    assert spec.state_numbers(32, 1000) == 2 * 16 * 32 + 4 * 32 + 32 + 2
    assert spec.state_numbers(32, 5) == 2 * 5 * 32 + 4 * 32 + 32 + 2
    linear = SegmentMemory(LinearAttention(num_heads=2), segment=32, num_memories=8)
    assert linear.state_numbers(32, 1000) == 2 * 16 * 17 + 8 * 32 + 32 + 2
    assert linear.state_numbers(32, 10**6) == linear.state_numbers(32, 1000)
    assert SegmentMemory(_Unsized(), 4, 2).state_numbers(32, 100) is None
    assert spec.summary() == "hmt(attn(h=2),s=16,n=4)"
    assert pg.dna_spec(SegmentMemory.space()).space_size == 3 * 2 * 2


class _Unsized(Mixer):
    """A mixer that does not say its state size."""

    def build(self, d_model: int) -> torch.nn.Module:
        return torch.nn.Identity()


# ----------------------------------------------------------------------------- EM-LLM

EMS = [
    EpisodicMemory(num_heads=1, window=3, k_events=1, gamma=0.5, max_event=4),
    EpisodicMemory(num_heads=2, window=3, k_events=2, gamma=0.0, max_event=5),
    EpisodicMemory(num_heads=2, window=4, k_events=4, gamma=1.0, max_event=3),
    EpisodicMemory(num_heads=1, window=2, k_events=2, gamma=-0.5, max_event=6),
]


def _em_events(k: torch.Tensor, window: int, gamma: float, cap: int) -> list[int]:
    """One sequence's event index per token, token by token."""
    s = [0.0]
    for t in range(1, k.shape[0]):
        s.append(1.0 - F.cosine_similarity(k[t], k[max(0, t - window) : t].mean(0), dim=0).item())
    ev, last = [], 0
    for t in range(k.shape[0]):
        prev = s[max(1, t - window) : t]
        high = len(prev) >= 2 and s[t] > statistics.fmean(prev) + gamma * statistics.pstdev(prev)
        new = t == 0 or high or t - last >= cap
        last = t if new else last
        ev.append((ev[-1] + int(new)) if ev else 0)
    return ev


def _em_slow(module: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Per sequence and token: events, top-k retrieval with neighbours, one softmax.

    Returns the output and how many (query, key) pairs came from retrieval.
    """
    q, k, v = module.qkv(x).chunk(3, dim=-1)
    w, heads, d = module.window, module.num_heads, x.shape[-1]
    dh = d // heads
    out, retrieved_pairs = torch.zeros_like(x), 0
    for b in range(x.shape[0]):
        ev = _em_events(k[b], w, module.gamma, module.max_event)
        members: dict[int, list[int]] = {}
        for pos, e in enumerate(ev):
            members.setdefault(e, []).append(pos)
        for t in range(x.shape[1]):
            closed = range(ev[t])
            cands = [e for e in closed if members[e][0] <= t - w]
            score = {e: (q[b, t] @ k[b, members[e]].mean(0)).item() for e in cands}
            top = sorted(cands, key=lambda e: -score[e])[: module.k_events]
            chosen = {n for e in top for n in (e - 1, e, e + 1) if n in closed}
            far = [p for e in chosen for p in members[e] if p <= t - w]
            retrieved_pairs += len(far)
            keys = sorted(far) + list(range(max(0, t - w + 1), t + 1))
            for h in range(heads):
                sl = slice(h * dh, (h + 1) * dh)
                att = torch.softmax(k[b, keys, sl] @ q[b, t, sl] / math.sqrt(dh), dim=0)
                out[b, t, sl] = att @ v[b, keys, sl]
    return module.out(out), retrieved_pairs


@pytest.mark.parametrize("spec", EMS, ids=lambda s: s.summary())
def test_episodic_matches_slow_loop(spec: EpisodicMemory) -> None:
    module = _build64(spec)
    x = torch.randn(2, 29, D_MODEL, dtype=F64)
    expected, retrieved = _em_slow(module, x)
    assert retrieved > 0  # the retrieval path is exercised
    torch.testing.assert_close(module(x), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("spec", EMS, ids=lambda s: s.summary())
def test_episodic_events_match_slow_loop(spec: EpisodicMemory) -> None:
    module = spec.build(D_MODEL)
    k = torch.randn(16, 40, D_MODEL, generator=torch.Generator().manual_seed(3), dtype=F64)
    k[:, 20:] += 2.0 * torch.randn(16, 1, D_MODEL, dtype=F64)  # a change of topic
    events = module.events(k)
    for b in range(16):
        assert events[b].tolist() == _em_events(k[b], spec.window, spec.gamma, spec.max_event)


def test_episodic_event_cap_and_state() -> None:
    spec = EpisodicMemory(num_heads=1, window=3, k_events=1, gamma=1e9, max_event=4)
    module = spec.build(D_MODEL)
    k = torch.randn(1, 10, D_MODEL)
    assert module.events(k)[0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert spec.state_numbers(32, 100) == 2 * 100 * 32
    assert spec.summary() == "em(h=1,w=3,k=1,g=1e+09,e=4)"


# ----------------------------------------------------------------------------- Hopfield

BETAS = [0.25, 0.5, 1.0, 2.0, "learned"]


def test_hopfield_layer_is_unchanged_so_stored_candidates_keep_their_json() -> None:
    space = HopfieldLayer.space()
    spec = pg.dna_spec(space)
    assert spec.space_size == 15 and len(spec.elements) == 2
    for i, heads in enumerate([1, 2, 4]):
        for j, beta in enumerate(BETAS):
            c = pg.materialize(space, pg.DNA([i, j]))
            assert (c.num_heads, c.beta) == (heads, beta)
    # No new field: the JSON (and so the stored hash) of a HopfieldLayer is what it was.
    assert set(HopfieldLayer(2, 0.5).sym_init_args.keys()) == {"num_heads", "beta"}
    assert HopfieldLayer(2, 0.5).summary() == "hopfield(h=2,b=0.5)"


def test_dense_and_softmax_hopfield_differ_and_hash_apart() -> None:
    torch.manual_seed(0)
    soft = HopfieldLayer(num_heads=2, beta=1.0).build(D_MODEL)
    dense = DenseHopfield(num_heads=2, degree=3).build(D_MODEL)
    dense.load_state_dict(soft.state_dict())
    x = torch.randn(2, 9, D_MODEL)
    assert not torch.allclose(soft(x), dense(x))
    assert symbolic_hash(DenseHopfield(2, 3)) != symbolic_hash(DenseHopfield(2, 4))
    assert symbolic_hash(DenseHopfield(2, 3)) != symbolic_hash(HopfieldLayer(2, 1.0))


DENSE = [DenseHopfield(1, degree=2), DenseHopfield(2, degree=3), DenseHopfield(2, degree=4),
         DenseHopfield(1, degree=1)]


def _dense_slow(module: torch.nn.Module, x: torch.Tensor, degree: int) -> torch.Tensor:
    heads, d = module.num_heads, x.shape[-1]
    dh = d // heads
    q, k = module.query(x), module.key(x)
    out = torch.zeros_like(x)
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            for h in range(heads):
                sl = slice(h * dh, (h + 1) * dh)
                keys = k[b, : t + 1, sl]
                f = torch.relu(keys @ q[b, t, sl]) ** degree
                out[b, t, sl] = (f / (f.sum() + 1e-6)) @ (keys @ module.value[h])
    return module.out(out)


@pytest.mark.parametrize("spec", DENSE, ids=lambda s: s.summary())
def test_dense_hopfield_matches_slow_loop(spec: DenseHopfield) -> None:
    module = _build64(spec)
    x = torch.randn(2, 11, D_MODEL, dtype=F64)
    torch.testing.assert_close(module(x), _dense_slow(module, x, spec.degree), rtol=0, atol=1e-10)


def test_dense_hopfield_space_and_state() -> None:
    assert registered_mixers()["DenseHopfield"] is DenseHopfield
    configs = list(pg.iter(DenseHopfield.space()))
    assert {(c.num_heads, c.degree) for c in configs} == {
        (h, n) for h in (1, 2, 4) for n in (2, 3, 4)
    }
    assert DenseHopfield(2, degree=3).summary() == "dhopfield(h=2,n=3)"
    assert HopfieldLayer(1, 0.5).state_numbers(16, 40) == 2 * 40 * 16
    assert DenseHopfield(1, 3).state_numbers(16, 40) == 2 * 40 * 16
    assert "Krotov" in DenseHopfield.__doc__


# ----------------------------------------------------------------------------- all four

ALL = ELMS + HMTS + EMS + DENSE


@pytest.mark.parametrize("spec", ALL, ids=lambda s: s.summary())
def test_causal(spec: Mixer) -> None:
    module = _build64(spec, seed=1)
    x = torch.randn(2, 23, D_MODEL, dtype=F64)
    x2 = x.clone()
    x2[:, 13:] = torch.randn(2, 10, D_MODEL, dtype=F64)
    y, y2 = module(x), module(x2)
    torch.testing.assert_close(y2[:, :13], y[:, :13], rtol=0, atol=1e-12)
    assert not torch.allclose(y2[:, 13:], y[:, 13:])


@pytest.mark.parametrize("spec", ALL, ids=lambda s: s.summary())
def test_gradients_reach_every_parameter(spec: Mixer) -> None:
    torch.manual_seed(2)
    module = spec.build(D_MODEL)
    module(torch.randn(2, 23, D_MODEL)).square().sum().backward()
    for name, p in module.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_docstrings_name_their_papers() -> None:
    assert "Spieler" in ELMNeuron.__doc__ and "2306.16922" in ELMNeuron.__doc__
    assert "HMT" in SegmentMemory.__doc__ and "2405.06067" in SegmentMemory.__doc__
    assert "Fountas" in EpisodicMemory.__doc__ and "2407.09942" in EpisodicMemory.__doc__
    assert "1606.01159" in DenseHopfield.__doc__


def test_bad_values_are_named() -> None:
    with pytest.raises(ValueError, match="num_memory.*0"):
        ELMNeuron(num_memory=0).build(16)
    with pytest.raises(ValueError, match="mlp_hidden.*True"):
        ELMNeuron(mlp_hidden=True).build(16)
    with pytest.raises(ValueError, match="segment.*0"):
        SegmentMemory(segment=0).build(16)
    with pytest.raises(ValueError, match="num_memories.*-1"):
        SegmentMemory(num_memories=-1).build(16)
    with pytest.raises(ValueError, match="num_heads=3"):
        SegmentMemory(inner=SoftmaxAttention(num_heads=3)).build(16)
    with pytest.raises(ValueError, match="window.*0"):
        EpisodicMemory(window=0).build(16)
    with pytest.raises(ValueError, match="k_events.*0"):
        EpisodicMemory(k_events=0).build(16)
    with pytest.raises(ValueError, match="max_event.*0"):
        EpisodicMemory(max_event=0).build(16)
    with pytest.raises(ValueError, match="num_heads=3"):
        EpisodicMemory(num_heads=3).build(16)
    with pytest.raises(ValueError, match="degree.*0"):
        DenseHopfield(degree=0).build(16)
    with pytest.raises(ValueError, match="num_heads=3"):
        DenseHopfield(num_heads=3).build(16)


@pytest.mark.parametrize("cls", [ELMNeuron, SegmentMemory, EpisodicMemory, DenseHopfield])
def test_in_memory_space_samples_build_train_step(cls: type) -> None:
    space = memory_space(vocab_size=11, max_layers=2, d_model=(16, 32), mixers=[cls], max_len=40)
    spec = pg.dna_spec(space)
    rng = random.Random(0)
    tokens = torch.randint(0, 11, (2, 40))
    for _ in range(3):
        candidate = pg.materialize(space, pg.random_dna(spec, rng))
        assert all(isinstance(b.mixer, cls) for b in candidate.layers)
        model = candidate.build()
        logits = model(tokens)
        assert logits.shape == (2, 40, 11) and torch.isfinite(logits).all()
        F.cross_entropy(logits.reshape(-1, 11), tokens.reshape(-1)).backward()
        assert all(p.grad is not None for p in model.parameters())
