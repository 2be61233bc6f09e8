"""Delta rule and gated delta rule: per-token references and chunkwise (WY / UT transform) forms."""

from __future__ import annotations

import torch

__all__ = [
    "delta_rule",
    "delta_rule_reference",
    "gated_delta_rule",
    "gated_delta_rule_reference",
]


def _check(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    g: torch.Tensor | None,
    initial_state: torch.Tensor | None,
) -> None:
    """Raises ValueError unless the shapes follow fla's ``[B, T, H, D]`` layout."""
    if q.ndim != 4 or k.shape != q.shape or v.ndim != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"q, k must be [B, T, H, K] and v [B, T, H, V]; got q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    for name, gate in (("beta", beta), ("g", g)):
        if gate is not None and gate.shape != q.shape[:3]:
            raise ValueError(f"{name} must be [B, T, H] = {tuple(q.shape[:3])}, got {tuple(gate.shape)}")
    b, _, h, dk = q.shape
    expected = (b, h, dk, v.shape[-1])
    if initial_state is not None and tuple(initial_state.shape) != expected:
        raise ValueError(f"initial_state must be [B, H, K, V] = {expected}, got {tuple(initial_state.shape)}")


def _recurrent(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor | None,
    beta: torch.Tensor,
    scale: float | None,
    initial_state: torch.Tensor | None,
    output_final_state: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The (gated) delta rule one token at a time; ``g=None`` means no decay."""
    _check(q, k, v, beta, g, initial_state)
    b, t, h, dk = q.shape
    scale = dk**-0.5 if scale is None else scale
    state = q.new_zeros(b, h, dk, v.shape[-1]) if initial_state is None else initial_state.to(q.dtype)
    outs = []
    for i in range(t):
        if g is not None:
            state = state * g[:, i].exp()[..., None, None]
        k_i = k[:, i]  # [B, H, K]
        err = v[:, i] - torch.einsum("bhkv,bhk->bhv", state, k_i)
        state = state + torch.einsum("bhk,bhv->bhkv", k_i, beta[:, i, :, None] * err)
        outs.append(scale * torch.einsum("bhkv,bhk->bhv", state, q[:, i]))
    o = torch.stack(outs, dim=1) if outs else v.new_zeros(v.shape)
    return o, (state if output_final_state else None)


def _to_chunks(x: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """[B, T, H, *rest] -> [B, H, N, C, *rest], zero-padding T up to N * C."""
    b, t, h = x.shape[:3]
    n = -(-t // chunk_size)
    x = x.transpose(1, 2)
    pad = n * chunk_size - t
    if pad:
        x = torch.cat([x, x.new_zeros((b, h, pad) + x.shape[3:])], dim=2)
    return x.reshape((b, h, n, chunk_size) + x.shape[3:])


def _chunked(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor | None,
    beta: torch.Tensor,
    scale: float | None,
    initial_state: torch.Tensor | None,
    output_final_state: bool,
    chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The (gated) delta rule chunk by chunk (see `gated_delta_rule`); ``g=None``: no decay.

    Padded positions (T up to a multiple of ``chunk_size``) get ``k = v = q = 0``,
    ``beta = 0`` and ``g = 0``: they leave the state unchanged, and their outputs are
    dropped.
    """
    _check(q, k, v, beta, g, initial_state)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
    b, t, h, dk = q.shape
    dv = v.shape[-1]
    scale = dk**-0.5 if scale is None else scale
    state = q.new_zeros(b, h, dk, dv) if initial_state is None else initial_state.to(q.dtype)
    if t == 0:
        return v.new_zeros(v.shape), (state if output_final_state else None)
    c = min(chunk_size, t)  # a short sequence is one chunk of its own length, not padded
    qc, kc, vc, bc = (_to_chunks(z, c) for z in (q * scale, k, v, beta))  # [B, H, N, C(, D)]
    kk = kc @ kc.transpose(-1, -2)
    qk = qc @ kc.transpose(-1, -2)
    if g is None:
        k_in = kc  # keys as seen from the chunk's start (no decay)
        q_in, k_out, chunk_decay = qc, kc, None
        qk = qk.tril()
    else:
        cum = _to_chunks(g, c).cumsum(-1)  # G_i: log decay from the chunk's start to i
        # Gamma_ij = exp(G_i - G_j) for j <= i, else 0 (masked before exp: no overflow).
        upper = torch.ones(c, c, dtype=torch.bool, device=q.device).triu(1)
        gamma = (cum[..., :, None] - cum[..., None, :]).masked_fill(upper, float("-inf")).exp()
        kk = kk * gamma
        qk = qk * gamma
        k_in = kc * cum.exp()[..., None]
        q_in = qc * cum.exp()[..., None]
        k_out = kc * (cum[..., -1:] - cum).exp()[..., None]  # decayed to the chunk's end
        chunk_decay = cum[..., -1].exp()[..., None, None]  # [B, H, N, 1, 1]
    # UT transform: T = (I + tril(diag(beta) K K^T * Gamma, -1))^{-1} diag(beta), one
    # batched triangular solve for all chunks (unitriangular: only the strict lower
    # triangle is read, forward and backward). W = T (K * exp(G)), U = T V.
    lower = bc[..., None] * kk
    rhs = bc[..., None] * torch.cat([k_in, vc], dim=-1)
    wu = torch.linalg.solve_triangular(lower, rhs, upper=False, unitriangular=True)
    w, u = wu.split([dk, dv], dim=-1)
    # O = Q_in S + tril(Q K^T) (U - W S) = tril(Q K^T) U + (Q_in - tril(Q K^T) W) S: the
    # state-free parts for all chunks at once; the loop only carries the state.
    o_intra = qk @ u
    q_eff = q_in - qk @ w
    entering = []
    # Per-chunk views via unbind: one backward node per tensor instead of one per chunk.
    chunks = [z.unbind(2) for z in (k_out, w, u)]
    decays = chunk_decay.unbind(2) if chunk_decay is not None else [None] * len(chunks[0])
    for kn, wn, un, dn in zip(*chunks, decays):
        entering.append(state)
        pseudo = un - wn @ state  # the chunk's delta-rule errors, given the entering state
        carried = state if dn is None else dn * state
        state = carried + kn.transpose(-1, -2) @ pseudo
    o = o_intra + q_eff @ torch.stack(entering, dim=2)
    o = o.reshape(b, h, -1, dv)[:, :, :t].transpose(1, 2)
    return o, (state if output_final_state else None)


def delta_rule_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The delta rule token by token (the per-token reference of `delta_rule`).

    ``S_t = S_{t-1} + beta_t k_t (v_t - S_{t-1}^T k_t)^T``, ``o_t = scale S_t^T q_t``;
    as fla's ``delta_rule_recurrence`` in ``fla/ops/delta_rule/naive.py``
    (https://github.com/fla-org/flash-linear-attention), but in fla's public
    ``[B, T, H, D]`` layout and in the inputs' dtype.

    Args:
      q: Queries ``[B, T, H, K]``.
      k: Keys ``[B, T, H, K]`` (callers L2-normalise them; the op does not).
      v: Values ``[B, T, H, V]``.
      beta: Write strengths ``[B, T, H]``.
      scale: Query scale; ``K ** -0.5`` when None.
      initial_state: ``S_0`` as ``[B, H, K, V]``; zeros when None.
      output_final_state: Whether to return the final state.

    Returns:
      ``(o, final_state)``: ``o`` is ``[B, T, H, V]``, ``final_state`` is
      ``[B, H, K, V]`` or None unless ``output_final_state``.
    """
    return _recurrent(q, k, v, None, beta, scale, initial_state, output_final_state)


def delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The delta rule, chunkwise (Yang et al., NeurIPS 2024); same function as the reference.

    Yang, Wang, Zhang, Shen, Kim, "Parallelizing Linear Transformers with the Delta
    Rule over Sequence Length" (https://arxiv.org/abs/2406.06484); fla's
    ``chunk_delta_rule`` signature and ``delta_rule_chunkwise`` in
    ``fla/ops/delta_rule/naive.py``. Inside each chunk the WY representation comes from
    the UT transform ``T = (I + tril(diag(beta) K K^T, -1))^{-1} diag(beta)`` (one
    batched triangular solve), ``W = T K``, ``U = T V``; then per chunk
    ``U' = U - W S``, ``O = Q S + tril(Q K^T) U'``, ``S <- S + K^T U'``. Exact: the
    chunk size changes speed only. Any ``T`` (the tail chunk is zero-padded).

    Args:
      q: Queries ``[B, T, H, K]``.
      k: Keys ``[B, T, H, K]`` (callers L2-normalise them; the op does not).
      v: Values ``[B, T, H, V]``.
      beta: Write strengths ``[B, T, H]``.
      scale: Query scale; ``K ** -0.5`` when None.
      initial_state: ``S_0`` as ``[B, H, K, V]``; zeros when None.
      output_final_state: Whether to return the final state.
      chunk_size: Tokens per chunk.

    Returns:
      ``(o, final_state)`` as `delta_rule_reference`.
    """
    return _chunked(q, k, v, None, beta, scale, initial_state, output_final_state, chunk_size)


def gated_delta_rule_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The gated delta rule token by token (the per-token reference of `gated_delta_rule`).

    ``S_t = exp(g_t) S_{t-1} + beta_t k_t (v_t - (exp(g_t) S_{t-1})^T k_t)^T``,
    ``o_t = scale S_t^T q_t``; as fla's ``naive_recurrent_gated_delta_rule`` in
    ``fla/ops/gated_delta_rule/naive.py``
    (https://github.com/fla-org/flash-linear-attention), with the argument order of
    fla's ``chunk_gated_delta_rule`` (``g`` before ``beta``) and the inputs' dtype.

    Args:
      q: Queries ``[B, T, H, K]``.
      k: Keys ``[B, T, H, K]`` (callers L2-normalise them; the op does not).
      v: Values ``[B, T, H, V]``.
      g: Log-space decays ``[B, T, H]`` (``<= 0`` for a decay).
      beta: Write strengths ``[B, T, H]``.
      scale: Query scale; ``K ** -0.5`` when None.
      initial_state: ``S_0`` as ``[B, H, K, V]``; zeros when None.
      output_final_state: Whether to return the final state.

    Returns:
      ``(o, final_state)``: ``o`` is ``[B, T, H, V]``, ``final_state`` is
      ``[B, H, K, V]`` or None unless ``output_final_state``.
    """
    return _recurrent(q, k, v, g, beta, scale, initial_state, output_final_state)


def gated_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The gated delta rule, chunkwise (Yang, Kautz, Hatamizadeh, ICLR 2025).

    "Gated Delta Networks: Improving Mamba2 with Delta Rule"
    (https://arxiv.org/abs/2412.06464); fla's ``chunk_gated_delta_rule`` signature and
    ``naive_chunk_gated_delta_rule`` in ``fla/ops/gated_delta_rule/naive.py``. With
    ``G_i`` the cumulative log decay from the chunk's start and
    ``Gamma_ij = exp(G_i - G_j)`` (``j <= i``): UT transform
    ``T = (I + tril(diag(beta) (K K^T * Gamma), -1))^{-1} diag(beta)``,
    ``W = T (K * exp(G))``, ``U = T V``; per chunk ``U' = U - W S``,
    ``O = (Q * exp(G)) S + tril(Q K^T * Gamma) U'``,
    ``S <- exp(G_C) S + (K * exp(G_C - G))^T U'``. Only differences of ``G`` with
    ``j <= i`` are exponentiated, so nothing overflows. Any ``T`` (zero-padded tail).

    Args:
      q: Queries ``[B, T, H, K]``.
      k: Keys ``[B, T, H, K]`` (callers L2-normalise them; the op does not).
      v: Values ``[B, T, H, V]``.
      g: Log-space decays ``[B, T, H]`` (``<= 0`` for a decay).
      beta: Write strengths ``[B, T, H]``.
      scale: Query scale; ``K ** -0.5`` when None.
      initial_state: ``S_0`` as ``[B, H, K, V]``; zeros when None.
      output_final_state: Whether to return the final state.
      chunk_size: Tokens per chunk.

    Returns:
      ``(o, final_state)`` as `gated_delta_rule_reference`.
    """
    return _chunked(q, k, v, g, beta, scale, initial_state, output_final_state, chunk_size)
