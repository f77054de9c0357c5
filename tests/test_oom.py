"""with_oom_fallback: halves the batch on out-of-memory, never returns a partial result."""

from __future__ import annotations

import pytest
import torch

from taskrel import TaskrelInputError
from taskrel._internal.oom import BatchSizeWarning, with_oom_fallback


def _fits_up_to(limit, exc=MemoryError, calls=None):
    def fn(batch):
        if calls is not None:
            calls.append(batch)
        out = []
        for start in range(0, 1000, batch):  # a partial result builds up, then OOM
            out.append(start)
            if batch > limit:
                raise exc("out of memory (simulated)")
        return out
    return fn


def test_halves_until_it_fits_and_returns_the_complete_result():
    calls = []
    with pytest.warns(BatchSizeWarning) as rec:
        got = with_oom_fallback(_fits_up_to(100, calls=calls), 1000, min_batch=10)
    assert calls == [1000, 500, 250, 125, 62]
    assert got == list(range(0, 1000, 62))  # the whole answer of the batch-62 call
    assert len(rec) == 4 and "batch 125; retrying with batch 62" in str(rec[-1].message)


def test_cuda_out_of_memory_error_is_caught():
    with pytest.warns(BatchSizeWarning):
        got = with_oom_fallback(_fits_up_to(300, exc=torch.cuda.OutOfMemoryError), 512)
    assert got == list(range(0, 1000, 256))


def test_gives_up_below_min_batch_with_the_original_error():
    calls = []
    with pytest.warns(BatchSizeWarning), pytest.raises(MemoryError, match="simulated"):
        with_oom_fallback(_fits_up_to(10, calls=calls), 100, min_batch=40)
    assert calls == [100, 50]


def test_other_errors_are_not_retried():
    calls = []

    def fn(batch):
        calls.append(batch)
        raise ValueError("not a memory problem")

    with pytest.raises(ValueError, match="not a memory problem"):
        with_oom_fallback(fn, 64)
    assert calls == [64]


def test_bad_arguments():
    with pytest.raises(TaskrelInputError, match="`batch_size` must be an integer > 0"):
        with_oom_fallback(lambda b: b, 0)
    with pytest.raises(TaskrelInputError, match="`min_batch` must be <= `batch_size`"):
        with_oom_fallback(lambda b: b, 8, min_batch=16)
