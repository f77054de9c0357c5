"""Extraction into task files; cache round trip, corruption, resume; CLI; and the
real-weights check: a linear probe on Lite0 features beats the random-init control."""

from __future__ import annotations

import json

import numpy as np
import pytest

from taskrel import TaskrelInputError
from taskrel.cli import main
from taskrel.data import load_dataset, subsample
from taskrel.encoders import load_encoder
from taskrel.features.extract import extract_task
from taskrel.io import load_task


@pytest.fixture(scope="module")
def small_digits():
    return subsample(load_dataset("digits"), per_class=3)


@pytest.fixture(scope="module")
def lite0_32():
    return load_encoder("effnet_lite0", image_size=32, device="cpu")


def _chunks(task):
    return {s: (i["chunks_from_cache"], i["chunks"]) for s, i in task.meta["cache"].items()}


def test_task_file_round_trip_and_cache_hit(tmp_path, small_digits, lite0_32):
    out = tmp_path / "t.npz"
    t1 = extract_task(lite0_32, small_digits, out=out, cache_dir=tmp_path / "c",
                      progress=False, chunk_rows=8)
    assert _chunks(t1) == {"train": (0, 4), "test": (0, 4)}
    t = load_task(out)
    assert t.features.shape == (30, 1280) and t.features.dtype == np.float32
    assert t.test_features.shape == (30, 1280) and t.labels.dtype == np.int64
    assert t.class_names == list(small_digits.class_names)
    assert t.source_probs.shape == (30, 1000) and t.test_source_probs.dtype == np.float32
    np.testing.assert_allclose(t.source_probs.sum(1), 1.0, rtol=0, atol=1e-5)
    assert t.meta["encoder"]["image_size"] == 32 and "torch" in t.meta["versions"]
    assert t.meta["dataset"]["name"] == small_digits.name
    t2 = extract_task(lite0_32, small_digits, cache_dir=tmp_path / "c", progress=False,
                      chunk_rows=8)
    assert _chunks(t2) == {"train": (4, 4), "test": (4, 4)}
    np.testing.assert_array_equal(t2.features, t1.features)
    np.testing.assert_array_equal(t2.test_source_probs, t1.test_source_probs)


def test_cache_key_tracks_input_size_and_split(tmp_path, small_digits, lite0_32):
    a = extract_task(lite0_32, small_digits, split="train", cache_dir=tmp_path,
                     progress=False)
    b = extract_task(load_encoder("effnet_lite0", image_size=40, device="cpu"),
                     small_digits, split="train", cache_dir=tmp_path, progress=False)
    assert a.meta["cache"]["train"]["cache_key"] != b.meta["cache"]["train"]["cache_key"]
    c = extract_task(lite0_32, small_digits, split="test", cache_dir=tmp_path,
                     progress=False, with_source_probs=False)
    assert c.test_features is None and c.source_probs is None
    np.testing.assert_array_equal(c.labels, small_digits.y_test)


def test_corrupted_chunk_is_detected_and_recomputed(tmp_path, small_digits, lite0_32):
    t1 = extract_task(lite0_32, small_digits, split="train", cache_dir=tmp_path,
                      progress=False, chunk_rows=10)
    folder = tmp_path / "features" / t1.meta["cache"]["train"]["cache_key"]
    chunk = folder / "chunk_00001.npz"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="chunk_00001.npz is corrupted"):
        t2 = extract_task(lite0_32, small_digits, split="train", cache_dir=tmp_path,
                          progress=False, chunk_rows=10)
    info = t2.meta["cache"]["train"]
    assert (info["chunks_from_cache"], info["chunks_recomputed_after_corruption"]) == (2, 1)
    np.testing.assert_array_equal(t2.features, t1.features)


def test_interrupted_extraction_resumes(tmp_path, small_digits, lite0_32, monkeypatch):
    calls = {"n": 0}
    real = type(lite0_32).encode_with_probs

    def dying(self, x, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed during the third chunk
        return real(self, x, **kw)

    monkeypatch.setattr(type(lite0_32), "encode_with_probs", dying)
    with pytest.raises(KeyboardInterrupt):
        extract_task(lite0_32, small_digits, split="train", cache_dir=tmp_path,
                     progress=False, chunk_rows=7)
    monkeypatch.setattr(type(lite0_32), "encode_with_probs", real)
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    t = extract_task(lite0_32, small_digits, split="train", cache_dir=tmp_path,
                     progress=False, chunk_rows=7)
    assert _chunks(t)["train"] == (2, 5)
    fresh = extract_task(lite0_32, small_digits, split="train", cache_dir=False,
                         progress=False)
    # Chunks of 7 and one batch of 30 run different convolution kernels (oneDNN picks
    # by batch size and thread count): float32 rounding, bounded relative to the
    # features' scale (measured with 1 thread: 1.3e-5 absolute, 3e-6 of the scale).
    scale = float(np.abs(fresh.features).max())
    np.testing.assert_allclose(t.features, fresh.features, rtol=1e-5, atol=1e-5 * scale)


def test_limit_and_bad_arguments(small_digits, lite0_32):
    t = extract_task(lite0_32, small_digits, limit=5, cache_dir=False, progress=False)
    assert t.features.shape == (5, 1280) and t.test_features.shape == (5, 1280)
    with pytest.raises(TaskrelInputError, match="`limit` must be an int >= 1"):
        extract_task(lite0_32, small_digits, limit=0)
    with pytest.raises(TaskrelInputError, match="`split` must be one of"):
        extract_task(lite0_32, small_digits, split="val")
    with pytest.raises(TaskrelInputError, match="takes image inputs but dataset"):
        extract_task(lite0_32, "election_tweets", cache_dir=False)


def test_tfidf_is_fitted_on_train_only(tmp_path):
    from taskrel.data import from_arrays

    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(40)]
    tr = [" ".join(rng.choice(words, 8)) for _ in range(60)]
    te = [" ".join(rng.choice(words, 8)) + " unseenword" for _ in range(10)]
    ds = from_arrays(tr, [i % 2 for i in range(60)], te, [i % 2 for i in range(10)])
    enc = load_encoder("tfidf_svd", dim=5)
    t = extract_task(enc, ds, cache_dir=tmp_path, progress=False)
    assert enc.fitted_on.startswith("60 texts") and t.test_features.shape == (10, 5)


