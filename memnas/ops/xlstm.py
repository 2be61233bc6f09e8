"""xLSTM's matrix memory (mLSTM) as a stabilised per-token reference and a chunked form."""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
State = tuple[Tensor, Tensor, Tensor]


def _log_forget(f: Tensor, forget: str) -> Tensor:
    """Log forget gate: ``logsigmoid(f)`` (sigmoid gate) or ``f`` (exponential gate)."""
    if forget == "sigmoid":
        return F.logsigmoid(f)
    if forget == "exp":
        return f
    raise ValueError(f"forget must be 'sigmoid' or 'exp', not {forget!r}")


def _start(q: Tensor, v: Tensor, initial_state: State | None) -> State:
    """The initial ``(C [B,H,K,V], n [B,H,K], m [B,H])``, zeros when not given."""
    if initial_state is not None:
        return initial_state
    b, _, h, dk = q.shape
    return (q.new_zeros(b, h, dk, v.shape[-1]), q.new_zeros(b, h, dk), q.new_zeros(b, h))


def mlstm_reference(q: Tensor, k: Tensor, v: Tensor, i: Tensor, f: Tensor,
                    scale: float | None = None, initial_state: State | None = None,
                    output_final_state: bool = False, forget: str = "sigmoid",
                    eps: float = 1e-6) -> tuple[Tensor, State | None]:
    """The mLSTM (Beck et al. 2024, xLSTM, eqs. 19-27) one token at a time, max-stabilised.

    ``m_t = max(log f_t + m_{t-1}, i_t)``, ``f' = exp(log f_t + m_{t-1} - m_t)``,
    ``i' = exp(i_t - m_t)``, ``C_t = f' C_{t-1} + i' k_t v_t^T``, ``n_t = f' n_{t-1} + i' k_t``,
    ``h_t = C_t^T q_t / (max(|n_t . q_t|, exp(-m_t)) + eps)`` with ``q`` scaled. As
    ``recurrent_step_stabilized_simple`` in xLSTM's ``xlstm/blocks/mlstm/backends.py``
    (NX-AI/xlstm), which scales keys by ``D ** -0.5`` instead of queries: the same outputs,
    and its ``C``, ``n`` are ours times ``scale`` (ours hold unscaled keys, as fla's states).

    Args:
        q: Queries ``[B, T, H, K]``.
        k: Keys ``[B, T, H, K]``.
        v: Values ``[B, T, H, V]``.
        i: Input gate pre-activations ``[B, T, H]`` (exponential gate).
        f: Forget gate pre-activations ``[B, T, H]``.
        scale: Query scale, ``K ** -0.5`` by default.
        initial_state: ``(C [B, H, K, V], n [B, H, K], m [B, H])``, stabilised by ``m``.
        output_final_state: Return the state after the last token.
        forget: ``"sigmoid"`` (log-sigmoid in log space) or ``"exp"`` (exponential gate).
        eps: Added to the normaliser, as xLSTM does.

    Returns:
        ``(h [B, T, H, V], (C, n, m) or None)``.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    logf = _log_forget(f, forget)
    C, n, m = _start(q, v, initial_state)
    hs = []
    for t in range(q.shape[1]):
        m_new = torch.maximum(logf[:, t] + m, i[:, t])
        fg = torch.exp(logf[:, t] + m - m_new)
        ig = torch.exp(i[:, t] - m_new)
        kv = k[:, t, :, :, None] * v[:, t, :, None, :]
        C = fg[..., None, None] * C + ig[..., None, None] * kv
        n = fg[..., None] * n + ig[..., None] * k[:, t]
        m = m_new
        qt = q[:, t] * scale
        num = torch.einsum("bhk,bhkv->bhv", qt, C)
        den = torch.maximum((qt * n).sum(-1).abs(), torch.exp(-m)) + eps
        hs.append(num / den[..., None])
    h = torch.stack(hs, dim=1) if hs else v.new_zeros(v.shape)
    return h, ((C, n, m) if output_final_state else None)


def mlstm(q: Tensor, k: Tensor, v: Tensor, i: Tensor, f: Tensor, scale: float | None = None,
          initial_state: State | None = None, output_final_state: bool = False,
          chunk_size: int = 64, forget: str = "sigmoid",
          eps: float = 1e-6) -> tuple[Tensor, State | None]:
    """The mLSTM in chunks; the same function as :func:`mlstm_reference`.

    Within a chunk (all chunks at once) a gated attention ``(q k^T * exp(F_t - F_s + i_s -
    m_t)) v`` with ``F`` the cumulative log forget gate and ``m_t`` each token's own stabiliser,
    so every exponent is ``<= 0``; across chunks the state ``(C, n, m)`` is carried as in
    ``chunkwise_simple`` of xLSTM's ``xlstm/blocks/mlstm/backends.py``.

    Args:
        q: Queries ``[B, T, H, K]``.
        k: Keys ``[B, T, H, K]``.
        v: Values ``[B, T, H, V]``.
        i: Input gate pre-activations ``[B, T, H]``.
        f: Forget gate pre-activations ``[B, T, H]``.
        scale: Query scale, ``K ** -0.5`` by default.
        initial_state: ``(C [B, H, K, V], n [B, H, K], m [B, H])``.
        output_final_state: Return the state after the last token.
        chunk_size: Chunk length; ``T`` need not be a multiple of it.
        forget: ``"sigmoid"`` or ``"exp"``.
        eps: Added to the normaliser.

    Returns:
        ``(h [B, T, H, V], (C, n, m) or None)``.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    b, length, heads, dk = q.shape
    dv = v.shape[-1]
    C0, n0, m0 = _start(q, v, initial_state)
    c = max(1, min(chunk_size, length))
    pad = (-length) % c
    nc = (length + pad) // c

    def chunks(x: Tensor, fill: float = 0.0) -> Tensor:
        """``[B, T, H, ...]`` to ``[B, H, nc, c, ...]``, padded with ``fill``."""
        if pad:
            x = torch.cat([x, x.new_full((b, pad, *x.shape[2:]), fill)], dim=1)
        x = x.reshape(b, nc, c, *x.shape[2:])
        return x.permute(0, 3, 1, 2, *range(4, x.dim()))

    # Padded tokens: log f = 0 and i = -inf, so they leave (C, n, m) unchanged.
    qc, kc, vc = chunks(q * scale), chunks(k), chunks(v)
    Fc = torch.cumsum(chunks(_log_forget(f, forget)), dim=-1)     # [B, H, nc, c]
    ic = chunks(i, float("-inf"))
    causal = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
    logD = Fc[..., :, None] - Fc[..., None, :] + ic[..., None, :]   # log gate from s to t
    logD = logD.masked_fill(~causal, float("-inf"))
    m_intra = logD.max(dim=-1).values                              # [B, H, nc, c]
    # Chunk summaries from a zero start, stabilised by m_loc (the intra max at the chunk end).
    m_loc = m_intra[..., -1]
    w = torch.exp(logD[..., -1, :] - m_loc[..., None])             # [B, H, nc, c]
    C_loc = torch.einsum("bhzs,bhzsk,bhzsv->bhzkv", w, kc, vc)
    n_loc = torch.einsum("bhzs,bhzsk->bhzk", w, kc)
    C, n, m = C0, n0, m0
    starts = []
    for z in range(nc):
        starts.append((C, n, m))
        m_new = torch.maximum(Fc[:, :, z, -1] + m, m_loc[:, :, z])
        fg = torch.exp(Fc[:, :, z, -1] + m - m_new)
        ig = torch.exp(m_loc[:, :, z] - m_new)
        C = fg[..., None, None] * C + ig[..., None, None] * C_loc[:, :, z]
        n = fg[..., None] * n + ig[..., None] * n_loc[:, :, z]
        m = m_new
    Cs = torch.stack([s[0] for s in starts], dim=2)                # [B, H, nc, K, V]
    ns = torch.stack([s[1] for s in starts], dim=2)                # [B, H, nc, K]
    ms = torch.stack([s[2] for s in starts], dim=2)                # [B, H, nc]
    # Each token's stabiliser, as the recurrence computes it, and its gated attention.
    m_tok = torch.maximum(Fc + ms[..., None], m_intra)
    inter = torch.exp(Fc + ms[..., None] - m_tok)                  # [B, H, nc, c]
    att = (qc @ kc.transpose(-1, -2)) * torch.exp(logD - m_tok[..., None])
    num = att @ vc + inter[..., None] * (qc @ Cs)
    qn = att.sum(-1) + inter * (qc @ ns[..., None])[..., 0]
    den = torch.maximum(qn.abs(), torch.exp(-m_tok)) + eps
    h = (num / den[..., None]).permute(0, 2, 3, 1, 4).reshape(b, nc * c, heads, dv)
    return h[:, :length], ((C, n, m) if output_final_state else None)
