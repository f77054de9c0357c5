"""Resuming a grid: rows carry a digest of what determined them (a config change
recomputes exactly the cells it affects), and concurrent runs on one store claim
cells so that none is computed twice."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace

import pytest

from taskrel.exceptions import TaskrelInputError
from taskrel.experiments import parse_config, run_grid
from taskrel.experiments.digest import cell_digest, digest_inputs, suite_digest
from taskrel.experiments.reproduce import check_config, make_cell_fn
from taskrel.experiments.store import COLUMNS, Cell, ResultsStore

_RAW = {
    "name": "tinydigest",
    "reference": {"name": "digits04", "dataset": "digits", "classes": [0, 1, 2, 3, 4]},
    "targets": [
        {"name": "digits59", "dataset": "digits", "classes": [5, 6, 7, 8, 9]},
        {"name": "digits04_rot", "dataset": "digits", "classes": [0, 1, 2, 3, 4],
         "transform": {"kind": "rotate", "strength": 0.5}},
    ],
    "encoders": ["effnet_lite0_random"],
    "estimators": ["task_relatedness", "logme"],
    "fractions": [1.0],
    "seeds": [0],
    "ground_truth": {"estimators": ["linear_probe", "finetune"]},
    "finetune": {"image_size": 32, "steps": 5},
    "options": {"max_reference": 120, "max_target": 80, "max_test": 40, "device": "cpu",
                "feature_dim": 8},
}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TASKREL_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    import torch

    torch.set_num_threads(1)


# ---------------------------------------------------------------------------------
# digests
# ---------------------------------------------------------------------------------
def _changed(cfg, **kw):
    """Which estimators' cells of ``cfg`` get another digest under the change ``kw``
    (``options=...``, ``finetune=...``, ``targets=...``, ``reference=...``)."""
    new = replace(cfg, **kw)
    from taskrel.experiments import expand_grid

    return sorted({(c.target, c.estimator) for c in expand_grid(cfg)
                   if cell_digest(cfg, c) != cell_digest(new, c)})


def test_digest_covers_exactly_what_each_cell_reads():
    cfg = parse_config(_RAW)
    opts, both = cfg.options, ("digits04_rot", "digits59")
    every = sorted((t, e) for t in both
                   for e in ("finetune", "linear_probe", "logme", "task_relatedness"))
    no_ft = sorted(x for x in every if x[1] != "finetune")
    assert _changed(cfg, options={**opts, "tau": 0.5}) == sorted(
        (t, e) for t in both for e in ("linear_probe", "task_relatedness"))
    assert _changed(cfg, options={**opts, "tau": "auto"}) == []   # the default
    assert _changed(cfg, options={**opts, "recipe": "paper"}) == sorted(
        (t, "task_relatedness") for t in both)
    assert _changed(cfg, options={**opts, "feature_dim": 4}) == no_ft
    assert _changed(cfg, options={**opts, "max_reference": 100}) == no_ft
    assert _changed(cfg, options={**opts, "max_target": 60}) == every
    assert _changed(cfg, options={**opts, "device": "auto"}) == []
    assert _changed(cfg, options={**opts, "reference_finetune": "x"}) == []
    assert _changed(cfg, options={**opts, "new_knob": 1}) == every  # unknown: all
    assert _changed(cfg, finetune={**cfg.finetune, "steps": 6}) == sorted(
        (t, "finetune") for t in both)
    assert _changed(cfg, finetune={**cfg.finetune, "image_size": 48}) == every
    rot = replace(cfg.targets[1], transform={"kind": "rotate", "strength": 0.25})
    assert _changed(cfg, targets=(cfg.targets[0], rot)) == [
        x for x in every if x[0] == "digits04_rot"]
    ref = replace(cfg.reference, classes=(0, 1, 2, 3))
    assert _changed(cfg, reference=ref) == no_ft
    # A smallcnn's finetune cell depends on the reference it is trained on.
    sc = replace(cfg, encoders=("smallcnn",))
    c = Cell("smallcnn", "digits04", "digits59", 1.0, 0, "finetune")
    assert cell_digest(sc, c) != cell_digest(replace(sc, reference=ref), c)
    assert cell_digest(sc, c) != cell_digest(
        replace(sc, options={**opts, "smallcnn_epochs": 5}), c)
    # An estimator the table does not know reads everything; a target name that is
    # not a target is the reference itself.
    d = digest_inputs(cfg, Cell("e", "digits04", "digits04", 1.0, 0, "someday"))
    assert "device" not in d["options"] and d["options"]["feature_dim"] == 8
    assert d["target"]["spec"] == {"reference": cfg.reference.to_dict()}
    assert "finetune" in d
    ref_ft = Cell("e", "digits04", "reference", 1.0, 0, "finetune")
    assert cell_digest(cfg, ref_ft) != cell_digest(
        replace(cfg, options={**opts, "max_reference": 100}), ref_ft)
    with pytest.raises(TaskrelInputError, match="`cell` must be a Cell"):
        cell_digest(cfg, ("e",))
    with pytest.raises(TaskrelInputError, match="`config` must be an ExperimentConfig"):
        suite_digest({})


def test_tau_change_recomputes_only_the_cells_that_read_it(tmp_path):
    """Two runs of a tiny real suite; the second changes options.tau."""
    raw = {**_RAW, "ground_truth": {"estimators": ["linear_probe"]}}
    cfg = check_config(parse_config(raw))
    calls = []

    def run(config):
        fn = make_cell_fn(config)

        def counted(c):
            calls.append(c)
            return fn(c)

        calls.clear()
        with ResultsStore(tmp_path / "s.sqlite") as st:
            rep = run_grid(config, counted, st, progress=False,
                           digest=suite_digest(config))
            return rep, {(r["target"], r["estimator"]): r for r in st.query()}

    rep1, rows1 = run(cfg)
    assert (rep1.computed, rep1.skipped, rep1.stale) == (6, 0, 0) and len(calls) == 6
    assert all(r["digest"] and len(r["digest"]) == 64 for r in rows1.values())
    tau2 = replace(cfg, options={**cfg.options, "tau": 0.5})
    rep2, rows2 = run(tau2)
    assert sorted((c.target, c.estimator) for c in calls) == sorted(
        (t, e) for t in ("digits04_rot", "digits59")
        for e in ("linear_probe", "task_relatedness"))
    assert (rep2.computed, rep2.skipped, rep2.stale, rep2.total) == (4, 2, 4, 6)
    for k, r in rows2.items():
        if k[1] == "logme":  # untouched: the same row, the same write
            assert r == rows1[k]
        else:
            assert r["extra"]["tau"] == 0.5 and r["digest"] != rows1[k]["digest"]
    assert len(rows2) == 6  # replaced, not added
    rep3, rows3 = run(tau2)
    assert (rep3.computed, rep3.skipped, len(calls)) == (0, 6, 0) and rows3 == rows2
    # Without a digest (plain run_grid) every row counts as done.
    with ResultsStore(tmp_path / "s.sqlite") as st:
        assert run_grid(cfg, calls.append, st, progress=False).computed == 0


def _legacy_store(path, cells):
    """A store as taskrel wrote it before rows had a digest."""
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE cells (encoder TEXT NOT NULL, reference TEXT NOT NULL, target TEXT "
        "NOT NULL, fraction REAL NOT NULL, seed INTEGER NOT NULL, estimator TEXT NOT NULL, "
        "value REAL, extra TEXT NOT NULL DEFAULT '{}', seconds REAL, timestamp TEXT NOT "
        "NULL, versions TEXT NOT NULL DEFAULT '{}', PRIMARY KEY (encoder, reference, "
        "target, fraction, seed, estimator))")
    for c in cells:
        con.execute("INSERT INTO cells VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (c.encoder, c.reference, c.target, c.fraction, c.seed, c.estimator,
                     0.5, "{}", 1.0, "2026-01-01T00:00:00+00:00", "{}"))
    con.commit()
    con.close()


def test_old_store_rows_without_digest_are_kept_with_a_warning(tmp_path):
    db = tmp_path / "old.sqlite"
    cells = [Cell("e", "r", f"t{i}", 1.0, 0, "x") for i in range(3)]
    _legacy_store(db, cells[:2])
    before = db.read_bytes()
    with ResultsStore(db, readonly=True) as ro:  # read-only: readable as it is
        rows = ro.query()
        assert [r["digest"] for r in rows] == [None, None] and rows[0]["value"] == 0.5
        assert ro.export(tmp_path / "old.csv") == 2 and ro.claims() == []
    assert db.read_bytes() == before
    with ResultsStore(db) as st:  # read-write: gains the digest column, keeps rows
        with pytest.warns(UserWarning, match="2 rows of .* have no digest"):
            rep = run_grid(cells, lambda c: 1.0, st, progress=False,
                           digest=lambda c: "d1")
        assert (rep.computed, rep.skipped, rep.legacy) == (1, 2, 2)
        assert [r["digest"] for r in st.query()] == [None, None, "d1"]
        assert [r["value"] for r in st.query()] == [0.5, 0.5, 1.0]
    with open(tmp_path / "old.csv") as f:
        assert f.readline().strip().split(",") == list(COLUMNS)


def test_store_refuses_a_foreign_cells_table_for_writing(tmp_path):
    db = tmp_path / "foreign.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE cells (id INTEGER, name TEXT)")
    con.commit()
    con.close()
    with pytest.raises(TaskrelInputError, match="not a taskrel results database: it"):
        ResultsStore(db)
    with pytest.raises(TaskrelInputError, match="`claim_timeout` must be a positive"):
        ResultsStore(tmp_path / "x.sqlite", claim_timeout=0)
    with pytest.raises(TaskrelInputError, match="`digest` must be a string or None"):
        ResultsStore(tmp_path / "x.sqlite").put(Cell("e", "r", "t", 1.0, 0, "x"), 1.0,
                                                digest=3)
    with pytest.raises(TaskrelInputError, match="`digest` must be callable or None"):
        run_grid([], float, ResultsStore(tmp_path / "x.sqlite"), digest="abc")


# ---------------------------------------------------------------------------------
# claims
# ---------------------------------------------------------------------------------
def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _insert_claim(db, cell, *, host=None, pid, started="1", claimed_at=None):
    con = sqlite3.connect(db)
    con.execute("INSERT INTO claims VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (cell.encoder, cell.reference, cell.target, cell.fraction, cell.seed,
                 cell.estimator, host or socket.gethostname(), pid, started, "other",
                 time.time() if claimed_at is None else claimed_at))
    con.commit()
    con.close()


def test_claims_of_dead_reused_or_expired_owners_are_taken_over(tmp_path):
    import os

    db = tmp_path / "c.sqlite"
    cells = [Cell("e", "r", f"t{i}", 1.0, 0, "x") for i in range(5)]
    with ResultsStore(db, claim_timeout=60) as st:
        _insert_claim(db, cells[0], pid=_dead_pid())                  # dead process
        _insert_claim(db, cells[1], pid=os.getppid(), started="no")   # pid reused
        _insert_claim(db, cells[2], host="elsewhere", pid=1,
                      claimed_at=time.time() - 61)                    # expired
        _insert_claim(db, cells[3], host="elsewhere", pid=1)          # live elsewhere
        _insert_claim(db, cells[4], pid=os.getpid(), started="")      # this process,
        assert len(st.claims()) == 5                                  # another run
        assert [st.claim(c) for c in cells] == ["claimed"] * 3 + ["busy"] * 2
        runs = {c["target"]: c["run"] for c in st.claims()}
        assert [runs[f"t{i}"] == "other" for i in range(5)] == [False] * 3 + [True] * 2
        st.release(cells[:1])
        assert len(st.claims()) == 4
        st.put(cells[1], 1.0)  # a write releases the claim
        assert len(st.claims()) == 3 and st.claim(cells[1]) == "done"
        st.release()
        assert {c["target"] for c in st.claims()} == {"t3", "t4"}


def test_a_dead_runs_claim_is_computed_by_the_next_run(tmp_path):
    db = tmp_path / "c.sqlite"
    cells = [Cell("e", "r", f"t{i}", 1.0, 0, "x") for i in range(3)]
    ResultsStore(db).close()
    _insert_claim(db, cells[1], pid=_dead_pid())
    computed = []
    with ResultsStore(db) as st:
        rep = run_grid(cells, lambda c: computed.append(c) or 1.0, st, progress=False)
        assert rep.computed == 3 and computed == cells and st.claims() == []


def _held_by_another_run(db, cell, value, release):
    """Start a thread that claims ``cell`` as another run of this process (its own
    ResultsStore) and writes ``value`` once ``release()`` returns; return the thread
    when the claim is taken."""
    claimed = threading.Event()

    def other_run():
        with ResultsStore(db) as other:
            assert other.claim(cell, "d") == "claimed"
            claimed.set()
            release()
            other.put(cell, value, digest="d")

    t = threading.Thread(target=other_run)
    t.start()
    assert claimed.wait(30)
    return t


def test_a_cell_claimed_by_a_live_run_is_waited_for_not_recomputed(tmp_path):
    db = tmp_path / "w.sqlite"
    cells = [Cell("e", "r", f"t{i}", 1.0, 0, "x") for i in range(3)]
    ResultsStore(db).close()
    t = _held_by_another_run(db, cells[0], 7.0, lambda: time.sleep(0.5))
    computed = []
    with ResultsStore(db) as st:
        rep = run_grid(cells, lambda c: computed.append(c) or 1.0, st, progress=False,
                       digest=lambda c: "d")
        t.join()
        assert computed == cells[1:]
        assert (rep.computed, rep.skipped, rep.by_others) == (2, 1, 1)
        assert st.get(cells[0])["value"] == 7.0 and st.claims() == []


def test_wait_false_leaves_a_live_runs_cell_to_it(tmp_path):
    db = tmp_path / "nw.sqlite"
    cells = [Cell("e", "r", f"t{i}", 1.0, 0, "x") for i in range(3)]
    ResultsStore(db).close()
    release = threading.Event()  # the other run holds cells[1] until this run returned
    t = _held_by_another_run(db, cells[1], 7.0, lambda: release.wait(30))
    computed = []
    with ResultsStore(db) as st:
        t0 = time.perf_counter()
        rep = run_grid(cells, lambda c: computed.append(c) or 1.0, st, progress=False,
                       digest=lambda c: "d", wait=False)
        returned_in = time.perf_counter() - t0
        release.set()
        t.join()
        assert computed == [cells[0], cells[2]]
        assert (rep.computed, rep.left_to_others, rep.by_others) == (2, 1, 0)
        assert returned_in < 20  # did not wait for the other run (it holds up to 30 s)
        # the other run's cell is its own; this run left no claim behind
        assert st.get(cells[1])["value"] == 7.0 and st.claims() == []
    with ResultsStore(db) as st, pytest.raises(TaskrelInputError, match="`wait` must"):
        run_grid(cells, lambda c: 1.0, st, progress=False, wait="no")


_CONCURRENT = textwrap.dedent("""
    import json, os, sys, time
    from taskrel.experiments.store import Cell, ResultsStore
    from taskrel.experiments import run_grid

    db, log, go = sys.argv[1:4]

    def fn(c):
        with open(log, "a") as f:  # one line per computation
            f.write(f"{c.target} {c.seed} {os.getpid()}\\n")
        time.sleep(0.05)
        return c.seed + int(c.target[1:])

    cells = [Cell("enc", "ref", f"t{t}", 1.0, s, "a") for t in range(12) for s in (0, 1)]
    open(go + f".{os.getpid()}", "w").close()
    while not os.path.exists(go):
        time.sleep(0.01)
    rep = run_grid(cells, fn, ResultsStore(db), progress=False, digest=lambda c: "v1")
    print(json.dumps({"computed": rep.computed, "skipped": rep.skipped,
                      "by_others": rep.by_others, "failed": len(rep.failed)}))
""")


def test_two_processes_on_one_store_compute_each_cell_once(tmp_path):
    script, db, log, go = (tmp_path / n for n in ("w.py", "g.sqlite", "log.txt", "go"))
    script.write_text(_CONCURRENT)
    ResultsStore(db).close()
    procs = [subprocess.Popen([sys.executable, str(script), str(db), str(log), str(go)],
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("go.*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        go.touch()  # both are ready: start them together
        outs = [json.loads(p.communicate(timeout=180)[0]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0]
    lines = log.read_text().splitlines()
    keys = [tuple(ln.split()[:2]) for ln in lines]
    assert len(keys) == 24 and len(set(keys)) == 24  # every cell exactly once
    assert sum(o["computed"] for o in outs) == 24 and all(o["failed"] == 0 for o in outs)
    assert all(o["computed"] + o["skipped"] == 24 for o in outs)
    with ResultsStore(db) as st:
        rows = st.query()
        assert len(rows) == 24 and st.claims() == []
        assert all(r["value"] == r["seed"] + int(r["target"][1:]) for r in rows)
        assert {r["digest"] for r in rows} == {"v1"}
