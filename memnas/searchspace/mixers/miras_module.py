"""The torch module of the Miras memory: a test-time-trained memory per head, chunked and per-token."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from memnas.searchspace.mixers._recurrent import (
    RecurrentHeads,
    broadcast_to,
    decay_matrix,
    from_chunks,
    gate_linear,
    head_gate,
    to_chunks,
)

STRUCTURES = ("vector", "matrix", "mlp")
OBJECTIVES = ("dot", "l2", "lp", "huber")
RETENTIONS = ("none", "constant", "data")
LEARNERS = ("gd", "momentum")
MLP_EXPANSION = 2  # hidden width of the "mlp" memory, as a multiple of the head width


class OnlineMemoryModule(RecurrentHeads):
    """(B, T, D) -> (B, T, D) test-time-trained memory per head (see `MirasMemory`).

    ``forward`` is the chunked parallel form; ``reference_forward`` the per-token
    loop with autograd gradients at the chunk-start memory. Both give the same
    function; ``chunk_size=1`` makes it exact per-token online learning.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        structure: str = "matrix",
        objective: str = "l2",
        retention: str = "data",
        learner: str = "momentum",
        chunk_size: int = 16,
        p: float = 3.0,
        huber_delta: float = 1.0,
        max_grad_norm: float | None = 10.0,
    ) -> None:
        for field, value, allowed in (
            ("structure", structure, STRUCTURES),
            ("objective", objective, OBJECTIVES),
            ("retention", retention, RETENTIONS),
            ("learner", learner, LEARNERS),
        ):
            if value not in allowed:
                raise ValueError(f"memory {field} must be one of {allowed}, got {value!r}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
        if objective == "lp" and not p >= 1:
            raise ValueError(f"the lp objective needs p >= 1, got p={p!r}")
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0 or None, got {max_grad_norm!r}")
        if objective == "huber" and not huber_delta > 0:
            raise ValueError(f"the huber objective needs huber_delta > 0, got {huber_delta!r}")
        super().__init__(d_model, num_heads, chunk_size)
        self.structure, self.objective = structure, objective
        self.retention, self.learner = retention, learner
        self.p, self.huber_delta = float(p), float(huber_delta)
        self.max_grad_norm = None if max_grad_norm is None else float(max_grad_norm)
        h, dh = num_heads, self.d_head
        if structure == "vector":
            init = [torch.zeros(h, dh)]
        elif structure == "matrix":
            init = [torch.zeros(h, dh, dh)]
        else:
            hidden = MLP_EXPANSION * dh
            init = [torch.randn(h, dh, hidden) * dh**-0.5,
                    torch.randn(h, hidden, dh) * hidden**-0.5]
        self.memory_init = nn.ParameterList([nn.Parameter(w) for w in init])
        self.lr = gate_linear(d_model, h, bias=-2.0)  # theta_t = sigmoid(.), ~0.12 at init
        if retention == "constant":
            self.keep_logit = nn.Parameter(torch.full((h,), 4.0))  # a = sigmoid(4) ~ 0.98
        elif retention == "data":
            self.keep = gate_linear(d_model, h, bias=4.0)
        if learner == "momentum":
            self.momentum = gate_linear(d_model, h, bias=0.0)

    # ----------------------------------------------------------------- gates
    def _gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """theta (B, H, T), log a (B, H, T) and log eta (B, H, T) or None."""
        theta = torch.sigmoid(head_gate(self.lr, x))
        if self.retention == "data":
            log_keep = F.logsigmoid(head_gate(self.keep, x))
        elif self.retention == "constant":
            log_keep = F.logsigmoid(self.keep_logit)[:, None].expand_as(theta)
        else:
            log_keep = torch.zeros_like(theta)
        log_eta = None
        if self.learner == "momentum":
            log_eta = F.logsigmoid(head_gate(self.momentum, x))
        return theta, log_keep, log_eta

    # ------------------------------------------------- memory and objective
    def _predict(self, w: list[torch.Tensor], k: torch.Tensor) -> tuple[torch.Tensor, list]:
        """M_w(k) for k (B, H, C, dh) and memory w (B, H, ...); returns (pred, cache)."""
        if self.structure == "vector":
            return k * w[0][..., None, :], []
        if self.structure == "matrix":
            return k @ w[0], []
        z = k @ w[0]
        a = F.silu(z)
        return k + a @ w[1], [z, a]

    def _objective_grad(self, pred: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """d l / d pred, elementwise."""
        if self.objective == "dot":
            return -v
        e = pred - v
        if self.objective == "l2":
            return e
        if self.objective == "huber":
            return e.clamp(-self.huber_delta, self.huber_delta)
        if self.p == 1.0:
            return e.sign()
        return e.sign() * e.abs().clamp_min(1e-12).pow(self.p - 1.0)

    def _loss(self, pred: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The attentional-bias loss summed over batch and heads (for autograd)."""
        if self.objective == "dot":
            return -(pred * v).sum()
        e = pred - v
        if self.objective == "l2":
            return 0.5 * (e * e).sum()
        if self.objective == "lp":
            return (e.abs().pow(self.p) / self.p).sum()
        d = self.huber_delta
        return torch.where(e.abs() <= d, 0.5 * e * e, d * (e.abs() - 0.5 * d)).sum()

    def _factors(self, w: list[torch.Tensor], k: torch.Tensor, v: torch.Tensor) -> list:
        """Per-token gradients at memory ``w`` as factors (X, G), one pair per parameter.

        The gradient of token i w.r.t. a matrix parameter is ``X_i^T G_i``, w.r.t. a
        vector parameter ``X_i * G_i``.
        """
        pred, cache = self._predict(w, k)
        g = self._objective_grad(pred, v)
        if self.structure != "mlp":
            factors = [(k, g)]
        else:
            z, a = cache
            sig = torch.sigmoid(z)
            gz = (g @ w[1].transpose(-1, -2)) * sig * (1.0 + z * (1.0 - sig))
            factors = [(k, gz), (a, g)]
        if self.max_grad_norm is None:
            return factors
        # Squared Frobenius norm of each token's gradient, summed over the parameters.
        if self._vector():
            sq = sum(((x * g) ** 2).sum(-1) for x, g in factors)
        else:
            sq = sum((x * x).sum(-1) * (g * g).sum(-1) for x, g in factors)
        scale = self._clip_scale(sq)[..., None]
        return [(x, g * scale) for x, g in factors]

    def _clip_scale(self, sq_norm: torch.Tensor) -> torch.Tensor:
        """``min(1, max_grad_norm / norm)``, written so that zero norms have finite gradients."""
        tau = self.max_grad_norm
        return tau * sq_norm.clamp_min(tau * tau).rsqrt()

    def _vector(self) -> bool:
        return self.structure == "vector"

    # --------------------------------------------------------- chunked form
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Chunked parallel form: a loop over chunks, matmuls and cumsums inside."""
        q, k, v = self.project(x)
        b, _, t, _ = q.shape
        theta, log_keep, log_eta = self._gates(x)
        c = self.chunk_size
        qc, kc, vc, th = (to_chunks(z, c) for z in (q, k, v, theta))
        lk = to_chunks(log_keep, c).cumsum(-1)  # (B, H, N, C)
        keep_decay = decay_matrix(lk)  # [t, s] = prod_{s<j<=t} a_j
        a = lk.exp()  # memory-start coefficient: prod_{j<=t} a_j
        momentum = log_eta is not None
        if momentum:
            le = to_chunks(log_eta, c).cumsum(-1)
            # W_t = a_t W_0 + m_t S_0 - sum_i D[t, i] grad_i, with
            # D[t, i] = theta_i sum_{i<=s<=t} (prod_{s<j<=t} a_j)(prod_{i<j<=s} eta_j).
            coef = (keep_decay @ decay_matrix(le)) * th[..., None, :]
            m = (keep_decay @ le.exp()[..., None])[..., 0]
            s_end = le[..., -1].exp()  # S_C = s_end S_0 - sum_i f_i grad_i
            f = th * (le[..., -1:] - le).exp()
        else:
            coef = keep_decay * th[..., None, :]
        w = [p.expand((b,) + p.shape) for p in self.memory_init]
        # Per-chunk views via unbind: one backward node per tensor instead of one per chunk.
        qs, ks, vs, as_, cs = (z.unbind(2) for z in (qc, kc, vc, a, coef))
        if momentum:
            s = [torch.zeros_like(p) for p in w]
            ms, ends, fs = (z.unbind(2) for z in (m, s_end, f))
        outs = []
        for n in range(len(qs)):
            factors = self._factors(w, ks[n], vs[n])
            co = (as_[n], ms[n] if momentum else None, cs[n])
            mom = s if momentum else [None] * len(w)
            if self.structure == "mlp":
                hid = F.silu(self._read(qs[n], w[0], mom[0], factors[0], co))
                y = qs[n] + self._read(hid, w[1], mom[1], factors[1], co)
            else:
                y = self._read(qs[n], w[0], mom[0], factors[0], co)
            outs.append(y)
            new_w = [self._end(wi, si, fi, co) for wi, si, fi in zip(w, mom, factors)]
            if momentum:
                s = [self._end_momentum(si, fi, (ends[n], fs[n])) for si, fi in zip(s, factors)]
            w = new_w
        y = from_chunks(torch.stack(outs, dim=2), t)
        return self.finish(y)

    def _read(self, z: torch.Tensor, w0: torch.Tensor, s0: torch.Tensor | None,
              factor: tuple, co: tuple) -> torch.Tensor:
        """Applies the memory parameter at each token t of the chunk to input z_t."""
        x, g = factor
        a, m, coef = co
        if self._vector():
            y = a[..., None] * z * w0[..., None, :] - z * (coef @ (x * g))
            if s0 is not None:
                y = y + m[..., None] * z * s0[..., None, :]
            return y
        y = a[..., None] * (z @ w0) - (coef * (z @ x.transpose(-1, -2))) @ g
        if s0 is not None:
            y = y + m[..., None] * (z @ s0)
        return y

    def _end(self, w0: torch.Tensor, s0: torch.Tensor | None, factor: tuple,
             co: tuple) -> torch.Tensor:
        """The memory parameter after the chunk's last token."""
        x, g = factor
        a, m, coef = co
        last = coef[..., -1, :, None]  # (B, H, C, 1)
        w = broadcast_to(a[..., -1], w0) * w0
        w = w - ((last * x * g).sum(-2) if self._vector() else x.transpose(-1, -2) @ (last * g))
        if s0 is not None:
            w = w + broadcast_to(m[..., -1], s0) * s0
        return w

    def _end_momentum(self, s0: torch.Tensor, factor: tuple, end: tuple) -> torch.Tensor:
        """The momentum (surprise) state after the chunk's last token."""
        x, g = factor
        s_end, f = end
        fg = f[..., None] * g
        step = (x * fg).sum(-2) if self._vector() else x.transpose(-1, -2) @ fg
        return broadcast_to(s_end, s0) * s0 - step

    # ------------------------------------------------------- reference loop
    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-token loop: autograd gradient at the chunk-start memory, then update, read."""
        q, k, v = self.project(x)
        b, _, t, _ = q.shape
        theta, log_keep, log_eta = self._gates(x)
        keep, eta = log_keep.exp(), None if log_eta is None else log_eta.exp()
        w = [p.expand((b,) + p.shape) for p in self.memory_init]
        s = [torch.zeros_like(p) for p in w]
        outer = torch.is_grad_enabled()
        ys = []
        for i in range(t):
            if i % self.chunk_size == 0:
                anchor = w
            grads = self._autograd_grads(anchor, k[:, :, i : i + 1], v[:, :, i : i + 1], outer)
            th = theta[:, :, i]
            if eta is None:
                s = [-broadcast_to(th, g) * g for g in grads]
            else:
                s = [broadcast_to(eta[:, :, i], si) * si - broadcast_to(th, g) * g
                     for si, g in zip(s, grads)]
            w = [broadcast_to(keep[:, :, i], wi) * wi + si for wi, si in zip(w, s)]
            ys.append(self._predict(w, q[:, :, i : i + 1])[0])
        return self.finish(torch.cat(ys, dim=2))

    def _autograd_grads(self, w: list[torch.Tensor], k: torch.Tensor, v: torch.Tensor,
                        create_graph: bool) -> list[torch.Tensor]:
        with torch.enable_grad():
            # Without an outer graph (e.g. under no_grad) take the gradient on detached leaves.
            w = [wi if create_graph and wi.requires_grad else wi.detach().requires_grad_()
                 for wi in w]
            loss = self._loss(self._predict(w, k)[0], v)
            grads = torch.autograd.grad(loss, w, create_graph=create_graph)
        if self.max_grad_norm is None:
            return list(grads)
        sq = sum(g.flatten(2).pow(2).sum(-1) for g in grads)  # (B, H)
        scale = self._clip_scale(sq)
        return [broadcast_to(scale, g) * g for g in grads]
