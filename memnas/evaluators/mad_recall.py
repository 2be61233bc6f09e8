"""MAD's recall tasks (Poli et al., 2024): in-context, noisy and fuzzy in-context recall.

Data follow github.com/athms/mad-lab, with the differences listed in
`memnas.evaluators.mad`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from memnas.evaluators.mqar import IGNORE_INDEX

__all__ = ["FuzzyInContextRecall", "InContextRecall", "NoisyInContextRecall"]


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _recall_batch(
    rng: np.random.Generator,
    n: int,
    seq_len: int,
    vocab_size: int,
    noise_vocab_size: int,
    frac_noise: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """In-context recall with optional noise pairs, vectorized over the batch."""
    clean = vocab_size - noise_vocab_size
    half = clean // 2
    pairs = seq_len // 2
    rows = np.arange(n)[:, None]
    keys = rng.integers(0, half, size=(n, pairs))
    table = rng.integers(half, clean, size=(n, half))  # each key's value in this sequence
    # Noise slots among all pairs but the last; one of them is always a real pair.
    noise = rng.random((n, pairs)) < frac_noise
    noise[:, -1] = False
    noise[np.arange(n), rng.integers(0, pairs - 1, size=n)] = False
    # The last pair probes a key presented (as a real pair) earlier.
    pick = np.where(noise[:, :-1], -1.0, rng.random((n, pairs - 1))).argmax(axis=1)
    keys[:, -1] = keys[np.arange(n), pick]
    values = table[rows, keys]
    # A real pair is scored when its key already appeared in an earlier real pair.
    same = (keys[:, :, None] == keys[:, None, :]) & ~noise[:, None, :]
    seen = np.tril(same, k=-1).any(axis=2) & ~noise
    inputs = np.empty((n, 2 * pairs), dtype=np.int64)
    inputs[:, 0::2], inputs[:, 1::2] = keys, values
    if noise_vocab_size:
        filler = rng.integers(clean, vocab_size, size=(n, 2 * pairs))
        inputs = np.where(np.repeat(noise, 2, axis=1), filler, inputs)
    targets = np.full((n, seq_len), IGNORE_INDEX, dtype=np.int64)
    targets[:, 0 : 2 * pairs : 2] = np.where(seen, values, IGNORE_INDEX)
    return torch.from_numpy(inputs), torch.from_numpy(targets)


@dataclasses.dataclass(frozen=True)
class InContextRecall:
    """MAD's in-context recall (multi-query): recall the value last paired with a key.

    The sequence is ``seq_len // 2`` key-value pairs ``k v k v ...``; keys come from
    ``[0, vocab_size // 2)``, values from ``[vocab_size // 2, vocab_size)``, each key
    drawn with replacement and paired with one value per sequence (a random map, new
    for every sequence). Whenever a key comes back, the model must predict its value:
    the target at that key's position (next-token convention) is the value; every
    other target is -100. The last pair always repeats an earlier key, so every
    sequence scores at least once. As MAD's ``generate_in_context_recall_instance``
    with ``multi_query=True`` (MAD baseline: vocab 16, seq_len 128).

    Attributes:
      vocab_size: Number of token ids (keys and values take half each).
      seq_len: Sequence length; even, at least 4.
    """

    vocab_size: int = 16
    seq_len: int = 64

    def __post_init__(self) -> None:
        _check(
            self.seq_len >= 4 and self.seq_len % 2 == 0 and self.vocab_size >= 2,
            "InContextRecall needs an even seq_len >= 4 and vocab_size >= 2, got "
            f"seq_len={self.seq_len}, vocab_size={self.vocab_size}",
        )

    def batch(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, targets)``, ``int64`` of shape ``(n, seq_len)``; one seed, one batch."""
        rng = np.random.default_rng(seed)
        return _recall_batch(rng, n, self.seq_len, self.vocab_size, 0, 0.0)


@dataclasses.dataclass(frozen=True)
class NoisyInContextRecall:
    """MAD's noisy in-context recall: in-context recall with pairs of noise tokens mixed in.

    As `InContextRecall` over the first ``vocab_size - noise_vocab_size`` token ids;
    each pair slot but the last is, with probability ``frac_noise``, two random
    tokens from the noise vocabulary ``[vocab_size - noise_vocab_size, vocab_size)``
    instead (never scored, never a key). As MAD's
    ``generate_noisy_in_context_recall_instance`` (MAD baseline: vocab 32 of which
    16 noise, seq_len 128, frac_noise 0.2).

    Attributes:
      vocab_size: Number of token ids, noise included.
      seq_len: Sequence length; even, at least 4.
      noise_vocab_size: Token ids reserved for noise.
      frac_noise: Probability that a pair slot holds noise, in ``[0, 1)``.
    """

    vocab_size: int = 32
    seq_len: int = 64
    noise_vocab_size: int = 16
    frac_noise: float = 0.2

    def __post_init__(self) -> None:
        _check(
            self.seq_len >= 4 and self.seq_len % 2 == 0,
            f"NoisyInContextRecall needs an even seq_len >= 4, got seq_len={self.seq_len}",
        )
        _check(
            self.noise_vocab_size >= 1 and self.vocab_size - self.noise_vocab_size >= 2,
            "NoisyInContextRecall needs noise_vocab_size >= 1 and 2 or more other tokens, "
            f"got vocab_size={self.vocab_size}, noise_vocab_size={self.noise_vocab_size}",
        )
        _check(
            0.0 <= self.frac_noise < 1.0,
            f"NoisyInContextRecall needs 0 <= frac_noise < 1, got {self.frac_noise!r}",
        )

    def batch(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, targets)``, ``int64`` of shape ``(n, seq_len)``; one seed, one batch."""
        rng = np.random.default_rng(seed)
        return _recall_batch(
            rng, n, self.seq_len, self.vocab_size, self.noise_vocab_size, self.frac_noise
        )


@dataclasses.dataclass(frozen=True)
class FuzzyInContextRecall:
    """MAD's fuzzy in-context recall: keys and values are runs of 1 to 3 tokens.

    Token ids: keys from ``[0, m // 2)``, values from ``[m // 2, m)`` with
    ``m = vocab_size - 1``; ``vocab_size - 1`` pads the front of the sequence. A key
    is a run of ``1..k_motif_size`` distinct key tokens, a value a run of
    ``1..v_motif_size`` distinct value tokens (sizes drawn uniformly per pair); each
    key gets one value per sequence. One probe pair sits at a random place in the
    sequence and again at its end. Targets follow MAD's next-token shift: when a
    key comes back, the position of its last token targets the first value token,
    and each value token but the last targets the next one; all other targets are
    -100. As MAD's ``generate_fuzzy_in_context_recall_instance`` with
    ``multi_query=True`` and its training-time key sizes (MAD tests with keys of
    exactly ``k_motif_size`` tokens; here one distribution serves both), without
    noise (MAD baseline: vocab 16, seq_len 128, motifs of up to 3 tokens).

    Attributes:
      vocab_size: Number of token ids, the pad token included.
      seq_len: Sequence length; more than ``2 * (k_motif_size + v_motif_size)``.
      k_motif_size: Longest key, in tokens.
      v_motif_size: Longest value, in tokens.
    """

    vocab_size: int = 16
    seq_len: int = 64
    k_motif_size: int = 3
    v_motif_size: int = 3

    def __post_init__(self) -> None:
        m = self.vocab_size - 1
        _check(
            1 <= self.k_motif_size <= m // 2 and 1 <= self.v_motif_size <= m - m // 2,
            "FuzzyInContextRecall needs 1 <= k_motif_size <= (vocab_size - 1) // 2 and "
            "1 <= v_motif_size <= the number of value tokens, got "
            f"vocab_size={self.vocab_size}, k_motif_size={self.k_motif_size}, "
            f"v_motif_size={self.v_motif_size}",
        )
        _check(
            self.seq_len > 2 * (self.k_motif_size + self.v_motif_size),
            "FuzzyInContextRecall needs seq_len > 2 * (k_motif_size + v_motif_size), got "
            f"seq_len={self.seq_len}",
        )

    def batch(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, targets)``, ``int64`` of shape ``(n, seq_len)``; one seed, one batch."""
        rng = np.random.default_rng(seed)
        rows = [self._sequence(rng) for _ in range(n)]
        inputs = np.stack([r[0] for r in rows]).reshape(n, self.seq_len)
        targets = np.stack([r[1] for r in rows]).reshape(n, self.seq_len)
        return torch.from_numpy(inputs), torch.from_numpy(targets)

    def _sequence(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        m = self.vocab_size - 1
        key_vocab, value_vocab = np.arange(m // 2), np.arange(m // 2, m)

        def motif(vocab: np.ndarray, longest: int) -> tuple[int, ...]:
            size = int(rng.integers(1, longest + 1))
            return tuple(int(t) for t in rng.choice(vocab, size=size, replace=False))

        k_probe = motif(key_vocab, self.k_motif_size)
        v_probe = motif(value_vocab, self.v_motif_size)
        probe_len = len(k_probe) + len(v_probe)
        body = self.seq_len - probe_len - (self.k_motif_size + self.v_motif_size)
        # Insert the probe pair by the drawn place, or before the pair that may end
        # the body (MAD's rule can miss it, leaving the final probe unanswerable).
        probe_at = min(int(rng.integers(0, body)), body - self.k_motif_size - self.v_motif_size)
        mapping: dict[tuple[int, ...], tuple[int, ...]] = {k_probe: v_probe}
        presented: set[tuple[int, ...]] = set()
        inputs: list[int] = []
        labels: list[int] = []  # each token's label: itself if scored, else -100 (unshifted)
        while len(inputs) < body:
            if k_probe not in presented and len(inputs) >= probe_at:
                key = k_probe
            else:
                key = motif(key_vocab, self.k_motif_size)
            if key not in mapping:
                mapping[key] = motif(value_vocab, self.v_motif_size)
            value = mapping[key]
            inputs += [*key, *value]
            labels += [IGNORE_INDEX] * len(key)
            labels += list(value) if key in presented else [IGNORE_INDEX] * len(value)
            presented.add(key)
        inputs += [*k_probe, *v_probe]
        labels += [IGNORE_INDEX] * len(k_probe) + list(v_probe)
        pad = self.seq_len + 1 - len(inputs)
        inputs = [m] * pad + inputs
        labels = [IGNORE_INDEX] * pad + labels
        return np.array(inputs[:-1], dtype=np.int64), np.array(labels[1:], dtype=np.int64)
