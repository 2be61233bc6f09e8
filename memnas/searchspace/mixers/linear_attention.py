"""Causal linear attention (Katharopoulos et al., 2020), chunkwise-parallel and recurrent forms."""

from __future__ import annotations

from typing import Any, Callable

import pyglove as pg
import torch
import torch.nn.functional as F
from torch import nn

from memnas.searchspace.mixers._base import Mixer, register_mixer
from memnas.searchspace.mixers._heads import merge_heads, split_heads

# name -> (feature map, whether its values are non-negative).
FEATURE_MAPS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], bool]] = {
    "elu+1": (lambda x: F.elu(x) + 1.0, True),
    "relu": (F.relu, True),
    "softmax": (lambda x: torch.softmax(x, dim=-1), True),
    "identity": (lambda x: x, False),
}

CHUNK_SIZE = 64


@register_mixer
class LinearAttention(Mixer):
    """Causal multi-head linear attention.

    Source: Katharopoulos et al., "Transformers are RNNs: Fast Autoregressive
    Transformers with Linear Attention", ICML 2020 (https://arxiv.org/abs/2006.16236).
    ``y_t = sum_{s<=t} (phi(q_t) . phi(k_s)) v_s / (sum_{s<=t} phi(q_t) . phi(k_s) + eps)``.
    As a recurrence, each head keeps a ``d_head x d_head`` state
    ``S_t = S_{t-1} + phi(k_t)^T v_t`` and a normaliser ``z_t = z_{t-1} + phi(k_t)``.
    The built module's ``forward`` is the chunkwise-parallel form (masked matmuls
    inside chunks of `CHUNK_SIZE` tokens, the state carried across chunks; Hua et
    al., "Transformer Quality in Linear Time", 2022, https://arxiv.org/abs/2202.10447),
    its ``reference_forward`` the token-by-token recurrence; both compute the same
    function.

    For feature maps that can be negative (``"identity"``) the denominator is not
    a sum of positive terms and can vanish, so it is replaced by a LayerNorm of
    each head's output (NormAttention, Qin et al., "The Devil in Linear Transformer",
    EMNLP 2022, https://arxiv.org/abs/2210.10340).

    Attributes:
      num_heads: Number of heads; must divide ``d_model``.
      feature_map: One of `FEATURE_MAPS`: ``"elu+1"`` (the paper's), ``"relu"``,
        ``"softmax"`` (a softmax over each head's features) or ``"identity"``.
    """

    num_heads: int = 1
    feature_map: str = "elu+1"

    def build(self, d_model: int) -> nn.Module:
        """Returns a `LinearAttentionModule` of width ``d_model``."""
        self.check(d_model)
        if self.feature_map not in FEATURE_MAPS:
            raise ValueError(
                f"LinearAttention: feature_map must be one of {sorted(FEATURE_MAPS)}, "
                f"got {self.feature_map!r}"
            )
        return LinearAttentionModule(d_model, self.num_heads, self.feature_map)

    def state_numbers(self, d_model: int, max_len: int) -> int:
        """Per head a ``d_head x d_head`` state and a ``d_head`` normaliser (when normalised)."""
        d_head = d_model // self.num_heads
        normaliser = FEATURE_MAPS[self.feature_map][1] if self.feature_map in FEATURE_MAPS else True
        return self.num_heads * d_head * (d_head + int(normaliser))

    def summary(self) -> str:
        """E.g. ``"linear(h=2,elu+1)"``."""
        return f"linear(h={self.num_heads},{self.feature_map})"

    @classmethod
    def space(cls) -> Any:
        """Heads in {1, 2, 4}; feature map in {"elu+1", "relu", "softmax", "identity"}."""
        return cls(
            num_heads=pg.oneof([1, 2, 4]),
            feature_map=pg.oneof(["elu+1", "relu", "softmax", "identity"]),
        )

    @classmethod
    def bench_config(cls) -> "LinearAttention":
        """The configuration `memnas bench mixers` times."""
        return cls(num_heads=2, feature_map="elu+1")


