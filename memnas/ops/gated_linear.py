"""Gated linear attention (GLA) and simple GLA / retention: per-token references and chunked forms."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Largest sub-chunk of the chunked GLA when its decays factor through the sub-chunk's start.
SUB_CHUNK = 32
# Largest sub-chunk when they do not (per-pair decays, see `gla`).
PAIR_SUB_CHUNK = 8
# The factored form is taken when every sub-chunk's log decay spans at most this fraction
# of log(largest float): its factors then lie in [max ** -FACTOR_SPAN, max ** FACTOR_SPAN].
FACTOR_SPAN = 0.25


def _decay(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``exp(x)`` for log decays ``x <= 0``, times ``mask`` (0 where the pair is not causal).

    Exponents are clamped to ``[log(tiny) / 2, 0]``: masked entries may hold large positive
    exponents, and below the floor ``exp`` (and products of two results) would be subnormal,
    which is many times slower on CPUs and changes nothing above the dtype's resolution.
    """
    floor = 0.5 * math.log(torch.finfo(x.dtype).tiny)
    e = x.clamp(min=floor, max=0.0).exp()
    return e if mask is None else e * mask


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk_size: int | None = None) -> None:
    if q.dim() != 4 or k.shape != q.shape or v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"expected q, k [B, T, H, K] and v [B, T, H, V], got {tuple(q.shape)}, "
            f"{tuple(k.shape)}, {tuple(v.shape)}"
        )
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")


def _initial(q: torch.Tensor, v: torch.Tensor, initial_state: torch.Tensor | None) -> torch.Tensor:
    """The starting state ``[B, H, K, V]``: zeros, or ``initial_state`` at ``q``'s dtype."""
    B, _, H, K = q.shape
    if initial_state is None:
        return q.new_zeros(B, H, K, v.shape[-1])
    return initial_state.to(dtype=q.dtype)


