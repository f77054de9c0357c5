"""``taskrel.rank`` off the happy path (issue 22): ties get average ranks and do not
depend on the order the encoders are listed in; one encoder's failure (its features or
one estimator) leaves the others ranked."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskrel.data import from_arrays
from taskrel.features.encoders import Encoder
from taskrel.ranking import _assemble, consensus_ranks, explain, rank


# ---------------------------------------------------------------------------------
# ties
# ---------------------------------------------------------------------------------
def _groups(order, rows_or_key):
    """The set of encoders at each position."""
    out: dict[int, set[str]] = {}
    for enc in order:
        out.setdefault(rows_or_key(enc), set()).add(enc)
    return out


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n_enc=st.integers(2, 5), n_est=st.integers(1, 3))
def test_consensus_ranks_do_not_depend_on_the_encoder_order(data, n_enc, n_est):
    names = [f"e{i}" for i in range(n_enc)]
    ests = [f"s{j}" for j in range(n_est)]
    # Few distinct values (k-NN accuracy moves in steps of 1/n): many ties.
    cell = st.one_of(st.none(), st.sampled_from([0.0, 0.5, 1.0])) if n_est > 1 else \
        st.sampled_from([0.0, 0.5, 1.0])
    values = {n: {e: data.draw(cell) for e in ests} for n in names}
    hib = {e: data.draw(st.booleans()) for e in ests}
    perm = data.draw(st.permutations(names))
    lead = data.draw(st.sampled_from([None, *ests]))
    r1, c1, o1 = consensus_ranks(values, names, hib, ests, lead=lead)
    r2, c2, o2 = consensus_ranks(values, list(perm), hib, ests, lead=lead)
    assert r1 == r2
    np.testing.assert_array_equal([c1[n] for n in names], [c2[n] for n in names])
    assert o1 == o2
    for e in ests:  # average ranks: equal values, equal ranks; ranks sum to m(m+1)/2
        have = [n for n in names if values[n][e] is not None]
        assert sum(r1[n][e] for n in have) == pytest.approx(len(have) * (len(have) + 1) / 2)
        for a in have:
            for b in have:
                if values[a][e] == values[b][e]:
                    assert r1[a][e] == r1[b][e]


def test_two_encoders_tied_on_every_estimator_share_rank_and_position():
    v = {"A": {"knn_accuracy": 1.0, "sfda": 0.3}, "B": {"knn_accuracy": 1.0, "sfda": 0.3},
         "C": {"knn_accuracy": 0.5, "sfda": 0.1}}
    for names in (["A", "B", "C"], ["B", "A", "C"], ["C", "B", "A"]):
        raw = [_raw(n, v[n]) for n in names]
        rows, _, _ = _assemble(raw, ("knn_accuracy", "sfda"), 10)
        by = {r["encoder"]: r for r in rows}
        assert [r["encoder"] for r in rows] == ["A", "B", "C"]  # then by name
        assert by["A"]["ranks"] == by["B"]["ranks"] == {"knn_accuracy": 1.5, "sfda": 1.5}
        assert by["A"]["consensus_rank"] == by["B"]["consensus_rank"] == 1.5
        assert by["A"]["position"] == by["B"]["position"] == 1
        assert by["C"]["position"] == 3
        assert by["A"]["tied_with"] == ["B"] and by["B"]["tied_with"] == ["A"]
        assert by["C"]["tied_with"] == []
        assert "tied with B" in by["A"]["why"] and "#1.5" in by["A"]["why"]


def test_duplicated_encoders_tie():
    rng = np.random.default_rng(0)
    est = ("knn_accuracy", "sfda", "regularized_h_score")
    vals = {f"m{i}": {e: float(rng.random()) for e in est} for i in range(4)}
    vals["m1_copy"] = dict(vals["m1"])
    raw = [_raw(n, vals[n]) for n in ["m1_copy", "m0", "m3", "m1", "m2"]]
    rows, _, _ = _assemble(raw, est, 10)
    by = {r["encoder"]: r for r in rows}
    assert by["m1"]["ranks"] == by["m1_copy"]["ranks"]
    assert by["m1"]["position"] == by["m1_copy"]["position"]
    assert by["m1"]["tied_with"] == ["m1_copy"]


def test_float_ranks_print_sensibly(capsys):
    from taskrel.cli.rank import _cell, print_ranking
    from taskrel.ranking import Ranking

    assert _cell(0.5, 1.5) == "0.5 (#1.5)" and _cell(1.0, 2.0) == "1 (#2)"
    v = {"A": {"knn_accuracy": 1.0}, "B": {"knn_accuracy": 1.0}}
    rows, voters, notes = _assemble([_raw(n, v[n]) for n in "AB"], ("knn_accuracy",), 10)
    r = Ranking(rows, ("knn_accuracy",), voters, {"knn_accuracy": "higher is better"},
                {"name": "t", "modality": "image", "rows": 10, "classes": 2},
                {"name": "r", "rows": 10}, {}, 0.0, False, tuple(notes))
    print_ranking(r)
    out = capsys.readouterr().out
    assert "=1" in out and "1.50" in out and "(#1.5)" in out and "#1.5.0" not in out


def _raw(name, values, **extra):
    return {"encoder": name, "values": dict(values), "not_computed": {}, "terms": {},
            "warnings": [], "feature_dim": 4, "has_source_head": False, **extra}


# ---------------------------------------------------------------------------------
# failures
# ---------------------------------------------------------------------------------
def test_an_estimator_failing_for_one_encoder_still_votes_for_the_others():
    est = ("knn_accuracy", "sfda")
    raw = [_raw("A", {"knn_accuracy": 0.9, "sfda": None}),
           _raw("B", {"knn_accuracy": 0.8, "sfda": 0.5}),
           _raw("C", {"knn_accuracy": 0.7, "sfda": 0.6})]
    raw[0]["not_computed"]["sfda"] = "LinAlgError: singular matrix"
    rows, voters, notes = _assemble(raw, est, 10)
    by = {r["encoder"]: r for r in rows}
    assert voters == ("knn_accuracy", "sfda")  # not dropped for everyone
    assert by["A"]["votes"] == 1 and by["B"]["votes"] == by["C"]["votes"] == 2
    assert by["A"]["consensus_rank"] == 1.0  # its one vote
    assert by["B"]["consensus_rank"] == by["C"]["consensus_rank"] == 2.0
    assert [r["encoder"] for r in rows] == ["A", "B", "C"]  # k-NN breaks the tie
    assert by["B"]["position"] == 2 and by["C"]["position"] == 3
    assert by["B"]["tied_with"] == by["C"]["tied_with"] == []
    assert "1 of 2 estimators" in by["A"]["why"] and "sfda" in by["A"]["why"]
    assert any("sfda" in n and "A" in n for n in notes)


def test_an_estimator_computed_for_one_encoder_only_does_not_vote():
    est = ("knn_accuracy", "sfda")
    raw = [_raw("A", {"knn_accuracy": 0.5, "sfda": 0.9}),
           _raw("B", {"knn_accuracy": 0.9, "sfda": None}),
           _raw("C", {"knn_accuracy": 0.7, "sfda": None})]
    rows, voters, notes = _assemble(raw, est, 10)
    assert voters == ("knn_accuracy",)  # "#1 of 1" compares nothing
    assert [r["encoder"] for r in rows] == ["B", "C", "A"]
    assert "sfda does not vote: computed for A only" in notes


class _Pooled(Encoder):
    """Images -> ``dim`` chunk means times a seeded mixing matrix; ``fail`` raises."""

    modality = "image"
    batch_size = 512

    def __init__(self, name, dim, seed, fail=False):
        self.name, self.dim, self.fail = name, dim, fail
        self._mix = np.random.default_rng(seed).normal(size=(dim, dim))

    def cache_key(self):
        return {"name": self.name, "dim": self.dim}

    def _encode(self, batch, want_probs):
        if self.fail:
            raise RuntimeError("the device went away\nsecond line")
        x = np.asarray(batch, np.float32).reshape(len(batch), -1)
        pooled = np.stack([c.mean(1) for c in np.array_split(x, self.dim, axis=1)], 1)
        return pooled @ self._mix, None


def _digit_images(n=200):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    img = (X[:n].reshape(-1, 8, 8) * 255 / 16).astype(np.uint8)
    return np.kron(img, np.ones((1, 2, 2), np.uint8)), y[:n]


def test_one_encoders_failures_leave_the_others_ranked(monkeypatch):
    from taskrel import scores

    real = scores.compute_score

    def flaky(name, tgt, **kw):  # sfda breaks on the 12-d encoder's features only
        if name == "sfda" and np.asarray(tgt.features).shape[1] == 12:
            raise ValueError("array must not contain infs or NaNs\nmore detail")
        return real(name, tgt, **kw)

    monkeypatch.setattr(scores, "compute_score", flaky)
    X, y = _digit_images()
    ds = from_arrays(X, y, name="digits200")
    encs = [_Pooled("ok", 16, 0), _Pooled("sfda_breaks", 12, 1),
            _Pooled("broken", 16, 2, fail=True), _Pooled("ok2", 16, 3)]
    r = rank(ds, encs, reference="digits", estimators="knn_accuracy,sfda",
             max_reference=300, device="cpu", cache_dir=False, progress=False)
    by = {row["encoder"]: row for row in r.rows}
    assert r.voters == ("knn_accuracy", "sfda")
    assert by["broken"]["error"] == "RuntimeError: the device went away"
    assert by["broken"]["consensus_rank"] is None and r.rows[-1]["encoder"] == "broken"
    assert "feature extraction failed" in by["broken"]["why"]
    assert by["sfda_breaks"]["not_computed"]["sfda"] == \
        "ValueError: array must not contain infs or NaNs"
    assert by["sfda_breaks"]["votes"] == 1 and by["ok"]["votes"] == 2
    assert by["sfda_breaks"]["values"]["knn_accuracy"] is not None
    assert {row["encoder"] for row in r.rows[:3]} == {"ok", "ok2", "sfda_breaks"}


def test_memory_error_and_interrupts_are_not_swallowed(monkeypatch):
    from taskrel import scores

    def oom(name, tgt, **kw):
        raise MemoryError

    monkeypatch.setattr(scores, "compute_score", oom)
    X, y = _digit_images(60)
    with pytest.raises(MemoryError):
        rank(from_arrays(X, y, name="d60"), [_Pooled("ok", 8, 0)], reference="digits",
             estimators="knn_accuracy", max_reference=100, device="cpu",
             cache_dir=False, progress=False)


def test_every_encoder_failing_is_an_input_error():
    from taskrel.exceptions import TaskrelInputError

    X, y = _digit_images(60)
    with pytest.raises(TaskrelInputError, match="every encoder failed.*RuntimeError"):
        rank(from_arrays(X, y, name="d60"), [_Pooled("broken", 8, 0, fail=True)],
             reference="digits", estimators="knn_accuracy", max_reference=100,
             device="cpu", cache_dir=False, progress=False)


def test_explain_of_a_failed_row():
    row = {"encoder": "x", "ranks": {"s": None}, "terms": {},
           "error": "RuntimeError: boom", "tied_with": []}
    assert explain(row, [row], n_reference_classes=10, voters=["s"]).startswith(
        "not ranked: feature extraction failed (RuntimeError: boom)")


def test_ranking_cache_key_names_the_device(tmp_path, monkeypatch):
    # On CUDA the fast recipe switches to the batched entropic solver (and the torch
    # scores run on the GPU): a ranking computed there must not be served to a CPU run.
    import torch

    import taskrel.ranking as R

    keys = []

    class _Stop(Exception):
        pass

    def record(cache, key):
        keys.append(key)
        raise _Stop

    monkeypatch.setattr(R, "_cache_file", record)
    for kind in ("cpu", "cuda"):  # "auto" resolving to each kind (no GPU needed)
        monkeypatch.setattr(R, "_device_kind", lambda d: torch.device(kind).type)
        with pytest.raises(_Stop):
            R.rank("digits", ["effnet_lite0_random"], reference="digits", image_size=32,
                   device="cpu", cache_dir=tmp_path, progress=False)
    assert [k["device"] for k in keys] == ["cpu", "cuda"]
    assert {k2: v for k2, v in keys[0].items() if k2 != "device"} == \
        {k2: v for k2, v in keys[1].items() if k2 != "device"}
