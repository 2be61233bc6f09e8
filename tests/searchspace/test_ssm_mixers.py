"""Tests of the Mamba and Mamba2 mixers: chunked vs reference, the papers' recurrences, state."""

from __future__ import annotations

import math
import random

import pyglove as pg
import pytest
import torch
import torch.nn.functional as F

from memnas.ops import selective_scan, selective_scan_reference, ssd, ssd_reference
from memnas.searchspace import memory_space, registered_mixers
from memnas.searchspace.mixers import Mixer
from memnas.searchspace.mixers.mamba import Mamba, MambaModule
from memnas.searchspace.mixers.mamba2 import Mamba2, Mamba2Module
from mixertools import random_init as _random_init

D_MODEL = 16
F64 = torch.float64
# Every option of every decision appears at least once.
MAMBAS = [
    Mamba(d_state=4, expand=1, conv_kernel=0),
    Mamba(d_state=8, expand=2, conv_kernel=4),
    Mamba(d_state=16, expand=1, conv_kernel=4),
    Mamba(d_state=16, expand=2, conv_kernel=0),
]
MAMBA2S = [
    Mamba2(num_heads=1, d_state=8, expand=1, conv_kernel=0),
    Mamba2(num_heads=2, d_state=16, expand=2, conv_kernel=4),
    Mamba2(num_heads=4, d_state=32, expand=1, conv_kernel=4),
    Mamba2(num_heads=2, d_state=32, expand=2, conv_kernel=0),
    Mamba2(num_heads=4, d_state=8, expand=2, conv_kernel=0),
]
ALL = MAMBAS + MAMBA2S


def _id(spec: Mixer) -> str:
    return spec.summary()


def _op(module: torch.nn.Module, reference: bool = False):
    if isinstance(module, MambaModule):
        return selective_scan_reference if reference else selective_scan
    return ssd_reference if reference else ssd


