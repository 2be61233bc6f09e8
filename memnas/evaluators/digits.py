"""Image classification data: scikit-learn's digits, or MNIST IDX files a user has."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import os
import struct

import numpy as np


@dataclasses.dataclass(frozen=True)
class Split:
    """Standardised features ``(n, d)`` float32 and labels ``(n,)`` int64 per part."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def in_features(self) -> int:
        """Feature width."""
        return int(self.x_train.shape[1])

    @property
    def num_classes(self) -> int:
        """Number of classes (largest label + 1)."""
        return int(max(self.y_train.max(), self.y_val.max(), self.y_test.max())) + 1


def split_arrays(x: np.ndarray, y: np.ndarray, seed: int = 0, val_fraction: float = 0.2,
                 test_fraction: float = 0.2, test: tuple[np.ndarray, np.ndarray] | None = None
                 ) -> Split:
    """A fixed stratification-free shuffle split by ``seed``, standardised on train statistics.

    Args:
      x: Features ``(n, ...)``, flattened to ``(n, d)``.
      y: Integer labels ``(n,)``.
      seed: Seed of the shuffle.
      val_fraction: Share of the examples held out for validation.
      test_fraction: Share held out for testing (ignored when ``test`` is given).
      test: A separate ``(x, y)`` test set (MNIST's own).

    Raises:
      ValueError: fractions that leave no training examples, or mismatched lengths.
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.int64)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)} labels")
    test_fraction = 0.0 if test is not None else test_fraction
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction + test_fraction must lie in [0, 1), got "
                         f"val_fraction={val_fraction}, test_fraction={test_fraction}")
    order = np.random.default_rng(seed).permutation(len(x))
    n_val, n_test = int(round(val_fraction * len(x))), int(round(test_fraction * len(x)))
    val, tst, train = order[:n_val], order[n_val:n_val + n_test], order[n_val + n_test:]
    mean = x[train].mean(axis=0)
    std = x[train].std(axis=0)
    std[std < 1e-8] = 1.0

    def norm(a: np.ndarray) -> np.ndarray:
        return ((a.reshape(len(a), -1) - mean) / std).astype(np.float32)

    x_test, y_test = (x[tst], y[tst]) if test is None else (np.asarray(test[0], np.float64),
                                                             np.asarray(test[1], np.int64))
    return Split(norm(x[train]), y[train], norm(x[val]), y[val], norm(x_test), y_test)


def load_digits_split(seed: int = 0, val_fraction: float = 0.2,
                      test_fraction: float = 0.2) -> Split:
    """scikit-learn's 8x8 digits (1797 images, 10 classes), split by ``seed`` (60/20/20)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return split_arrays(data.data, data.target, seed, val_fraction, test_fraction)


def read_idx(path: str) -> np.ndarray:
    """Reads an IDX file (MNIST's format; ``.gz`` is decompressed) into a numpy array.

    Raises:
      ValueError: the file does not start with an IDX magic number.
    """
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path!r} is not an IDX file (bad magic number)")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise ValueError(f"{path!r}: unknown IDX element type 0x{data[2]:02x}")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=dtypes[data[2]], offset=4 + 4 * ndim).reshape(shape)


def load_mnist(train_images: str, train_labels: str, test_images: str, test_labels: str,
               seed: int = 0, val_fraction: float = 1 / 12) -> Split:
    """MNIST (or Fashion-MNIST) from its four IDX files: 55k/5k train/val, its 10k test."""
    return split_arrays(read_idx(train_images), read_idx(train_labels), seed, val_fraction,
                        test=(read_idx(test_images), read_idx(test_labels)))


@dataclasses.dataclass(frozen=True)
class Digits:
    """A picklable data source for evaluators: digits by default, MNIST given its files.

    Attributes:
      seed: Seed of the train/val/test split.
      mnist: Paths of MNIST's four IDX files (train images, train labels, test images,
        test labels); None uses scikit-learn's digits.
    """

    seed: int = 0
    mnist: tuple[str, str, str, str] | None = None

    def load(self) -> Split:
        """The split, loaded once per process.

        Raises:
          FileNotFoundError: an MNIST path that does not exist.
        """
        for p in self.mnist or ():
            if not os.path.exists(p):
                raise FileNotFoundError(f"MNIST file {p!r} does not exist")
        return _load(self.seed, self.mnist)


@functools.lru_cache(maxsize=4)
def _load(seed: int, mnist: tuple[str, str, str, str] | None) -> Split:
    return load_mnist(*mnist, seed=seed) if mnist else load_digits_split(seed)
