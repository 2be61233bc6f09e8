"""`MQAR`: multi-query associative recall (Arora et al., 2023, Zoology)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

IGNORE_INDEX = -100


@dataclasses.dataclass(frozen=True)
class MQAR:
    """Multi-query associative recall, generated as Zoology does.

    Source: Arora, Eyuboglu et al., "Zoology: Measuring and Improving Recall in
    Efficient Language Models", 2023 (https://arxiv.org/abs/2312.04927), data as
    in ``zoology/data/multiquery_ar.py``.

    Each sequence opens with ``num_kv_pairs`` key-value pairs ``k1 v1 k2 v2 ...``
    (distinct keys from ``[1, vocab_size // 2)``, distinct values from
    ``[vocab_size // 2, vocab_size)``). The rest of the sequence holds each key once
    more as a query, at even offsets drawn with a power law that favours short gaps
    (``power_a``; 1.0 is uniform); other positions hold random tokens from the whole
    vocabulary (``random_non_queries``) or 0. Targets follow the next-token
    convention: at the position of a query the target is the value paired with that
    key, and ``-100`` (ignored by ``cross_entropy``) everywhere else.

    Example (``vocab_size=12, num_kv_pairs=2, seq_len=16``, no random filler)::

      inputs:  2    8    4    7    0    0    4    0    0    0    0    0    2    0 ...
      targets: -100 -100 -100 -100 -100 -100 7    -100 -100 -100 -100 -100 8    -100 ...

    Attributes:
      vocab_size: Number of token ids (keys and values take half each).
      seq_len: Sequence length; even, at least ``4 * num_kv_pairs``.
      num_kv_pairs: Key-value pairs per sequence, each queried once.
      power_a: Power-law exponent of the query gaps (Zoology's default 0.01).
      random_non_queries: Fill non-query positions with random tokens.
    """

    vocab_size: int = 8192
    seq_len: int = 64
    num_kv_pairs: int = 8
    power_a: float = 0.01
    random_non_queries: bool = True

    def __post_init__(self) -> None:
        if self.seq_len % 2 or self.seq_len < 4 * self.num_kv_pairs or self.num_kv_pairs < 1:
            raise ValueError(
                "MQAR needs an even seq_len >= 4 * num_kv_pairs and num_kv_pairs >= 1, got "
                f"seq_len={self.seq_len}, num_kv_pairs={self.num_kv_pairs}"
            )
        if self.vocab_size // 2 - 1 < self.num_kv_pairs:
            raise ValueError(
                f"MQAR needs vocab_size // 2 - 1 >= num_kv_pairs distinct keys, got "
                f"vocab_size={self.vocab_size}, num_kv_pairs={self.num_kv_pairs}"
            )
        if not self.power_a > 0:
            raise ValueError(f"MQAR power_a must be > 0, got {self.power_a!r}")

    @classmethod
    def level(cls, name: str, **overrides: Any) -> "MQAR":
        """A named difficulty level (see `MQAR_LEVELS`), optionally with fields changed.

        Args:
          name: ``"easy"``, ``"medium"`` or ``"hard"``.
          **overrides: Fields to change, e.g. ``random_non_queries=False``.

        Raises:
          ValueError: naming the unknown level and the known ones.
        """
        try:
            fields = MQAR_LEVELS[name]
        except KeyError:
            raise ValueError(
                f"unknown MQAR level {name!r}; expected one of {sorted(MQAR_LEVELS)}"
            ) from None
        return cls(**{**fields, **overrides})

    def batch(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Generates ``n`` examples; the same seed always gives the same tensors.

        Args:
          n: Number of sequences.
          seed: Seed of the numpy ``Generator`` that draws them.

        Returns:
          ``(inputs, targets)``, both ``int64`` of shape ``(n, seq_len)``; targets are
          -100 except at the query positions, where they hold the paired value.
        """
        rng = np.random.default_rng(seed)
        kv, t, half = self.num_kv_pairs, self.seq_len, self.vocab_size // 2
        context = 2 * kv
        rows = np.arange(n)[:, None]
        # Distinct keys and values per row: the first kv of a random permutation.
        keys = rng.random((n, half - 1)).argsort(axis=1)[:, :kv] + 1
        values = rng.random((n, self.vocab_size - half)).argsort(axis=1)[:, :kv] + half
        # Distinct query gaps, drawn without replacement with power-law weights
        # (Gumbel top-k is the same distribution as successive weighted draws).
        space = (t - context) // 2
        p = self.power_a * np.arange(1, space + 1) ** (self.power_a - 1)
        scores = np.log(p / p.sum()) + rng.gumbel(size=(n, space))
        gaps = np.argsort(-scores, axis=1)[:, :kv]

        inputs = np.zeros((n, t), dtype=np.int64)
        inputs[:, 0:context:2] = keys
        inputs[:, 1:context:2] = values
        query_pos = context + 2 * gaps
        inputs[rows, query_pos] = keys
        targets = np.full((n, t), IGNORE_INDEX, dtype=np.int64)
        targets[rows, query_pos] = values
        if self.random_non_queries:
            filler = rng.integers(0, self.vocab_size, size=(n, t))
            inputs = np.where(inputs == 0, filler, inputs)
        return torch.from_numpy(inputs), torch.from_numpy(targets)


# Difficulty grows with the number of key-value pairs to hold (the recall load), the
# sequence length and the vocabulary. Zoology's own sweeps use vocab 8192 and
# seq_len 64-512 with 4-64 pairs; these are scaled down for CPU searches.
MQAR_LEVELS: dict[str, dict[str, Any]] = {
    "easy": {"vocab_size": 64, "seq_len": 16, "num_kv_pairs": 4},
    "medium": {"vocab_size": 128, "seq_len": 32, "num_kv_pairs": 8},
    "hard": {"vocab_size": 256, "seq_len": 64, "num_kv_pairs": 16},
}


def mqar_levels() -> dict[str, MQAR]:
    """The `MQAR` tasks of every named level, easiest first.

    ``easy`` (vocab 64, 16 tokens, 4 pairs) is the quickstart's task; ``medium``
    (128, 32, 8) and ``hard`` (256, 64, 16) each double all three knobs.
    """
    return {name: MQAR.level(name) for name in MQAR_LEVELS}
