"""The chunked GLA and simple-GLA ops equal their per-token references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import memnas.ops.gated_linear as gated_linear
from memnas.ops import gla, gla_reference, simple_gla, simple_gla_reference

B, T, H, K, V, CHUNK = 2, 37, 3, 5, 4, 16


def _inputs(strong: bool, seed: int = 0, gate_dims: int = K) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=gen, dtype=torch.float64)  # noqa: E731
    x = rand(B, T, H, gate_dims) * (4.0 if strong else 1.0)
    gate = -F.softplus(x + (3.0 if strong else 0.0))  # strong: values down to about -5 and below
    if gate_dims == 1:
        gate = gate[..., 0]
    return {
        "q": rand(B, T, H, K), "k": rand(B, T, H, K), "v": rand(B, T, H, V), "gate": gate,
        "initial_state": rand(B, H, K, V),
    }


CASES = [(gla, gla_reference, K), (simple_gla, simple_gla_reference, 1)]


@pytest.mark.parametrize("op, reference, gate_dims", CASES, ids=["gla", "simple_gla"])
@pytest.mark.parametrize("strong", [False, True], ids=["mild", "strong"])
@pytest.mark.parametrize("chunk_size", [CHUNK, 64, 12, 7])
def test_chunked_equals_reference(op, reference, gate_dims, strong, chunk_size):
    x = _inputs(strong, gate_dims=gate_dims)
    if strong:
        assert x["gate"].min() < -5.0
    args = (x["q"], x["k"], x["v"], x["gate"])
    o, s = op(*args, initial_state=x["initial_state"], output_final_state=True, chunk_size=chunk_size)
    o_ref, s_ref = reference(*args, initial_state=x["initial_state"], output_final_state=True)
    assert o.shape == (B, T, H, V) and s.shape == (B, H, K, V)
    assert torch.isfinite(o).all()
    torch.testing.assert_close(o, o_ref, rtol=0, atol=1e-9)
    torch.testing.assert_close(s, s_ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("op, reference, gate_dims", CASES, ids=["gla", "simple_gla"])
def test_scale_and_zero_initial_state(op, reference, gate_dims):
    x = _inputs(False, seed=1, gate_dims=gate_dims)
    args = (x["q"], x["k"], x["v"], x["gate"])
    o, s = op(*args, scale=0.3, output_final_state=True, chunk_size=CHUNK)
    o_ref, s_ref = reference(*args, scale=0.3, output_final_state=True)
    torch.testing.assert_close(o, o_ref, rtol=0, atol=1e-9)
    torch.testing.assert_close(s, s_ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("op, reference, gate_dims", CASES, ids=["gla", "simple_gla"])
def test_no_final_state_unless_asked(op, reference, gate_dims):
    x = _inputs(False, gate_dims=gate_dims)
    args = (x["q"], x["k"], x["v"], x["gate"])
    assert op(*args, chunk_size=CHUNK)[1] is None
    assert reference(*args)[1] is None


@pytest.mark.parametrize("op, reference, gate_dims", CASES, ids=["gla", "simple_gla"])
def test_gradients_match_reference(op, reference, gate_dims):
    grads = []
    for fn, kwargs in ((op, {"chunk_size": CHUNK}), (reference, {})):
        x = _inputs(True, seed=2, gate_dims=gate_dims)
        for t in x.values():
            t.requires_grad_(True)
        o, s = fn(x["q"], x["k"], x["v"], x["gate"], initial_state=x["initial_state"],
                  output_final_state=True, **kwargs)
        (o.square().sum() + s.sum()).backward()
        grads.append({name: t.grad for name, t in x.items()})
    for name, g in grads[0].items():
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, name
        torch.testing.assert_close(g, grads[1][name], rtol=0, atol=1e-8, msg=name)


def test_retention_is_simple_gla_with_fixed_decay():
    x = _inputs(False, gate_dims=1)
    gamma = torch.tensor([0.5, 0.9, 0.99], dtype=torch.float64)
    g = gamma.log().expand(B, T, H)
    o, _ = simple_gla(x["q"], x["k"], x["v"], g, chunk_size=CHUNK)
    # Parallel retention: o_t = scale * sum_{s<=t} gamma^(t-s) (q_t . k_s) v_s.
    t = torch.arange(T, dtype=torch.float64)
    d = (gamma[:, None, None] ** (t[:, None] - t[None, :]).clamp(min=0)) * torch.ones(T, T).tril()
    att = torch.einsum("bthk,bshk->bhts", x["q"], x["k"]) * d * K ** -0.5
    torch.testing.assert_close(o, torch.einsum("bhts,bshv->bthv", att, x["v"]), rtol=0, atol=1e-9)


@pytest.mark.parametrize("op, reference, gate_dims", CASES, ids=["gla", "simple_gla"])
def test_extreme_decays_stay_finite_and_exact(op, reference, gate_dims):
    x = _inputs(False, seed=3, gate_dims=gate_dims)
    gate = torch.where(torch.rand(x["gate"].shape, generator=torch.Generator().manual_seed(4)) < 0.3,
                       torch.full_like(x["gate"], -1000.0), x["gate"] * 20).requires_grad_(True)
    args = (x["q"], x["k"], x["v"], gate)
    o, s = op(*args, initial_state=x["initial_state"], output_final_state=True, chunk_size=CHUNK)
    o_ref, s_ref = reference(*args, initial_state=x["initial_state"], output_final_state=True)
    torch.testing.assert_close(o, o_ref, rtol=0, atol=1e-9)
    torch.testing.assert_close(s, s_ref, rtol=0, atol=1e-9)
    (o.sum() + s.sum()).backward()
    assert torch.isfinite(gate.grad).all()


@pytest.mark.parametrize("factored", [True, False], ids=["factored", "per_pair"])
@pytest.mark.parametrize("chunk_size, sub_chunk", [(32, 8), (24, 6), (20, 8), (9, 4)])
def test_gla_both_intra_forms_over_many_sub_chunks(monkeypatch, factored, chunk_size, sub_chunk):
    # Several sub-chunks per chunk, through the factored form or (span bound 0) per pair.
    monkeypatch.setattr(gated_linear, "SUB_CHUNK", sub_chunk)
    monkeypatch.setattr(gated_linear, "PAIR_SUB_CHUNK", sub_chunk)
    if not factored:
        monkeypatch.setattr(gated_linear, "FACTOR_SPAN", 0.0)
    x = _inputs(True, seed=5)
    args = (x["q"], x["k"], x["v"], x["gate"])
    b = gated_linear._chunks(x["gate"], chunk_size).cumsum(-2)
    c = max(d for d in range(1, sub_chunk + 1) if chunk_size % d == 0)
    assert gated_linear._sub_chunk(b) == (c, factored)
    o, s = gla(*args, initial_state=x["initial_state"], output_final_state=True,
               chunk_size=chunk_size)
    o_ref, s_ref = gla_reference(*args, initial_state=x["initial_state"], output_final_state=True)
    torch.testing.assert_close(o, o_ref, rtol=0, atol=1e-9)
    torch.testing.assert_close(s, s_ref, rtol=0, atol=1e-9)


def test_gla_spans_past_the_bound_take_the_per_pair_form():
    x = _inputs(False, seed=6)
    gate = torch.full_like(x["gate"], -30.0)  # a 32-token sub-chunk spans 960 > log(max) / 4
    b = gated_linear._chunks(gate, 64).cumsum(-2)
    assert gated_linear._sub_chunk(b) == (gated_linear.PAIR_SUB_CHUNK, False)
    assert gated_linear._sub_chunk(b / 100) == (gated_linear.SUB_CHUNK, True)
    o, _ = gla(x["q"], x["k"], x["v"], gate)
    torch.testing.assert_close(o, gla_reference(x["q"], x["k"], x["v"], gate)[0], rtol=0, atol=1e-9)


def test_gla_float32_stays_close_to_float64():
    x = _inputs(False, seed=7)
    args = [x[name] for name in ("q", "k", "v", "gate")]
    o32, _ = gla(*(t.float() for t in args))
    assert o32.dtype == torch.float32
    torch.testing.assert_close(o32.double(), gla_reference(*args)[0], rtol=0, atol=1e-5)


def test_gla_takes_positive_log_decays_as_zero():
    x = _inputs(False, seed=8)
    gate = x["gate"] + 0.5  # some entries above 0
    assert (gate > 0).any()
    o, _ = gla(x["q"], x["k"], x["v"], gate, chunk_size=CHUNK)
    o_ref, _ = gla_reference(x["q"], x["k"], x["v"], gate.clamp(max=0.0))
    torch.testing.assert_close(o, o_ref, rtol=0, atol=1e-9)


def test_package_exports_the_functions():
    import memnas.ops

    assert callable(memnas.ops.gla) and memnas.ops.gla is gla
    assert memnas.ops.simple_gla is simple_gla


def test_bad_shapes_raise():
    x = _inputs(False)
    with pytest.raises(ValueError):
        gla(x["q"], x["k"], x["v"], x["gate"][..., :2])
    with pytest.raises(ValueError):
        simple_gla(x["q"], x["k"], x["v"], x["gate"])
