"""`run_in_chunks`, the loop of experiments/stage.py and ablation.py: `--max-minutes`
starts no cell after its deadline.

Before, the deadline was checked once per chunk of 8 cells, so a stage could start up
to 7 cells after it (one did, at a session's stop). Driven here with a fake clock and
a fake `run` that records which cells it was handed.
"""

from __future__ import annotations

import pytest

from taskrel.exceptions import TaskrelInputError
from taskrel.experiments.store import Cell
from taskrel.experiments.suite import GridReport, run_in_chunks


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _cells(n):
    return [Cell("enc", "ref", f"t{i}", 1.0, 0, "finetune") for i in range(n)]


def _runner(clock, chunks, left=()):
    """Records each chunk's targets in `chunks`; each cell takes one minute of the clock;
    the cells named in `left` were claimed by another live run."""
    def run(cells):
        chunks.append([c.target for c in cells])
        clock.now += 60.0 * len(cells)
        n_left = sum(c.target in left for c in cells)
        return GridReport(total=len(cells), skipped=0, computed=len(cells) - n_left,
                          failed=(), seconds=0.0, left_to_others=n_left)
    return run


def test_no_cell_starts_after_the_deadline(capsys):
    clock, chunks = _Clock(), []
    # Deadline at 2.5 min: cells t0, t1, t2 start before it (at 0, 1, 2 min) and t2 runs
    # past it and is kept; t3 would start at 3 min and must not (the old loop ran t0-t7).
    res = run_in_chunks(_cells(20), _runner(clock, chunks), deadline=150.0, clock=clock)
    assert chunks == [["t0"], ["t1"], ["t2"]]
    assert res == (3, 0, True)
    assert "stage: --max-minutes reached" in capsys.readouterr().out


def test_without_a_deadline_every_cell_runs_in_chunks(capsys):
    clock, chunks = _Clock(), []
    run = _runner(clock, chunks, left={"t0", "t5", "t10", "t15"})
    res = run_in_chunks(_cells(20), run, clock=clock, chunk=8, label="ablation")
    assert [len(c) for c in chunks] == [8, 8, 4]
    assert [t for c in chunks for t in c] == [f"t{i}" for i in range(20)]
    assert res == (16, 4, False)
    out = capsys.readouterr().out
    assert "ablation: 16/20 computed (finetune), 4 left to another live run" in out
    assert "--max-minutes" not in out


def test_a_deadline_never_reached_runs_every_cell_one_at_a_time():
    clock, chunks = _Clock(), []
    res = run_in_chunks(_cells(5), _runner(clock, chunks), deadline=1e9, clock=clock)
    assert res == (5, 0, False)
    assert chunks == [[f"t{i}"] for i in range(5)]


@pytest.mark.parametrize("chunk", [0, -1, 2.5, True])
def test_a_bad_chunk_is_refused(chunk):
    with pytest.raises(TaskrelInputError, match="`chunk` must be an int >= 1"):
        run_in_chunks(_cells(2), lambda c: None, chunk=chunk)
