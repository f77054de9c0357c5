"""RayExecutor on a local Ray instance: equal to serial execution, survives a killed worker."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

from taskrel import TaskrelInputError
from taskrel.experiments.executors.ray_executor import RayExecutor

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="Ray is an optional extra: pip install 'taskrel[ray]' (CI installs it)",
)


def test_missing_ray_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(TaskrelInputError, match=r"pip install 'taskrel\[ray\]'"):
        RayExecutor()


@pytest.fixture(scope="module")
def executor():
    ex = RayExecutor(num_cpus=2, init_kwargs={"object_store_memory": 100 * 2**20})
    yield ex
    ex.shutdown()


def _cell(x):
    # A small deterministic computation standing in for one grid cell.
    import numpy as np

    rng = np.random.default_rng(x)
    return float(rng.normal(size=100).sum()) + x


@needs_ray
def test_results_equal_serial(executor):
    items = list(range(12))
    got = dict(executor.imap_unordered(_cell, items))
    assert got == {x: _cell(x) for x in items}


@needs_ray
def test_exceptions_are_results_not_retries(executor, tmp_path):
    calls = tmp_path / "calls"
    calls.mkdir()

    def fn(x):
        (calls / f"{x}-{os.getpid()}-{len(os.listdir(calls))}").touch()
        if x == 2:
            raise ValueError("bad cell 2")
        return x * 10

    got = dict(executor.imap_unordered(fn, [1, 2, 3]))
    assert got[1] == 10 and got[3] == 30
    assert isinstance(got[2], ValueError) and "bad cell 2" in str(got[2])
    assert len([p for p in os.listdir(calls) if p.startswith("2-")]) == 1


@needs_ray
def test_killed_worker_is_retried_and_result_equals_serial(executor, tmp_path):
    marker = tmp_path / "died-once"

    def fn(x):
        if x == 3 and not marker.exists():
            marker.touch()
            os._exit(1)  # the worker process dies mid-task, on the first attempt only
        return _cell(x)

    items = list(range(6))
    got = dict(executor.imap_unordered(fn, items))
    assert marker.exists()
    assert got == {x: _cell(x) for x in items}


@needs_ray
def test_bad_arguments():
    with pytest.raises(TaskrelInputError, match="`num_cpus` must be an integer > 0"):
        RayExecutor(num_cpus=0)
    with pytest.raises(TaskrelInputError, match="`address` must be a string"):
        RayExecutor(address=5)


@needs_ray
def test_gpu_reserving_copy_shares_the_instance(executor):
    import ray
    import torch

    # The cluster's GPUs are what Ray detected on this machine.
    assert executor.cluster_gpus() == float(torch.cuda.device_count())
    g = executor.with_gpus(0.5)
    assert g.num_gpus_per_task == 0.5 and executor.num_gpus_per_task == 0
    # Only the executor that started the instance stops it.
    g.shutdown()
    assert ray.is_initialized()
    assert dict(executor.imap_unordered(_cell, [1])) == {1: _cell(1)}
    with pytest.raises(TaskrelInputError, match="`num_gpus_per_task` must be"):
        executor.with_gpus(-1)
