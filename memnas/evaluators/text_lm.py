"""Language modelling of real text: `TextCorpus` and `LanguageModelEvaluator` (bits per byte)."""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import math
import os
import platform
import sysconfig
import time
from typing import Any

import numpy as np
import torch

from memnas.errors import ConfigError
from memnas.evaluators.training import TrainEvaluator
from memnas.measurement import Context, Measurement

STDLIB = "stdlib"
ARRAY = "<array>"
SEPARATOR = 0
_STDLIB_SKIP = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"}

# Per process: loaded splits by (corpus_sha256, valid_fraction), token arrays by sha256.
_SPLITS: dict[tuple[str, float], tuple[np.ndarray, np.ndarray]] = {}
_ARRAYS: dict[str, np.ndarray] = {}


@dataclasses.dataclass(frozen=True)
class TextCorpus:
    """A next-token task (a `SequenceTask`) on real text: the bytes of files, or token ids.

    Sources: ``"stdlib"``, the ``.py`` files of the running interpreter's standard
    library (``sysconfig.get_paths()["stdlib"]`` less ``site-packages``,
    ``dist-packages``, tests and ``_sysconfigdata*``): real text on any machine, none
    shipped or downloaded; a UTF-8 text file; a folder, read recursively (skipping
    hidden names and files that are not UTF-8); or a token array (`from_array`). Files
    go in sorted order of relative path up to ``max_bytes`` (the last one cut). Tokens
    are bytes; in a folder each file ends with a NUL byte (``SEPARATOR``).

    Held out: a folder's file is validation text when ``sha256(relative path) % 1000
    < 1000 * valid_fraction`` (no file is split, so nothing recalled leaks); a single
    file or an array holds out its last ``valid_fraction``. `batch` draws random
    windows of the training split, `valid_batch` of validation (what a `TrainEvaluator`
    evaluates on); every position is scored with the next token.

    The source is read at construction and named by ``corpus_sha256`` (kind, relative
    paths, bytes), ``python_version`` (stdlib only) and ``num_tokens``, which enter an
    evaluator's fingerprint. The text is not pickled: another process reads the source
    again and refuses it if its hash differs (an array's tokens do travel).

    Attributes:
      source: ``"stdlib"``, a path to a text file or folder, or ``"<array>"``.
      seq_len: Tokens per window, e.g. 1024.
      valid_fraction: Share of the text held out, in (0, 1).
      max_bytes: Bytes read at most (None: all); an array takes None (slice it).
      suffixes: File name endings read; None: ``(".py",)`` in the stdlib, all in a folder.
      corpus_sha256: Filled in; given, any other corpus is refused.
      vocab_size: Token ids; 0: 256 for text, the largest id + 1 for an array.
      bytes_per_token: 1 for text; an array's bytes of text per token, or None.
      python_version: The interpreter's version for the stdlib, else empty.
      num_documents: Files read (1 for an array).
      num_tokens: Tokens in both splits (with the separators).
    """

    source: str = STDLIB
    seq_len: int = 256
    valid_fraction: float = 0.1
    max_bytes: int | None = 8_000_000
    suffixes: tuple[str, ...] | None = None
    corpus_sha256: str = ""
    vocab_size: int = 0
    bytes_per_token: float | None = None
    python_version: str = dataclasses.field(init=False)
    num_documents: int = dataclasses.field(init=False)
    num_tokens: int = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", os.fspath(self.source))  # a Path is a str here
        _check_count("seq_len", self.seq_len)
        if self.max_bytes is not None:
            _check_count("max_bytes", self.max_bytes)
        if not 0 < self.valid_fraction < 1:
            raise ConfigError(f"TextCorpus: valid_fraction must be in (0, 1), got "
                              f"{self.valid_fraction!r}")
        if self.source == ARRAY and self.max_bytes is not None:
            raise ConfigError(f"TextCorpus: an array takes max_bytes=None, got {self.max_bytes!r}")
        if self.suffixes is not None:  # one suffix may come as a string
            suffixes = (self.suffixes,) if isinstance(self.suffixes, str) else self.suffixes
            object.__setattr__(self, "suffixes", tuple(suffixes))
        sha, splits, docs, vocab = self._load()
        if self.corpus_sha256 and self.corpus_sha256 != sha:
            raise ConfigError(f"TextCorpus: {self.source!r} has sha256 {sha}, not the expected "
                              f"{self.corpus_sha256}")
        if self.vocab_size and self.vocab_size < vocab:
            raise ConfigError(f"TextCorpus: vocab_size={self.vocab_size} is smaller than the "
                              f"corpus's {vocab} token ids")
        for name, part in zip(("training", "validation"), splits):
            if len(part) < self.seq_len + 1:
                raise ConfigError(f"TextCorpus: the {name} split of {self.source!r} has "
                                  f"{len(part)} tokens, fewer than seq_len + 1 = {self.seq_len + 1}"
                                  "; give more text, a shorter seq_len or another valid_fraction")
        text = self.source != ARRAY
        values = dict(corpus_sha256=sha, vocab_size=self.vocab_size or vocab,
                      bytes_per_token=1.0 if text else self.bytes_per_token,
                      python_version=platform.python_version() if self.source == STDLIB else "",
                      num_documents=docs, num_tokens=len(splits[0]) + len(splits[1]))
        self.__dict__.update(values)  # frozen: set past __setattr__
        _SPLITS[(sha, float(self.valid_fraction))] = splits
        if not text:
            object.__setattr__(self, "_tokens", _ARRAYS[sha])  # not a field: pickled, not hashed

    @classmethod
    def from_array(cls, tokens: np.ndarray, seq_len: int = 256, valid_fraction: float = 0.1,
                   vocab_size: int = 0, bytes_per_token: float | None = None) -> "TextCorpus":
        """A corpus of a 1-D array of token ids (already tokenized text), in reading order.

        Args:
          tokens: Non-negative integer token ids; the last ``valid_fraction`` is held out.
          seq_len, valid_fraction, vocab_size, bytes_per_token: As the class's fields.

        Raises:
          ConfigError: if the array is not 1-D, not integer, empty or negative.
        """
        array = np.asarray(tokens)
        if array.ndim != 1 or array.size == 0 or array.dtype.kind not in "iu" or array.min() < 0:
            raise ConfigError(f"TextCorpus.from_array needs a non-empty 1-D array of integers >= 0"
                              f", got dtype {array.dtype}, shape {array.shape}")
        array = np.array(array, order="C")  # our own read-only copy
        array.setflags(write=False)
        sha = _array_sha256(array)
        _ARRAYS.setdefault(sha, array)
        return cls(source=ARRAY, seq_len=seq_len, valid_fraction=valid_fraction, max_bytes=None,
                   corpus_sha256=sha, vocab_size=vocab_size, bytes_per_token=bytes_per_token)

    def batch(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` random windows of the training split as ``(inputs, targets)``, ``int64``
        ``(n, seq_len)``, targets the next tokens; the same seed, the same tensors."""
        return _windows(self._splits()[0], n, seed, self.seq_len)

    def valid_batch(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` random windows of the validation split, as `batch`."""
        return _windows(self._splits()[1], n, seed, self.seq_len)

    def unigram_entropy(self, split: str = "valid") -> float:
        """Entropy in bits per token of a split's own token frequencies.

        The least a model blind to context can score on that text (a unigram model fit
        on the training split scores more): below it, a model has learned from context.
        ``split`` is ``"train"`` or ``"valid"``.
        """
        if split not in ("train", "valid"):
            raise ConfigError(f"TextCorpus: split must be 'train' or 'valid', got {split!r}")
        counts = np.bincount(self._splits()[split == "valid"])
        p = counts[counts > 0] / counts.sum()
        return float(-(p * np.log2(p)).sum())

    def _splits(self) -> tuple[np.ndarray, np.ndarray]:
        key = (self.corpus_sha256, float(self.valid_fraction))
        if key not in _SPLITS:  # a fresh process: read the source again and check it
            sha, splits, _, _ = self._load()
            if sha != self.corpus_sha256:
                raise ConfigError(f"TextCorpus: {self.source!r} here (Python "
                                  f"{platform.python_version()}) has sha256 {sha}, not the "
                                  f"{self.corpus_sha256} it was built with: the corpus differs")
            _SPLITS[key] = splits
        return _SPLITS[key]

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)  # an array's tokens come along: keep them for `_load`
        if "_tokens" in state:
            _ARRAYS.setdefault(state["corpus_sha256"], state["_tokens"])

    def _load(self) -> tuple[str, tuple[np.ndarray, np.ndarray], int, int]:
        """``(sha256, (train, valid), documents, token ids needed)`` of the source."""
        if self.source == ARRAY:
            array = _ARRAYS.get(self.corpus_sha256)
            if array is None:
                raise ConfigError("TextCorpus: source '<array>' needs TextCorpus.from_array")
            cut = len(array) - round(len(array) * self.valid_fraction)
            return _array_sha256(array), (array[:cut], array[cut:]), 1, int(array.max()) + 1
        kind, docs = _read_documents(self.source, self.suffixes, self.max_bytes)
        digest = hashlib.sha256(kind.encode() + b"\0")
        for rel, data in docs:
            digest.update(rel.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
        if kind == "file":
            data = np.frombuffer(docs[0][1], dtype=np.uint8)
            cut = len(data) - round(len(data) * self.valid_fraction)
            return digest.hexdigest(), (data[:cut], data[cut:]), 1, 256
        parts: tuple[list[bytes], list[bytes]] = ([], [])
        for rel, data in docs:  # held out by a hash of the path
            valid = int(hashlib.sha256(rel.encode()).hexdigest(), 16) % 1000
            parts[valid < round(1000 * self.valid_fraction)].append(data + bytes([SEPARATOR]))
        train, valid = (np.frombuffer(b"".join(p), dtype=np.uint8) for p in parts)
        return digest.hexdigest(), (train, valid), len(docs), 256


class _TimedCorpus:
    """`TrainEvaluator`'s task: the corpus's batches, training ones timed for tokens/s but
    each run's first ``warmup`` steps (which compile; a run starts at its held-out draw)."""

    def __init__(self, corpus: TextCorpus, warmup: int = 0) -> None:
        self.corpus, self.vocab_size, self.warmup = corpus, corpus.vocab_size, warmup
        self.heldout_batches, self.tokens, self.seconds, self.seen = 0, 0, 0.0, 0
        self.last: tuple[float, int] | None = None

    def valid_batch(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.heldout_batches += 1
        self.last, self.seen = None, 0
        return self.corpus.valid_batch(n, seed)

    def batch(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        now = time.perf_counter()
        if self.last is not None and self.seen > self.warmup:
            self.seconds += now - self.last[0]
            self.tokens += self.last[1]
        self.last, self.seen = (now, n * self.corpus.seq_len), self.seen + 1
        return self.corpus.batch(n, seed)


@dataclasses.dataclass(frozen=True)
class LanguageModelEvaluator:
    """Trains a candidate on a `TextCorpus` and measures bits per byte on held-out text.

    `TrainEvaluator`'s loop (AdamW, warmup then cosine decay, fresh windows each step),
    checkpoints (``ctx.checkpoint``, ``ctx.resume``) and ``costs`` hook; the held-out set
    is ``eval_examples`` windows of the validation split, the same for every trial.

    Attributes:
      corpus: The text, e.g. ``TextCorpus()`` (the Python standard library).
      steps, batch_size, lr, weight_decay, warmup_frac, grad_clip, eval_examples,
        eval_seed, report_every, latency_batch_size, eval_at, lr_sweep, sweep_metric,
        precision, compile, compile_backend: `TrainEvaluator`'s (one it lacks must keep
        its default): ``precision="bf16"`` on a GPU; a sweep's best run is by ``"loss"``.
    """

    corpus: TextCorpus
    steps: int = 500
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup_frac: float = 0.1
    grad_clip: float = 1.0
    eval_examples: int = 64
    eval_seed: int = 0
    report_every: int = 25
    latency_batch_size: int = 4
    eval_at: tuple[int, ...] = ()
    lr_sweep: tuple[float, ...] = ()
    sweep_metric: str = "loss"
    precision: str = "fp32"
    compile: bool = False
    compile_backend: str = "inductor"

    def __post_init__(self) -> None:
        if not isinstance(self.corpus, TextCorpus):
            raise ConfigError(f"LanguageModelEvaluator: corpus must be a TextCorpus, got "
                              f"{type(self.corpus).__name__}")
        for name in ("eval_at", "lr_sweep"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        self.trainer(self.corpus)  # validates the settings now

    def trainer(self, task: Any) -> TrainEvaluator:
        """The `TrainEvaluator` with these settings on ``task``.

        Raises:
          ConfigError: naming a setting off its default that `TrainEvaluator` lacks.
        """
        known = {f.name for f in dataclasses.fields(TrainEvaluator)} - {"task"}
        settings = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for f in dataclasses.fields(self):
            if f.name not in known | {"corpus"} and settings[f.name] != f.default:
                raise ConfigError(f"LanguageModelEvaluator: {f.name}={settings[f.name]!r} needs "
                                  f"a TrainEvaluator with a {f.name} field")
        return TrainEvaluator(task=task, **{k: v for k, v in settings.items() if k in known})

    def __call__(self, candidate: Any, ctx: Context | None = None) -> Measurement:
        """Trains ``candidate`` on the training split and evaluates it on validation.

        Args:
          candidate: An object whose ``build()`` maps token ids ``(B, seq_len)`` to
            logits ``(B, seq_len, V >= corpus.vocab_size)``.
          ctx: Seed, device, budget and curve reporting; defaults to ``Context()``.

        Returns:
          `TrainEvaluator`'s metrics (``loss`` in nats per token, next-token ``accuracy``,
          ...) and for each ``loss<suffix>`` ``bits_per_token<suffix>`` and
          ``bits_per_byte<suffix>`` (not for an array without ``bytes_per_token``); its
          costs and ``tokens_per_s`` (training tokens per second of wall time, from 2
          steps; 3 when compiled); its curve and ``eval_bits_per_token``; its checkpoint.

        Raises:
          ValueError: a ``max_len`` or ``vocab_size`` short of the corpus's, or as `TrainEvaluator`.
        """
        ctx = ctx if ctx is not None else Context()
        max_len = getattr(candidate, "max_len", None)
        if isinstance(max_len, int) and max_len < self.corpus.seq_len:
            raise ValueError(f"the candidate's max_len={max_len} is shorter than the corpus's "
                             f"seq_len={self.corpus.seq_len}")
        router = _TimedCorpus(self.corpus, int(self.compile))  # a compiling step is no speed
        m = self.trainer(router)(candidate, ctx)
        if router.heldout_batches == 0:  # TrainEvaluator reads valid_batch: a guard all the same
            raise RuntimeError("LanguageModelEvaluator: nothing was evaluated on validation text")
        metrics, per_byte = dict(m.metrics), self.corpus.bytes_per_token
        for name, value in m.metrics.items():
            if name == "loss" or name.startswith("loss_"):
                metrics["bits_per_token" + name[4:]] = value / math.log(2)
                if per_byte:
                    metrics["bits_per_byte" + name[4:]] = value / math.log(2) / per_byte
        costs = dict(m.costs)
        if router.seconds > 0:
            costs["tokens_per_s"] = router.tokens / router.seconds
        step, bits = max((p["step"] for p in m.curve), default=0), metrics["bits_per_token"]
        ctx.report(step, eval_bits_per_token=bits)
        curve = [*m.curve, {"step": step, "name": "eval_bits_per_token", "value": bits}]
        return Measurement(metrics=metrics, costs=costs, curve=curve, artifact=m.artifact)

    def costs(self, candidate: Any) -> dict[str, float]:
        """`TrainEvaluator.costs` on the corpus: known before training (no latency)."""
        return self.trainer(self.corpus).costs(candidate)


def _read_documents(source: str, suffixes: tuple[str, ...] | None,
                    max_bytes: int | None) -> tuple[str, list[tuple[str, bytes]]]:
    """``("file" or "folder", [(relative path, bytes), ...])`` in sorted path order."""
    stdlib = source == STDLIB
    path = sysconfig.get_paths()["stdlib"] if stdlib else os.path.expanduser(str(source))
    suffixes = (".py",) if stdlib and suffixes is None else suffixes
    if os.path.isfile(path):
        data = _read_text(path, max_bytes)
        if not data:
            raise ConfigError(f"TextCorpus: {source!r} is empty or not UTF-8 text")
        return "file", [(os.path.basename(path), data)]
    if not os.path.isdir(path):
        raise ConfigError(f"TextCorpus: no such file or folder: {source!r}")

    def fail(error: OSError) -> None:
        raise ConfigError(f"TextCorpus: cannot read folder {error.filename!r}: {error.strerror}")

    names = []
    for folder, dirs, files in os.walk(path, onerror=fail):
        dirs[:] = [d for d in dirs if not d.startswith(".")
                   and not (stdlib and (d in _STDLIB_SKIP or d.startswith("config-")))]
        for name in files:
            full = os.path.join(folder, name)
            if (not name.startswith(".") and (suffixes is None or name.endswith(suffixes))
                    and not (stdlib and name.startswith("_sysconfigdata"))
                    and os.path.isfile(full)):
                names.append(os.path.relpath(full, path).replace(os.sep, "/"))
    docs, total = [], 0
    for rel in sorted(names):
        if max_bytes is not None and total >= max_bytes:
            break
        data = _read_text(os.path.join(path, rel), None if max_bytes is None else max_bytes - total)
        if data:
            docs.append((rel, data))
            total += len(data)
    if not docs:
        kind = f"{'/'.join(suffixes)} " if suffixes else ""
        raise ConfigError(f"TextCorpus: no non-empty UTF-8 {kind}text files in folder {source!r}")
    return "folder", docs


def _read_text(path: str, limit: int | None) -> bytes:
    """The first ``limit`` bytes of a file (all when None); b"" when not UTF-8 text."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit)
            whole = limit is None or not f.read(1)
    except OSError as error:
        raise ConfigError(f"TextCorpus: cannot read {path!r}: {error.strerror}") from None
    try:  # a cut file may end inside a character
        codecs.getincrementaldecoder("utf-8")().decode(data, final=whole)
    except UnicodeDecodeError:
        return b""
    return data


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"TextCorpus: {name} must be a positive integer, got {value!r}")


def _array_sha256(array: np.ndarray) -> str:
    digest = hashlib.sha256(b"array\0")
    for start in range(0, len(array), 1 << 20):  # as int64, so the dtype does not matter
        digest.update(np.ascontiguousarray(array[start : start + (1 << 20)], dtype="<i8").data)
    return digest.hexdigest()


def _windows(data: np.ndarray, n: int, seed: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    _check_count("n", n)
    starts = np.random.default_rng(seed).integers(0, len(data) - length, size=int(n))
    rows = data[starts[:, None] + np.arange(length + 1)].astype(np.int64)
    return torch.from_numpy(rows[:, :-1].copy()), torch.from_numpy(rows[:, 1:].copy())
