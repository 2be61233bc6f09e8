"""Tests of `TextCorpus` and `LanguageModelEvaluator`: real text, real (small) training runs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pathlib
import pickle
import platform
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from memnas.errors import ConfigError
from memnas.evaluators.text_lm import LanguageModelEvaluator, TextCorpus
from memnas.hashing import evaluator_fingerprint
from memnas.measurement import Context
from memnas.searchspace import Block, LinearAttention, SequenceModel, SoftmaxAttention

MB = 1_000_000
MARKER = re.compile(rb"<(doc\d+)>")


def _held_out(rel: str, fraction: float) -> bool:
    """The documented rule: a file is validation text when sha256(path) % 1000 < 1000 * f."""
    return int(hashlib.sha256(rel.encode()).hexdigest(), 16) % 1000 < round(1000 * fraction)


def _names(train: int, valid: int, fraction: float) -> tuple[list[str], list[str]]:
    """``train`` and ``valid`` document names (``docNNN``) that the rule puts on each side."""
    sides: tuple[list[str], list[str]] = ([], [])
    i = 0
    while len(sides[0]) < train or len(sides[1]) < valid:
        name = f"doc{i:03d}"
        side = sides[_held_out(name + ".txt", fraction)]
        if len(side) < (valid if side is sides[1] else train):
            side.append(name)
        i += 1
    return sides


def _write(folder: pathlib.Path, name: str, body: bytes, repeat: int = 40) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = pathlib.PurePosixPath(name).name.split(".")[0]
    path.write_bytes((b"<" + stem.encode() + b"> " + body + b"\n") * repeat)


def _markers(batch: tuple[torch.Tensor, torch.Tensor]) -> set[str]:
    inputs, _ = batch
    found: set[str] = set()
    for row in inputs.numpy().astype(np.uint8):
        found.update(m.decode() for m in MARKER.findall(row.tobytes()))
    return found


def _model(seq_len: int, mixer=None, d_model: int = 32, vocab_size: int = 256) -> SequenceModel:
    return SequenceModel(vocab_size=vocab_size, d_model=d_model,
                         layers=[Block(mixer or SoftmaxAttention(2), 2)], max_len=seq_len)


def _one_line_error(match: str, make) -> str:
    with pytest.raises(ConfigError, match=match) as info:
        make()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_stdlib_corpus_is_named_by_its_text_and_the_python_version() -> None:
    corpus = TextCorpus(max_bytes=MB, seq_len=64)
    assert corpus.vocab_size == 256 and corpus.bytes_per_token == 1.0
    assert corpus.python_version == platform.python_version()
    assert corpus.num_documents > 10
    assert MB <= corpus.num_tokens <= MB + corpus.num_documents  # the cap plus separators
    again = TextCorpus(max_bytes=MB, seq_len=1024)  # read again; the window does not matter
    assert again.corpus_sha256 == corpus.corpus_sha256 and len(corpus.corpus_sha256) == 64
    smaller = TextCorpus(max_bytes=MB // 2, seq_len=64)
    assert smaller.corpus_sha256 != corpus.corpus_sha256
    assert smaller.num_documents < corpus.num_documents
    assert corpus.corpus_sha256 in repr(corpus)
    text = b"".join(row.tobytes() for row in corpus.batch(256, 0)[0].numpy().astype(np.uint8))
    assert b"def " in text and b"return" in text  # Python source
    # 0.1 of the files held out: a unigram model sees much the same bytes on both sides.
    train, valid = corpus.unigram_entropy("train"), corpus.unigram_entropy("valid")
    assert 3.5 < valid < 6.0 and abs(train - valid) < 0.5


def test_fingerprint_names_the_corpus() -> None:
    a = LanguageModelEvaluator(TextCorpus(max_bytes=MB, seq_len=64), steps=10)
    b = LanguageModelEvaluator(TextCorpus(max_bytes=MB, seq_len=64), steps=10)
    c = LanguageModelEvaluator(TextCorpus(max_bytes=2 * MB, seq_len=64), steps=10)
    assert evaluator_fingerprint(a) == evaluator_fingerprint(b)
    assert evaluator_fingerprint(a) != evaluator_fingerprint(c)


def test_windows_of_1024_bytes_predict_the_next_byte() -> None:
    corpus = TextCorpus(max_bytes=MB, seq_len=1024)
    inputs, targets = corpus.batch(4, seed=7)
    assert inputs.shape == targets.shape == (4, 1024)
    assert inputs.dtype == targets.dtype == torch.int64
    assert torch.equal(inputs[:, 1:], targets[:, :-1])
    assert torch.equal(corpus.batch(4, seed=7)[0], inputs)
    assert not torch.equal(corpus.batch(4, seed=8)[0], inputs)
    valid_inputs, valid_targets = corpus.valid_batch(4, seed=7)
    assert valid_inputs.shape == (4, 1024)
    assert torch.equal(valid_inputs[:, 1:], valid_targets[:, :-1])
    assert not torch.equal(valid_inputs, inputs)
    # A whole evaluation at 1024 bytes (tiny: two steps).
    m = LanguageModelEvaluator(corpus, steps=2, batch_size=2, eval_examples=2,
                               latency_batch_size=1)(_model(1024, LinearAttention(1), 16))
    assert m.metrics["bits_per_byte"] > 0 and not m.non_finite()


def test_a_folder_is_read_in_sorted_order_and_held_out_by_path(tmp_path: pathlib.Path) -> None:
    train, valid = _names(12, 4, 0.2)
    for name in reversed(train + valid):  # created out of order
        _write(tmp_path, f"{name}.txt", b"some text " + name.encode())
    _write(tmp_path, ".hidden.txt", b"never read")
    (tmp_path / "image.bin").write_bytes(bytes(range(256)) * 8)  # not UTF-8: skipped
    corpus = TextCorpus(str(tmp_path), seq_len=32, valid_fraction=0.2, max_bytes=None)
    assert corpus.num_documents == 16 and corpus.python_version == ""
    assert _markers(corpus.batch(800, 0)) == set(train)
    assert _markers(corpus.valid_batch(800, 0)) == set(valid)
    # Capped: the first files in sorted order of relative path, the last one cut.
    size = (tmp_path / f"{train[0]}.txt").stat().st_size
    ordered = sorted(train + valid)
    cap = 8 * size + size // 2
    capped = TextCorpus(str(tmp_path), seq_len=32, valid_fraction=0.2, max_bytes=cap)
    assert capped.num_documents == 9 and capped.num_tokens == cap + 9  # with 9 separators
    seen = _markers(capped.batch(800, 1)) | _markers(capped.valid_batch(800, 1))
    assert seen == set(ordered[:9])
    # A suffix filter; a file in a subfolder is held out by its relative path.
    by_side: dict[bool, str] = {}
    for i in range(100):
        by_side.setdefault(_held_out(f"sub/doc9{i:02d}.md", 0.5), f"doc9{i:02d}")
    for name in by_side.values():
        _write(tmp_path, f"sub/{name}.md", b"markdown")
    md = TextCorpus(str(tmp_path), seq_len=16, valid_fraction=0.5, max_bytes=None,
                    suffixes=(".md",))
    assert md.num_documents == 2
    assert _markers(md.batch(200, 0)) == {by_side[False]}
    assert _markers(md.valid_batch(200, 0)) == {by_side[True]}
    one = TextCorpus(str(tmp_path), seq_len=16, valid_fraction=0.5, max_bytes=None, suffixes=".md")
    assert one.suffixes == (".md",) and one.corpus_sha256 == md.corpus_sha256


def test_a_single_file_holds_out_its_end(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "lines.txt"
    path.write_text("".join(f"line {i:04d}\n" for i in range(1000)))  # 10 bytes a line
    corpus = TextCorpus(str(path), seq_len=40, valid_fraction=0.1)
    assert TextCorpus(path, seq_len=40) == corpus  # a Path names the same corpus
    assert corpus.num_documents == 1 and corpus.num_tokens == 10_000

    def numbers(batch) -> set[int]:
        rows = batch[0].numpy().astype(np.uint8)
        return {int(n) for row in rows for n in re.findall(rb"line (\d{4})", row.tobytes())}

    assert max(numbers(corpus.batch(500, 0))) < 900 <= min(numbers(corpus.valid_batch(500, 0)))


def test_a_numpy_token_array(tmp_path: pathlib.Path) -> None:
    tokens = np.arange(5000, dtype=np.int32)
    corpus = TextCorpus.from_array(tokens, seq_len=16)
    assert corpus.vocab_size == 5000 and corpus.num_tokens == 5000
    assert corpus.bytes_per_token is None and corpus.python_version == ""
    inputs, targets = corpus.batch(100, 0)
    assert torch.equal(targets, inputs + 1) and int(inputs.max()) < 4500
    assert int(corpus.valid_batch(100, 0)[0].min()) >= 4500
    same = TextCorpus.from_array(tokens.astype(np.int64), seq_len=16)
    assert same.corpus_sha256 == corpus.corpus_sha256
    backwards = TextCorpus.from_array(tokens[::-1].copy(), seq_len=16)
    assert backwards.corpus_sha256 != corpus.corpus_sha256
    tokens[:] = 0  # the corpus holds its own copy
    assert torch.equal(corpus.batch(100, 0)[0], inputs)
    wide = TextCorpus.from_array(np.arange(5000), seq_len=16, vocab_size=6000, bytes_per_token=2.0)
    assert wide.vocab_size == 6000
    for bad in (np.zeros((10, 10), dtype=int), np.zeros(0, dtype=int), np.ones(10) * 0.5,
                np.array([3, -1, 2])):
        _one_line_error("from_array needs", lambda bad=bad: TextCorpus.from_array(bad))
    _one_line_error("vocab_size=10 is smaller than the corpus's 21",
                    lambda: TextCorpus.from_array(tokens + 20, vocab_size=10))
    m = LanguageModelEvaluator(wide, steps=3, batch_size=4, eval_examples=8)(
        _model(16, d_model=16, vocab_size=6000))
    assert m.metrics["bits_per_byte"] == pytest.approx(m.metrics["bits_per_token"] / 2)
    m = LanguageModelEvaluator(corpus, steps=3, batch_size=4, eval_examples=8)(
        _model(16, d_model=16, vocab_size=5000))
    assert "bits_per_byte" not in m.metrics
    assert m.metrics["bits_per_token"] == pytest.approx(m.metrics["loss"] / math.log(2))


def test_bad_sources_are_refused_in_one_line(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "nowhere"
    _one_line_error(re.escape(f"no such file or folder: '{missing}'"),
                    lambda: TextCorpus(str(missing)))
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(re.escape(f"no non-empty UTF-8 text files in folder '{empty}'"),
                    lambda: TextCorpus(str(empty)))
    (empty / "blob.bin").write_bytes(b"\xff\xfe\x00" * 100)
    _one_line_error("no non-empty UTF-8 .txt text files", lambda: TextCorpus(str(empty),
                                                                            suffixes=(".txt",)))
    binary = empty / "blob.bin"
    _one_line_error(re.escape(f"'{binary}' is empty or not UTF-8 text"),
                    lambda: TextCorpus(str(binary)))
    blank = tmp_path / "blank.txt"
    blank.write_text("")
    _one_line_error(re.escape(f"'{blank}' is empty"), lambda: TextCorpus(str(blank)))
    short = tmp_path / "short.txt"
    short.write_text("x" * 200)
    _one_line_error("validation split of .* has 20 tokens, fewer than seq_len \\+ 1 = 65",
                    lambda: TextCorpus(str(short), seq_len=64))
    for bad in ({"seq_len": 0}, {"valid_fraction": 1.0}, {"max_bytes": 0}):
        name, value = next(iter(bad.items()))
        _one_line_error(f"{name} must .*{value!r}", lambda bad=bad: TextCorpus(str(short), **bad))
    _one_line_error("not the expected 0000", lambda: TextCorpus(str(short), seq_len=8,
                                                                corpus_sha256="0" * 64))


@pytest.mark.skipif(not os.path.isfile("/proc/self/mem"), reason="Linux's /proc")
def test_a_file_that_fails_to_read_is_named() -> None:
    # Reading a process's memory at offset 0 fails (EIO), even for root.
    _one_line_error("cannot read '/proc/self/mem': ", lambda: TextCorpus("/proc/self/mem"))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_named(tmp_path: pathlib.Path) -> None:
    locked = tmp_path / "locked.txt"
    locked.write_text("secret text " * 100)
    locked.chmod(0)
    try:
        _one_line_error(re.escape(f"cannot read '{locked}'"),
                        lambda: TextCorpus(str(tmp_path), seq_len=8))
    finally:
        locked.chmod(0o600)


def test_the_held_out_score_is_on_validation_text(tmp_path: pathlib.Path) -> None:
    train, valid = _names(3, 1, 0.25)
    for name in train:
        (tmp_path / f"{name}.txt").write_text("a" * 2000)
    (tmp_path / f"{valid[0]}.txt").write_text("b" * 2000)
    corpus = TextCorpus(str(tmp_path), seq_len=16, valid_fraction=0.25, max_bytes=None)
    m = LanguageModelEvaluator(corpus, steps=40, batch_size=8, eval_examples=16)(
        _model(16, d_model=16), Context(seed=0))
    # Trained on a's only: scored on b's, it is wrong nearly everywhere.
    assert m.metrics["accuracy"] < 0.1 and m.metrics["bits_per_byte"] > 4


def test_a_candidate_shorter_than_the_window_is_refused() -> None:
    evaluator = LanguageModelEvaluator(TextCorpus(max_bytes=MB, seq_len=128), steps=1)
    with pytest.raises(ValueError, match="max_len=64 is shorter than the corpus's seq_len=128"):
        evaluator(_model(64))
    with pytest.raises(ValueError, match="vocab_size=200 is smaller"):
        evaluator(_model(128, vocab_size=200))


@pytest.mark.usefixtures("one_thread")
def test_training_gets_clearly_below_the_unigram_entropy() -> None:
    corpus = TextCorpus(max_bytes=MB, seq_len=64)
    evaluator = LanguageModelEvaluator(corpus, steps=400, batch_size=16, lr=3e-3,
                                       eval_examples=64, report_every=50)
    ctx = Context(seed=0)
    start = time.perf_counter()
    m = evaluator(_model(64), ctx)
    seconds = time.perf_counter() - start
    unigram = corpus.unigram_entropy()
    print(f"bits/byte {m.metrics['bits_per_byte']:.3f} vs unigram {unigram:.3f} in {seconds:.1f} s")
    assert m.metrics["bits_per_byte"] < unigram - 0.75
    assert m.metrics["bits_per_byte"] == pytest.approx(m.metrics["loss"] / math.log(2))
    assert 0.25 < m.metrics["accuracy"] < 1
    assert m.costs["tokens_per_s"] > 1000 and m.costs["params"] > 0 and not m.non_finite()
    assert m.curve[-1] == {"step": 400, "name": "eval_bits_per_token",
                           "value": m.metrics["bits_per_token"]}
    assert ctx.curve[-1] == m.curve[-1]


_WORKER = """
import dataclasses, json, pickle, sys
from memnas.errors import ConfigError
from memnas.hashing import evaluator_fingerprint
from memnas.measurement import Context
evaluator, array_corpus, folder_corpus, model = pickle.load(open(sys.argv[1], "rb"))
m = evaluator(model, Context(seed=5))
try:
    folder_corpus.batch(1, 0)
    error = ""
