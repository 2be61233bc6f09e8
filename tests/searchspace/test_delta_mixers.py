"""Tests of the op-backed delta-rule and mLSTM mixers: GatedDeltaNet, MLSTM, DeltaNet."""

from __future__ import annotations

import random
from typing import Any, Callable

import pyglove as pg
import pytest
import torch

from memnas import ops
from memnas.searchspace import memory_space, registered_mixers
from memnas.searchspace.mixers import Mixer
from memnas.searchspace.mixers._ops_mixer import OpMixerModule
from memnas.searchspace.mixers.delta_rule import DeltaNet, DeltaNetModule
from memnas.searchspace.mixers.gated_deltanet import GatedDeltaNet, GatedDeltaNetModule
from memnas.searchspace.mixers.mlstm import MLSTM, MLSTMModule
from mixertools import random_init as _random_init

D_MODEL = 8
SPECS: list[Mixer] = [
    GatedDeltaNet(num_heads=1, conv_kernel=0),
    GatedDeltaNet(num_heads=2, conv_kernel=4),
    GatedDeltaNet(num_heads=4, conv_kernel=0),
    MLSTM(num_heads=1, forget="sigmoid", conv_kernel=0),
    MLSTM(num_heads=2, forget="sigmoid", conv_kernel=4),
    MLSTM(num_heads=1, forget="exp", conv_kernel=4),
    MLSTM(num_heads=2, forget="exp", conv_kernel=0),
    DeltaNet(num_heads=1),
    DeltaNet(num_heads=2),
]


def _id(spec: Mixer) -> str:
    return spec.summary()


def _build(spec: Mixer, chunk_size: int = 4) -> OpMixerModule:
    module = spec.build(D_MODEL)
    assert isinstance(module, OpMixerModule)
    module.chunk_size = chunk_size
    return module


