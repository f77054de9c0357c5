"""A grid on a local Ray instance writes the same rows as the local executor (issue 6).

The cells are real: estimators from ``taskrel.scores`` on scikit-learn digits pixels
(class subsets as targets, seeded subsamples as fractions). Ray runs them in worker
processes; the driver writes each row to the SQLite store as it arrives.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

from taskrel.experiments import run_grid
from taskrel.experiments.store import Cell, ResultsStore

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="Ray is an optional extra: pip install 'taskrel[ray]' (CI installs it)",
)

TARGETS = {"low": [0, 1, 2, 3, 4], "high": [5, 6, 7, 8, 9]}


def digits_cell(cell: Cell) -> dict:
    """One grid cell: a score of digits pixels for a class subset and a data fraction."""
    from sklearn.datasets import load_digits

    from taskrel.scores import get_score

    import torch
    from threadpoolctl import threadpool_limits

    X, y = load_digits(return_X_y=True)
    keep = np.isin(y, TARGETS[cell.target])
    X, y = X[keep], y[keep]
    rng = np.random.default_rng(cell.seed)
    idx = np.sort(rng.choice(y.size, size=int(cell.fraction * y.size), replace=False))
    # One thread wherever the cell runs: Ray workers have one (OMP_NUM_THREADS=1), and a
    # multi-threaded BLAS sums in another order, which changes the last bits.
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            value = get_score(cell.estimator).func(X[idx], y[idx])
    finally:
        torch.set_num_threads(n_threads)
    return {"value": float(value), "extra": {"n": int(idx.size)}}


def _cells() -> list[Cell]:
    return [Cell("pixels", "digits", t, f, s, e) for t in TARGETS for f in (0.5, 1.0)
            for s in (0, 1) for e in ("h_score", "knn_accuracy")]


@pytest.fixture(scope="module")
def ray_executor():
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is an optional extra: pip install 'taskrel[ray]'")
    from taskrel.experiments.executors.ray_executor import RayExecutor

    ex = RayExecutor(num_cpus=2, init_kwargs={"object_store_memory": 100 * 2**20})
    yield ex
    ex.shutdown()


@needs_ray
def test_ray_grid_equals_local_grid(tmp_path, ray_executor):
    cells = _cells()
    local = ResultsStore(tmp_path / "local.sqlite")
    remote = ResultsStore(tmp_path / "ray.sqlite")
    rep_l = run_grid(cells, digits_cell, local, progress=False)
    rep_r = run_grid(cells, digits_cell, remote, executor=ray_executor, progress=False)
    assert rep_l.ok and rep_r.ok
    assert local.keys() == remote.keys() == set(cells)
    for c in cells:
        assert remote.get(c)["value"] == local.get(c)["value"], c
        assert remote.get(c)["extra"] == local.get(c)["extra"]


def _flaky_cell_factory(marker_dir: str):
    def fn(cell: Cell) -> dict:
        # Every call leaves a file, so the test can count what ran.
        open(os.path.join(marker_dir, f"{cell.target}-{cell.fraction}-{cell.seed}-"
                          f"{cell.estimator}-{len(os.listdir(marker_dir))}"), "w").close()
        if cell.target == "high" and cell.seed == 1 and cell.estimator == "h_score":
            if not os.path.exists(os.path.join(marker_dir, "..", "killed")):
                open(os.path.join(marker_dir, "..", "killed"), "w").close()
                os._exit(1)  # the worker dies mid-grid
            if not os.path.exists(os.path.join(marker_dir, "..", "allow")):
                raise RuntimeError("still failing")
        return digits_cell(cell)
    return fn


@needs_ray
def test_killed_worker_loses_no_rows_and_rerun_fills_only_the_gaps(tmp_path, ray_executor):
    """A worker killed mid-grid is retried by Ray; a cell that still fails is left out,
    every finished row is kept, and the rerun computes only the missing cells."""
    calls = tmp_path / "calls"
    calls.mkdir()
    cells = _cells()
    store = ResultsStore(tmp_path / "grid.sqlite")
    fn = _flaky_cell_factory(str(calls))
    with pytest.warns(RuntimeWarning, match="2 of 16 cells failed"):
        rep = run_grid(cells, fn, store, executor=ray_executor, progress=False)
    assert (tmp_path / "killed").exists()
    bad = {c for c in cells if c.target == "high" and c.seed == 1 and c.estimator == "h_score"}
    assert not rep.ok and store.keys() == set(cells) - bad
    for c in set(cells) - bad:
        assert store.get(c)["value"] == digits_cell(c)["value"]
    (tmp_path / "allow").touch()
    before = set(os.listdir(calls))
    rep2 = run_grid(cells, fn, store, executor=ray_executor, progress=False)
    ran = {n.rsplit("-", 1)[0] for n in set(os.listdir(calls)) - before}
    assert rep2.ok and store.keys() == set(cells)
    assert ran == {f"{c.target}-{c.fraction}-{c.seed}-{c.estimator}" for c in bad}
