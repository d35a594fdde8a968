"""Data sets users have on disk: CIFAR python batches (folder, .tar.gz, by name), image folders, the cache,
and the refusals (a pickle that would run code, damaged files, a missing data set)."""

import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spikeport.models import datafiles
from spikeport.models.data import input_shape, load_dataset
from spikeport.toolchain.errors import SpikeportError


@pytest.fixture(autouse=True)
def data_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("SPIKEPORT_DATA", str(home))
    return home


def _batch(n: int, seed: int, labels_key: bytes = b"labels") -> dict:
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"x", labels_key: [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"a.png"] * n}


def make_cifar10(root: Path, n: int = 3, protocol: int = 2) -> dict[str, dict]:
    """A CIFAR-10 python folder as the official archive lays it out."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {f"data_batch_{i}": _batch(n, i) for i in range(1, 6)} | {"test_batch": _batch(n, 9)}
    for name, b in batches.items():
        (folder / name).write_bytes(pickle.dumps(b, protocol=protocol))
    return batches


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_folder_tarball_and_name_give_the_same_arrays(tmp_path, data_home, protocol):
    batches = make_cifar10(tmp_path, protocol=protocol)
    folder = tmp_path / "cifar-10-batches-py"
    d = load_dataset(str(folder))
    assert d.name == "cifar10" and d.x_train.shape == (15, 3, 32, 32) and d.x_test.shape == (3, 3, 32, 32)
    first = batches["data_batch_1"][b"data"][0].reshape(3, 32, 32)
    assert np.array_equal(d.x_train[0], first.astype(np.float32) / 255)
    assert d.y_train.tolist() == [v for i in range(1, 6) for v in batches[f"data_batch_{i}"][b"labels"]]
    tar = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tar, "w:gz") as t:
        t.add(folder, arcname="cifar-10-batches-py")
    d2 = load_dataset(str(tar))
    assert np.array_equal(d.x_train, d2.x_train) and np.array_equal(d.y_test, d2.y_test)
    os.replace(tar, data_home / tar.name)  # by name: found under $SPIKEPORT_DATA
    d3 = load_dataset("cifar10")
    assert np.array_equal(d.x_test, d3.x_test) and d3.name == "cifar10"
    assert load_dataset(str(folder), flat=True).x_train.shape == (15, 3072)
    assert input_shape("cifar10") == (3, 32, 32)


def test_the_second_load_comes_from_the_uint8_cache(tmp_path, data_home, monkeypatch):
    make_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    a = load_dataset(str(folder))
    cached = list((data_home / "cache").glob("*/x_train.npy"))
    assert len(cached) == 1 and np.load(cached[0]).dtype == np.uint8

    def no_decode(*_a, **_k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(datafiles, "_decode_archive", no_decode)
    b = load_dataset(str(folder))
    assert np.array_equal(a.x_train, b.x_train)
    # a changed source is decoded anew (the cache is keyed by path, size and modification time)
    (folder / "test_batch").write_bytes(pickle.dumps(_batch(4, 5), protocol=2))
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset(str(folder))


def test_cifar100_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    tr, te = _batch(6, 1, b"fine_labels"), _batch(2, 2, b"fine_labels")
    (folder / "train").write_bytes(pickle.dumps(tr, protocol=2))
    (folder / "test").write_bytes(pickle.dumps(te, protocol=2))
    d = load_dataset(str(folder))
    assert d.name == "cifar100" and d.y_train.tolist() == tr[b"fine_labels"] and d.x_test.shape == (2, 3, 32, 32)


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_batch_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    batches = make_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    evil = batches["data_batch_3"] | {b"batch_label": _RunsCode(marker)}
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(SpikeportError, match=r"data_batch_3: not a readable CIFAR batch .*refusing "):
        load_dataset(str(tmp_path / "cifar-10-batches-py"))
    assert not marker.exists()


@pytest.mark.parametrize("damage, message", [
    (lambda f: f.write_bytes(b"\x80\x02garbage"), "not a readable CIFAR batch"),
    (lambda f: f.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})),
     "'data' must be uint8 rows of 3072 values"),
    (lambda f: f.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]})),
     "2 images but 1 labels"),
    (lambda f: f.unlink(), "missing test_batch"),
])
def test_damaged_batches_name_the_file_and_the_problem(tmp_path, damage, message):
    make_cifar10(tmp_path)
    damage(tmp_path / "cifar-10-batches-py" / "test_batch")
    with pytest.raises(SpikeportError, match=message):
        datafiles.load_path(tmp_path / "cifar-10-batches-py")


def make_folder(root: Path, sizes: dict[str, int], shape=(8, 8), mode="RGB") -> None:
    rng = np.random.default_rng(0)
    for split, n in sizes.items():
        for c in ("dog", "cat"):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                px = rng.integers(0, 256, (*shape, 3) if mode == "RGB" else shape, dtype=np.uint8)
                Image.fromarray(px, mode).save(root / split / c / f"{i}.png")


def test_image_folder_labels_follow_sorted_class_names(tmp_path):
    make_folder(tmp_path / "pets", {"train": 3, "test": 2})
    (tmp_path / "pets" / "train" / "cat" / "notes.txt").write_text("not an image")
    d = load_dataset(str(tmp_path / "pets"))
    assert d.name == "folder:pets" and d.classes == ("cat", "dog")
    order = np.random.default_rng(0).permutation(6)  # the folder's order (cat 0-2, dog 0-2), shuffled
    assert d.x_train.shape == (6, 3, 8, 8) and d.y_train.tolist() == [[0, 0, 0, 1, 1, 1][i] for i in order]
    px = np.asarray(Image.open(tmp_path / "pets" / "train" / "dog" / "1.png"))
    assert np.array_equal(d.x_train[list(order).index(4)], px.transpose(2, 0, 1).astype(np.float32) / 255)
    make_folder(tmp_path / "grey", {"train": 1, "test": 1}, mode="L")
    assert load_dataset(str(tmp_path / "grey")).x_test.shape == (2, 1, 8, 8)


def test_image_folder_refusals(tmp_path):
    make_folder(tmp_path / "a", {"train": 2, "test": 1})
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(tmp_path / "a" / "train" / "dog" / "odd.png")
    with pytest.raises(SpikeportError, match="images differ in size"):
        load_dataset(str(tmp_path / "a"))
    make_folder(tmp_path / "b", {"train": 1})
    with pytest.raises(SpikeportError, match="not a data set spikeport reads"):
        load_dataset(str(tmp_path / "b"))
    make_folder(tmp_path / "c", {"train": 1, "test": 1})
    (tmp_path / "c" / "test" / "cat" / "0.png").write_bytes(b"not a png")
    with pytest.raises(SpikeportError, match=r"0\.png: not a readable image"):
        load_dataset(str(tmp_path / "c"))


def test_a_missing_named_data_set_says_where_to_put_it(data_home, monkeypatch):
    def offline(url, target, md5, timeout=30.0):
        raise SpikeportError(f"cannot download {url}: no network")

    monkeypatch.setattr(datafiles, "fetch", offline)
    with pytest.raises(SpikeportError, match=r"put cifar-10-batches-py/ or cifar-10-python.tar.gz .* in .*no network"):
        load_dataset("cifar10")
    with pytest.raises(SpikeportError, match="does not exist"):
        load_dataset(str(data_home / "nowhere" / "cifar"))


def test_a_download_with_the_wrong_checksum_leaves_nothing(tmp_path):
    src = tmp_path / "fake.tar.gz"
    src.write_bytes(b"not the archive")
    target = tmp_path / "dl" / "cifar-10-python.tar.gz"
    with pytest.raises(SpikeportError, match="is not the published"):
        datafiles.fetch(src.as_uri(), target, datafiles.ARCHIVES["cifar10"].md5)
    assert not target.exists() and not list(target.parent.glob("*"))
    datafiles.fetch(src.as_uri(), target, __import__("hashlib").md5(b"not the archive").hexdigest())
    assert target.read_bytes() == b"not the archive"
