"""memnas.ops.delta: chunked delta rule / gated delta rule equal their per-token references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from memnas import ops
from memnas.ops import delta


def _inputs(b=2, t=37, h=3, dk=8, dv=5, seed=0, dtype=torch.float64, requires_grad=False):
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype)

    q = rnd(b, t, h, dk)
    k = F.normalize(rnd(b, t, h, dk), dim=-1)  # fla's callers L2-normalise keys
    v = rnd(b, t, h, dv)
    beta = torch.sigmoid(rnd(b, t, h))
    g = -F.softplus(rnd(b, t, h))  # log-space decay, negative
    s0 = rnd(b, h, dk, dv)
    out = dict(q=q, k=k, v=v, beta=beta, g=g, initial_state=s0)
    if requires_grad:
        for x in out.values():
            x.requires_grad_(True)
    return out


def _call(name, chunked, x, **kw):
    fn = getattr(ops, name if chunked else f"{name}_reference")
    args = dict(x)
    if name == "delta_rule":
        args.pop("g", None)
    if chunked:
        kw.setdefault("chunk_size", 16)
    return fn(**args, **kw)


NAMES = ["delta_rule", "gated_delta_rule"]


def test_package_exports():
    for name in ("delta_rule", "delta_rule_reference", "gated_delta_rule", "gated_delta_rule_reference"):
        assert getattr(ops, name) is getattr(delta, name)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("t,chunk", [(37, 16), (16, 16), (5, 16), (37, 1), (64, 64)])
def test_chunked_equals_reference(name, t, chunk):
    x = _inputs(t=t)
    o_ref, s_ref = _call(name, False, x, output_final_state=True)
    o, s = _call(name, True, x, output_final_state=True, chunk_size=chunk)
    assert o.shape == x["v"].shape and s.shape == x["initial_state"].shape
    assert torch.allclose(o, o_ref, atol=1e-9, rtol=0)
    assert torch.allclose(s, s_ref, atol=1e-9, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_scale_and_no_initial_state(name):
    x = _inputs(t=21)
    x["initial_state"] = None
    o_ref, s_ref = _call(name, False, x, scale=0.3, output_final_state=True)
    o, s = _call(name, True, x, scale=0.3, output_final_state=True, chunk_size=8)
    assert torch.allclose(o, o_ref, atol=1e-9, rtol=0)
    assert torch.allclose(s, s_ref, atol=1e-9, rtol=0)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("chunked", [False, True])
def test_final_state_none_by_default(name, chunked):
    o, s = _call(name, chunked, _inputs(t=9))
    assert s is None and o.shape == (2, 9, 3, 5)


def test_recurrence_by_hand():
    """One head, two tokens, written out: the fla conventions (scale, decay before the write)."""
    x = _inputs(b=1, t=2, h=1, dk=4, dv=3)
    q, k, v, beta, g = (x[n][0, :, 0] for n in ("q", "k", "v", "beta", "g"))
    s = x["initial_state"][0, 0]
    outs = []
    for i in range(2):
        s = g[i].exp() * s
        s = s + beta[i] * torch.outer(k[i], v[i] - s.T @ k[i])
        outs.append(4**-0.5 * s.T @ q[i])
    o, final = ops.gated_delta_rule(**x, output_final_state=True)
    assert torch.allclose(o[0, :, 0], torch.stack(outs), atol=1e-12)
    assert torch.allclose(final[0, 0], s, atol=1e-12)


def test_delta_rule_is_gated_with_zero_decay():
    x = _inputs(t=19)
    x["g"] = torch.zeros_like(x["g"])
    o_g, s_g = _call("gated_delta_rule", True, x, output_final_state=True)
    o, s = _call("delta_rule", True, x, output_final_state=True)
    assert torch.allclose(o, o_g, atol=1e-12) and torch.allclose(s, s_g, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck(name):
    x = _inputs(b=1, t=7, h=1, dk=3, dv=2, requires_grad=True)
    keys = [n for n in ("q", "k", "v", "g", "beta", "initial_state") if not (name == "delta_rule" and n == "g")]

    def f(*tensors):
        o, s = _call(name, True, dict(zip(keys, tensors)), output_final_state=True, chunk_size=3)
        return o, s

    assert torch.autograd.gradcheck(f, tuple(x[n] for n in keys))


@pytest.mark.parametrize("name", NAMES)
def test_gradients_match_reference(name):
    grads = []
    for chunked in (False, True):
        x = _inputs(t=37, requires_grad=True)
        o, s = _call(name, chunked, x, output_final_state=True)
        (o.sin().sum() + s.cos().sum()).backward()
        grads.append({n: t.grad for n, t in x.items() if t.grad is not None})
    ref, got = grads
    expected = {"q", "k", "v", "beta", "initial_state"} | ({"g"} if name == "gated_delta_rule" else set())
    assert set(ref) == set(got) == expected
    for n in expected:
        assert torch.allclose(got[n], ref[n], atol=1e-9, rtol=0), n


def test_strong_decay_is_finite():
    """Large negative g: only differences with j <= i are exponentiated, so no inf / nan."""
    x = _inputs(t=40, requires_grad=True)
    with torch.no_grad():
        x["g"].mul_(200.0)
    o, s = _call("gated_delta_rule", True, x, output_final_state=True, chunk_size=32)
    (o.sum() + s.sum()).backward()
    assert torch.isfinite(o).all() and torch.isfinite(x["g"].grad).all()
    o_ref, _ = _call("gated_delta_rule", False, x)
    assert torch.allclose(o, o_ref, atol=1e-9, rtol=0)


def test_bad_shapes_raise():
    x = _inputs(t=5)
    x["beta"] = x["beta"][..., None]
    with pytest.raises(ValueError, match="beta"):
        _call("delta_rule", True, x)
