"""Tests of the recurrent mixers (DeltaNet, Titans, Miras): chunked form vs reference loop."""

from __future__ import annotations

import itertools
import random

import pyglove as pg
import pytest
import torch

from memnas.searchspace import memory_space, registered_mixers
from memnas.searchspace.mixers import Mixer
from memnas.searchspace.mixers.delta_rule import DeltaNet, DeltaNetModule
from memnas.searchspace.mixers.miras import (
    LEARNERS,
    RETENTIONS,
    STRUCTURES,
    MirasMemory,
    OnlineMemoryModule,
)
from memnas.searchspace.mixers.titans import TitansMemory
from mixertools import random_init as _random_init

D_MODEL = 8
# (objective, p, huber_delta): delta small enough that both Huber branches occur.
OBJECTIVES = [("dot", 3.0, 1.0), ("l2", 3.0, 1.0), ("lp", 1.0, 1.0), ("lp", 3.0, 1.0),
              ("huber", 3.0, 0.1)]


def _miras(structure: str, objective: tuple, retention: str, learner: str,
           **kw: object) -> MirasMemory:
    name, p, delta = objective
    return MirasMemory(structure=structure, objective=name, retention=retention,
                       learner=learner, p=p, huber_delta=delta, **kw)


# Every combination of the axes; half of them with a clip threshold that acts.
MIRAS = [_miras(*combo, num_heads=2, chunk_size=4, max_grad_norm=(0.5, None)[i // 2 % 2])
         for i, combo in enumerate(itertools.product(STRUCTURES, OBJECTIVES, RETENTIONS, LEARNERS))]
OTHERS = [DeltaNet(num_heads=2, chunk_size=4), DeltaNet(num_heads=1, chunk_size=1),
          TitansMemory(num_heads=2, depth=1, chunk_size=4),
          TitansMemory(num_heads=1, depth=2, chunk_size=4),
          TitansMemory(num_heads=2, depth=2, chunk_size=1)]
ALL = OTHERS + MIRAS


def _id(spec: Mixer) -> str:
    clip = getattr(spec, "max_grad_norm", None)
    return f"{spec.summary()}-c{spec.chunk_size}" + (f"-clip{clip:g}" if clip else "")


@pytest.mark.parametrize("spec", ALL, ids=_id)
def test_chunked_form_matches_reference_loop(spec: Mixer) -> None:
    torch.manual_seed(0)
    module = spec.build(D_MODEL).double()
    assert isinstance(module, (DeltaNetModule, OnlineMemoryModule))
    assert callable(module.reference_forward) and module.chunk_size == spec.chunk_size
    _random_init(module)
    x = torch.randn(2, 11, D_MODEL, dtype=torch.float64)  # 11: not a multiple of the chunk
    y = module(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, module.reference_forward(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("spec", OTHERS + MIRAS[::7], ids=_id)
def test_causal(spec: Mixer) -> None:
    torch.manual_seed(1)
    module = spec.build(D_MODEL).double()
    x = torch.randn(2, 10, D_MODEL, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 6:] = torch.randn(2, 4, D_MODEL, dtype=torch.float64)
    for form in (module, module.reference_forward):
        y, y2 = form(x), form(x2)
        torch.testing.assert_close(y2[:, :6], y[:, :6], rtol=0, atol=1e-12)
        assert not torch.allclose(y2[:, 6:], y[:, 6:])


@pytest.mark.parametrize("spec", ALL, ids=_id)
def test_gradients_reach_every_parameter(spec: Mixer) -> None:
    torch.manual_seed(2)
    module = spec.build(D_MODEL)
    module(torch.randn(2, 9, D_MODEL)).sum().backward()
    for name, p in module.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_reference_loop_runs_under_no_grad() -> None:
    module = TitansMemory(num_heads=2, depth=2, chunk_size=3).build(D_MODEL)
    x = torch.randn(1, 7, D_MODEL)
    with torch.no_grad():
        torch.testing.assert_close(module.reference_forward(x), module(x), rtol=1e-4, atol=1e-5)


def _copy_common(src: torch.nn.Module, dst: torch.nn.Module) -> None:
    with torch.no_grad():
        dst.qkv.weight.copy_(src.qkv.weight)
        dst.out.weight.copy_(src.out.weight)


def test_miras_matrix_l2_gd_per_token_is_deltanet() -> None:
    torch.manual_seed(3)
    delta = DeltaNet(num_heads=2, chunk_size=4).build(D_MODEL).double()
    miras = MirasMemory(structure="matrix", objective="l2", retention="none", learner="gd",
                        num_heads=2, chunk_size=1, max_grad_norm=None).build(D_MODEL).double()
    _copy_common(delta, miras)
    with torch.no_grad():
        miras.lr.weight.copy_(delta.beta.weight)
        miras.lr.bias.copy_(delta.beta.bias)
    x = torch.randn(2, 13, D_MODEL, dtype=torch.float64)
    torch.testing.assert_close(miras(x), delta(x), rtol=0, atol=1e-10)


@pytest.mark.parametrize("chunk_size", [1, 5])
def test_miras_matrix_dot_gd_is_linear_attention(chunk_size: int) -> None:
    torch.manual_seed(4)
    module = MirasMemory(structure="matrix", objective="dot", retention="none", learner="gd",
                         num_heads=1, chunk_size=chunk_size, max_grad_norm=None)
    module = module.build(D_MODEL).double()
    x = torch.randn(2, 12, D_MODEL, dtype=torch.float64)
    q, k, v = module.project(x)
    theta = torch.sigmoid(module.lr(x)).transpose(1, 2)  # (B, H, T)
    scores = (q @ k.transpose(-1, -2)).tril() * theta[:, :, None, :]
    expected = module.finish(scores @ v)  # W_0 = 0 at init
    torch.testing.assert_close(module(x), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("depth", [1, 2])
def test_titans_is_a_miras_instance(depth: int) -> None:
    torch.manual_seed(5)
    titans = TitansMemory(num_heads=2, depth=depth, chunk_size=4).build(D_MODEL)
    miras = MirasMemory(structure="matrix" if depth == 1 else "mlp", objective="l2",
                        retention="data", learner="momentum", num_heads=2,
                        chunk_size=4).build(D_MODEL)
    miras.load_state_dict(titans.state_dict())
    x = torch.randn(2, 10, D_MODEL)
    torch.testing.assert_close(miras(x), titans(x))


def test_titans_chunks_approximate_the_per_token_memory() -> None:
    torch.manual_seed(6)
    exact = TitansMemory(num_heads=1, depth=2, chunk_size=1).build(D_MODEL).double()
    chunked = TitansMemory(num_heads=1, depth=2, chunk_size=4).build(D_MODEL).double()
    chunked.load_state_dict(exact.state_dict())
    x = torch.randn(1, 9, D_MODEL, dtype=torch.float64)
    y1, y4 = exact(x), chunked(x)
    torch.testing.assert_close(y4[:, :1], y1[:, :1])  # first token: same memory
    assert not torch.allclose(y4, y1)


def test_long_sequences_stay_finite() -> None:
    torch.manual_seed(7)
    x = torch.randn(2, 256, 32)
    for spec in (DeltaNet(num_heads=2), TitansMemory(depth=2),
                 MirasMemory(structure="mlp", objective="lp", retention="none")):
        assert torch.isfinite(spec.build(32)(x)).all(), spec.summary()


def test_registered_with_small_spaces() -> None:
    mixers = registered_mixers()
    for cls in (DeltaNet, TitansMemory, MirasMemory):
        assert mixers[cls.__name__] is cls
        heads = cls.space().sym_getattr("num_heads")
        assert set(heads.candidates) <= {1, 2, 4}
    assert pg.dna_spec(MirasMemory.space()).space_size == 3 * 4 * 3 * 2 * 2
    assert pg.dna_spec(TitansMemory.space()).space_size == 4
    assert "Schlag" in DeltaNet.__doc__ and "Yang" in DeltaNet.__doc__
    assert "Titans" in TitansMemory.__doc__ and "Behrouz" in TitansMemory.__doc__
    assert "It's All Connected" in MirasMemory.__doc__


def test_bad_values_are_named() -> None:
    with pytest.raises(ValueError, match="'tree'"):
        MirasMemory(structure="tree").build(16)
    with pytest.raises(ValueError, match="p=0.5"):
        MirasMemory(objective="lp", p=0.5).build(16)
    with pytest.raises(ValueError, match="depth"):
        TitansMemory(depth=3).build(16)
    with pytest.raises(ValueError, match="chunk_size"):
        DeltaNet(chunk_size=0).build(16)


@pytest.mark.parametrize("cls", [DeltaNet, TitansMemory, MirasMemory])
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
        torch.nn.functional.cross_entropy(logits.reshape(-1, 11), tokens.reshape(-1)).backward()
        assert all(p.grad is not None for p in model.parameters())
