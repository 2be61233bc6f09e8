"""Selective scan and SSD: the chunked forms equal the per-token references."""

from __future__ import annotations

import pytest
import torch

from memnas.ops import selective_scan, selective_scan_reference, ssd, ssd_reference
from memnas.ops.ssm import _scan_

F64 = torch.float64


def _s6_inputs(groups: int | None, gen: torch.Generator, length: int = 37) -> dict:
    b, d, n = 2, 4, 3
    shape_bc = (b, n, length) if groups is None else (b, groups, n, length)
    return dict(
        u=torch.randn(b, d, length, generator=gen, dtype=F64),
        delta=torch.randn(b, d, length, generator=gen, dtype=F64),
        A=-torch.rand(d, n, generator=gen, dtype=F64) * 2,
        B=torch.randn(*shape_bc, generator=gen, dtype=F64),
        C=torch.randn(*shape_bc, generator=gen, dtype=F64),
        D=torch.randn(d, generator=gen, dtype=F64),
        z=torch.randn(b, d, length, generator=gen, dtype=F64),
        delta_bias=torch.randn(d, generator=gen, dtype=F64),
        initial_state=torch.randn(b, d, n, generator=gen, dtype=F64),
    )


def _ssd_inputs(groups: int | None, gen: torch.Generator, length: int = 37) -> dict:
    b, h, p, n = 2, 4, 3, 5
    shape_bc = (b, length, n) if groups is None else (b, length, groups, n)
    return dict(
        x=torch.randn(b, length, h, p, generator=gen, dtype=F64),
        dt=torch.rand(b, length, h, generator=gen, dtype=F64),
        A=-torch.rand(h, generator=gen, dtype=F64) * 2,
        B=torch.randn(*shape_bc, generator=gen, dtype=F64),
        C=torch.randn(*shape_bc, generator=gen, dtype=F64),
        D=torch.randn(h, p, generator=gen, dtype=F64),
        initial_state=torch.randn(b, h, p, n, generator=gen, dtype=F64),
    )


@pytest.mark.parametrize("groups", [None, 2])
@pytest.mark.parametrize("chunk_size", [1, 8, 64])
def test_selective_scan_equals_reference(groups, chunk_size):
    kw = _s6_inputs(groups, torch.Generator().manual_seed(0))
    y, h = selective_scan(**kw, delta_softplus=True, output_final_state=True, chunk_size=chunk_size)
    y_ref, h_ref = selective_scan_reference(**kw, delta_softplus=True, output_final_state=True)
    assert y.shape == kw["u"].shape and h.shape == kw["initial_state"].shape
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-9)
    torch.testing.assert_close(h, h_ref, rtol=0, atol=1e-9)


def test_selective_scan_minimal_arguments_and_no_final_state():
    gen = torch.Generator().manual_seed(1)
    kw = _s6_inputs(None, gen)
    kw = {k: kw[k] for k in ("u", "A", "B", "C")} | {"delta": kw["delta"].abs()}
    y, h = selective_scan(**kw, chunk_size=8)
    y_ref, h_ref = selective_scan_reference(**kw)
    assert h is None and h_ref is None
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-9)


def test_selective_scan_constant_B_C():
    kw = _s6_inputs(None, torch.Generator().manual_seed(2))
    d, n = kw["A"].shape
    kw["B"], kw["C"] = torch.randn(d, n, dtype=F64), torch.randn(d, n, dtype=F64)
    y, _ = selective_scan(**kw, delta_softplus=True, chunk_size=8)
    y_ref, _ = selective_scan_reference(**kw, delta_softplus=True)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("chunk_size", [1, 8, 64])
