import json

import numpy as np
import pytest

from taskrel.cli import main
from conftest import blobs


@pytest.fixture
def task_files(tmp_path):
    Xr, yr = blobs(50, 3, 5, seed=0)
    Xt, yt = blobs(50, 3, 5, seed=1)
    np.savez(tmp_path / "ref.npz", features=Xr, labels=yr)
    np.savez(tmp_path / "tgt.npz", features=Xt, labels=yt + 7)
    np.savez(tmp_path / "short.npz", features=Xt[:, :3], labels=yt)
    np.savez(tmp_path / "nan.npz", features=np.where(Xt > 3, np.nan, Xt), labels=yt)
    np.savez(tmp_path / "one.npz", features=Xt, labels=np.zeros_like(yt))
    np.savez(tmp_path / "float.npz", features=Xt, labels=yt + 0.5)
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file")
    return tmp_path


def test_relate_writes_json_with_the_contract_keys(task_files, capsys):
    out = task_files / "o.json"
    rc = main(["relate", str(task_files / "ref.npz"), str(task_files / "tgt.npz"),
               "--json", str(out), "--device", "cpu", "--quiet"])
    assert rc == 0
    d = json.loads(out.read_text())
    for key in ("bound", "reweighted_reference_loss", "label_mismatch",
                "distribution_mismatch", "lipschitz", "transfer_loss",
                "transfer_accuracy", "transformed_accuracy", "seconds"):
        assert key in d and d[key] is not None, key
    np.testing.assert_allclose(
        d["bound"],
        d["reweighted_reference_loss"] + d["label_mismatch"]
        + d["lipschitz"] * d["distribution_mismatch"],
        rtol=1e-12,
    )
    assert d["bound"] >= d["transfer_loss"]
    assert "bound (task-relatedness)" in capsys.readouterr().out


def test_relate_without_target_labels(task_files):
    out = task_files / "u.json"
    rc = main(["relate", str(task_files / "ref.npz"), str(task_files / "tgt.npz"),
               "--no-target-labels", "--json", str(out), "--device", "cpu", "--quiet"])
    assert rc == 0
    d = json.loads(out.read_text())
    assert d["label_source"] == "classifier"
    assert d["pseudo_label_accuracy"] > 0.9


@pytest.mark.parametrize(
    "target, message",
    [
        ("short.npz", "same number of features: 5 vs 3"),
        ("nan.npz", "must be finite"),
        ("one.npz", "at least 2 classes"),
        ("float.npz", "integer class ids"),
        ("garbage.npz", "not a readable .npz"),
        ("missing.npz", "does not exist"),
    ],
)
def test_bad_input_exits_2_with_one_line(task_files, capsys, target, message):
    rc = main(["relate", str(task_files / "ref.npz"), str(task_files / target),
               "--device", "cpu", "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_failed_run_keeps_an_existing_json(task_files):
    out = task_files / "keep.json"
    out.write_text('{"mine": 1}')
    rc = main(["relate", str(task_files / "ref.npz"), str(task_files / "nan.npz"),
               "--json", str(out), "--device", "cpu", "--quiet"])
    assert rc == 2
    assert json.loads(out.read_text()) == {"mine": 1}
