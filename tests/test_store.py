"""The SQLite results store: rows, queries, export, and a run killed mid-grid."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from taskrel.exceptions import TaskrelInputError
from taskrel.experiments import run_grid
from taskrel.experiments.store import COLUMNS, Cell, ResultsStore


def _cells(n_targets=4, fractions=(0.1, 1.0), seeds=(0, 1), estimators=("a", "b")):
    return [Cell("enc", "ref", f"t{t}", fr, s, e)
            for t in range(n_targets) for fr in fractions for s in seeds
            for e in estimators]


def test_put_get_has_query_roundtrip(tmp_path):
    c = Cell("enc", "ref", "tgt", 0.5, 3, "task_relatedness")
    with ResultsStore(tmp_path / "r.sqlite") as st:
        assert not st.has(c)
        st.put(c, 1.5, extra={"label_mismatch": 0.25, "terms": [1, 2]}, seconds=0.75)
        assert st.has(c) and st.has(c.as_dict()) and st.has(tuple(c.as_dict().values()))
        row = st.get(c)
        assert row["value"] == 1.5 and row["seconds"] == 0.75
        assert row["extra"] == {"label_mismatch": 0.25, "terms": [1, 2]}
        assert set(row) == set(COLUMNS)
        assert "numpy" in row["versions"] and "python" in row["versions"]
        # replacing a row keeps one row
        st.put(c, 2.0)
        assert len(st) == 1 and st.get(c)["value"] == 2.0 and st.get(c)["extra"] == {}
        # NaN and None are stored as NULL
        c2 = Cell("enc", "ref", "tgt", 1.0, 3, "logme")
        st.put(c2, float("nan"))
        assert st.get(c2)["value"] is None
        # rows come sorted by key: fraction 0.5 before 1.0
        assert [r["estimator"] for r in st.query(fraction=[0.5, 1.0])] == [
            "task_relatedness", "logme"]
        assert [r["estimator"] for r in st.query(estimator="logme")] == ["logme"]
        assert st.query(estimator=[]) == []
        assert st.keys() == {c, c2}
    # the file persists
    with ResultsStore(tmp_path / "r.sqlite") as st:
        assert len(st) == 2
        mode = st._con.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


@pytest.mark.parametrize("bad, match", [
    (dict(encoder=""), "`encoder` must be a non-empty string"),
    (dict(fraction=0.0), r"`fraction` must be a number in \(0, 1\]; got 0.0"),
    (dict(fraction=1.5), r"`fraction` must be a number in \(0, 1\]"),
    (dict(seed=1.0), "`seed` must be an integer; got 1.0"),
])
def test_cell_validation(bad, match):
    kw = dict(encoder="e", reference="r", target="t", fraction=1.0, seed=0, estimator="x")
    kw.update(bad)
    with pytest.raises(TaskrelInputError, match=match):
        Cell(**kw)


def test_put_and_query_validation(tmp_path):
    st = ResultsStore(tmp_path / "r.sqlite")
    c = Cell("e", "r", "t", 1.0, 0, "x")
    with pytest.raises(TaskrelInputError, match="`value` must be a number or None; got 'high'"):
        st.put(c, "high")
    with pytest.raises(TaskrelInputError, match="`extra` must be JSON-serializable"):
        st.put(c, 1.0, extra={"f": object()})
    with pytest.raises(TaskrelInputError, match="`key` is missing"):
        st.has({"encoder": "e"})
    with pytest.raises(TaskrelInputError, match="query columns must be among"):
        st.query(value=1.0)
    assert len(st) == 0  # nothing half-written
    (tmp_path / "junk.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(TaskrelInputError, match="not a taskrel results database"):
        ResultsStore(tmp_path / "junk.sqlite")


def test_export_csv_roundtrip(tmp_path):
    with ResultsStore(tmp_path / "r.sqlite") as st:
        for i, c in enumerate(_cells(n_targets=2)):
            st.put(c, i / 7, extra={"i": i}, seconds=0.01 * i)
        n = st.export(tmp_path / "out.csv")
        rows = st.query()
    assert n == len(rows) == 16
    with open(tmp_path / "out.csv") as f:
        back = list(csv.DictReader(f))
    assert list(back[0]) == list(COLUMNS)
    for r, b in zip(rows, back):
        assert float(b["value"]) == pytest.approx(r["value"], rel=1e-15)
        assert json.loads(b["extra"]) == r["extra"]
        assert (b["target"], float(b["fraction"]), int(b["seed"])) == (
            r["target"], r["fraction"], r["seed"])
    with pytest.raises(TaskrelInputError, match=r"must end in .csv or .parquet"):
        ResultsStore(tmp_path / "r.sqlite").export(tmp_path / "out.xlsx")


def test_export_parquet_or_clear_error(tmp_path, monkeypatch):
    with ResultsStore(tmp_path / "r.sqlite") as st:
        st.put(Cell("e", "r", "t", 1.0, 0, "x"), 0.5, extra={"k": 1})
        try:
            import pyarrow.parquet as pq
        except ImportError:
            pq = None
        if pq is not None:
            st.export(tmp_path / "out.parquet")
            tab = pq.read_table(tmp_path / "out.parquet").to_pylist()
            assert tab[0]["value"] == 0.5 and json.loads(tab[0]["extra"]) == {"k": 1}
        monkeypatch.setitem(sys.modules, "pyarrow", None)
        with pytest.raises(TaskrelInputError, match="`pip install pyarrow`"):
            st.export(tmp_path / "out2.parquet")
    assert not (tmp_path / "out2.parquet").exists()


_WORKER = textwrap.dedent("""
    import sys, time
    from taskrel.experiments.store import Cell, ResultsStore
    from taskrel.experiments import run_grid

    def value(c):
        return c.seed * 100 + c.fraction * 10 + int(c.target[1:]) + (c.estimator == "b")

    def slow(c):
        time.sleep(0.03)
        return {"value": value(c), "extra": {"target": c.target}}

    cells = [Cell("enc", "ref", f"t{t}", fr, s, e)
             for t in range(10) for fr in (0.1, 1.0) for s in (0, 1) for e in ("a", "b")]
    run_grid(cells, slow, ResultsStore(sys.argv[1]), progress=False)
