"""Task directories: atomic writes, memory-mapped reads, per-class sampling."""

from __future__ import annotations

import numpy as np
import pytest

import taskrel.io as tio
from taskrel import TaskrelInputError
from taskrel.io import open_task_dir, sample_per_class, save_task_dir


def _task(n=50, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, 4, size=n)


def test_round_trip_memory_mapped(tmp_path):
    X, y = _task()
    Xt, yt = _task(10, seed=1)
    save_task_dir(tmp_path / "t", features=X, labels=y, test_features=Xt, test_labels=yt,
                  class_names=list("abcd"), meta={"encoder": "demo"})
    t = open_task_dir(tmp_path / "t")
    assert isinstance(t.features, np.memmap) and not t.features.flags.writeable
    np.testing.assert_array_equal(t.features, X)
    np.testing.assert_array_equal(t.test_labels, yt)
    assert t.class_names == list("abcd") and t.meta == {"encoder": "demo"}
    assert not isinstance(open_task_dir(tmp_path / "t", mmap=False).features, np.memmap)


def test_memmap_input_is_streamed_in_chunks(tmp_path, monkeypatch):
    X, y = _task(n=37)
    save_task_dir(tmp_path / "a", features=X, labels=y)
    src = open_task_dir(tmp_path / "a")
    monkeypatch.setattr(tio, "_COPY_ROWS", 8)
    save_task_dir(tmp_path / "b", features=src.features, labels=src.labels)
    np.testing.assert_array_equal(open_task_dir(tmp_path / "b").features, X)


def test_failed_write_leaves_nothing_and_keeps_the_old_task(tmp_path, monkeypatch):
    X, y = _task()
    save_task_dir(tmp_path / "t", features=X, labels=y)
    real = tio._write_npy

    def broken(path, arr):
        if path.name == "labels.npy":
            raise OSError("disk full (simulated)")
        real(path, arr)

    monkeypatch.setattr(tio, "_write_npy", broken)
    with pytest.raises(OSError, match="disk full"):
        save_task_dir(tmp_path / "t", features=X + 1, labels=y, overwrite=True)
    with pytest.raises(OSError, match="disk full"):
        save_task_dir(tmp_path / "new", features=X, labels=y)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]
    np.testing.assert_array_equal(open_task_dir(tmp_path / "t").features, X)


def test_overwrite_replaces(tmp_path):
    X, y = _task()
    save_task_dir(tmp_path / "t", features=X, labels=y)
    with pytest.raises(TaskrelInputError, match="already exists"):
        save_task_dir(tmp_path / "t", features=X, labels=y)
    save_task_dir(tmp_path / "t", features=X[:5], labels=y[:5], overwrite=True)
    assert open_task_dir(tmp_path / "t").features.shape == (5, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]


def test_bad_task_dirs(tmp_path):
    X, y = _task()
    with pytest.raises(TaskrelInputError, match="inconsistent numbers of samples: 50 vs 49"):
        save_task_dir(tmp_path / "t", features=X, labels=y[:-1])
    with pytest.raises(TaskrelInputError, match="go together"):
        save_task_dir(tmp_path / "t", features=X, labels=y, test_features=X)
    with pytest.raises(TaskrelInputError, match="`features` must be 2-D"):
        save_task_dir(tmp_path / "t", features=y, labels=y)
    with pytest.raises(TaskrelInputError, match="does not exist"):
        open_task_dir(tmp_path / "nope")
    save_task_dir(tmp_path / "t", features=X, labels=y)
    (tmp_path / "t" / "meta.json").write_text("{not json")
    with pytest.raises(TaskrelInputError, match="no readable meta.json"):
        open_task_dir(tmp_path / "t")


class _RecordingRows:
    """Stands in for a memory map and records which rows were read."""

    def __init__(self, X):
        self.X, self.shape, self.reads = X, X.shape, []

    def __getitem__(self, rows):
        self.reads.append(np.asarray(rows))
        return self.X[rows]


def test_sample_per_class_reads_only_the_sampled_rows():
    X, y = _task(n=400)
    rec = _RecordingRows(X)
    Xs, ys, rows = sample_per_class(rec, y, 5, seed=1)
    assert len(rec.reads) == 1 and rec.reads[0].size == 20  # 4 classes x 5 rows
    assert np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(Xs, X[rows])
    np.testing.assert_array_equal(np.bincount(ys), [5, 5, 5, 5])
    # Small classes give all their rows; the draw is seeded.
    y2 = np.array([0] * 398 + [1] * 2)
    _, ys2, r2 = sample_per_class(X, y2, 10, seed=1)
    assert np.bincount(ys2).tolist() == [10, 2]
    np.testing.assert_array_equal(r2, sample_per_class(X, y2, 10, seed=1)[2])
    with pytest.raises(TaskrelInputError, match="`per_class` must be an integer >= 1"):
        sample_per_class(X, y, 0)
    with pytest.raises(TaskrelInputError, match="inconsistent numbers of samples"):
        sample_per_class(X, y[:3], 2)
