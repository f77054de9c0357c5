"""The feature cache key carries the taskrel version (issue 22): features cached by one
release are not read back by another."""

from __future__ import annotations

import numpy as np

from taskrel.data import load_dataset, subsample
from taskrel.encoders import Encoder
from taskrel.features import extract
from taskrel.features.extract import extract_task


class _Cheap(Encoder):
    name, modality, dim, batch_size = "cheap", "image", 4, 64

    def cache_key(self):
        return {"name": self.name}

    def _encode(self, batch, want_probs):
        x = np.asarray(batch, np.float32).reshape(len(batch), -1)
        return x[:, :4], None


def test_feature_cache_key_includes_the_taskrel_version(tmp_path, monkeypatch):
    ds = subsample(load_dataset("digits"), per_class=2)

    def run():
        t = extract_task(_Cheap(), ds, split="train", cache_dir=tmp_path,
                         progress=False)
        return t.meta["cache"]["train"]

    real = extract.package_version
    monkeypatch.setattr(extract, "package_version",
                        lambda d: "0.0.test1" if d == "taskrel" else real(d))
    first = run()
    again = run()
    assert again["cache_key"] == first["cache_key"] and again["chunks_from_cache"] == 1
    key = (tmp_path / "features" / first["cache_key"] / "key.json").read_text()
    assert "0.0.test1" in key
    monkeypatch.setattr(extract, "package_version",
                        lambda d: "0.0.test2" if d == "taskrel" else real(d))
    other = run()
    assert other["cache_key"] != first["cache_key"] and other["chunks_from_cache"] == 0