@pytest.mark.parametrize("spec", SPECS, ids=_id)
def test_chunked_forward_matches_reference(spec: Mixer) -> None:
    torch.manual_seed(0)
    module = _build(spec).double()
    _random_init(module)
    x = torch.randn(2, 11, D_MODEL, dtype=torch.float64)  # 11: not a multiple of 4
    y = module(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    torch.testing.assert_close(y, module.reference_forward(x), rtol=0, atol=1e-9)


@pytest.mark.parametrize("spec", SPECS, ids=_id)
def test_causal_in_both_forms(spec: Mixer) -> None:
    torch.manual_seed(1)
    module = _build(spec).double()
    _random_init(module, seed=1)
    x = torch.randn(2, 10, D_MODEL, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 6:] = torch.randn(2, 4, D_MODEL, dtype=torch.float64)
    for form in (module, module.reference_forward):
        y, y2 = form(x), form(x2)
        torch.testing.assert_close(y2[:, :6], y[:, :6], rtol=0, atol=1e-12)
        assert not torch.allclose(y2[:, 6:], y[:, 6:])


@pytest.mark.parametrize("spec", SPECS, ids=_id)
def test_gradients_reach_every_parameter(spec: Mixer) -> None:
    torch.manual_seed(2)
    module = _build(spec)  # the default init: it must let every parameter learn
    module(torch.randn(2, 9, D_MODEL)).square().sum().backward()
    for name, p in module.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def _final_state_numbers(module: OpMixerModule, x: torch.Tensor) -> int:
    """Per-sequence numel of the op's final state, run on the module's own projections."""
    states: list[Any] = []
    op: Callable[..., Any] = getattr(ops, module.op_name)

    def recording(*args: Any, **kwargs: Any) -> Any:
        o, final = op(*args, **kwargs, output_final_state=True)
        states.append(final)
        return o, None

    module.mix(x, recording)
    (final,) = states
    parts = final if isinstance(final, tuple) else (final,)
    return sum(p.numel() for p in parts) // x.shape[0]


@pytest.mark.parametrize("spec", SPECS, ids=_id)
@pytest.mark.parametrize("max_len", [16, 4096])
def test_state_numbers_are_final_state_plus_conv_cache(spec: Mixer, max_len: int) -> None:
    module = _build(spec)
    conv = getattr(module, "conv", None)
    cached = 0
    if conv is not None and conv.conv is not None:
        channels, _, kernel = conv.conv.weight.shape
        cached = channels * (kernel - 1)
        assert kernel == spec.conv_kernel
    expected = _final_state_numbers(module, torch.randn(3, 5, D_MODEL)) + cached
    assert spec.state_numbers(D_MODEL, max_len) == expected


def test_state_numbers_formulas() -> None:
    d = 64
    assert GatedDeltaNet(num_heads=2, conv_kernel=4).state_numbers(d, 512) == 2 * 32 * 32 + 3 * d * 3
    assert GatedDeltaNet(num_heads=4, conv_kernel=0).state_numbers(d, 512) == 4 * 16 * 16
    assert MLSTM(num_heads=2, conv_kernel=4).state_numbers(d, 512) == 2 * (32 * 32 + 32 + 1) + 2 * d * 3
    assert MLSTM(num_heads=1, conv_kernel=0).state_numbers(d, 512) == d * d + d + 1
    assert DeltaNet(num_heads=4).state_numbers(d, 512) == 4 * 16 * 16


def test_mixers_call_their_ops() -> None:
    assert (GatedDeltaNetModule.op_name, MLSTMModule.op_name, DeltaNetModule.op_name) == (
        "gated_delta_rule", "mlstm", "delta_rule")
    module = _build(DeltaNet(num_heads=2, chunk_size=4), chunk_size=4)
    assert {"qkv", "out", "beta"} <= dict(module.named_children()).keys()


def test_initial_decays_are_in_the_papers_ranges() -> None:
    torch.manual_seed(3)
    gdn = GatedDeltaNet(num_heads=4).build(64)
    assert ((gdn.A_log.exp() >= 1) & (gdn.A_log.exp() <= 16)).all()
    dt = torch.nn.functional.softplus(gdn.dt_bias)
    torch.testing.assert_close(dt.clamp(1e-3, 1e-1), dt)
    for forget in ("sigmoid", "exp"):
        m = MLSTM(num_heads=4, forget=forget).build(64)
        f_bias = m.gates.bias[4:]
        decay = torch.sigmoid(f_bias) if forget == "sigmoid" else f_bias.exp()
        torch.testing.assert_close(decay, torch.sigmoid(torch.linspace(3.0, 6.0, 4)))
        assert (m.gates.weight == 0).all()


def test_mlstm_forget_choice_changes_the_function() -> None:
    torch.manual_seed(4)
    sig = MLSTM(num_heads=2, forget="sigmoid").build(D_MODEL).double()
    exp = MLSTM(num_heads=2, forget="exp").build(D_MODEL).double()
    exp.load_state_dict(sig.state_dict())
    x = torch.randn(1, 7, D_MODEL, dtype=torch.float64)
    assert not torch.allclose(sig(x), exp(x))


def test_conv_zero_is_silu_only_for_gated_deltanet() -> None:
    torch.manual_seed(5)
    module = GatedDeltaNet(num_heads=2, conv_kernel=0).build(D_MODEL).double()
    assert module.conv.conv is None
    x = torch.randn(1, 1, D_MODEL, dtype=torch.float64)  # one token: o = scale * v (|k| = 1)
    qkv, gate, _, beta = module.in_proj(x).split([3 * D_MODEL, D_MODEL, 2, 2], dim=-1)
    q, k, v = torch.nn.functional.silu(qkv).reshape(1, 1, 3, 2, 4).unbind(2)
    q, k = torch.nn.functional.normalize(q, dim=-1), torch.nn.functional.normalize(k, dim=-1)
    o = torch.sigmoid(beta)[..., None] * v * (q * k).sum(-1, keepdim=True) / 2.0  # d_head ** .5
    o = torch.nn.functional.rms_norm(o, (4,), module.norm_weight, eps=1e-5)
    expected = module.out((o * torch.nn.functional.silu(gate.view(1, 1, 2, 4))).reshape(1, 1, -1))
    torch.testing.assert_close(module(x), expected, rtol=0, atol=1e-12)


def test_registered_with_small_spaces() -> None:
    mixers = registered_mixers()
    assert mixers["GatedDeltaNet"] is GatedDeltaNet and mixers["MLSTM"] is MLSTM
    assert pg.dna_spec(GatedDeltaNet.space()).space_size == 3 * 2
    assert pg.dna_spec(MLSTM.space()).space_size == 3 * 2 * 2
    assert pg.dna_spec(DeltaNet.space()).space_size == 3  # no conv decision: old DNAs keep
    assert "Yang" in GatedDeltaNet.__doc__ and "2412.06464" in GatedDeltaNet.__doc__
    assert "xLSTM" in MLSTM.__doc__ and "2405.04517" in MLSTM.__doc__
    assert GatedDeltaNet(num_heads=2, conv_kernel=4).summary() == "gdn(h=2,c4)"
    assert MLSTM(num_heads=4, forget="exp", conv_kernel=0).summary() == "mlstm(h=4,exp,c0)"
    assert DeltaNet(num_heads=2).summary() == "delta(h=2)"


def test_bad_values_are_named() -> None:
    with pytest.raises(ValueError, match="num_heads=3"):
        GatedDeltaNet(num_heads=3).build(16)
    with pytest.raises(ValueError, match="conv_kernel.*-1"):
        GatedDeltaNet(conv_kernel=-1).build(16)
    with pytest.raises(ValueError, match="num_heads=5"):
        MLSTM(num_heads=5).build(16)
    with pytest.raises(ValueError, match="'tanh'"):
        MLSTM(forget="tanh").build(16)
    with pytest.raises(ValueError, match="'tanh'"):
        MLSTM(forget="tanh").state_numbers(16, 8)
    with pytest.raises(ValueError, match="conv_kernel.*-4"):
        MLSTM(conv_kernel=-4).state_numbers(16, 8)
    with pytest.raises(ValueError, match="num_heads=3"):
        DeltaNet(num_heads=3).state_numbers(16, 8)


@pytest.mark.parametrize("cls", [GatedDeltaNet, MLSTM])
def test_in_memory_space_samples_build_train_step(cls: type) -> None:
    space = memory_space(vocab_size=11, max_layers=2, d_model=(16, 32), mixers=[cls], max_len=20)
    spec = pg.dna_spec(space)
    rng = random.Random(0)
    tokens = torch.randint(0, 11, (2, 20))
    for _ in range(4):
        candidate = pg.materialize(space, pg.random_dna(spec, rng))
        assert all(isinstance(b.mixer, cls) for b in candidate.layers)
        model = candidate.build()
        logits = model(tokens)
        assert logits.shape == (2, 20, 11) and torch.isfinite(logits).all()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), tokens.reshape(-1))
        loss.backward()
        params = list(model.parameters())
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
        with torch.no_grad():
            for p in params:
                p -= 0.1 * p.grad
        assert torch.isfinite(model(tokens)).all()