def test_selective_scan_gradients_reach_every_input(chunk_size):
    kw = _s6_inputs(2, torch.Generator().manual_seed(3))
    for t in kw.values():
        t.requires_grad_(True)
    y, h = selective_scan(**kw, delta_softplus=True, output_final_state=True, chunk_size=chunk_size)
    (y.square().sum() + h.square().sum()).backward()
    grads = {k: t.grad for k, t in kw.items()}
    for t in kw.values():
        t.grad = None
    y, h = selective_scan_reference(**kw, delta_softplus=True, output_final_state=True)
    (y.square().sum() + h.square().sum()).backward()
    for k, t in kw.items():
        assert grads[k] is not None and torch.isfinite(grads[k]).all(), k
        assert grads[k].abs().sum() > 0, k
        torch.testing.assert_close(grads[k], t.grad, rtol=0, atol=1e-8)


@pytest.mark.parametrize("reverse", [False, True])
def test_brent_kung_scan_is_the_sequential_recurrence_at_every_length(reverse):
    gen = torch.Generator().manual_seed(7)
    for length in range(1, 70):
        a = torch.rand(length, 3, generator=gen, dtype=F64)
        b = torch.randn(length, 3, generator=gen, dtype=F64)
        expected, h = torch.empty_like(b), torch.zeros(3, dtype=F64)
        for t in (reversed(range(length)) if reverse else range(length)):
            h = a[t] * h + b[t]
            expected[t] = h
        out = b.clone()
        _scan_(a.clone(), out, reverse=reverse)
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-12, msg=f"length {length}")


@pytest.mark.parametrize("length", [1, 2, 5, 16, 33])
@pytest.mark.parametrize("chunk_size", [1, 3, 4, 64])
def test_selective_scan_equals_reference_at_any_length_and_chunk(length, chunk_size):
    kw = _s6_inputs(None, torch.Generator().manual_seed(8), length=length)
    y, h = selective_scan(**kw, delta_softplus=True, output_final_state=True, chunk_size=chunk_size)
    y_ref, h_ref = selective_scan_reference(**kw, delta_softplus=True, output_final_state=True)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-9)
    torch.testing.assert_close(h, h_ref, rtol=0, atol=1e-9)


def test_selective_scan_is_exact_for_vanishing_and_unit_decays():
    # Log decays down to -1e4 (exp underflows to 0) next to delta = 0 (decay 1, no input).
    kw = _s6_inputs(2, torch.Generator().manual_seed(9))
    delta = kw["delta"].abs() * 5000
    delta[:, :, ::3] = 0.0
    kw.update(delta=delta, delta_bias=None)
    y, h = selective_scan(**kw, output_final_state=True, chunk_size=8)
    y_ref, h_ref = selective_scan_reference(**kw, output_final_state=True)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-9)
    torch.testing.assert_close(h, h_ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("b_shape, c_shape", [("group", "plain"), ("const", "group"),
                                              ("plain", "const")])
def test_selective_scan_with_differently_shaped_B_and_C(b_shape, c_shape):
    gen = torch.Generator().manual_seed(10)
    kw = _s6_inputs(2, gen)
    b, d, length = kw["u"].shape
    n = kw["A"].shape[1]
    shapes = {"group": (b, 2, n, length), "plain": (b, n, length), "const": (d, n)}
    kw["B"] = torch.randn(*shapes[b_shape], generator=gen, dtype=F64)
    kw["C"] = torch.randn(*shapes[c_shape], generator=gen, dtype=F64)
    y, h = selective_scan(**kw, delta_softplus=True, output_final_state=True, chunk_size=8)
    y_ref, h_ref = selective_scan_reference(**kw, delta_softplus=True, output_final_state=True)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-9)
    torch.testing.assert_close(h, h_ref, rtol=0, atol=1e-9)


