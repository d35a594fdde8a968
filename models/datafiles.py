"""Data sets users have on disk: the CIFAR python batches and image folders, decoded once to a uint8 cache.

Accepted, by path (``--data PATH``) or by name under ``$SPIKEPORT_DATA`` (``--data cifar10``):

- ``cifar-10-batches-py/`` (``data_batch_1`` .. ``data_batch_5``, ``test_batch``) or
  ``cifar-10-python.tar.gz``; ``cifar-100-python/`` (``train``, ``test``, fine labels) or its ``.tar.gz``.
  The batches are Python pickles. They are read with an unpickler that admits nothing but numpy's
  array reconstruction and builtin containers, so a tampered batch cannot run code.
- an image folder: ``train/<class>/*.png|jpg|jpeg|bmp``, ``test/<class>/*`` (classes sorted by name,
  labels their indices; every image the same size; RGB or grey; each split shuffled with a fixed seed, so
  that any prefix holds every class). A public copy of CIFAR-10 exists
  this way as JPEG re-encodings, which lose some accuracy against the original batches: the data set's
  name carries its source, so every figure can say what it was measured on.

Decoded images are cached as uint8 ``.npy`` files (memory-mapped on load) under
``$SPIKEPORT_DATA/cache`` (default ``~/.cache/spikeport/data``), keyed by the source's path, size and
modification time, so a second run starts in about a second. Inputs are scaled to [0, 1]; the
official train/test split is kept as it is.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import os
import pickle
import tarfile
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spikeport.toolchain.errors import SpikeportError
from spikeport.toolchain.files import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
SHUFFLE_SEED = 0  # image folders: both splits in numpy.random.default_rng(0)'s order
CACHE_VERSION = 2  # bump when the decoded form changes (2: image folders shuffled)


@dataclass(frozen=True)
class Archive:
    """A data set published as a python-pickle archive."""
    folder: str  # the folder the archive unpacks to
    tarball: str
    url: str
    md5: str  # published by the data set's authors
    train: tuple[str, ...]
    test: str
    labels: bytes  # the key of the labels in each batch


ARCHIVES = {
    "cifar10": Archive("cifar-10-batches-py", "cifar-10-python.tar.gz",
                       "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
                       tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch", b"labels"),
    "cifar100": Archive("cifar-100-python", "cifar-100-python.tar.gz",
                        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                        "eb9058c3a382ffc7106e4002c42a8d85", ("train",), "test", b"fine_labels"),
}


def data_home() -> Path:
    """Where named data sets and the decode cache live: ``$SPIKEPORT_DATA`` or ``~/.cache/spikeport/data``."""
    return Path(os.environ.get("SPIKEPORT_DATA") or Path.home() / ".cache" / "spikeport" / "data")


# -- a pickle reader that cannot run code ------------------------------------------------------------
def _numpy_private(module: str, name: str):
    """numpy's array builders, under numpy 2's module names or numpy 1's."""
    import importlib

    try:
        return getattr(importlib.import_module(f"numpy._core.{module}"), name)
    except ImportError:  # pragma: no cover - numpy 1.x
        return getattr(importlib.import_module(f"numpy.core.{module}"), name)


_ALLOWED: dict[tuple[str, str], object] = {
    (f"numpy{core}.{module}", name): _numpy_private(module, name)
    for core in ("._core", ".core") for module, name in (("multiarray", "_reconstruct"), ("numeric", "_frombuffer"))
} | {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # how protocol 2 writes bytes from Python 3 (text -> bytes only)
}


class _ArraysOnly(pickle.Unpickler):
    """Admits numpy's array reconstruction and the builtin containers, nothing else."""

    def find_class(self, module: str, name: str):  # type: ignore[override]
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name}: a data batch holds only arrays, lists and bytes")
        return _ALLOWED[(module, name)]