def _chunks(x: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """``[B, T, H, ...]`` zero-padded to ``N * C`` tokens and viewed as ``[B, H, N, C, ...]``."""
    B, T, H = x.shape[:3]
    pad = -T % chunk_size
    if pad:
        x = F.pad(x, (0, 0) * (x.dim() - 2) + (0, pad))
    x = x.reshape(B, (T + pad) // chunk_size, chunk_size, H, *x.shape[3:])
    return x.movedim(3, 1)


def _unchunk(o: torch.Tensor, T: int) -> torch.Tensor:
    """``[B, H, N, C, V]`` back to ``[B, T, H, V]``, the padding dropped."""
    B, H, N, C, V = o.shape
    return o.reshape(B, H, N * C, V)[:, :, :T].transpose(1, 2)


def _scan(
    updates: torch.Tensor, decay: torch.Tensor, state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The state recurrence across chunks: ``S <- decay_n * S + updates_n``.

    Args:
      updates: ``[B, H, N, K, V]`` every chunk's own contribution at its end.
      decay: ``[B, H, N, K]`` (or ``[B, H, N, 1]``) the whole chunk's decay.
      state: ``[B, H, K, V]`` the state before the first chunk.

    Returns:
      ``(states before each chunk [B, H, N, K, V], final state [B, H, K, V])``.
    """
    decay = decay[..., None].expand(updates.shape)
    states = []
    for n in range(updates.shape[2]):
        states.append(state)
        state = torch.addcmul(updates[:, :, n], decay[:, :, n], state)
    return torch.stack(states, dim=2), state


def _across_chunks(
    q_in: torch.Tensor,
    k_out: torch.Tensor,
    v: torch.Tensor,
    decay: torch.Tensor,
    state: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The outputs of the states carried across chunks.

    Args:
      q_in: ``[B, H, N, C, K]`` queries times their decay since the chunk's start.
      k_out: ``[B, H, N, C, K]`` keys times their decay up to the chunk's end.
      v: ``[B, H, N, C, V]`` values.
      decay: ``[B, H, N, K]`` (or ``[B, H, N, 1]``) the whole chunk's decay.
      state: ``[B, H, K, V]`` the state before the first chunk.

    Returns:
      ``(o_inter [B, H, N, C, V], final state [B, H, K, V])``.
    """
    states, state = _scan(k_out.transpose(-1, -2) @ v, decay, state)
    return q_in @ states, state


def _sub_chunk(b: torch.Tensor) -> tuple[int, bool]:
    """The sub-chunk size for cumulative log decays ``b`` ``[B, H, N, C, K]``, and whether factored.

    `SUB_CHUNK` (the largest divisor of ``C`` up to it) when no sub-chunk's log decay
    spans more than ``FACTOR_SPAN * log(max)``, else `PAIR_SUB_CHUNK` with per-pair decays.
    """
    C = b.shape[-2]
    c = max(d for d in range(1, min(SUB_CHUNK, C) + 1) if C % d == 0)
    ends = b.detach().unflatten(-2, (C // c, c))[..., -1, :]
    span = (torch.cat([torch.zeros_like(ends[..., :1, :]), ends[..., :-1, :]], -2) - ends).max()
    if span.item() <= FACTOR_SPAN * math.log(torch.finfo(b.dtype).max):
        return c, True
    return max(d for d in range(1, min(PAIR_SUB_CHUNK, C) + 1) if C % d == 0), False


def gla_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    gk: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gated linear attention, one token at a time (the recurrence as written).

    ``S_t = diag(exp(gk_t)) S_{t-1} + k_t v_t^T``, ``o_t = scale * S_t^T q_t``; as
    flash-linear-attention's ``naive_recurrent_gla`` (``fla/ops/gla/naive.py``,
    https://github.com/fla-org/flash-linear-attention), computed at the inputs' dtype.

    Args:
      q: Queries ``[B, T, H, K]``.
      k: Keys ``[B, T, H, K]``.
      v: Values ``[B, T, H, V]``.
      gk: Log decays ``[B, T, H, K]`` (at most 0 for a decaying memory).
      scale: Query scale; ``K ** -0.5`` when None.
      initial_state: State ``[B, H, K, V]`` before the first token; zeros when None.
      output_final_state: Whether to return the state after the last token.

    Returns:
      ``(o [B, T, H, V], final_state [B, H, K, V] or None)``.
    """
    _check(q, k, v)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    state = _initial(q, v, initial_state)
    outs = []
    for t in range(q.shape[1]):
        kv = k[:, t, :, :, None] * v[:, t, :, None, :]
        state = gk[:, t].exp()[..., None] * state + kv
        outs.append(((q[:, t] * scale)[..., None] * state).sum(-2))
    o = torch.stack(outs, dim=1) if outs else v.new_zeros(v.shape)
    return o, state if output_final_state else None


def gla(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    gk: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gated linear attention (Yang et al. 2024), chunkwise parallel.

    Source: Yang, Wang, Shen, Panda, Kim, "Gated Linear Attention Transformers with
    Hardware-Efficient Training", ICML 2024 (https://arxiv.org/abs/2312.06635).
    Computes the same function as `gla_reference`:
    ``S_t = diag(exp(gk_t)) S_{t-1} + k_t v_t^T``, ``o_t = scale * S_t^T q_t``, with
    flash-linear-attention's layout and conventions (``fla/ops/gla/naive.py``,
    https://github.com/fla-org/flash-linear-attention).

    The sequence is cut into chunks of ``chunk_size`` tokens (the last one zero-padded)
    and each chunk into sub-chunks (the paper's secondary chunking). With ``b_t`` the
    cumulative log decay since the chunk's start, ``r`` its value just before the query's
    sub-chunk and ``e_j`` at the end of sub-chunk ``j``, the output is
    ``(q_t * exp(b_t - r)) S_r + sum_s (q_t * k_s * exp(b_t - b_s)).sum() v_s`` over the
    ``s <= t`` of the same sub-chunk, where ``S_r``, the state before the sub-chunk,
    gathers the earlier sub-chunks' own states ``U_j = sum_s (k_s * exp(e_j - b_s)) v_s^T``
    with weights ``exp(r - e_j)`` and the state before the chunk with ``exp(r)``; the
    states before chunks follow one another as ``S <- exp(b_C) S + U_chunk``. Inside a
    sub-chunk, ``exp(b_t - b_s) = exp(b_t - r) exp(r - b_s)`` is a matmul when no
    sub-chunk's decay spans more than ``FACTOR_SPAN * log(max float)`` (then no factor
    overflows or loses precision), which ordinary gates meet with `SUB_CHUNK` tokens;
    otherwise sub-chunks of `PAIR_SUB_CHUNK` take ``exp(b_t - b_s)`` pair by pair. All
    other exponents are at most 0, so nothing overflows however strong the decay.

    Args:
      q: Queries ``[B, T, H, K]``.
      k: Keys ``[B, T, H, K]``.
      v: Values ``[B, T, H, V]``.
      gk: Log decays ``[B, T, H, K]``, at most 0 (e.g. ``-softplus(x)``): the chunked
        form takes positive entries as 0.
      scale: Query scale; ``K ** -0.5`` when None.
      initial_state: State ``[B, H, K, V]`` before the first token; zeros when None.
      output_final_state: Whether to return the state after the last token.
      chunk_size: Tokens per chunk; any ``T`` works.

    Returns:
      ``(o [B, T, H, V], final_state [B, H, K, V] or None)``.
    """
    _check(q, k, v, chunk_size)
    if gk.shape != q.shape:
        raise ValueError(f"gk must have q's shape {tuple(q.shape)}, got {tuple(gk.shape)}")
    T, K = q.shape[1], q.shape[-1]
    scale = K ** -0.5 if scale is None else scale
    state = _initial(q, v, initial_state)
    C = max(1, min(chunk_size, T))  # a short sequence is one chunk, not padded
    qc, kc, vc, gc = (_chunks(x, C) for x in (q * scale, k, v, gk.clamp(max=0.0)))
    b = gc.cumsum(-2)  # [B, H, N, C, K]
    c, factored = _sub_chunk(b)
    B, H, N = qc.shape[:3]
    n, V, dt, dev = C // c, vc.shape[-1], q.dtype, q.device
    qs, ks, bs, vs = (x.unflatten(3, (n, c)) for x in (qc, kc, b, vc))  # [B, H, N, n, c, .]
    ends = bs[..., -1, :]  # [B, H, N, n, K]
    refs = torch.cat([ends.new_zeros(B, H, N, 1, K), ends], dim=3)  # before each, chunk's end
    q_ref = qs * _decay(bs - refs[..., :-1, None, :])

    # Same sub-chunk: exp(b_t - b_s), factored through r or pair by pair.
    causal = torch.ones(c, c, dtype=dt, device=dev).tril()
    if factored:
        k_ref = ks * (refs[..., :-1, None, :] - bs).exp()
        a = (q_ref @ k_ref.transpose(-1, -2)) * causal  # [B, H, N, n, c, c]
    else:
        pair = _decay(bs[..., :, None, :] - bs[..., None, :, :], causal[..., None])
        a = (qs[..., :, None, :] * ks[..., None, :, :] * pair).sum(-1)

    # Sub-chunks' own states, summed into the state before each sub-chunk (and the chunk's end).
    own = (ks * _decay(ends[..., None, :] - bs)).transpose(-1, -2) @ vs  # [B, H, N, n, K, V]
    earlier = torch.ones(n + 1, n, dtype=dt, device=dev).tril(-1)[..., None]
    w = _decay(refs[..., :, None, :] - ends[..., None, :, :], earlier)  # [B, H, N, n+1, n, K]
    inner = (w.movedim(-1, -3) @ own.transpose(-2, -3)).transpose(-2, -3)  # [B, H, N, n+1, K, V]
    starts, state = _scan(inner[:, :, :, -1], _decay(refs[..., -1, :]), state)
    states = inner[:, :, :, :-1] + _decay(refs[..., :-1, :])[..., None] * starts[:, :, :, None]
    o = a @ vs + q_ref @ states
    return _unchunk(o.reshape(B, H, N, C, V), T), state if output_final_state else None


def simple_gla_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Simple GLA (one log decay per head), one token at a time.

    ``S_t = exp(g_t) S_{t-1} + k_t v_t^T``, ``o_t = scale * S_t^T q_t``; as
    flash-linear-attention's ``naive_recurrent_simple_gla``
    (``fla/ops/simple_gla/naive.py``, https://github.com/fla-org/flash-linear-attention).

    Args:
      q: Queries ``[B, T, H, K]``.
      k: Keys ``[B, T, H, K]``.
      v: Values ``[B, T, H, V]``.
      g: Log decays ``[B, T, H]``.
      scale: Query scale; ``K ** -0.5`` when None.
      initial_state: State ``[B, H, K, V]`` before the first token; zeros when None.
      output_final_state: Whether to return the state after the last token.

    Returns:
      ``(o [B, T, H, V], final_state [B, H, K, V] or None)``.
    """
    _check(q, k, v)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    state = _initial(q, v, initial_state)
    outs = []
    for t in range(q.shape[1]):
        kv = k[:, t, :, :, None] * v[:, t, :, None, :]
        state = g[:, t].exp()[..., None, None] * state + kv
        outs.append(((q[:, t] * scale)[..., None] * state).sum(-2))
    o = torch.stack(outs, dim=1) if outs else v.new_zeros(v.shape)
    return o, state if output_final_state else None


def simple_gla(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Simple gated linear attention: one data-dependent log decay per head, chunkwise.

    ``S_t = exp(g_t) S_{t-1} + k_t v_t^T``, ``o_t = scale * S_t^T q_t`` (the same function
    as `simple_gla_reference`), with flash-linear-attention's conventions
    (``fla/ops/simple_gla/naive.py``, https://github.com/fla-org/flash-linear-attention).
    RetNet's retention (Sun et al., "Retentive Network: A Successor to Transformer for
    Large Language Models", 2023, https://arxiv.org/abs/2307.08621) is this op with a
    fixed per-head decay: ``g[:, t, h] = log(gamma_h)`` for every ``t``.

    Within a chunk, with ``b_t`` the cumulative log decay since its start, the output is
    ``exp(b_t) q_t S + sum_{s<=t} exp(b_t - b_s) (q_t . k_s) v_s``; across chunks
    ``S <- exp(b_C) S + sum_s exp(b_C - b_s) k_s v_s^T``. Every exponent is at most 0.

    Args:
      q: Queries ``[B, T, H, K]``.
      k: Keys ``[B, T, H, K]``.
      v: Values ``[B, T, H, V]``.
      g: Log decays ``[B, T, H]``, at most 0: the chunked form clamps every decay
        factor to at most 1.
      scale: Query scale; ``K ** -0.5`` when None.
      initial_state: State ``[B, H, K, V]`` before the first token; zeros when None.
      output_final_state: Whether to return the state after the last token.
      chunk_size: Tokens per chunk; any ``T`` works.

    Returns:
      ``(o [B, T, H, V], final_state [B, H, K, V] or None)``.
    """
    _check(q, k, v, chunk_size)
    if g.shape != q.shape[:3]:
        raise ValueError(f"g must have shape {tuple(q.shape[:3])}, got {tuple(g.shape)}")
    T, K = q.shape[1], q.shape[-1]
    scale = K ** -0.5 if scale is None else scale
    state = _initial(q, v, initial_state)
    C = max(1, min(chunk_size, T))  # a short sequence is one chunk, not padded
    qc, kc, vc = (_chunks(x, C) for x in (q * scale, k, v))  # [B, H, N, C, .]
    b = _chunks(g, C).cumsum(-1)  # [B, H, N, C]
    causal = torch.ones(C, C, dtype=q.dtype, device=q.device).tril()
    decay = _decay(b[..., :, None] - b[..., None, :], causal)
    o_intra = ((qc @ kc.transpose(-1, -2)) * decay) @ vc
    b_last = b[..., -1:]
    o_inter, state = _across_chunks(
        qc * _decay(b)[..., None], kc * _decay(b_last - b)[..., None], vc, _decay(b_last), state
    )
    return _unchunk(o_intra + o_inter, T), state if output_final_state else None
