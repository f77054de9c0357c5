"""``taskrel.rank`` with ``tfidf_svd`` (issue 22): the encoder is fitted once, on the
target's selected training rows, and encodes the reference with that same fit."""

from __future__ import annotations

import numpy as np

from taskrel.data import from_arrays
from taskrel.ranking import rank


def test_tfidf_svd_is_fitted_once_on_the_target_and_shared_by_the_reference(
        monkeypatch, tmp_path):
    from taskrel.features.extract import extract_task
    from taskrel import ranking
    from taskrel.features.encoders.text import TfidfSvdEncoder

    rng = np.random.default_rng(0)
    topics = {t: [f"{t}{i}" for i in range(12)] for t in ("sp", "fo", "we", "mu", "mo")}
    shared = "sp1 sp2 fo3 we4 mu5 mo6 sp7"

    def texts(names, n):
        rows = [" ".join(rng.choice(topics[names[i % len(names)]], 6)) for i in range(n)]
        return [shared] + rows[1:], [i % len(names) for i in range(n)]

    xt, yt = texts(["sp", "fo", "we"], 90)
    xr, yr = texts(["mu", "mo", "sp"], 120)
    tgt = from_arrays(xt, yt, xt[:9], yt[:9], name="tgt", modality="text")
    ref = from_arrays(xr, yr, xr[:9], yr[:9], name="ref", modality="text")
    seen = {}
    real = ranking._score_values

    def spy(enc, ref_t, tgt_t, *a, **k):
        seen["ref"], seen["tgt"] = ref_t, tgt_t
        return real(enc, ref_t, tgt_t, *a, **k)

    monkeypatch.setattr(ranking, "_score_values", spy)
    enc = TfidfSvdEncoder(dim=8)
    rank(tgt, [enc], reference=ref, estimators="knn_accuracy", max_reference=500,
         max_target=500, feature_dim=64, device="cpu", cache_dir=tmp_path, progress=False)
    # Row 0 of both training sets is the same text: one vocabulary and SVD basis.
    np.testing.assert_allclose(seen["ref"].features[0], seen["tgt"].features[0],
                               rtol=1e-6, atol=1e-6)
    assert enc.fitted_on.startswith("90 texts")  # the target's selected train rows
    # The reference encoded by its own fit: another vocabulary, another cache entry.
    own = extract_task(TfidfSvdEncoder(dim=8), ref, split="train", limit=500,
                       cache_dir=tmp_path, progress=False)
    assert own.meta["cache"]["train"]["cache_key"] != \
        seen["ref"].meta["cache"]["train"]["cache_key"]
    assert not np.allclose(own.features[0], seen["tgt"].features[0], atol=1e-3)