""")


def _expected(c):
    return c.seed * 100 + c.fraction * 10 + int(c.target[1:]) + (c.estimator == "b")


def test_killed_grid_keeps_rows_and_resumes(tmp_path):
    """SIGKILL a worker mid-grid: committed rows stay valid, the rerun fills the rest."""
    db = tmp_path / "grid.sqlite"
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    proc = subprocess.Popen([sys.executable, str(script), str(db)])
    try:
        n_seen, deadline = 0, time.monotonic() + 120
        while n_seen < 15 and time.monotonic() < deadline:
            time.sleep(0.05)
            if db.exists():
                try:
                    con = sqlite3.connect(db, timeout=1)
                    n_seen = con.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
                    con.close()
                except sqlite3.OperationalError:
                    pass  # table not created yet
            assert proc.poll() is None, "worker ended before it was killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    cells = [Cell("enc", "ref", f"t{t}", fr, s, e)
             for t in range(10) for fr in (0.1, 1.0) for s in (0, 1) for e in ("a", "b")]
    with ResultsStore(db) as st:
        assert st._con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        before = st.query()
        n_before = len(before)
        assert 15 <= n_before < len(cells)
        for r in before:  # every committed row is whole and right
            c = Cell(*(r[k] for k in ("encoder", "reference", "target", "fraction",
                                      "seed", "estimator")))
            assert math.isclose(r["value"], _expected(c))
            assert r["extra"] == {"target": c.target} and r["seconds"] > 0
        computed = []

        def fn(c):
            computed.append(c)
            return _expected(c)

        rep = run_grid(cells, fn, st, progress=False)
        assert rep.skipped == n_before and rep.computed == len(cells) - n_before
        assert len(computed) == len(cells) - n_before
        assert not ({c for c in computed} & {Cell(*(r[k] for k in (
            "encoder", "reference", "target", "fraction", "seed", "estimator")))
            for r in before})
        assert len(st) == len(cells)
        assert st.query(target="t0", seed=0, fraction=0.1) == [
            r for r in before if (r["target"], r["seed"], r["fraction"]) == ("t0", 0, 0.1)]
