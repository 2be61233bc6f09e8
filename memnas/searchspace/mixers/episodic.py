"""EM-LLM-style episodic memory: local attention plus retrieval of surprise-cut past events."""

from __future__ import annotations

from typing import Any

import pyglove as pg
import torch
import torch.nn.functional as F
from torch import nn

from memnas.searchspace.mixers._base import Mixer, register_mixer
from memnas.searchspace.mixers._heads import merge_heads, split_heads


@register_mixer
class EpisodicMemory(Mixer):
    """Sliding-window attention plus top-k retrieval of past events, one softmax over both.

    Source: Fountas et al., "Human-like Episodic Memory for Infinite Context LLMs"
    (EM-LLM), ICLR 2025 (https://arxiv.org/abs/2407.09942). Recurrence:
    ``y_t = softmax(q_t [K_window(t); K_retrieved(t)]^T) [V_window(t); V_retrieved(t)]``.

    Events: the sequence is cut into events where the surprise of a token is
    high. EM-LLM's surprise is the language model's ``-log p(x_t)``, which a mixer
    inside the model does not have; the proxy here is how badly the recent past
    predicts the token's key: ``s_t = 1 - cos(k_t, mean(k_{t-w}, ..., k_{t-1}))``
    (``w = window``; ``s_0 = 0``), with ``k`` the full-width key. As in EM-LLM
    (its Eq. 1), a new event starts at ``t`` when ``s_t > mu + gamma * sigma``, the
    mean and (population) standard deviation of the surprises of the previous
    ``window`` tokens (from token 1; at least two of them), or when the current
    event already holds ``max_event`` tokens. Both use only tokens up to ``t``.
    EM-LLM's boundary refinement by graph modularity is left out.

    Retrieval: each closed event is represented by the mean key of its tokens.
    The query of token ``t`` (full width, so the choice is shared by the heads)
    selects the ``k_events`` events with the largest dot product among the events
    that are closed (strictly before ``t``'s own event) and start outside the
    local window (``<= t - window``), plus, as EM-LLM's contiguity buffer, the
    closed events right before and after each selected one. Token ``t`` then
    attends, per head and with one softmax, to the local window
    ``t - window + 1 .. t`` and to the selected events' tokens outside it. The
    selection is not differentiable (the gradient reaches the projections
    through the attention). EM-LLM's initial (sink) tokens are left out.

    Attributes:
      num_heads: Number of heads; must divide ``d_model``.
      window: Local attention window (tokens, itself included); also the span of
        the surprise's key mean and of the threshold's statistics.
      k_events: Events retrieved by similarity per token (before neighbours).
      gamma: Threshold scale: boundary where surprise > mean + gamma * std.
      max_event: Longest event, in tokens.
    """

    num_heads: int = 1
    window: int = 16
    k_events: int = 2
    gamma: float = 1.0
    max_event: int = 32

    def build(self, d_model: int) -> nn.Module:
        """Returns an `EpisodicMemoryModule` of width ``d_model``."""
        self.check(d_model)
        for name in ("window", "k_events", "max_event"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"EpisodicMemory: {name} must be an int >= 1, got {value!r}")
        if isinstance(self.gamma, bool) or not isinstance(self.gamma, (int, float)):
            raise ValueError(f"EpisodicMemory: gamma must be a number, got {self.gamma!r}")
        return EpisodicMemoryModule(
            d_model, self.num_heads, self.window, self.k_events, float(self.gamma), self.max_event
        )

    def state_numbers(self, d_model: int, max_len: int) -> int:
        """Keys and values of every token: ``2 * max_len * d_model``.

        EM-LLM keeps the KV of all past tokens (offloaded to CPU memory, events
        paged in when retrieved), so the honest size is the full KV cache, as for
        full attention. The event representatives (one mean key per event) are
        recomputable from the kept keys and are not counted.
        """
        return 2 * max_len * d_model

    def summary(self) -> str:
        """E.g. ``"em(h=2,w=16,k=2,g=1,e=32)"``."""
        return (
            f"em(h={self.num_heads},w={self.window},k={self.k_events},"
            f"g={self.gamma:g},e={self.max_event})"
        )

    @classmethod
    def space(cls) -> Any:
        """Heads {1, 2}; window {16, 32}; k_events {1, 2, 4}; gamma {0.5, 1}; max_event {16, 32}."""
        return cls(
            num_heads=pg.oneof([1, 2]),
            window=pg.oneof([16, 32]),
            k_events=pg.oneof([1, 2, 4]),
            gamma=pg.oneof([0.5, 1.0]),
            max_event=pg.oneof([16, 32]),
        )


