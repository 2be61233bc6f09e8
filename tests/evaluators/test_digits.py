"""Digits/MNIST loading and masked training: splits, IDX files, zeros stay zero, rewinds."""

import gzip
import struct

import numpy as np
import pytest
import torch

from memnas.evaluators.digits import Digits, load_digits_split, load_mnist, read_idx
from memnas.evaluators.sparse_training import SparseTrainEvaluator, train_masked
from memnas.measurement import Context
from memnas.searchspace.sparse import MLP, SparseNet, full_masks, prune

SMALL = MLP(in_features=64, hidden=[32, 16], out_features=10)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_digits_split_is_fixed_by_seed_disjoint_and_standardised():
    a, b, c = load_digits_split(0), load_digits_split(0), load_digits_split(1)
    assert np.array_equal(a.x_val, b.x_val) and not np.array_equal(a.x_val, c.x_val)
    assert (len(a.y_train), len(a.y_val), len(a.y_test)) == (1079, 359, 359)
    assert a.in_features == 64 and a.num_classes == 10
    assert np.abs(a.x_train.mean(axis=0)).max() < 1e-5
    rows = {r.tobytes() for r in a.x_train}
    assert sum(r.tobytes() in rows for r in a.x_test) < 5  # digits has a few duplicate images


def _write_idx(path, array, code):
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I",
                                                                        *array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    with (gzip.open if str(path).endswith(".gz") else open)(path, "wb") as f:
        f.write(data)


def test_mnist_idx_files_load_into_a_split(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (120, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 120, dtype=np.uint8)
    paths = [tmp_path / n for n in ("tr-img.gz", "tr-lbl", "te-img", "te-lbl.gz")]
    _write_idx(paths[0], images[:100], 0x08)
    _write_idx(paths[1], labels[:100], 0x08)
    _write_idx(paths[2], images[100:], 0x08)
    _write_idx(paths[3], labels[100:], 0x08)
    assert np.array_equal(read_idx(str(paths[0])), images[:100])
    split = load_mnist(*map(str, paths), val_fraction=0.2)
    assert split.x_train.shape == (80, 784) and split.x_test.shape == (20, 784)
    assert np.array_equal(split.y_test, labels[100:])
    assert Digits(mnist=tuple(map(str, paths))).load().in_features == 784
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Digits(mnist=("a", "b", "c", "d")).load()
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(str(tmp_path / "bad"))


def test_pruned_weights_stay_exactly_zero_through_training_and_kept_ones_learn():
    torch.manual_seed(0)
    model = SMALL.build()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    masks = prune(dict(model.named_parameters()), full_masks(model), 0.8, criterion="random",
                  generator=torch.Generator().manual_seed(0))
    run = train_masked(model, masks, Digits().load(), steps=150, data_seed=0)
    for n, m in masks.items():
        assert float(run.final[n][~m].abs().sum()) == 0.0
        # Kept weights learn (a few from constant pixels or dead units get no gradient).
        assert float(((run.final[n][m] - init[n][m]).abs() > 0).float().mean()) > 0.8
    assert run.test_accuracy > 0.4  # chance is 0.1


def test_rewind_snapshot_is_the_weights_at_that_step():
    split = Digits().load()
    torch.manual_seed(3)
    model = SMALL.build()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    masks = full_masks(model)
    long = train_masked(model, masks, split, steps=60, data_seed=5, rewind_step=20)
    model.load_state_dict(init)
    short = train_masked(model, masks, split, steps=20, data_seed=5)
    for k in init:
        assert torch.equal(long.rewind[k], short.final[k])
    model.load_state_dict(init)
    at_zero = train_masked(model, masks, split, steps=5, data_seed=5, rewind_step=0)
    assert all(torch.equal(at_zero.rewind[k], init[k]) for k in init)


def test_evaluator_reports_exact_sparsity_curve_and_weights_on_request():
    ev = SparseTrainEvaluator(steps=100, report_every=50)
    m = ev(SparseNet(parent=SMALL, sparsity=0.75), Context(seed=1))
    assert m.costs["sparsity"] == pytest.approx(0.75, abs=1e-3)
    kept = round(0.25 * 64 * 32) + round(0.25 * 32 * 16) + 160
    assert m.costs["weights"] == kept
    assert m.artifact is None
    assert [p["step"] for p in m.curve if p["name"] == "val_accuracy"] == [50, 100]
    assert 0.5 < m.metrics["test_accuracy"] <= 1.0
    again = ev(SparseNet(parent=SMALL, sparsity=0.75), Context(seed=1, artifact={
        "return_weights": True}))
    assert again.metrics == m.metrics  # same seed, same result
    art = again.artifact
    assert set(art) >= {"masks", "final", "rewind", "prunable"}
    pruned = ~art["masks"]["layers.0.weight"]
    assert float(np.abs(art["final"]["layers.0.weight"][pruned]).max()) == 0


def test_an_mlp_whose_input_width_is_not_the_datas_is_named():
    from memnas.errors import ConfigError

    with pytest.raises(ConfigError, match=r"MLP in_features=784 does not match the data's 64 "
                                          r"features; pass MLP\(in_features=64, \.\.\.\)"):
        SparseTrainEvaluator(steps=1)(MLP(), Context())