def chunked_linear_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk_size: int = CHUNK_SIZE
) -> torch.Tensor:
    """Unnormalised causal linear attention ``y_t = q_t sum_{s<=t} k_s^T v_s``, chunkwise.

    Inside each chunk of ``chunk_size`` tokens the causal part is a masked
    ``(C, C)`` matmul; the contributions of earlier chunks come from their summed
    ``k^T v`` states (an exclusive prefix sum over chunks). Cost ``O(T C d + T d^2)``.

    Args:
      q: ``(..., T, d_k)`` queries (feature map already applied).
      k: ``(..., T, d_k)`` keys (feature map already applied).
      v: ``(..., T, d_v)`` values.
      chunk_size: Tokens per chunk; ``T`` need not be a multiple of it.

    Returns:
      ``(..., T, d_v)``.
    """
    t = q.shape[-2]
    size = min(chunk_size, t)
    mask = torch.ones(size, size, dtype=torch.bool, device=q.device).tril()
    if t <= chunk_size:  # one chunk: the masked quadratic form, no state
        return (q @ k.transpose(-1, -2)).masked_fill(~mask, 0.0) @ v
    pad = (-t) % chunk_size
    if pad:  # zero keys and values after the end change no earlier output
        q, k, v = (F.pad(z, (0, 0, 0, pad)) for z in (q, k, v))
    n = q.shape[-2] // chunk_size
    qc, kc, vc = (z.unflatten(-2, (n, chunk_size)) for z in (q, k, v))  # (..., N, C, d)
    kv = kc.transpose(-1, -2) @ vc  # (..., N, d_k, d_v): each chunk's state increment
    states = kv.cumsum(dim=-3)
    states = torch.cat([torch.zeros_like(states[..., :1, :, :]), states[..., :-1, :, :]], dim=-3)
    scores = (qc @ kc.transpose(-1, -2)).masked_fill(~mask, 0.0)  # (..., N, C, C)
    y = qc @ states + scores @ vc
    return y.flatten(-3, -2)[..., :t, :]


def recurrent_linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The same function as `chunked_linear_attention`, one token at a time.

    ``S_t = S_{t-1} + k_t^T v_t``, ``y_t = q_t S_t``: the naive recurrent loop,
    a reference for tests and benchmarks.
    """
    state = q.new_zeros(*q.shape[:-2], q.shape[-1], v.shape[-1])
    ys = []
    for i in range(q.shape[-2]):
        state = state + k[..., i, :, None] * v[..., i, None, :]
        ys.append((q[..., i, :, None] * state).sum(dim=-2))
    return torch.stack(ys, dim=-2)


class LinearAttentionModule(nn.Module):
    """(B, T, D) -> (B, T, D) causal multi-head linear attention.

    ``forward`` is the chunkwise-parallel form, ``reference_forward`` the
    token-by-token recurrence of the same function.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        feature_map: str,
        eps: float = 1e-6,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.feature_map = feature_map
        self.eps = eps
        self.chunk_size = chunk_size
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Chunkwise-parallel form: ``(B, T, D) -> (B, T, D)``."""
        return self._attend(x, lambda q, k, v: chunked_linear_attention(q, k, v, self.chunk_size))

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Token-by-token recurrent form of `forward` (slow; for tests and benchmarks)."""
        return self._attend(x, recurrent_linear_attention)

    def _attend(
        self,
        x: torch.Tensor,
        kernel: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        phi, positive = FEATURE_MAPS[self.feature_map]
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(x).chunk(3, dim=-1))
        q, k = phi(q), phi(k)
        if positive:
            # One pass gives numerator and denominator: append a ones column to v.
            y = kernel(q, k, F.pad(v, (0, 1), value=1.0))
            y = y[..., :-1] / (y[..., -1:] + self.eps)
        else:
            y = F.layer_norm(kernel(q, k, v), v.shape[-1:])
        return self.out(merge_heads(y))
