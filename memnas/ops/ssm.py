"""Mamba's selective scan (S6) and Mamba2's scalar-decay SSD: per-step references, chunked forms."""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

Tensor = torch.Tensor


def _segsum(a: Tensor) -> Tensor:
    """Log decays between positions of a chunk: ``out[..., t, s] = sum_{s<r<=t} a[..., r]``.

    Computed as a masked cumulative sum (no ``cs_t - cs_s`` cancellation), ``-inf`` above the
    diagonal so that ``exp`` gives the causal decay matrix; as ``segsum`` in mamba_ssm's
    ``modules/ssd_minimal.py``.

    Args:
        a: Log decays ``[..., c]``.

    Returns:
        ``[..., c, c]`` log decay from position ``s`` to position ``t`` (``t >= s``).
    """
    c = a.shape[-1]
    x = a[..., None].expand(*a.shape, c)                      # x[..., r, s] = a[r]
    strict = torch.ones(c, c, dtype=torch.bool, device=a.device).tril(-1)
    out = torch.cumsum(x.masked_fill(~strict, 0.0), dim=-2)
    return out.masked_fill(~strict.logical_or(torch.eye(c, dtype=torch.bool, device=a.device)),
                           float("-inf"))


def _pad_time(x: Tensor, dim: int, pad: int) -> Tensor:
    """Zero-pads ``x`` by ``pad`` steps at the end of dimension ``dim``."""
    if pad == 0:
        return x
    shape = list(x.shape)
    shape[dim] = pad
    return torch.cat([x, x.new_zeros(shape)], dim=dim)