def test_cli_extract_and_listings(tmp_path, capsys):
    out = tmp_path / "x.npz"
    rc = main(["extract", "effnet_lite0_random", "digits", "--limit", "4", "--out",
               str(out), "--image-size", "32", "--cache-dir", str(tmp_path), "--quiet",
               "--device", "cpu"])
    assert rc == 0 and "wrote" in capsys.readouterr().out
    t = load_task(out)
    assert t.features.shape == (4, 1280) and t.source_probs is None
    assert json.loads(str(np.load(out)["meta"][0]))["limit"] == 4
    assert main(["encoders"]) == 0 and "minilm" in capsys.readouterr().out
    assert main(["datasets"]) == 0 and "fashion_mnist" in capsys.readouterr().out
    assert main(["extract", "nope", "digits"]) == 2
    assert "`name` must be one of" in capsys.readouterr().err


def test_cli_extract_takes_an_encoder_spec(tmp_path, capsys, monkeypatch):
    """`taskrel extract` reads NAME[key=value,...] as `rank --encoders` does: the spec's
    options win over --image-size, and the default file name is the spec, sanitized."""
    monkeypatch.chdir(tmp_path)
    rc = main(["extract", "effnet_lite0_random[image_size=32,blocks=11]", "digits",
               "--limit", "4", "--image-size", "64", "--no-cache", "--quiet",
               "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    out = tmp_path / "effnet_lite0_random_image_size=32_blocks=11__digits.npz"
    meta = json.loads(str(np.load(out)["meta"][0]))
    assert meta["encoder"]["image_size"] == 32
    direct = extract_task(load_encoder("effnet_lite0_random", image_size=32, blocks=11,
                                       device="cpu"), "digits", limit=4, cache_dir=False,
                          progress=False)
    np.testing.assert_allclose(load_task(out).features, direct.features, rtol=1e-5,
                               atol=1e-5 * float(np.abs(direct.features).max()))
    assert main(["extract", "effnet_lite0_random[image_size]", "digits"]) == 2
    assert "`ENCODER`" in capsys.readouterr().err


@pytest.mark.slow
def test_lite0_probe_beats_random_init_on_fashion_mnist():
    """Real evidence the packaged weights are real: same architecture, same 64 px
    inputs, same probe; only the weights differ."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ds = subsample(load_dataset("fashion_mnist"), per_class=20, seed=0)
    acc = {}
    for name in ("effnet_lite0", "effnet_lite0_random"):
        t = extract_task(load_encoder(name, image_size=64, device="cpu"), ds,
                         cache_dir=False, progress=False, with_source_probs=False)
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        acc[name] = clf.fit(t.features, t.labels).score(t.test_features, t.test_labels)
    print(acc)
    assert acc["effnet_lite0"] > acc["effnet_lite0_random"] + 0.05
    assert acc["effnet_lite0"] > 0.6


def test_out_of_memory_batch_falls_back_to_a_smaller_one(tmp_path, small_digits):
    """A batch that does not fit is encoded again, whole, at half the size (with a
    warning); the features equal those of a run that never ran out of memory, and
    the next chunks start from the batch that fitted."""
    import torch

    from taskrel._internal.oom import BatchSizeWarning
    from taskrel.encoders import Encoder

    class Flaky(Encoder):
        name, modality, dim, batch_size = "flaky", "image", 4, 16

        def __init__(self, limit):
            self.limit, self.sizes = limit, []

        def cache_key(self):
            return {"name": self.name}

        def _encode(self, batch, want_probs):
            self.sizes.append(len(batch))
            if len(batch) > self.limit:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate")
            x = np.asarray(batch, np.float32).reshape(len(batch), -1)
            return x[:, :4] * 2.0 + 1.0, None

    ok = extract_task(Flaky(limit=10**6), small_digits, split="train", cache_dir=False,
                      progress=False, chunk_rows=10)
    flaky = Flaky(limit=4)
    with pytest.warns(BatchSizeWarning, match="batch 10; retrying with batch 5"):
        got = extract_task(flaky, small_digits, split="train", cache_dir=False,
                           progress=False, chunk_rows=10)
    np.testing.assert_array_equal(got.features, ok.features)
    # First chunk: 10 rows fail, 5 fail, then 2+2+2+2+2 fit (2 < 4 after two halvings);
    # every later chunk starts at batch 2 and never fails again.
    assert flaky.sizes[:2] == [10, 5]
    assert max(flaky.sizes[2:]) <= 4
    assert flaky.sizes.count(10) == 1
