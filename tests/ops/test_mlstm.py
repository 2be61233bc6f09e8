"""mLSTM: the chunked form equals the per-token stabilised recurrence."""

from __future__ import annotations

import pytest
import torch

from memnas.ops import mlstm, mlstm_reference

F64 = torch.float64


def _inputs(gen: torch.Generator, length: int = 37, state: bool = True) -> dict:
    b, h, dk, dv = 2, 3, 4, 5

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=F64)

    kw = dict(q=r(b, length, h, dk), k=r(b, length, h, dk), v=r(b, length, h, dv),
              i=r(b, length, h) * 2, f=r(b, length, h) + 2)
    if state:
        kw["initial_state"] = (r(b, h, dk, dv), r(b, h, dk), r(b, h))
    return kw


@pytest.mark.parametrize("forget", ["sigmoid", "exp"])
@pytest.mark.parametrize("chunk_size", [1, 8, 64])
def test_mlstm_equals_reference(forget, chunk_size):
    kw = _inputs(torch.Generator().manual_seed(0))
    if forget == "exp":
        kw["f"] = -kw["f"].abs() * 0.2
    h, (C, n, m) = mlstm(**kw, forget=forget, output_final_state=True, chunk_size=chunk_size)
    h_ref, (C_ref, n_ref, m_ref) = mlstm_reference(**kw, forget=forget, output_final_state=True)
    assert h.shape == kw["v"].shape and C.shape == kw["initial_state"][0].shape
    for got, want in ((h, h_ref), (C, C_ref), (n, n_ref), (m, m_ref)):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-9)


def test_mlstm_zero_start_and_no_final_state():
    kw = _inputs(torch.Generator().manual_seed(1), state=False)
    h, state = mlstm(**kw, scale=0.3, chunk_size=16)
    h_ref, state_ref = mlstm_reference(**kw, scale=0.3)
    assert state is None and state_ref is None
    torch.testing.assert_close(h, h_ref, rtol=0, atol=1e-9)


def test_mlstm_large_gates_stay_finite():
    kw = _inputs(torch.Generator().manual_seed(2))
    kw["i"] = kw["i"] * 100
    h, (C, _, _) = mlstm(**kw, output_final_state=True, chunk_size=8)
    h_ref, (C_ref, _, _) = mlstm_reference(**kw, output_final_state=True)
    assert torch.isfinite(h).all() and torch.isfinite(C).all()
    torch.testing.assert_close(h, h_ref, rtol=0, atol=1e-9)


def test_mlstm_gradients_reach_every_input():
    kw = _inputs(torch.Generator().manual_seed(3))
    leaves = [kw[name] for name in "qkvif"] + list(kw["initial_state"])
    for t in leaves:
        t.requires_grad_(True)

    def grads(fn, **extra) -> list[torch.Tensor]:
        h, (C, n, m) = fn(**kw, output_final_state=True, **extra)
        loss = h.square().sum() + C.square().sum() + n.square().sum() + m.square().sum()
        return torch.autograd.grad(loss, leaves)

    chunked, ref = grads(mlstm, chunk_size=8), grads(mlstm_reference)
    for g, g_ref in zip(chunked, ref):
        assert torch.isfinite(g).all() and g.abs().sum() > 0
        torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-8)
