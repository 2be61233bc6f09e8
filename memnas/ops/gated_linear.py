"""Gated linear attention (GLA) and simple GLA / retention: per-token references and chunked forms."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Largest sub-chunk of the intra-chunk GLA computation (the pairwise-decay block size).
SUB_CHUNK = 8


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


def _across_chunks(
    q_in: torch.Tensor,
    k_out: torch.Tensor,
    v: torch.Tensor,
    decay: torch.Tensor,
    state: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The state recurrence across chunks.

    Args:
      q_in: ``[B, H, N, C, K]`` queries times their decay since the chunk's start.
      k_out: ``[B, H, N, C, K]`` keys times their decay up to the chunk's end.
      v: ``[B, H, N, C, V]`` values.
      decay: ``[B, H, N, K]`` (or ``[B, H, N, 1]``) the whole chunk's decay.
      state: ``[B, H, K, V]`` the state before the first chunk.

    Returns:
      ``(o_inter [B, H, N, C, V], final state [B, H, K, V])``.
    """
    updates = k_out.transpose(-1, -2) @ v  # [B, H, N, K, V], every chunk's own contribution
    decay = decay[..., None].expand(updates.shape)
    states = []
    for n in range(v.shape[2]):
        states.append(state)
        state = torch.addcmul(updates[:, :, n], decay[:, :, n], state)
    return q_in @ torch.stack(states, dim=2), state


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

    The sequence is cut into chunks of ``chunk_size`` tokens (the last one zero-padded).
    With ``b_t`` the cumulative log decay since the chunk's start, a chunk's output is
    ``(q_t * exp(b_t)) S + sum_{s<=t} (q_t * k_s * exp(b_t - b_s)).sum() v_s`` and the
    state moves on as ``S <- exp(b_C) S + sum_s (k_s * exp(b_C - b_s)) v_s^T``. Inside a
    chunk, tokens are grouped in sub-chunks of up to `SUB_CHUNK` (as fla's kernels do):
    pairs in different sub-chunks factor as ``exp(b_t - r) exp(r - e) exp(e - b_s)``
    through the log decays ``r`` just before the query's sub-chunk and ``e`` at the end of
    the key's, so they are matmuls, and pairs in the same sub-chunk take ``exp(b_t - b_s)``
    per key dimension, one offset ``t - s`` at a time. Every exponent is at most 0, so
    nothing overflows however strong the decay.

    Args:
      q: Queries ``[B, T, H, K]``.
      k: Keys ``[B, T, H, K]``.
      v: Values ``[B, T, H, V]``.
      gk: Log decays ``[B, T, H, K]``, at most 0 (e.g. ``-softplus(x)``): the chunked
        form clamps every decay factor to at most 1.
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
    C = chunk_size
    c = max(d for d in range(1, min(SUB_CHUNK, C) + 1) if C % d == 0)
    n = C // c
    qc, kc, vc, gc = (_chunks(x, C) for x in (q * scale, k, v, gk))  # [B, H, N, C, .]
    b = gc.cumsum(-2)
    B, H, N = qc.shape[:3]
    sub = (B, H, N, n, c, K)
    qs, ks, bs = qc.reshape(sub), kc.reshape(sub), b.reshape(sub)
    dev, dt = q.device, q.dtype

    # Same sub-chunk: pairwise decays exp(b_t - b_s), s = t - d, one offset d at a time.
    a_diag = torch.diag_embed((qs * ks).sum(-1))  # [B,H,N,n,c,c]
    for d in range(1, c):
        pair = _decay(bs[..., d:, :] - bs[..., :-d, :])
        a_diag = a_diag + torch.diag_embed((qs[..., d:, :] * ks[..., :-d, :] * pair).sum(-1), -d)

    # Sub-chunk j < i: exp(b_t - b_s) = exp(b_t - r_i) exp(r_i - e_j) exp(e_j - b_s), with
    # r_i the log decay just before sub-chunk i and e_j the one at the end of sub-chunk j.
    ends = bs[..., -1, :]  # [B,H,N,n,K]
    ref = torch.cat([b.new_zeros(B, H, N, 1, K), ends[:, :, :, :-1]], dim=3)
    q_ref = qs * _decay(bs - ref[..., None, :])
    k_end = ks * _decay(ends[..., None, :] - bs)
    earlier = torch.ones(n, n, dtype=dt, device=dev).tril(-1)[..., None]
    mid = _decay(ref[..., :, None, :] - ends[..., None, :, :], earlier)  # [B,H,N,n_i,n_j,K]
    keys = (mid[..., None, :] * k_end[:, :, :, None]).reshape(B, H, N, n, C, K)  # [.., i, (j s), K]
    a = (q_ref @ keys.transpose(-1, -2)).reshape(B, H, N, n, c, n, c)
    eye = torch.eye(n, dtype=dt, device=dev)[:, None, :, None]
    a = a + a_diag[..., None, :] * eye  # [B,H,N,n_i,c_t,n_j,c_s]
    o_intra = a.reshape(B, H, N, C, C) @ vc

    # Across chunks: q_t exp(b_t) = q_ref exp(r_i), k_s exp(b_C - b_s) = k_end exp(b_C - e_j).
    b_last = b[:, :, :, -1]
    q_in = (q_ref * _decay(ref)[..., None, :]).reshape(qc.shape)
    k_out = (k_end * _decay(b_last[:, :, :, None] - ends)[..., None, :]).reshape(kc.shape)
    o_inter, state = _across_chunks(q_in, k_out, vc, _decay(b_last), state)
    return _unchunk(o_intra + o_inter, T), state if output_final_state else None


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
    C = chunk_size
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
