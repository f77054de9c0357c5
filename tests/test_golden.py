"""The redesign changes no number: every golden case recorded before it (see
``tests/golden/golden.py``) is recomputed and must match to the last bit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from golden import golden as G

GOLDEN = Path(__file__).parent / "golden"


def _cases(name: str) -> dict:
    return json.loads((GOLDEN / name).read_text())["cases"]


def _first_difference(got, want, path="") -> str | None:
    """Where two canonical values differ (None when equal), for a readable failure."""
    if isinstance(want, dict) and isinstance(got, dict):
        if set(got) != set(want):
            return f"{path}: keys differ: +{sorted(set(got) - set(want))} " \
                   f"-{sorted(set(want) - set(got))}"
        for k in want:
            d = _first_difference(got[k], want[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            return f"{path}: length {len(got)} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            d = _first_difference(g, w, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if (type(got) is type(want) and got == want) else f"{path}: {got!r} != {want!r}"


@pytest.fixture(scope="module")
def pairs():
    return {name: make() for name, make in G.PAIRS.items()}


ENGINE = _cases("engine.json")


@pytest.mark.parametrize("case", G.engine_cases(), ids=G.case_id)
def test_engine_matches_golden(case, pairs):
    got = json.loads(json.dumps(G.run_engine_case(case, pairs[case["pair"]])))
    assert _first_difference(got, ENGINE[G.case_id(case)]) is None


def test_scores_match_golden(pairs):
    want = _cases("scores.json")
    for pair in G.PAIRS:
        for score in G.SCORE_CASES:
            got = json.loads(json.dumps(G.run_score_case(score, pairs[pair])))
            assert _first_difference(got, want[f"{pair}-{score}"]) is None, (pair, score)


def test_tiny_suite_analyses_match_golden(tmp_path):
    got = json.loads(json.dumps(G.run_tiny_suite(tmp_path)))
    assert _first_difference(got, _cases("suite.json")) is None