def _s6_inputs(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
               delta_bias: Tensor | None, delta_softplus: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Shared preprocessing: delta after bias/softplus, and B, C as ``[b | 1, dim | 1, n, L]``."""
    if A.is_complex():
        raise NotImplementedError("complex A is not supported; use a real A")
    batch, dim, length = u.shape
    if delta_bias is not None:
        delta = delta + delta_bias[..., None]
    if delta_softplus:
        delta = F.softplus(delta)

    def shape(X: Tensor) -> Tensor:
        if X.dim() == 2:                                      # constant [dim, n]
            return X[None, :, :, None].expand(1, dim, X.shape[1], length)
        if X.dim() == 3:                                      # [batch, n, L]
            return X[:, None]
        return X.repeat_interleave(dim // X.shape[1], dim=1)  # [batch, G, n, L], "(G H)"

    return delta, shape(B), shape(C)


def selective_scan_reference(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                             D: Tensor | None = None, z: Tensor | None = None,
                             delta_bias: Tensor | None = None, delta_softplus: bool = False,
                             initial_state: Tensor | None = None,
                             output_final_state: bool = False) -> tuple[Tensor, Tensor | None]:
    """Mamba's selective scan (Gu & Dao 2023, S6), one step at a time.

    ``x_t = exp(delta_t A) * x_{t-1} + delta_t B_t u_t``, ``y_t = C_t . x_t + D u_t``, gated by
    ``silu(z_t)``. Layout and semantics of ``selective_scan_ref`` in mamba_ssm's
    ``ops/selective_scan_interface.py`` (state-spaces/mamba), real ``A`` only, computed in the
    inputs' dtype.

    Args:
        u: Input ``[batch, dim, L]``.
        delta: Step sizes ``[batch, dim, L]``.
        A: State matrix (diagonal) ``[dim, dstate]``, usually negative.
        B: Input projection ``[batch, dstate, L]``, grouped ``[batch, G, dstate, L]`` or
            constant ``[dim, dstate]``.
        C: Output projection, shaped as ``B``.
        D: Skip connection ``[dim]``.
        z: Gate ``[batch, dim, L]``; the output is multiplied by ``silu(z)``.
        delta_bias: Added to ``delta`` ``[dim]``.
        delta_softplus: Apply softplus to ``delta`` (after the bias).
        initial_state: ``[batch, dim, dstate]``.
        output_final_state: Return the state after the last step.

    Returns:
        ``(y [batch, dim, L], final_state [batch, dim, dstate] or None)``.
    """
    delta, B, C = _s6_inputs(u, delta, A, B, C, delta_bias, delta_softplus)
    batch, dim, length = u.shape
    x = u.new_zeros(batch, dim, A.shape[1]) if initial_state is None else initial_state
    ys = []
    for t in range(length):
        dA = torch.exp(delta[:, :, t, None] * A)
        x = dA * x + (delta[:, :, t] * u[:, :, t])[..., None] * B[..., t]
        ys.append((x * C[..., t]).sum(-1))
    y = torch.stack(ys, dim=2) if ys else u.new_zeros(batch, dim, 0)
    if D is not None:
        y = y + u * D[:, None]
    if z is not None:
        y = y * F.silu(z)
    return y, (x if output_final_state else None)


def _pairs(length: int, step: int, first: int, reverse: bool) -> tuple[slice, slice] | None:
    """Slices ``(targets, sources)`` of one Brent-Kung level: targets ``first + 2 step k``,
    sources ``step`` earlier (mirrored in time, sources ``step`` later, when ``reverse``)."""
    if first >= length:
        return None
    count = (length - 1 - first) // (2 * step) + 1
    span = 2 * step * (count - 1) + 1
    lo = length - 1 - (first + 2 * step * (count - 1)) if reverse else first
    src = lo + step if reverse else lo - step
    return slice(lo, lo + span, 2 * step), slice(src, src + span, 2 * step)


def _scan_(a: Tensor, b: Tensor, reverse: bool = False) -> None:
    """In place along dim 0: ``b[t] = a[t] b[t-1] + b[t]`` (``b[t+1]`` if ``reverse``).

    A Brent-Kung scan: an up-sweep combines aligned blocks of 2, 4, 8, ... steps (block
    decays ``a`` multiply, block inputs ``b`` add after decaying), a down-sweep completes
    the prefixes; about ``3 L`` multiply-adds in ``2 log2(L)`` strided ops, no subtraction
    or division, so decays in ``[0, 1]`` keep every partial result bounded. ``a`` is
    clobbered (it ends holding block decays).
    """
    length = a.shape[0]
    step = 1
    while 2 * step <= length:
        tgt, src = _pairs(length, step, 2 * step - 1, reverse)
        b[tgt].addcmul_(a[tgt], b[src])
        if 4 * step <= length:  # the top level's block decays are never read
            a[tgt].mul_(a[src])
        step *= 2
    while step >= 1:
        pair = _pairs(length, step, 3 * step - 1, reverse)
        if pair is not None:
            b[pair[0]].addcmul_(a[pair[0]], b[pair[1]])
        step //= 2


class _SelectiveScan(torch.autograd.Function):
    """The S6 state recurrence, chunk by chunk, with a hand-written backward.

    Layout ``[L, batch, G, H, n]`` (time first, so a time step is one contiguous block):
    ``dt, w [L, b, G, H]`` (``w = delta * u``), ``A [G, H, n]``, ``B, C [L, b, G, n]``,
    ``h0 [b, G, H, n]``. Per chunk, in buffers reused across chunks: ``a = exp(dt A)``,
    ``h = w B`` with the carried state added at the chunk's first step, `_scan_`, then
    ``y = C . h``. The backward recomputes each chunk's states from the saved chunk starts
    and runs the adjoint recurrence ``g_t = C_t gy_t + a_{t+1} g_{t+1}`` with the same scan
    in reverse, so no ``[L, b, dim, n]`` tensor is ever stored.
    """

    @staticmethod
    def forward(ctx: Any, dt: Tensor, w: Tensor, A: Tensor, B: Tensor, C: Tensor,
                h0: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
        dt, w, B, C = dt.contiguous(), w.contiguous(), B.contiguous(), C.contiguous()
        length = dt.shape[0]
        c = max(1, min(chunk, length))
        buf_a = dt.new_empty(c, *dt.shape[1:], A.shape[-1])
        buf_h = torch.empty_like(buf_a)
        starts, ys, h = [], [], h0
        for s in range(0, length, c):
            e = min(length, s + c)
            a, hh = buf_a[: e - s], buf_h[: e - s]
            torch.mul(dt[s:e, ..., None], A, out=a).exp_()
            torch.mul(w[s:e, ..., None], B[s:e, :, :, None, :], out=hh)
            hh[0].addcmul_(a[0], h)
            starts.append(h)
            _scan_(a, hh)
            ys.append(torch.matmul(C[s:e, ..., None, :], hh.transpose(-1, -2)).squeeze(-2))
            h = hh[-1].clone()
        ctx.save_for_backward(dt, w, A, B, C, h0)
        ctx.starts, ctx.chunk = starts[1:], c                # starts[0] is h0, saved above
        return torch.cat(ys), h

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, gy: Tensor, gh: Tensor) -> tuple[Tensor | None, ...]:
        dt, w, A, B, C, h0 = ctx.saved_tensors
        starts = [h0, *ctx.starts]
        gy = gy.contiguous()
        length, b, groups, heads = dt.shape
        n, c = A.shape[-1], ctx.chunk
        buf_a = dt.new_empty(c, b, groups, heads, n)
        buf_h, buf_g, buf_t = (torch.empty_like(buf_a) for _ in range(3))
        gdt, gw, gB, gC = (torch.empty_like(x) for x in (dt, w, B, C))
        gA, ones_n, ones_r = torch.zeros_like(A), dt.new_ones(n), dt.new_ones(c * b)
        for k in reversed(range(len(starts))):
            s, e = k * c, min(length, (k + 1) * c)
            m, start = e - s, starts[k]
            a, hh, g, t = buf_a[:m], buf_h[:m], buf_g[:m], buf_t[:m]
            torch.mul(dt[s:e, ..., None], A, out=a).exp_()
            torch.mul(w[s:e, ..., None], B[s:e, :, :, None, :], out=hh)
            hh[0].addcmul_(a[0], start)
            _scan_(t.copy_(a), hh)                            # the chunk's states, again
            torch.mul(gy[s:e, ..., None], C[s:e, :, :, None, :], out=g)
            g[-1] += gh                                       # from later steps (or the output)
            t[:-1].copy_(a[1:])
            t[-1].zero_()
            _scan_(t, g, reverse=True)                        # g_t: gradient of h_t
            gh = a[0] * g[0]                                  # gradient of the chunk's start
            gC[s:e] = torch.matmul(gy[s:e, ..., None, :], hh).squeeze(-2)
            gw[s:e] = torch.matmul(B[s:e, ..., None, :], g.transpose(-1, -2)).squeeze(-2)
            gB[s:e] = torch.matmul(w[s:e, ..., None, :], g).squeeze(-2)
            g[1:].mul_(hh[:-1])
            g[0].mul_(start)
            g.mul_(a)                                         # gradient of dt A, the log decay
            gdt[s:e] = (torch.mul(g, A, out=t).view(-1, n) @ ones_n).view(m, b, groups, heads)
            torch.mul(g, dt[s:e, ..., None], out=t)
            gA += (ones_r[: m * b] @ t.view(m * b, -1)).view(A.shape)
        return gdt, gw, gA, gB, gC, gh, None


def _s6_layout(X: Tensor, length: int, batch: int, dim: int, groups: int) -> Tensor:
    """B or C as ``[L, batch, groups, n]`` (constant ``[dim, n]`` only with ``groups = dim``)."""
    if X.dim() == 2:
        return X[None, None].expand(length, batch, -1, -1)
    X = (X[:, None] if X.dim() == 3 else X).permute(3, 0, 1, 2)
    if groups % X.shape[2] or dim % groups:
        raise ValueError(f"selective_scan: B and C groups must divide dim={dim}, "
                         f"got {X.shape[2]} and {groups}")
    return X.repeat_interleave(groups // X.shape[2], dim=2)


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                   D: Tensor | None = None, z: Tensor | None = None,
                   delta_bias: Tensor | None = None, delta_softplus: bool = False,
                   initial_state: Tensor | None = None, output_final_state: bool = False,
                   chunk_size: int = 64) -> tuple[Tensor, Tensor | None]:
    """Mamba's selective scan by chunked parallel scans; the function of `selective_scan_reference`.

    The recurrence ``h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t`` is linear, so each
    chunk of time steps is solved at once by an in-place Brent-Kung scan (`_scan_`) and
    the state is carried from chunk to chunk; ``y_t = C_t . h_t`` is a batched matmul.
    Nothing is formed in log space or divided, so the result agrees with the per-step
    loop to rounding whatever the decays. Memory: the forward keeps only each chunk's
    start state; the backward (hand-written, the adjoint recurrence run by the same scan
    in reverse) recomputes each chunk's states in chunk-sized buffers.

    Args:
        u: Input ``[batch, dim, L]``.
        delta: Step sizes ``[batch, dim, L]``.
        A: State matrix (diagonal) ``[dim, dstate]``.
        B: ``[batch, dstate, L]``, grouped ``[batch, G, dstate, L]`` or constant ``[dim, dstate]``.
        C: Shaped as ``B``.
        D: Skip connection ``[dim]``.
        z: Gate ``[batch, dim, L]``.
        delta_bias: Added to ``delta`` ``[dim]``.
        delta_softplus: Apply softplus to ``delta``.
        initial_state: ``[batch, dim, dstate]``.
        output_final_state: Return the state after the last step.
        chunk_size: Time steps per chunk (speed and memory only; ``L`` need not be a multiple).

    Returns:
        ``(y [batch, dim, L], final_state [batch, dim, dstate] or None)``.
    """
    if A.is_complex():
        raise NotImplementedError("complex A is not supported; use a real A")
    if chunk_size < 1:
        raise ValueError(f"selective_scan: chunk_size must be >= 1, got {chunk_size}")
    batch, dim, length = u.shape
    n = A.shape[1]
    if length == 0:
        y, h = selective_scan_reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                        initial_state, output_final_state)
        return y, h
    if delta_bias is not None:
        delta = delta + delta_bias[..., None]
    if delta_softplus:
        delta = F.softplus(delta)
    dtype = functools.reduce(torch.promote_types, [t.dtype for t in (u, delta, A, B, C)])
    g_b, g_c = (dim if X.dim() == 2 else 1 if X.dim() == 3 else X.shape[1] for X in (B, C))
    groups = g_b if g_b == g_c else dim
    heads = dim // groups

    def steps(X: Tensor) -> Tensor:                           # [b, dim, L] -> [L, b, G, H]
        return X.to(dtype).permute(2, 0, 1).reshape(length, batch, groups, heads)

    h0 = (u.new_zeros(batch, dim, n, dtype=dtype) if initial_state is None
          else initial_state.to(dtype))
    y, h = _SelectiveScan.apply(
        steps(delta), steps(delta * u), A.to(dtype).reshape(groups, heads, n),
        *(_s6_layout(X.to(dtype), length, batch, dim, groups) for X in (B, C)),
        h0.reshape(batch, groups, heads, n), chunk_size)
    y = y.reshape(length, batch, dim).permute(1, 2, 0)
    if D is not None:
        y = y + u * D[:, None]
    if z is not None:
        y = y * F.silu(z)
    return y, (h.reshape(batch, dim, n) if output_final_state else None)


def _ssd_inputs(x: Tensor, B: Tensor, C: Tensor) -> tuple[Tensor, Tensor]:
    """B and C as ``[batch, T, H, N]`` (groups repeated over heads, ``[B, T, N]`` as one group)."""
    heads = x.shape[2]
    if B.dim() == 3:
        B, C = B[:, :, None], C[:, :, None]
    return (B.repeat_interleave(heads // B.shape[2], dim=2),
            C.repeat_interleave(heads // C.shape[2], dim=2))


def _ssd_skip(y: Tensor, x: Tensor, D: Tensor | None) -> Tensor:
    """Adds ``D x`` with ``D`` of shape ``[H]`` or ``[H, P]``."""
    if D is None:
        return y
    return y + x * (D[:, None] if D.dim() == 1 else D)


def ssd_reference(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor,
                  D: Tensor | None = None, initial_state: Tensor | None = None,
                  output_final_state: bool = False) -> tuple[Tensor, Tensor | None]:
    """Mamba2's SSD (Dao & Gu 2024), one step at a time.

    ``h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T`` (one scalar decay per head),
    ``y_t = h_t C_t + D x_t``. Layout of ``mamba_chunk_scan_combined`` in mamba_ssm
    (``ops/triton/ssd_combined.py``); ``dt`` is used as given (no bias or softplus).

    Args:
        x: Input ``[batch, T, H, P]``.
        dt: Step sizes ``[batch, T, H]``, positive.
        A: One decay rate per head ``[H]``, negative.
        B: ``[batch, T, G, N]`` (G divides H) or ``[batch, T, N]``.
        C: Shaped as ``B``.
        D: Skip ``[H]`` or ``[H, P]``.
        initial_state: ``[batch, H, P, N]``.
        output_final_state: Return the state after the last step.

    Returns:
        ``(y [batch, T, H, P], final_state [batch, H, P, N] or None)``.
    """
    B, C = _ssd_inputs(x, B, C)
    b, length, heads, p = x.shape
    h = x.new_zeros(b, heads, p, B.shape[-1]) if initial_state is None else initial_state
    ys = []
    for t in range(length):
        decay = torch.exp(dt[:, t] * A)[..., None, None]
        h = decay * h + (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, :, None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", h, C[:, t]))
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(x.shape)
    return _ssd_skip(y, x, D), (h if output_final_state else None)


def ssd(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
        initial_state: Tensor | None = None, output_final_state: bool = False,
        chunk_size: int = 64) -> tuple[Tensor, Tensor | None]:
    """Mamba2's SSD in chunks; the same function as :func:`ssd_reference`.

    The state-space-duality block decomposition of ``ssd_minimal_discrete`` in mamba_ssm's
    ``modules/ssd_minimal.py`` (Listing 1 of the paper): within a chunk a masked attention
    ``(C B^T * exp(segsum(dt A))) (dt x)``; across chunks the per-head state recurrence
    ``h_end = exp(sum dt A) h_start + chunk_state``, read out with ``exp(cumsum dt A) C h_start``.

    Args:
        x: Input ``[batch, T, H, P]``.
        dt: Step sizes ``[batch, T, H]``.
        A: One decay rate per head ``[H]``.
        B: ``[batch, T, G, N]`` or ``[batch, T, N]``.
        C: Shaped as ``B``.
        D: Skip ``[H]`` or ``[H, P]``.
        initial_state: ``[batch, H, P, N]``.
        output_final_state: Return the state after the last step.
        chunk_size: Chunk length; ``T`` need not be a multiple of it.

    Returns:
        ``(y [batch, T, H, P], final_state [batch, H, P, N] or None)``.
    """
    Bh, Ch = _ssd_inputs(x, B, C)
    b, length, heads, p = x.shape
    n = Bh.shape[-1]
    c = max(1, min(chunk_size, length))
    pad = (-length) % c
    nc = (length + pad) // c
    # Padded steps have dt = 0: decay 1 and no input.
    X = (_pad_time(dt, 1, pad)[..., None] * _pad_time(x, 1, pad)).reshape(b, nc, c, heads, p)
    Bc = _pad_time(Bh, 1, pad).reshape(b, nc, c, heads, n)
    Cc = _pad_time(Ch, 1, pad).reshape(b, nc, c, heads, n)
    a = (_pad_time(dt, 1, pad) * A).reshape(b, nc, c, heads).permute(0, 3, 1, 2)  # b h k c
    cs = torch.cumsum(a, dim=-1)
    L = torch.exp(_segsum(a))                                 # [b, h, nc, c, c]
    y = torch.einsum("bklhn,bkshn,bhkls,bkshp->bklhp", Cc, Bc, L, X)
    to_end = L[..., -1, :]                                    # decay from s to chunk end
    chunk_states = torch.einsum("bklhn,bhkl,bklhp->bkhpn", Bc, to_end, X)
    chunk_decay = torch.exp(cs[..., -1])                      # [b, h, nc]
    h = x.new_zeros(b, heads, p, n) if initial_state is None else initial_state
    starts = []
    for k in range(nc):
        starts.append(h)
        h = chunk_decay[:, :, k, None, None] * h + chunk_states[:, k]
    start = torch.stack(starts, dim=1)                        # [b, nc, h, p, n]
    y = y + torch.einsum("bklhn,bkhpn,bhkl->bklhp", Cc, start, torch.exp(cs))
    y = y.reshape(b, nc * c, heads, p)[:, :length]
    return _ssd_skip(y, x, D), (h if output_final_state else None)
