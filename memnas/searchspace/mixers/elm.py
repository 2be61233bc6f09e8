"""The Expressive Leaky Memory (ELM) neuron as a sequence mixer (Spieler et al., 2024)."""

from __future__ import annotations

import math
from typing import Any

import pyglove as pg
import torch
from torch import nn

from memnas.searchspace.mixers._base import Mixer, register_mixer

# Timescales of the memory units, log-spaced over this range (in tokens), as the paper's.
TAU_MIN, TAU_MAX = 1.0, 1000.0


@register_mixer
class ELMNeuron(Mixer):
    """One Expressive Leaky Memory neuron: leaky memory units updated by a small MLP.

    Source: Spieler, Rahaman, Martius, Schölkopf, Levina, "The Expressive Leaky
    Memory Neuron: an Efficient and Expressive Phenomenological Neuron Model Can
    Solve Long-Horizon Tasks", ICLR 2024 (https://arxiv.org/abs/2306.16922).
    Recurrence: ``m_t = kappa * m_{t-1} + (1 - kappa) * tanh(MLP([x_t, kappa * m_{t-1}])),
    y_t = W_y m_t`` with ``kappa = exp(-1/tau)`` per memory unit.

    The neuron keeps ``num_memory`` memory units with timescales ``tau`` log-spaced
    from 1 to 1000 tokens (fixed, or learned in log space with ``learn_tau``). Each
    token, a one-hidden-layer ReLU MLP of width ``mlp_hidden`` (the paper's
    dendritic integration) reads the synaptic input and the decayed memory and
    proposes an update ``Delta m_t`` through a tanh; each unit moves towards it at
    its own rate ``1 - kappa``; a linear readout maps the memory to the output.

    Differences from the paper: the synaptic input is the token itself, ``x_t``,
    seen through the MLP's first layer (the paper's leaky synaptic trace
    ``s_t = kappa_s * s_{t-1} + w_s x_t`` would add ``d_model`` numbers of state;
    in a deep model the layers below already filter the input over time), and the
    update scale ``lambda`` is 1 (the MLP's input weights and the readout absorb
    any other value).

    There is no parallel or chunked form: the state enters the tanh-MLP, so the
    recurrence is nonlinear in ``m`` and must run token by token. The module
    therefore has no ``reference_forward``; its ``forward`` is the per-token loop,
    with the input's share of the MLP computed for all tokens before the loop.

    Attributes:
      num_memory: Memory units ``M`` (the inference state is these ``M`` numbers).
      mlp_hidden: Hidden width of the update MLP.
      learn_tau: Whether the timescales are trained (in log space) or fixed.
    """

    num_memory: int = 32
    mlp_hidden: int = 64
    learn_tau: bool = False

    def build(self, d_model: int) -> nn.Module:
        """Returns an `ELMNeuronModule` of width ``d_model``."""
        for name in ("num_memory", "mlp_hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ELMNeuron: {name} must be an int >= 1, got {value!r}")
        if not isinstance(self.learn_tau, bool):
            raise ValueError(f"ELMNeuron: learn_tau must be a bool, got {self.learn_tau!r}")
        if not isinstance(d_model, int) or d_model < 1:
            raise ValueError(f"ELMNeuron: d_model must be an int >= 1, got {d_model!r}")
        return ELMNeuronModule(d_model, self.num_memory, self.mlp_hidden, self.learn_tau)

    def state_numbers(self, d_model: int, max_len: int) -> int:
        """The memory units: ``num_memory`` numbers, whatever ``max_len``."""
        return self.num_memory

    def summary(self) -> str:
        """E.g. ``"elm(m=32,h=64)"``, or ``"elm(m=32,h=64,tau)"`` with learned timescales."""
        return f"elm(m={self.num_memory},h={self.mlp_hidden}{',tau' if self.learn_tau else ''})"

    @classmethod
    def bench_config(cls) -> "ELMNeuron":
        """The configuration `memnas bench mixers` times (listed apart: no parallel form)."""
        return cls(num_memory=32, mlp_hidden=64, learn_tau=True)

    @classmethod
    def space(cls) -> Any:
        """Memory units in {16, 32, 64}; MLP width in {32, 64}; learned tau or not."""
        return cls(
            num_memory=pg.oneof([16, 32, 64]),
            mlp_hidden=pg.oneof([32, 64]),
            learn_tau=pg.oneof([False, True]),
        )


def log_spaced_tau(num_memory: int) -> torch.Tensor:
    """``num_memory`` timescales log-spaced from `TAU_MIN` to `TAU_MAX` (one: `TAU_MIN`)."""
    if num_memory == 1:
        return torch.tensor([TAU_MIN])
    return torch.logspace(math.log10(TAU_MIN), math.log10(TAU_MAX), num_memory)


class ELMNeuronModule(nn.Module):
    """(B, T, D) -> (B, T, D): the ELM neuron's per-token recurrence.

    Parameters: ``mlp_in`` (``D -> hidden``, with bias: the input's share of the
    MLP's first layer), ``mlp_mem`` (``M -> hidden``, no bias: the memory's share),
    ``mlp_out`` (``hidden -> M``, with bias), ``readout`` (``M -> D``), and, with
    ``learn_tau``, ``log_tau`` (``M``). Without it ``log_tau`` is a buffer.
    ``per_token_only`` tells `memnas bench mixers` there is no parallel form to compare.
    """

    per_token_only = True

    def __init__(self, d_model: int, num_memory: int, mlp_hidden: int, learn_tau: bool) -> None:
        super().__init__()
        self.num_memory = num_memory
        self.mlp_in = nn.Linear(d_model, mlp_hidden)
        self.mlp_mem = nn.Linear(num_memory, mlp_hidden, bias=False)
        self.mlp_out = nn.Linear(mlp_hidden, num_memory)
        self.readout = nn.Linear(num_memory, d_model, bias=False)
        log_tau = log_spaced_tau(num_memory).log()
        if learn_tau:
            self.log_tau = nn.Parameter(log_tau)
        else:
            self.register_buffer("log_tau", log_tau)

    def kappa(self) -> torch.Tensor:
        """Per-unit decay ``exp(-1/tau)`` in (0, 1), shape ``(M,)``."""
        return torch.exp(-torch.exp(-self.log_tau))

    def memories(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, M): the memory ``m_t`` after each token (``m_{-1} = 0``)."""
        kappa = self.kappa().to(x.dtype)
        rate = 1.0 - kappa
        drive = self.mlp_in(x).unbind(dim=1)  # x's share of the first layer, all tokens at once
        w_mem, w_out, b_out = self.mlp_mem.weight.t(), self.mlp_out.weight.t(), self.mlp_out.bias
        m = x.new_zeros(x.shape[0], self.num_memory)
        out = []
        for pre in drive:
            decayed = kappa * m
            hidden = torch.relu(torch.addmm(pre, decayed, w_mem))
            m = decayed + rate * torch.tanh(torch.addmm(b_out, hidden, w_out))
            out.append(m)
        return torch.stack(out, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The per-token recurrence (there is no parallel form): ``(B, T, D) -> (B, T, D)``."""
        return self.readout(self.memories(x))
