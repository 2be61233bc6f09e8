"""The MAD synthetic suite (Poli et al., 2024): recall, copying, compression, memorization."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from memnas.evaluators.mad_recall import (FuzzyInContextRecall, InContextRecall,
                                           NoisyInContextRecall, _check)
from memnas.evaluators.mqar import IGNORE_INDEX

# Every task here follows Poli, Thomas et al., "Mechanistic Design and Scaling of
# Hybrid Architectures", ICML 2024 (https://arxiv.org/abs/2403.17844), with data as in
# github.com/athms/mad-lab (``mad/data/instances.py``, ``configs/tasks/*.yml``).
# Differences common to all of them:
#  * Data are drawn on the fly from a seed (``batch(n, seed)``) instead of a fixed
#    training set of 12,800 sequences written to disk.
#  * Only the positions MAD scores at test time carry targets, in training too
#    (MAD trains the recall tasks with a full next-token loss on every position,
#    most of which are unpredictable random keys).
#  * Default sizes are small enough for CPU searches; ``mad_suite("paper")`` gives
#    MAD's baseline sizes.


@dataclasses.dataclass(frozen=True)
class SelectiveCopying:
    """MAD's selective copying: copy the non-blank tokens, in order, after a copy token.

    Token ids: data ``[0, vocab_size - 2)``, blank ``vocab_size - 2``, copy
    ``vocab_size - 1``. The first ``seq_len - num_tokens_to_copy - 1`` positions hold
    ``num_tokens_to_copy`` random data tokens at random places among blanks; then the
    copy token; then ``num_tokens_to_copy`` blanks, whose targets are the data tokens
    in order (aligned, not shifted, as in MAD); all other targets are -100. As MAD's
    ``generate_selective_copying_instance``, except that the data tokens' places are
    a uniform random subset (MAD's ``np.insert`` always leaves the last data token
    just before the copy token) (MAD baseline: vocab 16, seq_len 256, 16 tokens).

    Attributes:
      vocab_size: Number of token ids, blank and copy tokens included.
      seq_len: Sequence length; more than ``2 * num_tokens_to_copy + 1``.
      num_tokens_to_copy: Data tokens to copy.
    """

    vocab_size: int = 16
    seq_len: int = 64
    num_tokens_to_copy: int = 8

    def __post_init__(self) -> None:
        _check(
            self.vocab_size >= 3 and self.num_tokens_to_copy >= 1,
            "SelectiveCopying needs vocab_size >= 3 and num_tokens_to_copy >= 1, got "
            f"vocab_size={self.vocab_size}, num_tokens_to_copy={self.num_tokens_to_copy}",
        )
        _check(
            self.seq_len > 2 * self.num_tokens_to_copy + 1,
            "SelectiveCopying needs seq_len > 2 * num_tokens_to_copy + 1, got "
            f"seq_len={self.seq_len}, num_tokens_to_copy={self.num_tokens_to_copy}",
        )

    def batch(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, targets)``, ``int64`` of shape ``(n, seq_len)``; one seed, one batch."""
        rng = np.random.default_rng(seed)
        c, blank = self.num_tokens_to_copy, self.vocab_size - 2
        region = self.seq_len - c - 1
        rows = np.arange(n)[:, None]
        data = rng.integers(0, self.vocab_size - 2, size=(n, c))
        places = np.sort(rng.random((n, region)).argsort(axis=1)[:, :c], axis=1)
        inputs = np.full((n, self.seq_len), blank, dtype=np.int64)
        inputs[rows, places] = data
        inputs[:, region] = self.vocab_size - 1
        targets = np.full((n, self.seq_len), IGNORE_INDEX, dtype=np.int64)
        targets[:, region + 1 :] = data
        return torch.from_numpy(inputs), torch.from_numpy(targets)


