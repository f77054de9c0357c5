"""The bad-input battery (issue 14): every case is refused with one line naming the
argument, before any work; no traceback, no partial output, the caller's arrays intact.

API cases expect :class:`TaskrelInputError`; CLI cases exit 2 with one stderr line.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

import taskrel
from taskrel.cli import main
from taskrel.exceptions import TaskrelInputError
from taskrel.features.datasets import load_dataset, subset_classes, transform_images
from taskrel.features.encoders import load_encoder
from taskrel.features.extract import extract_task
from taskrel.io import Task, load_task
from taskrel.probe import linear_probe
from taskrel.relatedness import TaskRelatedness
from taskrel.scores import compute_score, list_scores

_rng = np.random.default_rng(0)
XR = _rng.normal(size=(24, 4)) + np.repeat(np.eye(3, 4) * 4, 8, axis=0)
YR = np.repeat(np.arange(3), 8)
XT = _rng.normal(size=(20, 4)) + np.repeat(np.eye(2, 4) * 4, 10, axis=0)
YT = np.repeat(np.arange(2), 10)
P = np.full((20, 3), 1 / 3)
ARRAYS = {"XR": XR, "YR": YR, "XT": XT, "YT": YT, "P": P}
NAN_XT = XT.copy()
NAN_XT[0, 0] = np.nan
BAD_P = P.copy()
BAD_P[0, 0] = np.nan
NEG_P = P.copy()
NEG_P[0] = [-0.5, 1.0, 0.5]
DIMS = "`reference_features` and `target_features`"
FEATURE_SCORES = [n for n in list_scores() if n not in ("leep", "nce", "task_relatedness")]


def _tr(**kw):
    args = dict(reference_features=XR, reference_labels=YR, target_features=XT,
                target_labels=YT, progress=False)
    args.update(kw)
    return lambda: taskrel.task_relatedness(**args)


def _score(name, *, X=XT, y=YT, probs=None, source=None):
    return lambda: compute_score(name, Task(features=X, labels=y, source_probs=probs),
                                 source=source)


API = [
    ("tr-nan-target", _tr(target_features=NAN_XT), "target_features"),
    ("tr-inf-reference", _tr(reference_features=np.where(XR > 5, np.inf, XR)),
     "reference_features"),
    ("tr-scale-1e300", _tr(target_features=XT * 1e300), "target_features"),
    ("tr-scale-1e-300", _tr(target_features=XT * 1e-300), "target_features"),
    ("tr-scale-1e150", _tr(target_features=XT * 1e150), "target_features"),
    ("tr-label-count", _tr(target_labels=YT[:-1]), "target"),
    ("tr-1d-features", _tr(target_features=XT[:, 0]), "target_features"),
    ("tr-string-features", _tr(target_features=XT.astype(str)), "target_features"),
    ("tr-complex", _tr(target_features=XT + 1j), "target_features"),
    ("tr-empty-reference", _tr(reference_features=XR[:0], reference_labels=YR[:0]),
     "reference"),
    ("tr-one-class", _tr(reference_labels=np.zeros_like(YR)), "reference_labels"),
    ("tr-float-labels", _tr(target_labels=YT + 0.5), "target_labels"),
    ("tr-dim-mismatch", _tr(target_features=XT[:, :3]), DIMS),
    ("tr-dim-mismatch-reference", _tr(reference_features=XR[:, :3]), DIMS),
    ("tr-dim-mismatch-unlabelled", _tr(target_features=XT[:, :3], target_labels=None),
     DIMS),
    ("tr-dim-mismatch-reference-test", _tr(reference_test_features=XR[:, :3],
                                           reference_test_labels=YR),
     "`reference_test_features`"),
    ("tr-seed-negative", _tr(seed=-1), "seed"),
    ("tr-seed-too-big", _tr(seed=2**32), "seed"),
    ("tr-seed-float", _tr(seed=1.5), "seed"),
    ("tr-tau-word", _tr(tau="huge"), "tau"),
    ("tr-tau-negative", _tr(tau=-1.0), "tau"),
    ("tr-recipe", _tr(recipe="slow"), "recipe"),
    ("tr-b-mode", _tr(b_mode="dense"), "b_mode"),
    ("tr-B-with-sparse", _tr(B=np.eye(2, 3)), "`B`"),
    ("tr-fixed-without-B", _tr(b_mode="fixed"), "B"),
    ("tr-more-target-classes", _tr(target_features=XR, target_labels=YR,
                                   reference_features=XT, reference_labels=YT),
     "b_mode='learned'"),
    ("tr-class-weights", _tr(class_weights="nope"), "class_weights"),
    ("tr-pseudo-labels", _tr(pseudo_labels="magic"), "pseudo_labels"),
    ("tr-device", _tr(device="tpu"), "device"),
    ("tr-none-features", _tr(target_features=None), "target_features"),
    ("est-fit-nan", lambda: TaskRelatedness(progress=False).fit(NAN_XT, YT),
     "reference_features"),
    ("est-fit-scale", lambda: TaskRelatedness(progress=False).fit(XR * 1e200, YR),
     "reference_features"),
    ("est-bad-recipe", lambda: TaskRelatedness(recipe="x"), "recipe"),
    ("est-relate-dim-mismatch",
     lambda: TaskRelatedness(progress=False).fit(XR, YR).relate(XT[:, :3], YT),
     DIMS),
    ("probe-dim-mismatch", lambda: linear_probe(XT, YT, XT[:, :3], YT, tau=1.0),
     "`train_features` and `test_features`"),
    ("probe-nan", lambda: linear_probe(NAN_XT, YT, XT, YT, tau=1.0), "features"),
    ("probe-label-count", lambda: linear_probe(XT, YT[:-2], XT, YT, tau=1.0), "labels"),
    ("probe-scale", lambda: linear_probe(XT * 1e-200, YT, XT, YT, tau=1.0), "features"),
    ("probe-tau", lambda: linear_probe(XT, YT, XT, YT, tau=-2.0), "tau"),
    ("score-unknown", _score("logmee"), "logme"),
    ("score-tuple-task", lambda: compute_score("logme", (XT, YT)), "`task`"),
    ("score-dict-task", lambda: compute_score("logme", {"features": XT}), "`task`"),
    ("score-tuple-source", lambda: compute_score("otce", Task(features=XT, labels=YT),
                                                 source=(XR, YR)), "`source`"),
    ("nce-nan-probs", _score("nce", probs=BAD_P), "source_probs"),
    ("nce-negative-probs", _score("nce", probs=NEG_P), "source_probs"),
    ("nce-logits", _score("nce", probs=P * 7), "source_probs"),
    ("leep-nan-probs", _score("leep", probs=BAD_P), "source_probs"),
    ("leep-no-probs", _score("leep"), "source_probs"),
    ("leep-logits", _score("leep", probs=P - 2), "source_probs"),
    ("otce-no-source", _score("otce"), "source"),
    *[(f"{n}-source-dim-mismatch",
       _score(n, source=Task(features=XR[:, :3], labels=YR)), "features")
      for n in ("otce", "ot_nce", "task_relatedness")],
    ("score-device", lambda: compute_score("logme", Task(features=XT, labels=YT),
                                           device="gpu9"), "device"),
    *[(f"{n}-scale-1e300", _score(n, X=XT * 1e300, probs=P,
                                  source=Task(features=XR, labels=YR)), "features")
      for n in FEATURE_SCORES],
    *[(f"{n}-scale-1e-300", _score(n, X=XT * 1e-300, probs=P,
                                   source=Task(features=XR, labels=YR)), "features")
      for n in FEATURE_SCORES],
    *[(f"{n}-nan", _score(n, X=NAN_XT, probs=P, source=Task(features=XR, labels=YR)),
       "features") for n in FEATURE_SCORES],
    ("load-task-missing", lambda: load_task("/nonexistent/t.npz"), "does not exist"),
    ("extract-batch-0", lambda: extract_task("smallcnn", "digits", batch_size=0),
     "batch_size"),
    ("extract-limit-0", lambda: extract_task("smallcnn", "digits", limit=0), "limit"),
    ("extract-split", lambda: extract_task("smallcnn", "digits", split="dev"), "split"),
    ("extract-device", lambda: extract_task("effnet_lite0_random", "digits", device="tpu",
                                            limit=5), "`device`"),
    ("load-encoder-device", lambda: load_encoder("effnet_lite0_random", device="tpu"),
     "`device`"),
    ("extract-dataset", lambda: extract_task("smallcnn", "nodata"), "name"),
    ("dataset-unknown", lambda: load_dataset("imagenet"), "name"),
    ("subset-classes", lambda: subset_classes(load_dataset("digits"), [42]), "classes"),
    ("transform-kind", lambda: transform_images(load_dataset("digits"), "blur", 0.5),
     "kind"),
    ("transform-strength", lambda: transform_images(load_dataset("digits"), "rotate", 3.0),
     "strength"),
]


@pytest.mark.parametrize("case", API, ids=[c[0] for c in API])
def test_api_bad_input(case):
    _, call, match = case
    before = {k: v.copy() for k, v in ARRAYS.items()}
    with pytest.raises(TaskrelInputError, match=match.replace("(", r"\(")) as info:
        call()
    assert "\n" not in str(info.value)
    for k, v in ARRAYS.items():
        np.testing.assert_array_equal(v, before[k], err_msg=f"{k} was modified")


# ---------------------------------------------------------------------------------
# the CLI
# ---------------------------------------------------------------------------------
@pytest.fixture
def files(tmp_path):
    np.savez(tmp_path / "ref.npz", features=XR, labels=YR)
    np.savez(tmp_path / "tgt.npz", features=XT, labels=YT, source_probs=P)
    np.savez(tmp_path / "short.npz", features=XT, labels=YT[:-3])
    np.savez(tmp_path / "empty.npz", features=XR[:0], labels=YR[:0])
    np.savez(tmp_path / "nolabels.npz", features=XR)
    np.savez(tmp_path / "nan.npz", features=NAN_XT, labels=YT)
    np.savez(tmp_path / "big.npz", features=XT * 1e300, labels=YT)
    np.savez(tmp_path / "tiny.npz", features=XT * 1e-300, labels=YT)
    np.savez(tmp_path / "flat.npz", features=XT[:, 0], labels=YT)
    np.savez(tmp_path / "strs.npz", features=XT.astype(str), labels=YT)
    np.savez(tmp_path / "dim3.npz", features=XT[:, :3], labels=YT)
    np.savez(tmp_path / "oneclass.npz", features=XR, labels=np.zeros_like(YR))
    np.savez(tmp_path / "noprobs.npz", features=XT, labels=YT)
    np.savez(tmp_path / "nanprobs.npz", features=XT, labels=YT, source_probs=BAD_P)
    np.savez(tmp_path / "negprobs.npz", features=XT, labels=YT, source_probs=NEG_P)
    np.savez(tmp_path / "logits.npz", features=XT, labels=YT, source_probs=P * 5 - 1)
    (tmp_path / "text.npz").write_text("features,labels\n1,2\n")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    (tmp_path / "adir.csv").mkdir()
    con = sqlite3.connect(tmp_path / "foreign.sqlite")
    con.execute("CREATE TABLE people (name TEXT)")
    con.commit()
    con.close()
    con = sqlite3.connect(tmp_path / "othercells.sqlite")
    con.execute("CREATE TABLE cells (a INTEGER, b TEXT)")
    con.commit()
    con.close()
    _config(tmp_path, "ok.toml", "")
    return tmp_path


_BASE_TOML = """
name = "bad"
encoders = [{encoders}]
reference = {reference}
targets = [{targets}]
estimators = [{estimators}]
fractions = [1.0]
seeds = [0]
[options]
max_reference = 40
max_target = 40
{options}
"""


def _config(d, name, options="", *, encoders='"smallcnn"', reference='"digits"',
            targets='{name = "d01", dataset = "digits", classes = [0, 1]}',
            estimators='"logme"'):
    (d / name).write_text(_BASE_TOML.format(encoders=encoders, reference=reference,
                                            targets=targets, estimators=estimators,
                                            options=options))
    return name


CONFIGS = {
    "unknown-encoder.toml": dict(encoders='"no_such_encoder"'),
    "unknown-dataset.toml": dict(reference='"imagenet"'),
    "unknown-target-dataset.toml": dict(targets='{name = "x", dataset = "imagenet"}'),
    "bad-transform.toml": dict(targets='{name = "x", dataset = "digits", transform = '
                               '{kind = "blur", strength = 0.5}}'),
    "bad-strength.toml": dict(targets='{name = "x", dataset = "digits", transform = '
                              '{kind = "rotate", strength = 7}}'),
    "bad-class.toml": dict(targets='{name = "x", dataset = "digits", classes = [0, 99]}'),
    "tau-huge.toml": dict(options='tau = "huge"'),
    "tau-negative.toml": dict(options="tau = -1.0"),
    "max-test-zero.toml": dict(options="max_test = 0"),
    "feature-dim-str.toml": dict(options='feature_dim = "ten"'),
    "bad-device.toml": dict(options='device = "tpu"'),
    "unknown-estimator.toml": dict(estimators='"logmee"'),
}

R, T = "{d}/ref.npz", "{d}/tgt.npz"
RT = "`reference` and `target`"  # the relate arguments of one feature dimension
CLI = [
    # relate
    ("relate-label-count", ["relate", R, "{d}/short.npz", "--quiet"], "inconsistent"),
    ("relate-seed-negative", ["relate", R, T, "--seed", "-1"], "--seed"),
    ("relate-seed-2**32", ["relate", R, T, "--seed", str(2**32)], "--seed"),
    ("relate-seed-word", ["relate", R, T, "--seed", "abc"], "--seed"),
    ("relate-empty-reference", ["relate", "{d}/empty.npz", T], "reference features"),
    ("relate-json-dir", ["relate", R, T, "--json", "{d}/adir"], "--json"),
    ("relate-json-under-file", ["relate", R, T, "--json", "{d}/afile/out.json"], "--json"),
    ("relate-json-proc", ["relate", R, T, "--json", "/proc/x/out.json"], "--json"),
    ("relate-missing-reference", ["relate", "{d}/none.npz", T], "does not exist"),
    ("relate-dir-reference", ["relate", "{d}/adir", T], "is a folder"),
    ("relate-text-npz", ["relate", "{d}/text.npz", T], "not a readable .npz: not a zip"),
    ("relate-tau-word", ["relate", R, T, "--tau", "huge"], "--tau"),
    ("relate-tau-negative", ["relate", R, T, "--tau", "-1"], "--tau"),
    ("relate-tau-nan", ["relate", R, T, "--tau", "nan"], "--tau"),
    ("relate-device", ["relate", R, T, "--device", "tpu"], "--device"),
    ("relate-nan-target", ["relate", R, "{d}/nan.npz"], "target features"),
    ("relate-scale-1e300", ["relate", R, "{d}/big.npz"], "target features"),
    ("relate-scale-1e-300", ["relate", R, "{d}/tiny.npz"], "target features"),
    ("relate-no-ref-labels", ["relate", "{d}/nolabels.npz", T], "labels"),
    ("relate-1d-features", ["relate", R, "{d}/flat.npz"], "target features"),
    ("relate-string-features", ["relate", R, "{d}/strs.npz"], "target features"),
    ("relate-dim-mismatch", ["relate", R, "{d}/dim3.npz", "--quiet"], RT),
    ("relate-dim-mismatch-swapped", ["relate", "{d}/dim3.npz", R, "--quiet"], RT),
    ("relate-dim-mismatch-unlabelled", ["relate", R, "{d}/dim3.npz", "--quiet",
                                        "--no-target-labels"], RT),
    ("relate-dim-mismatch-json", ["relate", R, "{d}/dim3.npz", "--quiet", "--json",
                                  "{d}/r.json"], RT),
    ("relate-one-class", ["relate", "{d}/oneclass.npz", T, "--quiet"], "classes"),
    ("relate-recipe", ["relate", R, T, "--recipe", "slow"], "--recipe"),
    ("relate-more-classes", ["relate", T, R, "--quiet"], "--b-mode learned"),
    # score / scores
    ("score-comma", ["score", ",", T], "METHOD"),
    ("score-empty", ["score", "", T], "METHOD"),
    ("score-unknown", ["score", "logmee", T], "METHOD"),
    ("score-json-dir", ["score", "logme", T, "--json", "{d}/adir"], "--json"),
    ("score-json-under-file", ["score", "logme", T, "--json", "{d}/afile/x.json"],
     "--json"),
    ("score-device", ["score", "logme", T, "--device", "tpu"], "--device"),
    ("score-missing-task", ["score", "logme", "{d}/none.npz"], "does not exist"),
    ("score-dir-task", ["score", "logme", "{d}/adir"], "is a folder"),
    ("score-text-task", ["score", "logme", "{d}/text.npz"], "not a readable .npz: not a zip"),
    ("score-leep-no-probs", ["score", "leep", "{d}/noprobs.npz"], "source_probs"),
    ("score-nce-nan-probs", ["score", "nce", "{d}/nanprobs.npz"], "source_probs"),
    ("score-nce-negative-probs", ["score", "nce", "{d}/negprobs.npz"], "source_probs"),
    ("score-leep-logits", ["score", "leep", "{d}/logits.npz"], "source_probs"),
    ("score-otce-no-source", ["score", "otce", T], "source"),
    ("score-scale-1e300", ["score", "logme", "{d}/big.npz"], "TASK features"),
    ("score-scale-1e-300", ["score", "knn_accuracy", "{d}/tiny.npz"], "TASK features"),
    ("score-nan", ["score", "h_score", "{d}/nan.npz"], "TASK features"),
    ("score-label-count", ["score", "logme", "{d}/short.npz"], "inconsistent"),
    ("score-source-dim-mismatch", ["score", "otce", T, "--source", "{d}/dim3.npz"],
     "--source"),
    ("score-source-dim-mismatch-2", ["score", "logme,task_relatedness", "{d}/dim3.npz",
                                     "--source", R, "--json", "{d}/s.json"], "--source"),
    ("score-missing-source", ["score", "otce", T, "--source", "{d}/none.npz"],
     "does not exist"),
    ("score-source-no-labels", ["score", "otce", T, "--source", "{d}/nolabels.npz"],
     "labels"),
    ("scores-device", ["scores", "--device", "tpu"], "device"),
    ("scores-extra-arg", ["scores", "logme"], "unrecognized"),
    # extract / datasets / encoders
    ("extract-batch-0", ["extract", "smallcnn", "digits", "--batch-size", "0"],
     "--batch-size"),
    ("extract-batch-negative", ["extract", "smallcnn", "digits", "--batch-size", "-3"],
     "--batch-size"),
    ("extract-limit-0", ["extract", "smallcnn", "digits", "--limit", "0"], "--limit"),
    ("extract-image-size-0", ["extract", "smallcnn", "digits", "--image-size", "0"],
     "--image-size"),
    ("extract-unknown-dataset", ["extract", "smallcnn", "imagenet"], "DATASET"),
    ("extract-cache-dir-file", ["extract", "smallcnn", "digits", "--cache-dir",
                                "{d}/afile"], "--cache-dir"),
    ("extract-out-dir", ["extract", "smallcnn", "digits", "--out", "{d}/adir"], "--out"),
    ("extract-out-under-file", ["extract", "smallcnn", "digits", "--out",
                                "{d}/afile/t.npz"], "--out"),
    ("extract-options-not-json", ["extract", "smallcnn", "digits", "--out", "{d}/o.npz",
                                  "--encoder-options", "{bad"], "--encoder-options"),
    ("extract-options-list", ["extract", "smallcnn", "digits", "--out", "{d}/o.npz",
                              "--encoder-options", "[1]"], "--encoder-options"),
    ("extract-unknown-encoder", ["extract", "nosuchenc", "digits", "--out", "{d}/o.npz"],
     "nosuchenc"),
    ("extract-split", ["extract", "smallcnn", "digits", "--split", "dev"], "--split"),
    ("extract-device-word", ["extract", "effnet_lite0_random", "digits", "--device",
                             "tpu"], "--device"),
    ("extract-device-cuda-index", ["extract", "effnet_lite0_random", "digits",
                                   "--device", "cuda:99"], "--device"),
    ("extract-device-empty", ["extract", "effnet_lite0_random", "digits", "--device",
                              ""], "--device"),
    ("extract-device-before-encoder", ["extract", "nosuchenc", "digits", "--device",
                                       "gpu"], "--device"),
    ("extract-limit-word", ["extract", "smallcnn", "digits", "--limit", "all"], "--limit"),
    ("datasets-unknown-flag", ["datasets", "--bogus"], "--bogus"),
    ("encoders-extra-arg", ["encoders", "smallcnn"], "smallcnn"),
    # results export
    ("export-missing-db", ["results", "export", "{d}/none.sqlite", "{d}/o.csv"],
     "does not exist"),
    ("export-dir-db", ["results", "export", "{d}/adir", "{d}/o.csv"], "is a folder"),
    ("export-foreign-db", ["results", "export", "{d}/foreign.sqlite", "{d}/o.csv"],
     "not a taskrel results database"),
    ("export-other-cells", ["results", "export", "{d}/othercells.sqlite", "{d}/o.csv"],
     "not a taskrel results database"),
    ("export-text-db", ["results", "export", "{d}/afile", "{d}/o.csv"],
     "not a taskrel results database"),
    ("export-suffix", ["results", "export", "{d}/foreign.sqlite", "{d}/o.txt"], "OUT"),
    ("export-out-dir", ["results", "export", "{d}/foreign.sqlite", "{d}/adir.csv"], "OUT"),
    ("export-out-under-file", ["results", "export", "{d}/foreign.sqlite",
                               "{d}/afile/o.csv"], "OUT"),
    ("results-no-subcommand", ["results"], "required"),
    # analyze
    ("analyze-out-file", ["analyze", "cost", "{d}/foreign.sqlite", "--out", "{d}/afile"],
     "--out"),
    ("analyze-out-under-file", ["analyze", "cost", "{d}/foreign.sqlite", "--out",
                                "{d}/afile/x"], "--out"),
    ("analyze-missing-db", ["analyze", "cost", "{d}/none.sqlite", "--out", "{d}/an"],
     "does not exist"),
    ("analyze-foreign-db", ["analyze", "cost", "{d}/foreign.sqlite", "--out", "{d}/an"],
     "not a taskrel results database"),
    ("analyze-other-cells", ["analyze", "zoo", "{d}/othercells.sqlite", "--out",
                             "{d}/an"], "not a taskrel results database"),
    ("analyze-seed", ["analyze", "correlation", "{d}/foreign.sqlite", "--out", "{d}/an",
                      "--seed", "-1"], "--seed"),
    ("analyze-n-boot", ["analyze", "correlation", "{d}/foreign.sqlite", "--out", "{d}/an",
                        "--n-boot", "0"], "--n-boot"),
    ("analyze-fraction-0", ["analyze", "zoo", "{d}/foreign.sqlite", "--out", "{d}/an",
                            "--fraction", "0"], "--fraction"),
    ("analyze-fraction-big", ["analyze", "zoo", "{d}/foreign.sqlite", "--out", "{d}/an",
                              "--fraction", "1.5"], "--fraction"),
    ("analyze-truth-fraction", ["analyze", "sweep", "{d}/foreign.sqlite", "--out",
                                "{d}/an", "--truth-fraction", "2"], "--truth-fraction"),
    ("analyze-truth-fraction-word", ["analyze", "sweep", "{d}/foreign.sqlite", "--out",
                                     "{d}/an", "--truth-fraction", "most"],
     "--truth-fraction"),
    ("analyze-unknown", ["analyze", "everything", "{d}/foreign.sqlite", "--out", "{d}/an"],
     "analysis"),
    # reproduce
    ("reproduce-no-suite", ["reproduce", "--db", "{d}/r.sqlite", "--out", "{d}/rep"],
     "--suite"),
    ("reproduce-missing-config", ["reproduce", "--config", "{d}/none.toml", "--db",
                                  "{d}/r.sqlite", "--out", "{d}/rep"], "does not exist"),
    ("reproduce-not-toml", ["reproduce", "--config", "{d}/afile", "--db", "{d}/r.sqlite",
                            "--out", "{d}/rep"], "TOML"),
    ("reproduce-out-file", ["reproduce", "--config", "{d}/ok.toml", "--db",
                            "{d}/r.sqlite", "--out", "{d}/afile"], "--out"),
    ("reproduce-db-dir", ["reproduce", "--config", "{d}/ok.toml", "--db", "{d}/adir",
                          "--out", "{d}/rep"], "--db"),
    ("reproduce-threads", ["reproduce", "--config", "{d}/ok.toml", "--db", "{d}/r.sqlite",
                           "--out", "{d}/rep", "--threads", "-1"], "--threads"),
    ("reproduce-address-local", ["reproduce", "--config", "{d}/ok.toml", "--db",
                                 "{d}/r.sqlite", "--out", "{d}/rep", "--address", "auto"],
     "--address"),
    ("reproduce-device", ["reproduce", "--config", "{d}/ok.toml", "--db", "{d}/r.sqlite",
                          "--out", "{d}/rep", "--device", "tpu"], "device"),
    *[(f"reproduce-{name[:-5]}", ["reproduce", "--config", "{d}/" + name, "--db",
                                  "{d}/r.sqlite", "--out", "{d}/rep"],
       {"unknown-encoder.toml": "encoders", "unknown-dataset.toml": "reference",
        "unknown-target-dataset.toml": "targets", "bad-transform.toml": "transform",
        "bad-strength.toml": "transform", "bad-class.toml": "classes",
        "tau-huge.toml": "options.tau", "tau-negative.toml": "options.tau",
        "max-test-zero.toml": "options.max_test",
        "feature-dim-str.toml": "options.feature_dim", "bad-device.toml": "options.device",
        "unknown-estimator.toml": "estimators"}[name])
      for name in CONFIGS],
]


def _listing(d):
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


@pytest.mark.parametrize("case", CLI, ids=[c[0] for c in CLI])
def test_cli_bad_input(case, files, capsys):
    _, argv, match = case
    for name, kw in CONFIGS.items():
        _config(files, name, **kw)
    before = _listing(files)
    foreign = (files / "foreign.sqlite").read_bytes()
    try:
        rc = main([a.replace("{d}", str(files)) for a in argv])
    except SystemExit as exc:  # argparse's own usage errors (one line: OneLineParser)
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "error:" in lines[0] and match in lines[0], lines[0]
    assert "Traceback" not in err
    assert _listing(files) == before  # nothing written: no store, report or partial file
    assert (files / "foreign.sqlite").read_bytes() == foreign


def test_score_json_writes_null_and_a_reason_never_nan(tmp_path, capsys):
    """A score that has no finite value on valid inputs (LogME gives NaN and SFDA's
    eigh fails on all-zero features; H-score needs n > d) is written as JSON null
    with its reason, and the others as numbers; the file is strict JSON."""
    import json

    np.savez(tmp_path / "zero.npz", features=np.zeros((20, 4)), labels=YT)
    np.savez(tmp_path / "wide.npz", features=_rng.normal(size=(20, 30)), labels=YT)
    for task, names, nulls in (("zero", "logme,sfda,knn_accuracy", {"logme", "sfda"}),
                               ("wide", "h_score,logme", {"h_score"})):
        out = tmp_path / f"{task}.json"
        assert main(["score", names, str(tmp_path / f"{task}.npz"), "--json",
                     str(out)]) == 0
        text = out.read_text()
        assert "NaN" not in text and "Infinity" not in text
        doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
        rows = {r["score"]: r for r in doc["scores"]}
        assert list(rows) == names.split(",")
        for name, r in rows.items():
            if name in nulls:
                assert r["value"] is None and r["reason"].strip(), r
                assert "\n" not in r["reason"]
            else:
                assert isinstance(r["value"], float) and "reason" not in r
        assert "Traceback" not in capsys.readouterr().err
    assert "not a finite value" in json.loads((tmp_path / "zero.json").read_text())[
        "scores"][0]["reason"]
