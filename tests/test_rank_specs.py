"""Per-encoder specs in ``taskrel rank`` / ``taskrel.rank`` and native image sizes
(issue 23, items 2 and 5), on small data with the packaged random-init EfficientNet."""

from __future__ import annotations

import json
import re

import pytest

import taskrel
from taskrel.cli import main
from taskrel.encoders import Encoder, EncoderSpec
from taskrel.exceptions import TaskrelInputError
from taskrel.ranking import resolve_encoders

FAST = ["--reference", "digits", "--max-reference", "100", "--max-target", "60",
        "--estimators", "knn_accuracy,sfda", "--device", "cpu", "--quiet"]
TWO = "effnet_lite0_random[image_size=32],effnet_lite0_random[image_size=40,label=r40]"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TASKREL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _one_line_exit_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("taskrel: error: "), err
    return err


def test_two_specs_of_one_encoder_are_two_rows_and_a_zoo_gives_the_same(
        tmp_path, cache, capsys):
    out = tmp_path / "r.json"
    assert main(["rank", "digits", "--encoders", TWO, "--json", str(out), *FAST]) == 0
    got = json.loads(out.read_text())
    rows = {r["encoder"]: r for r in got["ranking"]}
    assert set(rows) == {"effnet_lite0_random[image_size=32]", "r40"}
    assert {n: r["image_size"] for n, r in rows.items()} == {
        "effnet_lite0_random[image_size=32]": 32, "r40": 40}
    assert rows["r40"]["values"] != rows["effnet_lite0_random[image_size=32]"]["values"]
    assert got["options"]["image_size"] is None and not got["from_cache"]
    # The same two candidates from a zoo file: the same rows, from the ranking cache.
    zoo = tmp_path / "zoo.toml"
    zoo.write_text('[[encoder]]\nname = "effnet_lite0_random"\nimage_size = 32\n\n'
                   '[[encoder]]\nname = "effnet_lite0_random"\nlabel = "r40"\n'
                   'image_size = 40\n')
    assert main(["rank", "digits", "--zoo", str(zoo), "--json", str(out), *FAST]) == 0
    again = json.loads(out.read_text())
    assert again["from_cache"] and again["ranking"] == got["ranking"]
    assert "input sizes" in capsys.readouterr().out
    # Another label for the same features: a new ranking (rows carry the label).
    r = taskrel.rank("digits", taskrel.load_zoo(zoo)[:1] + ["effnet_lite0_random"
                                                           "[image_size=40,label=b]"],
                     reference="digits", max_reference=100, max_target=60,
                     estimators="knn_accuracy,sfda", device="cpu", progress=False)
    assert not r.from_cache and {row["encoder"] for row in r.rows} == {
        "effnet_lite0_random[image_size=32]", "b"}
    assert r.rows[0]["values"] in [row["values"] for row in got["ranking"]]


def test_spec_options_win_over_encoder_options_and_image_size():
    encs = resolve_encoders(
        "effnet_lite0_random[seed=2,label=a],effnet_lite0_random[image_size=40]",
        "image", device="cpu", image_size=32, options={"seed": 1})
    keys = [e.cache_key() for e in encs]
    assert [e.label for e in encs] == ["a", "effnet_lite0_random[image_size=40]"]
    assert [k["image_size"] for k in keys] == [32, 40]
    assert "seed 2" in keys[0]["weights"] and "seed 1" in keys[1]["weights"]
    assert keys[0] != keys[1]


def test_native_size_of_packaged_encoders_and_forced_size():
    lite0, lite1 = resolve_encoders("effnet_lite0,effnet_lite1", "image", device="cpu")
    assert (lite0.image_size, lite1.image_size) == (224, 240)
    assert (lite0.native_image_size, lite1.native_image_size) == (224, 240)
    (forced,) = resolve_encoders("effnet_lite1", "image", device="cpu", image_size=64)
    assert (forced.image_size, forced.native_image_size) == (64, 240)


