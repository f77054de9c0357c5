"""The row cap (``_internal.sampling``): the stratified rule for user-facing extraction,
and the legacy permutation rule kept, by name, on every benchmark path."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskrel import TaskrelInputError
from taskrel._internal.sampling import limited_rows, permutation_rows, stratified_rows
from taskrel.data import from_arrays
from taskrel.features.encoders import Encoder
from taskrel.features.extract import extract_task


def _legacy(n, limit):
    """``limited_rows`` before the stratified rule (the benchmark stores' rows)."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).permutation(n)[:limit])


def _big_with_small_class(start=19_970, n=20_000, small=30):
    y = np.zeros(n, np.int64)
    y[start:start + small] = 1
    return y


class _TextLen(Encoder):
    """A cheap deterministic text encoder (length and vowel counts)."""

    modality = "text"
    dim = 2
    batch_size = 4096

    def __init__(self):
        self.name = "textlen"

    def cache_key(self):
        return {"name": self.name}

    def _encode(self, batch, want_probs):
        return np.array([[len(t), sum(t.count(v) for v in "aeiou")] for t in batch],
                        np.float32), None


def test_small_class_of_a_large_split_keeps_two_rows():
    y = _big_with_small_class()
    assert np.bincount(y[_legacy(y.size, 1000)])[1] == 1  # the defect: one row
    rows = limited_rows(y.size, 1000, y)
    counts = np.bincount(y[rows])
    assert rows.size == 1000 and counts[1] >= 2
    assert np.all(np.diff(rows) > 0)  # original order
    np.testing.assert_array_equal(rows, limited_rows(y.size, 1000, y))  # deterministic


def test_extract_task_stratifies_by_default_and_records_the_rule(tmp_path):
    y = _big_with_small_class()
    texts = [f"row {i} {'a' * (i % 7)}" for i in range(y.size)]
    ds = from_arrays(texts, y, texts[:10], y[:10], name="big_small", modality="text")
    t = extract_task(_TextLen(), ds, split="train", limit=1000, cache_dir=tmp_path,
                     progress=False)
    assert t.features.shape == (1000, 2)
    assert np.bincount(t.labels)[1] >= 2
    assert "stratified" in t.meta["limit_rule"]
    legacy = extract_task(_TextLen(), ds, split="train", limit=1000, cache_dir=tmp_path,
                          progress=False, limit_rule="permutation")
    np.testing.assert_array_equal(legacy.labels, y[_legacy(y.size, 1000)])
    assert "permutation" in legacy.meta["limit_rule"]
    # Never one cache entry for both rules; the permutation key has no new field.
    ks, kp = t.meta["cache"]["train"], legacy.meta["cache"]["train"]
    assert ks["cache_key"] != kp["cache_key"]
    key_p = json.loads((tmp_path / "features" / kp["cache_key"] / "key.json").read_text())
    key_s = json.loads((tmp_path / "features" / ks["cache_key"] / "key.json").read_text())
    assert "limit_rule" not in key_p and key_s["limit_rule"] == "stratified"
    with pytest.raises(TaskrelInputError, match="limit_rule"):
        extract_task(_TextLen(), ds, split="train", limit=10, cache_dir=False,
                     progress=False, limit_rule="first")


def test_a_class_with_one_row_keeps_it():
    y = np.array([0] * 999 + [1])
    rows = limited_rows(1000, 10, y)
    assert rows.size == 10 and 999 in rows.tolist()


def test_more_classes_than_the_cap_still_gives_the_cap():
    y = np.repeat(np.arange(10), 3)
    rows = stratified_rows(y, 5)
    assert rows.size == 5 and np.bincount(y[rows]).max() == 1
    rows = stratified_rows(y, 15)  # 2 each is 20 > 15: at least 1 each
    assert rows.size == 15 and np.bincount(y[rows], minlength=10).min() >= 1


@settings(max_examples=150, deadline=None)
@given(counts=st.lists(st.integers(1, 80), min_size=1, max_size=8),
       frac=st.floats(0.01, 1.2), seed=st.integers(0, 2**31 - 1))
def test_stratified_cap_keeps_shares_and_minimums(counts, frac, seed):
    counts = np.array(counts)
    y = np.repeat(np.arange(counts.size), counts)
    np.random.default_rng(seed).shuffle(y)
    n = y.size
    limit = max(1, int(frac * n))
    rows = stratified_rows(y, limit)
    assert rows.size == min(limit, n) and np.all(np.diff(rows) > 0)
    got = np.bincount(y[rows], minlength=counts.size)
    assert np.all(got <= counts)
    if limit >= n:
        return
    low = np.minimum(counts, 2)
    if low.sum() <= limit:
        assert np.all(got >= low)
        quota = limit * counts / n
        boost = np.maximum(low - quota, 0).sum()  # rows the minimums take from the rest
        assert np.all(np.abs(got - quota) < 1 + boost + 1e-9)
        if boost == 0:
            assert np.all(np.abs(got - quota) < 1)  # plain largest remainder
    np.testing.assert_array_equal(rows, stratified_rows(y, limit))


@pytest.mark.parametrize("n, limit", [(10, None), (10, 10), (10, 3), (20_000, 1000),
                                      (4000, 1000), (1797, 600)])
def test_legacy_rule_and_benchmark_rows_are_unchanged(n, limit):
    from taskrel.experiments.inputs import raw_rows

    np.testing.assert_array_equal(permutation_rows(n, limit), _legacy(n, limit))
    np.testing.assert_array_equal(limited_rows(n, limit), _legacy(n, limit))
    y = np.zeros(n, np.int64)
    y[-3:] = 1  # stratification would differ here; the benchmark's rows must not
    x = np.arange(n)
    ds = SimpleNamespace(x_train=x, y_train=y, x_test=x[: n // 2], y_test=y[: n // 2])
    xtr, ytr, xte, _ = raw_rows(ds, limit, limit)
    np.testing.assert_array_equal(xtr, _legacy(n, limit))
    np.testing.assert_array_equal(xte, _legacy(n // 2, limit))
    np.testing.assert_array_equal(ytr, y[_legacy(n, limit)])


def test_benchmark_extractions_ask_for_the_permutation_rule(monkeypatch):
    from taskrel.experiments import ablation, inputs
    from taskrel.features import extract

    seen = []
    monkeypatch.setattr(extract, "extract_task",
                        lambda *a, **k: seen.append(k) or SimpleNamespace(
                            features=np.zeros((8, 2)), labels=np.arange(8) % 2,
                            test_features=np.zeros((4, 2)), test_labels=np.arange(4) % 2))
    monkeypatch.setattr(inputs, "suite_encoder", lambda c, e: e)
    monkeypatch.setattr(inputs, "suite_dataset", lambda s: s)
    monkeypatch.setattr(inputs, "suite_device", lambda c: "cpu")
    config = SimpleNamespace(reference=SimpleNamespace(name="ref"), options={},
                             target=lambda name: SimpleNamespace(name=name))
    for split in ("both", "train", "test"):
        inputs.unit_task(config, ("enc", "t", split))
    with pytest.raises(TaskrelInputError, match="union reference"):  # after extracting
        ablation.reference_task(config, SimpleNamespace(reference="union"), "enc", "u")
    assert len(seen) == 5 and all(k.get("limit_rule") == "permutation" for k in seen)
