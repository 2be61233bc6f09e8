"""Memory-horizon tasks: sliding-window parity (`NParity`) and n-back `DelayedMatchToSample`."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from memnas.evaluators.mqar import IGNORE_INDEX


@dataclasses.dataclass(frozen=True)
class NParity:
    """Running parity of the last ``horizon`` bits of a random bit stream.

    Source: the parity family used to probe what sequence models can track, e.g.
    Hahn, "Theoretical Limitations of Self-Attention in Neural Sequence Models",
    TACL 2020 (https://arxiv.org/abs/1906.06755), and the sparse-parity probes of
    Barak et al., "Hidden Progress in Deep Learning", NeurIPS 2022
    (https://arxiv.org/abs/2207.08799). Of the two usual forms (the parity of a
    whole ``N``-bit sequence, scored once at its end; or a sliding window) this is
    the sliding window, which scores every position and makes ``N`` an exact
    memory horizon: the answer at ``t`` needs the bits ``t - N + 1 .. t`` (a
    recurrent model needs ``N`` bits of state; with ``N = 1`` it copies the input).

    Inputs are uniform bits (token ids 0 and 1); at each position ``t >= N - 1`` the
    target is ``x[t-N+1] xor ... xor x[t]`` (0 or 1); earlier targets are -100.
    Guessing scores 50%.

    Attributes:
      horizon: ``N``, the window length in bits, >= 1.
      seq_len: Sequence length, >= ``horizon``.
    """

    horizon: int = 4
    seq_len: int = 32

    @property
    def vocab_size(self) -> int:
        """Two token ids: the bits 0 and 1 (inputs and answers alike)."""
        return 2

    def __post_init__(self) -> None:
        if not 1 <= self.horizon <= self.seq_len:
            raise ValueError(
                "NParity needs 1 <= horizon <= seq_len, got "
                f"horizon={self.horizon}, seq_len={self.seq_len}"
            )

    def batch(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, targets)``, ``int64`` of shape ``(n, seq_len)``; one seed, one batch."""
        rng = np.random.default_rng(seed)
        bits = rng.integers(0, 2, size=(n, self.seq_len), dtype=np.int64)
        prefix = np.concatenate([np.zeros((n, 1), np.int64), np.cumsum(bits, axis=1)], axis=1)
        window = prefix[:, self.horizon :] - prefix[:, : -self.horizon]  # ones in each window
        targets = np.full((n, self.seq_len), IGNORE_INDEX, dtype=np.int64)
        targets[:, self.horizon - 1 :] = window % 2
        return torch.from_numpy(bits), torch.from_numpy(targets)


@dataclasses.dataclass(frozen=True)
class DelayedMatchToSample:
    """N-back delayed match-to-sample: does the current symbol match the one ``N`` steps back?

    Source: the n-back task of working-memory studies (Kirchner, "Age differences in
    short-term retention of rapidly changing information", J. Exp. Psychol. 1958),
    a continuous form of delayed match-to-sample; used for recurrent networks in e.g.
    Yang et al., "Task representations in neural networks trained to perform many
    cognitive tasks", Nat. Neurosci. 2019. Of the two forms (emit the symbol seen
    ``N`` steps back, which is a fixed shift; or answer match/no-match), this is the
    match/no-match form: it needs both storing the last ``N`` symbols and comparing.

    Inputs are symbols ``[0, num_symbols)``; from position ``N`` on, each symbol
    repeats the one ``N`` steps back with probability ``match_prob`` and is drawn
    uniformly otherwise (so it may still match, with chance ``1 / num_symbols``). At
    each position ``t >= N`` the target is ``num_symbols + 1`` (match) if
    ``x[t] == x[t-N]`` and ``num_symbols`` (no match) otherwise; earlier targets are
    -100. Answer tokens never occur as inputs.

    Attributes:
      horizon: ``N``, the delay in steps, >= 1.
      num_symbols: Distinct input symbols, >= 2.
      seq_len: Sequence length, more than ``horizon``.
      match_prob: Probability that a symbol is forced to repeat the one ``N`` back.
    """

    horizon: int = 4
    num_symbols: int = 8
    seq_len: int = 32
    match_prob: float = 0.5

    @property
    def vocab_size(self) -> int:
        """``num_symbols`` input symbols plus the two answers (no match, match)."""
        return self.num_symbols + 2

    def __post_init__(self) -> None:
        if not 1 <= self.horizon < self.seq_len or self.num_symbols < 2:
            raise ValueError(
                "DelayedMatchToSample needs 1 <= horizon < seq_len and num_symbols >= 2, got "
                f"horizon={self.horizon}, seq_len={self.seq_len}, num_symbols={self.num_symbols}"
            )
        if not 0.0 <= self.match_prob <= 1.0:
            raise ValueError(
                f"DelayedMatchToSample needs 0 <= match_prob <= 1, got {self.match_prob!r}"
            )

    def batch(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, targets)``, ``int64`` of shape ``(n, seq_len)``; one seed, one batch."""
        rng = np.random.default_rng(seed)
        x = rng.integers(0, self.num_symbols, size=(n, self.seq_len), dtype=np.int64)
        repeat = rng.random((n, self.seq_len)) < self.match_prob
        for t in range(self.horizon, self.seq_len):  # in order: a repeat may copy a repeat
            x[:, t] = np.where(repeat[:, t], x[:, t - self.horizon], x[:, t])
        match = x[:, self.horizon :] == x[:, : -self.horizon]
        targets = np.full((n, self.seq_len), IGNORE_INDEX, dtype=np.int64)
        targets[:, self.horizon :] = self.num_symbols + match.astype(np.int64)
        return torch.from_numpy(x), torch.from_numpy(targets)
