"""Committed reports carry no absolute path of the machine that wrote them (issue 22):
the config's ``path`` is written relative to its project's root, else as a file name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from taskrel.experiments.report import _PROJECT_MARKERS, _portable_path

#: An absolute POSIX path of two or more parts not glued to a word ("a/b", "1/n" pass).
ABSOLUTE = re.compile(r"(?<![\w.~-])/(?:[\w.-]+/)+[\w.-]+")

CONFIG = ('name = "s"\nreference = "digits"\nencoders = ["effnet_lite0", '
          '"effnet_lite0_random"]\nestimators = ["logme"]\nfractions = [1.0]\n'
          'seeds = [0]\n'
          '[[targets]]\nname = "d01"\ndataset = "digits"\nclasses = [0, 1]\n'
          '[[targets]]\nname = "d23"\ndataset = "digits"\nclasses = [2, 3]\n'
          '[[targets]]\nname = "d45"\ndataset = "digits"\nclasses = [4, 5]\n'
          '[ground_truth]\nestimators = ["logreg"]\n')


def _marked_above(p: Path) -> bool:
    return any((d / m).exists() for d in p.resolve().parents for m in _PROJECT_MARKERS)


def test_generated_report_has_no_absolute_path(tmp_path, capsys):
    from taskrel.cli import main
    from taskrel.experiments.store import Cell, ResultsStore

    project = tmp_path / "project"
    (project / "experiments").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    cfg = project / "experiments" / "s.toml"
    cfg.write_text(CONFIG)
    db = tmp_path / "s.sqlite"
    with ResultsStore(db) as st:
        for i, enc in enumerate(("effnet_lite0", "effnet_lite0_random")):
            for j, tgt in enumerate(("d01", "d23", "d45")):
                st.put(Cell(enc, "digits", tgt, 1.0, 0, "logreg"),
                       0.9 - 0.1 * i + 0.01 * j, seconds=1.0)
                st.put(Cell(enc, "digits", tgt, 1.0, 0, "logme"), 1.0 - 0.2 * i,
                       seconds=0.5)
    out = tmp_path / "out"
    assert main(["reproduce", "--config", str(cfg), "--db", str(db), "--out", str(out),
                 "--report-only", "--quiet"]) == 0
    capsys.readouterr()
    report = (out / "s" / "report.md").read_text()
    assert '"path": "experiments/s.toml"' in report
    assert ABSOLUTE.findall(report) == []
    for f in sorted((out / "s").iterdir()):
        if f.suffix in (".md", ".json", ".csv"):
            text = f.read_text()
            for machine_path in {str(tmp_path), str(tmp_path.resolve())}:
                assert machine_path not in text, f.name


def test_portable_path_is_relative_to_the_project_root(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / "experiments" / "sub").mkdir(parents=True)
    got = _portable_path(root / "experiments" / "vision.toml")
    assert got == "experiments/vision.toml"
    # The nearest marked folder wins (a project inside a repository).
    (root / "experiments" / "pyproject.toml").write_text("")
    assert _portable_path(str(root / "experiments" / "sub" / "a.toml")) == "sub/a.toml"
    # A relative path is taken from the working directory, like the CLI does.
    monkeypatch.chdir(root / "experiments" / "sub")
    assert _portable_path("a.toml") == "sub/a.toml"
    assert _portable_path("../b.toml") == "b.toml"
    assert _portable_path(None) is None


def test_portable_path_outside_any_project_is_the_file_name(tmp_path):
    if _marked_above(tmp_path / "x"):
        pytest.skip(f"a project marker lies above {tmp_path}")
    assert _portable_path(tmp_path / "deep" / "suite.toml") == "suite.toml"



def test_committed_reports_have_no_machine_path():
    # The committed reports (docs/results) were regenerated after the fix; a machine's
    # home or work folder in any of them would leak into every clone.
    root = Path(__file__).resolve().parents[1] / "docs" / "results"
    leaks = [str(f.relative_to(root)) for f in sorted(root.rglob("*"))
             if f.suffix in (".md", ".json", ".csv") and re.search(
                 r"(?<![\w.~-])/(?:work|root|home|Users|tmp)/", f.read_text())]
    assert leaks == []