def test_selective_scan_takes_strided_inputs_and_empty_sequences():
    kw = _s6_inputs(None, torch.Generator().manual_seed(11))
    strided = {k: (v.transpose(-1, -2).contiguous().transpose(-1, -2) if v.dim() == 3 else v)
               for k, v in kw.items()}
    y, _ = selective_scan(**strided, delta_softplus=True, chunk_size=8)
    torch.testing.assert_close(y, selective_scan_reference(**kw, delta_softplus=True)[0],
                               rtol=0, atol=1e-9)
    empty = {k: (v[..., :0] if k in ("u", "delta", "B", "C", "z") else v) for k, v in kw.items()}
    y, h = selective_scan(**empty, output_final_state=True)
    assert y.shape == (2, 4, 0)
    torch.testing.assert_close(h, kw["initial_state"])
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        selective_scan(**kw, chunk_size=0)


@pytest.mark.parametrize("chunk_size", [1, 5, 64])
def test_selective_scan_gradients_through_the_final_state_alone(chunk_size):
    kw = _s6_inputs(None, torch.Generator().manual_seed(12), length=19)
    for t in kw.values():
        t.requires_grad_(True)
    grads = []
    for fn, extra in ((selective_scan, {"chunk_size": chunk_size}), (selective_scan_reference, {})):
        _, h = fn(**kw, delta_softplus=True, output_final_state=True, **extra)
        grads.append(torch.autograd.grad(h.sin().sum(), list(kw.values()), allow_unused=True))
    for k, g, g_ref in zip(kw, *grads):
        if g_ref is None:  # D and z do not reach the state
            assert g is None or not g.any(), k
        else:
            torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-9, msg=k)


def test_selective_scan_float32_stays_close_to_float64_over_512_steps():
    gen = torch.Generator().manual_seed(13)
    b, d, n, length = 2, 8, 16, 512
    kw = dict(u=torch.randn(b, d, length, generator=gen, dtype=F64),
              delta=torch.randn(b, d, length, generator=gen, dtype=F64) - 3,
              A=-torch.arange(1, n + 1, dtype=F64).repeat(d, 1),
              B=torch.randn(b, n, length, generator=gen, dtype=F64),
              C=torch.randn(b, n, length, generator=gen, dtype=F64))
    y_ref, _ = selective_scan_reference(**kw, delta_softplus=True)
    y, _ = selective_scan(**{k: v.float() for k, v in kw.items()}, delta_softplus=True)
    assert (y.double() - y_ref).abs().max() < 1e-5


@pytest.mark.parametrize("groups", [None, 2, 4])
@pytest.mark.parametrize("chunk_size", [1, 8, 64])
def test_ssd_equals_reference(groups, chunk_size):
    kw = _ssd_inputs(groups, torch.Generator().manual_seed(4))
    y, h = ssd(**kw, output_final_state=True, chunk_size=chunk_size)
    y_ref, h_ref = ssd_reference(**kw, output_final_state=True)
    assert y.shape == kw["x"].shape and h.shape == kw["initial_state"].shape
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-9)
    torch.testing.assert_close(h, h_ref, rtol=0, atol=1e-9)


def test_ssd_without_state_or_skip_returns_none():
    kw = _ssd_inputs(1, torch.Generator().manual_seed(5))
    kw["D"] = kw["D"][:, 0]
    del kw["initial_state"]
    y, h = ssd(**kw, chunk_size=16)
    y_ref, h_ref = ssd_reference(**kw)
    assert h is None and h_ref is None
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-9)


def test_ssd_gradients_reach_every_input():
    kw = _ssd_inputs(2, torch.Generator().manual_seed(6))
    for t in kw.values():
        t.requires_grad_(True)
    y, h = ssd(**kw, output_final_state=True, chunk_size=8)
    (y.square().sum() + h.square().sum()).backward()
    grads = {k: t.grad for k, t in kw.items()}
    for t in kw.values():
        t.grad = None
    y, h = ssd_reference(**kw, output_final_state=True)
    (y.square().sum() + h.square().sum()).backward()
    for k, t in kw.items():
        assert grads[k] is not None and torch.isfinite(grads[k]).all(), k
        assert grads[k].abs().sum() > 0, k
        torch.testing.assert_close(grads[k], t.grad, rtol=0, atol=1e-8)
