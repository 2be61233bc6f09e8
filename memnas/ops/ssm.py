"""Mamba's selective scan (S6) and Mamba2's scalar-decay SSD: per-step references, chunked forms."""

from __future__ import annotations

import torch
import torch.nn.functional as F

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


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                   D: Tensor | None = None, z: Tensor | None = None,
                   delta_bias: Tensor | None = None, delta_softplus: bool = False,
                   initial_state: Tensor | None = None, output_final_state: bool = False,
                   chunk_size: int = 64) -> tuple[Tensor, Tensor | None]:
    """Mamba's selective scan in chunks; the same function as :func:`selective_scan_reference`.

    Within each chunk (all chunks at once) the zero-start states ``h_t = sum_{s<=t}
    exp(cs_t - cs_s) delta_s B_s u_s``, ``cs`` the cumulative sum of ``delta A`` in log space,
    come from a log2(chunk)-step Hillis-Steele scan whose decays are all ``<= 1``; across
    chunks the boundary state follows ``h_end = exp(cs_end) h_start + h_local`` and enters
    each position as ``exp(cs_t) h_start``.

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
        chunk_size: Chunk length; ``L`` need not be a multiple of it.

    Returns:
        ``(y [batch, dim, L], final_state [batch, dim, dstate] or None)``.
    """
    delta, B, C = _s6_inputs(u, delta, A, B, C, delta_bias, delta_softplus)
    batch, dim, length = u.shape
    n = A.shape[1]
    c = max(1, min(chunk_size, length))
    pad = (-length) % c
    nc = (length + pad) // c
    # Padded steps have delta = 0: decay 1 and no input, so the final state is unchanged.
    dlt, uu = _pad_time(delta, 2, pad), _pad_time(u, 2, pad)
    Bp, Cp = _pad_time(B, 3, pad), _pad_time(C, 3, pad)
    a = (dlt[:, :, None, :] * A[None, :, :, None]).reshape(batch, dim, n, nc, c)
    Bp = Bp.reshape(*Bp.shape[:3], nc, c)
    Cp = Cp.reshape(*Cp.shape[:3], nc, c)
    # Hillis-Steele scan inside every chunk at once. After the step with offset k, local[t]
    # sums the inputs of the 2k steps ending at t, each times its decay exp(cs_t - cs_s) <= 1,
    # and cum[t] = exp(cs_t - cs_{t-2k}) (cs: cumulative sum of delta A in log space), built
    # as products of decays in (0, 1]; at the end cum[t] = exp(cs_t), cs from chunk start.
    local = (dlt * uu).reshape(batch, dim, 1, nc, c) * Bp
    cum = torch.exp(a)
    k = 1
    while k < c:
        local = torch.cat([local[..., :k], torch.addcmul(local[..., k:], cum[..., k:],
                                                         local[..., :-k])], dim=-1)
        cum = torch.cat([cum[..., :k], cum[..., k:] * cum[..., :-k]], dim=-1)
        k *= 2
    h = u.new_zeros(batch, dim, n) if initial_state is None else initial_state
    starts = []
    for k in range(nc):
        starts.append(h)
        h = cum[..., k, -1] * h + local[..., k, -1]
    start = torch.stack(starts, dim=3)                        # [b, d, n, nc]
    states = local + cum * start[..., None]
    y = (states * Cp).sum(2).reshape(batch, dim, nc * c)[..., :length]
    if D is not None:
        y = y + u * D[:, None]
    if z is not None:
        y = y * F.silu(z)
    return y, (h if output_final_state else None)


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