@pytest.mark.parametrize("chunk_size", [4, 5, 64])
@pytest.mark.parametrize("spec", ALL, ids=_id)
def test_chunked_form_matches_reference(spec: Mixer, chunk_size: int) -> None:
    torch.manual_seed(0)
    module = spec.build(D_MODEL).double()
    assert isinstance(module, (MambaModule, Mamba2Module))
    _random_init(module)
    module.chunk_size = chunk_size
    x = torch.randn(2, 11, D_MODEL, dtype=F64)  # 11: not a multiple of the chunk
    y = module(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    torch.testing.assert_close(y, module.reference_forward(x), rtol=0, atol=1e-9)


@pytest.mark.parametrize("spec", [MAMBAS[1], MAMBA2S[1]], ids=_id)
def test_float32_chunked_form_stays_close_over_long_sequences(spec: Mixer) -> None:
    torch.manual_seed(1)
    module = spec.build(D_MODEL)
    x = torch.randn(2, 300, D_MODEL)
    exact = module.double().reference_forward(x.double())
    y = module.float()(x)
    assert (y.double() - exact).abs().max() < 1e-4


@pytest.mark.parametrize("spec", ALL, ids=_id)
def test_causal(spec: Mixer) -> None:
    torch.manual_seed(1)
    module = spec.build(D_MODEL).double()
    _random_init(module, seed=1)
    module.chunk_size = 4
    x = torch.randn(2, 10, D_MODEL, dtype=F64)
    x2 = x.clone()
    x2[:, 6:] = torch.randn(2, 4, D_MODEL, dtype=F64)
    for form in (module, module.reference_forward):
        y, y2 = form(x), form(x2)
        torch.testing.assert_close(y2[:, :6], y[:, :6], rtol=0, atol=1e-12)
        assert not torch.allclose(y2[:, 6:], y[:, 6:])


@pytest.mark.parametrize("spec", ALL, ids=_id)
def test_gradients_reach_every_parameter(spec: Mixer) -> None:
    torch.manual_seed(2)
    module = spec.build(D_MODEL)
    module.chunk_size = 4
    module(torch.randn(2, 9, D_MODEL)).square().sum().backward()
    names = [name for name, _ in module.named_parameters()]
    assert {"A_log", "D", "in_proj.weight", "out_proj.weight"} <= set(names)
    assert ("conv.conv.weight" in names) == bool(spec.conv_kernel)
    for name, p in module.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("spec", ALL, ids=_id)
def test_gradients_match_the_reference_form(spec: Mixer) -> None:
    torch.manual_seed(3)
    module = spec.build(D_MODEL).double()
    _random_init(module, seed=3)
    module.chunk_size = 4
    x = torch.randn(2, 9, D_MODEL, dtype=F64)
    grads = []
    for form in (module, module.reference_forward):
        module.zero_grad()
        form(x).square().sum().backward()
        grads.append({n: p.grad.clone() for n, p in module.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("spec", ALL, ids=_id)
def test_state_numbers_is_the_op_state_plus_conv_cache(spec: Mixer) -> None:
    torch.manual_seed(4)
    module = spec.build(D_MODEL)
    x = torch.randn(2, 7, D_MODEL)
    _, state = _op(module)(**module.op_inputs(x), output_final_state=True)
    _, state_ref = _op(module, reference=True)(**module.op_inputs(x), output_final_state=True)
    assert state.shape == state_ref.shape and state.shape[0] == 2
    expected = state[0].numel()
    if spec.conv_kernel:
        channels, _, kernel = module.conv.conv.weight.shape
        expected += channels * (kernel - 1)
    else:
        assert module.conv.conv is None
    assert spec.state_numbers(D_MODEL, 128) == expected
    assert spec.state_numbers(D_MODEL, 4096) == expected  # a fixed-size state


def test_state_numbers_formulas() -> None:
    # Mamba: d_inner * N + 3 steps of x; Mamba2: d_inner * N + 3 steps of x, B, C.
    assert Mamba(d_state=16, expand=2, conv_kernel=4).state_numbers(64, 9) == 128 * 16 + 3 * 128
    assert Mamba(d_state=4, expand=1, conv_kernel=0).state_numbers(64, 9) == 64 * 4
    assert Mamba2(num_heads=2, d_state=32, expand=2, conv_kernel=4).state_numbers(64, 9) == (
        128 * 32 + 3 * (128 + 64)
    )
    assert Mamba2(num_heads=4, d_state=8, expand=1, conv_kernel=0).state_numbers(64, 9) == 64 * 8


@pytest.mark.parametrize("spec", MAMBAS, ids=_id)
def test_mamba_is_the_s6_recurrence(spec: Mamba) -> None:
    # The recurrence written out from the parameters, one token at a time.
    torch.manual_seed(5)
    m = spec.build(D_MODEL).double()
    _random_init(m, seed=5)
    x = torch.randn(2, 8, D_MODEL, dtype=F64)
    xs, z = (x @ m.in_proj.weight.T).chunk(2, dim=-1)
    xs = m.conv(xs) if spec.conv_kernel else F.silu(xs)
    dt, b, c = (xs @ m.x_proj.weight.T).split([m.dt_rank, spec.d_state, spec.d_state], dim=-1)
    delta = F.softplus(dt @ m.dt_proj.weight.T + m.dt_proj.bias)
    a = -torch.exp(m.A_log)
    h = x.new_zeros(2, m.d_inner, spec.d_state)
    ys = []
    for t in range(x.shape[1]):
        decay = torch.exp(delta[:, t, :, None] * a)
        h = decay * h + (delta[:, t] * xs[:, t])[..., None] * b[:, t, None]
        ys.append(((h * c[:, t, None]).sum(-1) + m.D * xs[:, t]) * F.silu(z[:, t]))
    expected = torch.stack(ys, dim=1) @ m.out_proj.weight.T
    m.chunk_size = 3
    torch.testing.assert_close(m(x), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("spec", MAMBA2S, ids=_id)
def test_mamba2_is_the_ssd_recurrence(spec: Mamba2) -> None:
    torch.manual_seed(6)
    m = spec.build(D_MODEL).double()
    _random_init(m, seed=6)
    x = torch.randn(2, 8, D_MODEL, dtype=F64)
    di, n, heads = m.d_inner, spec.d_state, spec.num_heads
    z, xbc, dt = (x @ m.in_proj.weight.T).split([di, di + 2 * n, heads], dim=-1)
    xbc = m.conv(xbc) if spec.conv_kernel else F.silu(xbc)
    xs, b, c = xbc.split([di, n, n], dim=-1)
    xs = xs.reshape(2, 8, heads, di // heads)
    dt = F.softplus(dt + m.dt_bias)
    a = -torch.exp(m.A_log)
    h = x.new_zeros(2, heads, di // heads, n)
    ys = []
    for t in range(x.shape[1]):
        decay = torch.exp(dt[:, t] * a)[..., None, None]
        h = decay * h + (dt[:, t, :, None] * xs[:, t])[..., None] * b[:, t, None, None, :]
        ys.append((h * c[:, t, None, None, :]).sum(-1) + m.D[:, None] * xs[:, t])
    y = torch.stack(ys, dim=1).reshape(2, 8, di) * F.silu(z)
    y = y * torch.rsqrt(y.square().mean(-1, keepdim=True) + 1e-5) * m.norm_weight
    m.chunk_size = 3
    torch.testing.assert_close(m(x), y @ m.out_proj.weight.T, rtol=0, atol=1e-10)


def test_initial_decays_and_steps_follow_the_papers() -> None:
    torch.manual_seed(7)
    mamba = Mamba(d_state=16, expand=2).build(D_MODEL)
    torch.testing.assert_close(-mamba.A_log.exp(), -torch.arange(1.0, 17.0).expand(32, 16))
    steps = F.softplus(mamba.dt_proj.bias)
    assert (steps >= 1e-4 - 1e-9).all() and (steps <= 0.1 + 1e-6).all()
    assert steps.min() < 0.01 < steps.max()  # log-uniform over two decades
    mamba2 = Mamba2(num_heads=4).build(D_MODEL)
    a = mamba2.A_log.exp()
    assert ((a >= 1) & (a <= 16)).all()
    steps = F.softplus(mamba2.dt_bias)
    assert (steps >= 1e-4 - 1e-9).all() and (steps <= 0.1 + 1e-6).all()
    assert torch.equal(mamba2.D, torch.ones(4)) and torch.equal(mamba.D, torch.ones(32))


def test_registered_with_small_spaces() -> None:
    mixers = registered_mixers()
    assert mixers["Mamba"] is Mamba and mixers["Mamba2"] is Mamba2
    assert pg.dna_spec(Mamba.space()).space_size == 3 * 2 * 2
    assert pg.dna_spec(Mamba2.space()).space_size == 3 * 3 * 2 * 2
    space = Mamba.space()
    assert set(space.sym_getattr("d_state").candidates) == {4, 8, 16}
    assert set(space.sym_getattr("expand").candidates) == {1, 2}
    assert set(space.sym_getattr("conv_kernel").candidates) == {0, 4}
    space = Mamba2.space()
    assert set(space.sym_getattr("num_heads").candidates) == {1, 2, 4}
    assert set(space.sym_getattr("d_state").candidates) == {8, 16, 32}
    assert set(space.sym_getattr("expand").candidates) == {1, 2}
    assert set(space.sym_getattr("conv_kernel").candidates) == {0, 4}
    assert "https://arxiv.org/abs/2312.00752" in Mamba.__doc__ and "Gu" in Mamba.__doc__
    assert "https://arxiv.org/abs/2405.21060" in Mamba2.__doc__ and "Dao" in Mamba2.__doc__
    assert Mamba.bench_config().summary() == "mamba(n16,e2,c4)"
    assert Mamba2.bench_config().summary() == "mamba2(h=2,n32,e2,c4)"


@pytest.mark.parametrize(
    "spec, match",
    [
        (Mamba(d_state=0), "d_state=0"),
        (Mamba(expand=0), "expand=0"),
        (Mamba(conv_kernel=-1), "-1"),
        (Mamba2(num_heads=3), "num_heads=3"),
        (Mamba2(num_heads=0), "num_heads=0"),
        (Mamba2(d_state=-8), "d_state=-8"),
        (Mamba2(expand=0), "expand=0"),
        (Mamba2(conv_kernel=-2), "-2"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_values_are_named(spec: Mixer, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        spec.build(D_MODEL)
    with pytest.raises(ValueError, match=match):
        spec.state_numbers(D_MODEL, 10)


@pytest.mark.parametrize("cls", [Mamba, Mamba2])
def test_in_memory_space_samples_build_train_step(cls: type) -> None:
    space = memory_space(vocab_size=11, max_layers=2, d_model=(16, 32), mixers=[cls], max_len=20)
    spec = pg.dna_spec(space)
    rng = random.Random(0)
    tokens = torch.randint(0, 11, (2, 20))
    for _ in range(3):
        candidate = pg.materialize(space, pg.random_dna(spec, rng))
        assert all(isinstance(b.mixer, cls) for b in candidate.layers)
        model = candidate.build()
        logits = model(tokens)
        assert logits.shape == (2, 20, 11) and torch.isfinite(logits).all()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), tokens.reshape(-1))
        assert math.isfinite(loss.item())
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())