def surprise(k: torch.Tensor, window: int) -> torch.Tensor:
    """(B, T, D) keys -> (B, T): ``1 - cos(k_t, mean of the previous window keys)``, 0 at t=0."""
    b, t, _ = k.shape
    csum = F.pad(k.cumsum(dim=1), (0, 0, 1, 0))  # csum[:, i] = sum of k[:, :i]
    idx = torch.arange(t, device=k.device)
    start = (idx - window).clamp(min=0)
    prev_mean = (csum[:, idx] - csum[:, start]) / (idx - start).clamp(min=1)[:, None]
    s = 1.0 - F.cosine_similarity(k, prev_mean, dim=-1, eps=1e-8)
    return s.masked_fill(idx == 0, 0.0)


def event_starts(s: torch.Tensor, window: int, gamma: float, max_event: int) -> torch.Tensor:
    """(B, T) surprises -> (B, T) bool, True where a new event starts (always at t=0).

    Candidate at ``t``: ``s_t > mean + gamma * std`` of ``s`` over ``max(1, t-window)
    .. t-1`` (at least two values); the cap of ``max_event`` tokens per event then
    needs one pass over time.
    """
    b, t = s.shape
    c1 = F.pad(s.cumsum(dim=1), (1, 0))
    c2 = F.pad((s * s).cumsum(dim=1), (1, 0))
    idx = torch.arange(t, device=s.device)
    lo = (idx - window).clamp(min=1)
    count = (idx - lo).clamp(min=0)
    n = count.clamp(min=1).to(s.dtype)
    mean = (c1[:, idx] - c1[:, lo]) / n
    var = ((c2[:, idx] - c2[:, lo]) / n - mean * mean).clamp(min=0)
    candidate = (s > mean + gamma * var.sqrt()) & (count >= 2)
    candidate = candidate.tolist()
    starts = []
    for row in candidate:
        last, out = 0, []
        for i, c in enumerate(row):
            new = i == 0 or c or i - last >= max_event
            last = i if new else last
            out.append(new)
        starts.append(out)
    return torch.tensor(starts, dtype=torch.bool, device=s.device).reshape(b, t)


class EpisodicMemoryModule(nn.Module):
    """(B, T, D) -> (B, T, D) window attention plus retrieved past events."""

    def __init__(
        self, d_model: int, num_heads: int, window: int, k_events: int, gamma: float,
        max_event: int,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window = window
        self.k_events = k_events
        self.gamma = gamma
        self.max_event = max_event
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def events(self, k: torch.Tensor) -> torch.Tensor:
        """(B, T, D) keys -> (B, T) long event index of each token (0, 0, 1, ...)."""
        with torch.no_grad():
            s = surprise(k, self.window)
            starts = event_starts(s, self.window, self.gamma, self.max_event)
        return starts.long().cumsum(dim=1) - 1

    def attention_mask(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """(B, T, D) queries and keys -> (B, T, T) bool: which keys each query attends to."""
        with torch.no_grad():
            b, t, d = k.shape
            ev = self.events(k)  # (B, T)
            n_ev = int(ev.max()) + 1
            idx = torch.arange(t, device=k.device)
            reps = k.new_zeros(b, n_ev, d).index_put_(
                (torch.arange(b, device=k.device)[:, None], ev), k, accumulate=True
            )
            size = k.new_zeros(b, n_ev).scatter_add_(1, ev, torch.ones_like(k[..., 0]))
            reps = reps / size.clamp(min=1)[..., None]
            first = torch.full((b, n_ev), t, device=k.device).scatter_reduce_(
                1, ev, idx.expand(b, t).contiguous(), reduce="amin"
            )
            e_ids = torch.arange(n_ev, device=k.device)
            closed = e_ids[None, None, :] < ev[:, :, None]  # (B, T, E): strictly earlier events
            outside = first[:, None, :] <= (idx - self.window)[None, :, None]
            candidate = closed & outside
            sim = (q @ reps.transpose(1, 2)).masked_fill(~candidate, float("-inf"))
            top_val, top_idx = sim.topk(min(self.k_events, n_ev), dim=-1)
            chosen = torch.zeros_like(candidate).scatter_(-1, top_idx, top_val.isfinite())
            neighbours = chosen.clone()
            neighbours[..., 1:] |= chosen[..., :-1]
            neighbours[..., :-1] |= chosen[..., 1:]
            neighbours &= closed
            # Retrieved: tokens of the chosen events (and neighbours) outside the window.
            retrieved = neighbours.gather(-1, ev[:, None, :].expand(b, t, t))
            lag = idx[:, None] - idx[None, :]
            retrieved &= (lag >= self.window)[None]
            local = ((lag >= 0) & (lag < self.window))[None]
            return retrieved | local

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        mask = self.attention_mask(q, k)
        qh, kh, vh = (split_heads(z, self.num_heads) for z in (q, k, v))
        y = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask[:, None])
        return self.out(merge_heads(y))
