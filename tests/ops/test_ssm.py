"""Selective scan and SSD: the chunked forms equal the per-token references."""

from __future__ import annotations

import pytest
import torch

from memnas.ops import selective_scan, selective_scan_reference, ssd, ssd_reference

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


def test_selective_scan_gradients_reach_every_input():
    kw = _s6_inputs(2, torch.Generator().manual_seed(3))
    for t in kw.values():
        t.requires_grad_(True)
    y, h = selective_scan(**kw, delta_softplus=True, output_final_state=True, chunk_size=8)
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