@pytest.fixture(scope="module")
def small_cnn(tmp_path_factory):
    from taskrel.data import load_dataset, subsample
    from taskrel.encoders import train_small_cnn

    ds = subsample(load_dataset("digits"), per_class=5)
    return train_small_cnn(ds, epochs=1, seed=0, image_size=8, device="cpu",
                           progress=False, out=tmp_path_factory.mktemp("cnn") / "c.pt")


def test_small_cnn_native_size_is_its_trained_size(small_cnn):
    (enc,) = resolve_encoders(f"smallcnn:{small_cnn}", "image", device="cpu")
    assert enc.image_size == enc.native_image_size == 8
    (same,) = resolve_encoders(f"smallcnn:{small_cnn}", "image", device="cpu",
                               image_size=8)
    assert same.cache_key() == enc.cache_key()


def test_a_size_the_model_cannot_take_is_one_line_exit_2(small_cnn, cache, capsys):
    err = _one_line_exit_2(["rank", "digits", "--encoders", f"smallcnn:{small_cnn}",
                            "--image-size", "32", *FAST], capsys)
    assert f"smallcnn:{small_cnn} takes 8 px inputs only" in err
    assert "asked for 32 px" in err
    # A spec's own image_size overrides --image-size: the same line from the spec.
    err = _one_line_exit_2(["rank", "digits", "--encoders",
                            f"smallcnn:{small_cnn}[image_size=16]", *FAST], capsys)
    assert "asked for 16 px" in err


def test_a_failure_at_a_size_other_than_native_names_both(tmp_path):
    import taskrel.ranking as R

    class Broken(Encoder):
        name, dim, image_size, native_image_size = "broken", 4, 64, 224

        def _encode(self, batch, want_probs):
            raise AssertionError("Input height (64) doesn't match model (224).")

    good = resolve_encoders("effnet_lite0_random", "image", device="cpu",
                            image_size=32)
    r = R.rank("digits", [Broken()] + good, reference="digits", max_reference=100,
               max_target=60, estimators="knn_accuracy", device="cpu",
               cache_dir=False, progress=False)
    row = {row["encoder"]: row for row in r.rows}["broken"]
    assert row["error"] == ("AssertionError: Input height (64) doesn't match model "
                            "(224). (at 64 px; its own size is 224 px)")
    assert row["image_size"] == 64


@pytest.mark.parametrize("argv, what", [
    (["--encoders", "effnet_lite0", "--zoo", "z.toml"], "--encoders or --zoo, not both"),
    (["--features", "a.npz", "--zoo", "z.toml"], "`--zoo` does not go with --features"),
    (["--encoders", "effnet_lite0[image_size=32"], "a '\\[' without its '\\]'"),
    (["--encoders", "effnet_lite0[image_size]"], "must be key=value"),
    (["--encoders", "effnet_lite0_random[layer=3]"], "does not take option.*layer"),
    (["--encoders", "effnet_lite0_random[image_size=40,label=x],"
      "effnet_lite0_random[image_size=32,label=x]"], r"lists \['x'\] more than once"),
    (["--zoo", "missing.toml"], "no such file"),
    (["--image-size", "-3", "--encoders", "effnet_lite0_random"],
     "`image_size` must be an int >= 1"),
])
def test_spec_errors_are_one_line_exit_2(argv, what, cache, capsys, tmp_path,
                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = [] if "--features" in argv else ["digits"]
    err = _one_line_exit_2(["rank", *target, *argv, *FAST], capsys)
    assert re.search(what, err), err


def test_duplicate_labels_in_python_name_them():
    with pytest.raises(TaskrelInputError, match=r"\['effnet_lite0_random'\] more than "
                                                "once.*label="):
        resolve_encoders(["effnet_lite0_random", EncoderSpec(
            "effnet_lite0_random", {"seed": 3}, "effnet_lite0_random")], "image",
            device="cpu", image_size=32)