@dataclasses.dataclass(frozen=True)
class Compression:
    """MAD's compression, adapted to a causal model: read a sequence back after a marker.

    MAD encodes ``seq_len`` tokens (random tokens, then a compression token) into
    the last position's vector and decodes every token from that vector plus a
    position embedding (an encoder-decoder ``AutoEncoder``, not a language model).
    The causal form here keeps the encode-then-reconstruct structure in one
    sequence of ``seq_len`` tokens: ``seq_len // 2`` random data tokens from
    ``[0, vocab_size - 2)``, the compression token ``vocab_size - 1``, then blanks
    (``vocab_size - 2``); from the compression token on, the model must emit the
    data tokens in order (next-token convention: the compression token targets the
    first data token, the ``j``-th blank the ``j+1``-th); other targets are -100.
    A fixed-state model must squeeze the sequence into its state at the compression
    token, as MAD's bottleneck does; attention can still look back at the data, so
    for it the task is copying (MAD baseline: vocab 16, seq_len 32).

    Attributes:
      vocab_size: Number of token ids, blank and compression tokens included.
      seq_len: Sequence length; even, at least 4.
    """

    vocab_size: int = 16
    seq_len: int = 32

    def __post_init__(self) -> None:
        _check(
            self.vocab_size >= 3 and self.seq_len >= 4 and self.seq_len % 2 == 0,
            "Compression needs vocab_size >= 3 and an even seq_len >= 4, got "
            f"vocab_size={self.vocab_size}, seq_len={self.seq_len}",
        )

    def batch(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, targets)``, ``int64`` of shape ``(n, seq_len)``; one seed, one batch."""
        rng = np.random.default_rng(seed)
        m = self.seq_len // 2
        data = rng.integers(0, self.vocab_size - 2, size=(n, m))
        inputs = np.full((n, self.seq_len), self.vocab_size - 2, dtype=np.int64)
        inputs[:, :m] = data
        inputs[:, m] = self.vocab_size - 1
        targets = np.full((n, self.seq_len), IGNORE_INDEX, dtype=np.int64)
        targets[:, m:] = data
        return torch.from_numpy(inputs), torch.from_numpy(targets)


@dataclasses.dataclass(frozen=True)
class Memorization:
    """MAD's memorization: a fixed key-to-value map that has to be learned into the weights.

    Token ids: keys ``[0, m // 2)``, values ``[m // 2, m)`` with ``m = vocab_size - 1``,
    insert token ``vocab_size - 1``. One bijection from the keys to (as many)
    values is drawn once from ``map_seed`` and shared by every sequence of the task.
    A sequence is ``seq_len // 2`` pairs ``key insert``, keys drawn with replacement;
    the target at each insert token is the key's value (aligned, as in MAD), -100
    elsewhere. Nothing in the context reveals a value: only what the weights
    stored can answer. As MAD's ``generate_memorization_instance`` (MAD baseline:
    vocab 256, seq_len 32, map seed 12345 (MAD's default training seed); MAD trains on
    256 fixed sequences for many epochs, here each step draws new ones from the same map).

    Attributes:
      vocab_size: Number of token ids, the insert token included.
      seq_len: Sequence length; even, at least 2.
      map_seed: Seed of the fixed key-to-value map.
    """

    vocab_size: int = 64
    seq_len: int = 32
    map_seed: int = 12345

    def __post_init__(self) -> None:
        _check(
            self.vocab_size >= 3 and self.seq_len >= 2 and self.seq_len % 2 == 0,
            "Memorization needs vocab_size >= 3 and an even seq_len >= 2, got "
            f"vocab_size={self.vocab_size}, seq_len={self.seq_len}",
        )

    def mapping(self) -> dict[int, int]:
        """The fixed key -> value map (the same for every batch and seed)."""
        m = self.vocab_size - 1
        rng = np.random.default_rng(self.map_seed)
        keys = rng.permutation(m // 2)
        values = rng.permutation(np.arange(m // 2, m))
        return {int(k): int(v) for k, v in zip(keys, values)}

    def batch(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, targets)``, ``int64`` of shape ``(n, seq_len)``; one seed, one batch."""
        table = self.mapping()
        lookup = np.array([table[k] for k in range(len(table))], dtype=np.int64)
        rng = np.random.default_rng(seed)
        keys = rng.integers(0, len(table), size=(n, self.seq_len // 2))
        inputs = np.full((n, self.seq_len), self.vocab_size - 1, dtype=np.int64)
        inputs[:, 0::2] = keys
        targets = np.full((n, self.seq_len), IGNORE_INDEX, dtype=np.int64)
        targets[:, 1::2] = lookup[keys]
        return torch.from_numpy(inputs), torch.from_numpy(targets)


_SMALL: dict[str, Any] = {
    "in_context_recall": InContextRecall(),
    "fuzzy_recall": FuzzyInContextRecall(),
    "noisy_recall": NoisyInContextRecall(),
    "selective_copying": SelectiveCopying(),
    "compression": Compression(),
    "memorization": Memorization(),
}

_PAPER: dict[str, Any] = {
    "in_context_recall": InContextRecall(vocab_size=16, seq_len=128),
    "fuzzy_recall": FuzzyInContextRecall(vocab_size=16, seq_len=128),
    "noisy_recall": NoisyInContextRecall(vocab_size=32, seq_len=128),
    "selective_copying": SelectiveCopying(vocab_size=16, seq_len=256, num_tokens_to_copy=16),
    "compression": Compression(vocab_size=16, seq_len=64),
    "memorization": Memorization(vocab_size=256, seq_len=32),
}


def mad_suite(scale: str = "small") -> dict[str, Any]:
    """The six MAD tasks by name: in-context, fuzzy and noisy recall, selective copying,
    compression and memorization.

    Args:
      scale: ``"small"`` (this module's defaults: sequences of 32-64 tokens, for CPU
        searches) or ``"paper"`` (MAD's baseline sizes; compression has
        ``seq_len=64`` so that its 32 data tokens match MAD's 32-token input).

    Raises:
      ValueError: naming an unknown scale.
    """
    suites = {"small": _SMALL, "paper": _PAPER}
    if scale not in suites:
        raise ValueError(f"unknown MAD scale {scale!r}; expected one of {sorted(suites)}")
    return dict(suites[scale])
