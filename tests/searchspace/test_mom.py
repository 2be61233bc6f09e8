"""Tests of the Mixture-of-Memories mixer: both forms, paper's equations, causality, gradients."""

from __future__ import annotations

import pyglove as pg
import pytest
import torch
import torch.nn.functional as F

from memnas.searchspace import registered_mixers
from memnas.searchspace.mixers.mom import MixtureOfMemories, MixtureOfMemoriesModule

D_MODEL = 16
CONFIGS = list(pg.iter(MixtureOfMemories.space()))



def _module(config: MixtureOfMemories, seed: int = 0) -> MixtureOfMemoriesModule:
    torch.manual_seed(seed)
    return config.build(D_MODEL).double()


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.summary())
def test_chunked_matches_reference_loop_in_float64(config: MixtureOfMemories) -> None:
    module = _module(config)
    x = torch.randn(2, 100, D_MODEL, dtype=torch.float64)  # 100 is not a multiple of 64
    assert module.chunk_size == 64
    torch.testing.assert_close(module(x), module.reference_forward(x), rtol=0, atol=1e-5)
    # Shorter than one chunk, and a sequence of one token.
    for t in (1, 7):
        torch.testing.assert_close(
            module(x[:, :t]), module.reference_forward(x[:, :t]), rtol=0, atol=1e-5
        )


def _naive_mom(module: MixtureOfMemoriesModule, x: torch.Tensor) -> torch.Tensor:
    """The paper's equations, written out per token and per memory (one head)."""
    b, t, d = x.shape
    n, shared = module.num_memories, module.shared_memory
    w_k = module.key.weight.view(n + shared, d, d)  # (memory, out, in)
    w_v = module.value.weight.view(n + shared, d, d)
    phi = lambda z: F.elu(z) + 1.0  # noqa: E731
    states = torch.zeros(b, n + shared, d, d, dtype=x.dtype)
    outputs = []
    for i in range(t):
        xt = x[:, i]
        scores = torch.softmax(xt @ module.router.weight.T, dim=-1)
        top, index = scores.topk(module.top_k, dim=-1)
        top = top / top.sum(-1, keepdim=True)
        mixed = torch.zeros(b, d, d, dtype=x.dtype)
        for j in range(b):
            active = [(int(m), float(g)) for m, g in zip(index[j], top[j].detach())]
            if shared:
                active.append((n, 1.0))
            for m, g in active:  # only routed memories are written; the mix is weighted
                k = phi(w_k[m] @ xt[j])
                v = w_v[m] @ xt[j]
                states[j, m] = states[j, m] + torch.outer(k, v)
                mixed[j] += g * states[j, m]
        q = phi(xt @ module.query.weight.T)
        outputs.append(torch.einsum("bd,bde->be", q, mixed))
    y = module.norm(torch.stack(outputs, dim=1))
    return module.out(y)


@pytest.mark.parametrize(
    "config",
    [MixtureOfMemories(4, 2, True), MixtureOfMemories(2, 1, False)],
    ids=lambda c: c.summary(),
)
def test_matches_the_papers_recurrence(config: MixtureOfMemories) -> None:
    module = _module(config, seed=1)
    x = torch.randn(2, 11, D_MODEL, dtype=torch.float64)
    torch.testing.assert_close(module(x), _naive_mom(module, x), rtol=0, atol=1e-10)


def test_routing_weights() -> None:
    module = _module(MixtureOfMemories(4, 2, True))
    weights, written = module.route(torch.randn(3, 20, D_MODEL, dtype=torch.float64))
    assert weights.shape == written.shape == (3, 20, 5)
    assert ((written[..., :4] > 0).sum(-1) == 2).all() and (written[..., 4] == 1).all()
    torch.testing.assert_close(weights[..., :4].sum(-1), torch.ones(3, 20, dtype=torch.float64))
    assert ((weights[..., :4] > 0) == (written[..., :4] > 0)).all()


@pytest.mark.parametrize("cut", [40, 70])  # inside the first chunk of 64, and after it
def test_causal(cut: int) -> None:
    module = _module(MixtureOfMemories(4, 2, True))
    x = torch.randn(2, 80, D_MODEL, dtype=torch.float64)
    x2 = x.clone()
    x2[:, cut:] += torch.randn(2, 80 - cut, D_MODEL, dtype=torch.float64)
    torch.testing.assert_close(module(x2)[:, :cut], module(x)[:, :cut], rtol=0, atol=1e-12)
    assert not torch.allclose(module(x2)[:, cut:], module(x)[:, cut:])


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.summary())
def test_gradients_reach_every_parameter(config: MixtureOfMemories) -> None:
    # 4 x 64 tokens: every memory gets tokens (checked), so every memory's W_k, W_v
    # get a gradient; the router gets one through the read-out weights (for top_k=1
    # through the straight-through weight, see MixtureOfMemories).
    module = _module(config)
    x = torch.randn(4, 64, D_MODEL, dtype=torch.float64)
    _, written = module.route(x)
    assert (written.sum(dim=(0, 1)) > 0).all(), "a memory got no token; enlarge the input"
    module(x).square().mean().backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    d = D_MODEL
    grad_k = module.key.weight.grad.view(-1, d, d)
    assert all(g.abs().sum() > 0 for g in grad_k), "some memory's key projection got no gradient"


def test_an_unused_memory_gets_no_key_gradient() -> None:
    """Honest about top-k routing: a memory no token is routed to is not trained."""
    module = _module(MixtureOfMemories(4, 1, False))
    with torch.no_grad():
        module.router.weight.zero_()
        module.router.weight[0] = 1.0  # route every token with sum(x) > 0 ... to memory 0
    x = torch.rand(1, 10, D_MODEL, dtype=torch.float64)  # positive: always memory 0
    module(x).sum().backward()
    grad_k = module.key.weight.grad.view(4, D_MODEL, D_MODEL)
    assert grad_k[0].abs().sum() > 0 and grad_k[1:].abs().sum() == 0


def test_spec_summary_space_and_errors() -> None:
    assert "MixtureOfMemories" in registered_mixers()
    assert "Du" in MixtureOfMemories.__doc__ and "2502.13685" in MixtureOfMemories.__doc__
    assert len(CONFIGS) == 8
    assert MixtureOfMemories(4, 2, True).summary() == "mom(n=4,k=2,shared)"
    assert MixtureOfMemories(2, 1, num_heads=2).summary() == "mom(n=2,k=1,h=2)"
    y = MixtureOfMemories(2, 2, num_heads=4).build(D_MODEL)(torch.randn(2, 9, D_MODEL))
    assert y.shape == (2, 9, D_MODEL)
    with pytest.raises(ValueError, match="top_k=3, num_memories=2"):
        MixtureOfMemories(2, 3).build(D_MODEL)
    with pytest.raises(ValueError, match="'cosine'"):
        MixtureOfMemories(feature_map="cosine").build(D_MODEL)
    with pytest.raises(ValueError, match="num_heads=3"):
        MixtureOfMemories(num_heads=3).build(D_MODEL)