def read_batch(raw: bytes, where: str) -> dict:
    """One CIFAR batch (a pickled dict of arrays and lists), read without running any code in it."""
    try:
        obj = _ArraysOnly(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # pickle raises many types for damaged data
        raise SpikeportError(f"{where}: not a readable CIFAR batch ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise SpikeportError(f"{where}: not a CIFAR batch (a {type(obj).__name__}, not a dict)")
    return obj


def _batch_arrays(batch: dict, archive: Archive, where: str) -> tuple[np.ndarray, np.ndarray]:
    data, labels = batch.get(b"data"), batch.get(archive.labels)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise SpikeportError(f"{where}: 'data' must be uint8 rows of 3072 values (3x32x32), got {got}")
    y = np.asarray(labels if labels is not None else [], dtype=np.int64)
    if y.shape != (len(data),):
        raise SpikeportError(f"{where}: {len(data)} images but {y.size} labels under {archive.labels.decode()!r}")
    return data.reshape(-1, 3, 32, 32), y


def _archive_members(source: Path, archive: Archive) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of the archive's train batches, then its test batch, from a folder or a .tar.gz."""
    names = (*archive.train, archive.test)
    if source.is_dir():
        for n in names:
            f = source / n
            if not f.is_file():
                raise SpikeportError(f"{source}: missing {n} (a {archive.folder} folder holds {', '.join(names)})")
            yield str(f), f.read_bytes()
        return
    try:
        with tarfile.open(source, "r:*") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            for n in names:
                if n not in members:
                    raise SpikeportError(f"{source}: the archive has no {n}")
                fh = tar.extractfile(members[n])
                assert fh is not None
                yield f"{source}:{n}", fh.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise SpikeportError(f"{source}: not a readable .tar.gz archive ({exc})") from None


def _decode_archive(source: Path, archive: Archive) -> dict[str, np.ndarray]:
    xs, ys = [], []
    for where, raw in _archive_members(source, archive):
        x, y = _batch_arrays(read_batch(raw, where), archive, where)
        xs.append(x)
        ys.append(y)
    return {"x_train": np.concatenate(xs[:-1]), "y_train": np.concatenate(ys[:-1]),
            "x_test": xs[-1], "y_test": ys[-1]}


# -- image folders --------------------------------------------------------------------------------------
def _folder_classes(split_dir: Path) -> list[str]:
    return sorted(d.name for d in split_dir.iterdir() if d.is_dir())


def _decode_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            mode = "L" if im.mode in ("1", "L", "I;16", "I") else "RGB"
            arr = np.asarray(im.convert(mode), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise SpikeportError(f"{path}: not a readable image ({exc})") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _decode_folder(root: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise SpikeportError(f"{root}: an image folder needs train/<class>/ and test/<class>/ (no {split}/)")
    classes = _folder_classes(root / "train")
    if not classes:
        raise SpikeportError(f"{root}/train holds no class folders")
    test_classes = _folder_classes(root / "test")
    extra = sorted(set(test_classes) - set(classes))
    if extra:
        raise SpikeportError(f"{root}/test has classes that train has not: {extra}")
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        files, labels = [], []
        for label, c in enumerate(classes):
            d = root / split / c
            found = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if d.is_dir() else []
            files += found
            labels += [label] * len(found)
        if not files:
            raise SpikeportError(f"{root}/{split} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # PIL decodes without the GIL
            images = list(pool.map(_decode_image, files, chunksize=256))
        shapes = {im.shape for im in images}
        if len(shapes) > 1:
            first = images[0].shape
            odd = next(f for f, im in zip(files, images) if im.shape != first)
            raise SpikeportError(f"{root}: images differ in size or channels ({files[0].name} is {first}, "
                                 f"{odd} is {next(s for s in shapes if s != first)}); resize them to one size")
        # folders list their images class by class; a seeded shuffle makes any prefix (calibration samples,
        # "the first 1,000 test images") a sample of every class, as the CIFAR batches already are
        order = np.random.default_rng(SHUFFLE_SEED).permutation(len(files))
        out[f"x_{split}"] = np.stack(images)[order]
        out[f"y_{split}"] = np.asarray(labels, dtype=np.int64)[order]
    if out["x_train"].shape[1:] != out["x_test"].shape[1:]:
        raise SpikeportError(f"{root}: train images are {out['x_train'].shape[1:]}, test images "
                             f"{out['x_test'].shape[1:]}")
    return out, classes


# -- the cache ---------------------------------------------------------------------------------------
def _cache_dir(source: Path) -> Path:
    st = source.stat()
    newest = max((p.stat().st_mtime_ns for p in source.iterdir()), default=0) if source.is_dir() else 0
    key = f"v{CACHE_VERSION}|{source.resolve()}|{st.st_size}|{st.st_mtime_ns}|{newest}"
    return data_home() / "cache" / f"{source.name}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"


def _cached(source: Path, decode) -> tuple[dict[str, np.ndarray], list[str] | None]:
    """Decoded uint8 arrays of ``source``, from the cache or decoded and written there."""
    cache = _cache_dir(source)
    names = ("x_train", "y_train", "x_test", "y_test")
    if all((cache / f"{n}.npy").is_file() for n in names):
        arrays = {n: np.load(cache / f"{n}.npy", mmap_mode="r", allow_pickle=False) for n in names}
        classes_file = cache / "classes.txt"
        classes = classes_file.read_text().splitlines() if classes_file.is_file() else None
        return arrays, classes
    arrays, classes = decode()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        for n in names:
            with atomic_path(cache / f"{n}.npy") as tmp, open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(arrays[n]), allow_pickle=False)
        if classes is not None:
            (cache / "classes.txt").write_text("\n".join(classes))
    except OSError:
        pass  # a read-only cache folder costs a decode next time, nothing else
    return arrays, classes


# -- entry points ----------------------------------------------------------------------------------
def detect(path: Path) -> str | None:
    """What kind of data set ``path`` is: an archive key (``cifar10``), ``folder`` or None."""
    for key, a in ARCHIVES.items():
        if path.name == a.folder or path.name == a.tarball:
            return key
        if path.is_dir() and all((path / n).is_file() for n in (*a.train, a.test)):
            return key
    if path.is_dir() and (path / "train").is_dir() and (path / "test").is_dir():
        return "folder"
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        with_names = _tar_names(path)
        for key, a in ARCHIVES.items():
            if {a.test, *a.train} <= with_names:
                return key
    return None


def _tar_names(path: Path) -> set[str]:
    try:
        with tarfile.open(path, "r:*") as tar:
            return {Path(m.name).name for m in tar.getmembers() if m.isfile()}
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise SpikeportError(f"{path}: not a readable .tar.gz archive ({exc})") from None


def load_path(path: str | Path) -> tuple[str, dict[str, np.ndarray], list[str] | None]:
    """Decode (or read from the cache) the data set at ``path``; returns (its name, uint8 arrays, classes).
    The name says where the images came from (``cifar10`` for the python batches, ``folder:<dir>``
    for an image folder), so that figures can name their data."""
    path = Path(path)
    if not path.exists():
        raise SpikeportError(f"data set {path} does not exist")
    kind = detect(path)
    if kind is None:
        raise SpikeportError(f"{path}: not a data set spikeport reads (a CIFAR python folder or .tar.gz, an image "
                             "folder with train/<class>/ and test/<class>/, or an .npz file)")
    if kind == "folder":
        arrays, classes = _cached(path, lambda: _decode_folder(path))
        return f"folder:{path.name}", arrays, classes
    archive = ARCHIVES[kind]
    arrays, _ = _cached(path, lambda: (_decode_archive(path, archive), None))
    return kind, arrays, None


def find_named(name: str, download: bool = True) -> Path:
    """``cifar10`` / ``cifar100`` under :func:`data_home`: its folder, its tarball, or (if the network
    allows) the tarball downloaded from its official location and checked against the published MD5."""
    a = ARCHIVES[name]
    home = data_home()
    public = {"cifar10": ["CIFAR-10-images"]}.get(name, [])  # the public JPEG copy's folder name
    for candidate in (home / a.folder, home / a.tarball, home / name, *(home / p for p in public)):
        if candidate.exists() and detect(candidate) in (name, "folder"):
            return candidate
    if download:
        target = home / a.tarball
        try:
            fetch(a.url, target, a.md5)
            return target
        except SpikeportError as exc:
            reason = str(exc)
    else:
        reason = "download not attempted"
    raise SpikeportError(f"data set {name!r} not found: put {a.folder}/ or {a.tarball} (from {a.url}) in {home}, "
                         f"set SPIKEPORT_DATA, or pass --data PATH ({reason})")


def fetch(url: str, target: Path, md5: str, timeout: float = 30.0) -> None:
    """Download ``url`` to ``target`` if its MD5 is ``md5``; nothing is left behind otherwise."""
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_path(target) as tmp, open(tmp, "wb") as fh:
            while chunk := resp.read(1 << 20):
                digest.update(chunk)
                fh.write(chunk)
            if digest.hexdigest() != md5:
                raise SpikeportError(f"{url}: checksum {digest.hexdigest()} is not the published {md5}")
    except SpikeportError:
        raise
    except (OSError, ValueError) as exc:
        raise SpikeportError(f"cannot download {url}: {exc}") from None