except ConfigError as e:
    error = str(e)
array16 = dataclasses.replace(array_corpus, seq_len=16)  # its tokens known here
print(json.dumps({"fingerprint": evaluator_fingerprint(evaluator), "metrics": m.metrics,
                  "array": array_corpus.batch(2, 3)[0].tolist(), "error": error,
                  "array16": array16.batch(1, 0)[0].tolist()}))
"""


def test_pickled_evaluators_run_in_a_fresh_process(tmp_path: pathlib.Path) -> None:
    evaluator = LanguageModelEvaluator(TextCorpus(max_bytes=MB // 4, seq_len=32), steps=5,
                                       batch_size=4, eval_examples=8, latency_batch_size=1)
    array_corpus = TextCorpus.from_array((np.arange(1000) % 97).astype(np.uint8), seq_len=8)
    folder = tmp_path / "text"
    train, valid = _names(1, 1, 0.5)
    for name in train + valid:
        _write(folder, f"{name}.txt", b"hello")
    folder_corpus = TextCorpus(str(folder), seq_len=8, valid_fraction=0.5)
    model = _model(32, LinearAttention(1), 16)
    payload = pickle.dumps((evaluator, array_corpus, folder_corpus, model))
    assert len(payload) < 50_000  # 250 kB of text stay behind; the small array travels
    assert pickle.loads(payload)[0] == evaluator
    (tmp_path / "job.pkl").write_bytes(payload)
    _write(folder, f"{train[0]}.txt", b"changed")  # the worker finds another corpus
    out = subprocess.run([sys.executable, "-c", _WORKER, str(tmp_path / "job.pkl")],
                         capture_output=True, text=True, check=True, timeout=120)
    there = json.loads(out.stdout.strip().splitlines()[-1])
    here = evaluator(model, Context(seed=5))
    assert there["fingerprint"] == evaluator_fingerprint(evaluator)
    assert there["metrics"] == pytest.approx(here.metrics, rel=1e-4)
    assert there["array"] == array_corpus.batch(2, 3)[0].tolist()
    assert there["array16"] == dataclasses.replace(array_corpus, seq_len=16).batch(1, 0)[0].tolist()
    assert "the corpus differs" in there["error"] and folder_corpus.corpus_sha256 in there["error"]
