"""Issue 23 (photo folders): real photo folders as image targets.

Mixed sizes load without options through ``resolve_target`` / ``taskrel rank FOLDER``,
EXIF orientation is applied, and every PIL mode is scaled by its real range (16-bit
grey divided by 257, transparency composited on white), never clipped.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from taskrel.exceptions import TaskrelInputError
from taskrel.features import datasets as D
from taskrel.features import image_folder as F
from taskrel.ranking import resolve_target

# (W, H) of the photos; shorter sides 30, 48, 64, 40, 72, 56 -> median 52.
SIZES = [(40, 30), (48, 70), (64, 64), (90, 40), (72, 100), (56, 80)]
COLOURS = {"apple": (200, 30, 30), "leaf": (30, 180, 40), "sky": (40, 60, 210)}


def _photo_folder(root):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, rgb in COLOURS.items():
        (root / c).mkdir(parents=True)
        for i, (w, h) in enumerate(SIZES):
            a = np.clip(np.array(rgb) + rng.normal(0, 20, (h, w, 3)), 0, 255)
            img = Image.fromarray(a.astype(np.uint8))
            if i % 2:
                img.save(root / c / f"{i}.jpg", quality=90)
            else:
                img.save(root / c / f"{i}.png")
    return root


def _two_class_folder(root, save):
    """Two classes of three files each, written by ``save(path_without_suffix, i)``."""
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            save(root / c / str(i), i)
    return root


def _all_images(ds):
    return np.concatenate([ds.x_train, ds.x_test])


def test_mixed_size_photos_load_without_options(tmp_path):
    root = _photo_folder(tmp_path / "photos")
    ds = resolve_target(str(root))  # what `taskrel rank FOLDER` does
    x = _all_images(ds)
    assert x.dtype == np.uint8 and x.shape == (18, 52, 52, 3)
    assert ds.class_names == ("apple", "leaf", "sky") and ds.meta["size"] == (52, 52)
    # Colours survive the resize and crop: each class's mean is its colour.
    y = np.concatenate([ds.y_train, ds.y_test])
    for k, rgb in enumerate(COLOURS.values()):
        assert np.allclose(x[y == k].mean(axis=(0, 1, 2)), rgb, atol=8)
    # The Python API does the same with size="auto"; without it mixed sizes are an
    # error that now names the option.
    assert F.from_image_folder(root, size="auto").x_train.shape[1:] == (52, 52, 3)
    with pytest.raises(TaskrelInputError, match="size='auto'"):
        F.from_image_folder(root)


def test_large_photos_are_capped_at_256_and_center_cropped(tmp_path):
    from PIL import Image

    def save(p, i):
        a = np.zeros((600, 900), np.uint8)
        a[:, 300:600] = 255  # a white middle third: the center crop keeps it centred
        Image.fromarray(a).save(p.with_suffix(".jpg"), quality=95)

    root = _two_class_folder(tmp_path / "big", save)
    ds = F.from_image_folder(root, size="auto")
    x = _all_images(ds)
    assert x.shape == (6, 256, 256)
    # 900x600 -> 384x256, crop columns 64..320: white at 128..256 of the original scale
    col = x.mean(axis=(0, 1))
    assert col[:50].max() < 30 and col[80:170].min() > 225 and col[210:].max() < 30
    # A folder of small images of one size is kept pixel for pixel.
    small = _two_class_folder(
        tmp_path / "small",
        lambda p, i: Image.fromarray(np.full((20, 30), 10 * i, np.uint8)).save(
            p.with_suffix(".png")))
    assert _all_images(F.from_image_folder(small, size="auto")).shape == (6, 20, 30)


def test_exif_orientation_is_applied(tmp_path):
    from PIL import Image

    def save(p, i):
        a = np.full((20, 40), 255, np.uint8)
        a[:, :20] = 0  # stored: left half black
        exif = Image.Exif()
        exif[0x0112] = 6  # display rotated 90 degrees clockwise
        Image.fromarray(a).save(p.with_suffix(".jpg"), exif=exif, quality=95)

    root = _two_class_folder(tmp_path / "exif", save)
    x = _all_images(F.from_image_folder(root)).astype(float)
    assert x.shape == (6, 40, 20)  # portrait as displayed, not the stored landscape
    assert x[:, :15].mean() < 30 and x[:, 25:].mean() > 225  # left -> top
    # Mixed with unrotated images of the displayed size, they are one size.
    Image.fromarray(np.zeros((40, 20), np.uint8)).save(root / "a" / "plain.png")
    assert _all_images(F.from_image_folder(root)).shape == (7, 40, 20)


def test_16_bit_grey_keeps_its_gradient(tmp_path):
    from PIL import Image

    ramp = np.tile(np.linspace(0, 61000, 256).astype(np.uint16), (16, 1))

    def save(p, i):
        img = Image.fromarray(ramp)
        assert img.mode == "I;16"
        img.save(p.with_suffix(".png"))

    root = _two_class_folder(tmp_path / "ramp", save)
    x = _all_images(resolve_target(str(root)))
    assert x.shape == (6, 16, 256)
    assert (x == 255).mean() < 0.01  # was 99.6 % pure white (clipped by convert("L"))
    assert np.all(np.diff(x[0, 0].astype(int)) >= 0)  # still a ramp
    expected = np.rint(np.linspace(0, 61000, 256) / 257)
    assert np.abs(x[0, 0] - expected).max() <= 1


@pytest.mark.parametrize("mode", ["I;16B", "I"])
def test_other_16_bit_layouts_are_divided_by_257(tmp_path, mode):
    from PIL import Image

    a = np.array([[0, 257, 32896, 65535]])

    def save(p, i):
        img = Image.frombytes("I;16B", (4, 1), a.astype(">u2").tobytes()) \
            if mode == "I;16B" else Image.fromarray(a.astype(np.int32))
        img.save(p.with_suffix(".tif"))

    root = _two_class_folder(tmp_path / mode.replace(";", "_"), save)
    with Image.open(root / "a" / "0.tif") as im:
        assert im.mode.startswith("I")
    assert _all_images(F.from_image_folder(root)).tolist() == [[[0, 1, 128, 255]]] * 6


def test_float_and_wide_int_images_use_their_range(tmp_path):
    from PIL import Image

    # A float TIFF with values in [0, 1] is multiplied by 255 (it was all 0 or 1).
    root = _two_class_folder(
        tmp_path / "float",
        lambda p, i: Image.fromarray(np.linspace(0, 1, 12, dtype=np.float32).reshape(
            3, 4)).save(p.with_suffix(".tif")))
    x = _all_images(F.from_image_folder(root))
    assert x.shape == (6, 3, 4) and x.min() == 0 and x.max() == 255
    assert len(np.unique(x)) == 12
    # An int range beyond 0..65535 is stretched from the image's own min/max.
    wide = Image.fromarray(np.array([[-1000, 0, 1000]], np.int32))
    assert D._pil_to_array(wide).tolist() == [[0, 128, 255]]
    f01 = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert f01.mode == "F" and D._pil_to_array(f01).tolist() == [[0, 128, 255]]


def test_transparency_is_composited_on_white(tmp_path):
    from PIL import Image

    rgba = np.zeros((6, 6, 4), np.uint8)
    rgba[..., 0] = 255  # red ...
    rgba[:3, :, 3] = 0  # ... transparent in the top half
    rgba[3:, :, 3] = 255

    def save_p(p, i):
        img = Image.new("P", (6, 6), 1)
        img.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)  # 0: black, 1: blue
        img.paste(0, (0, 0, 6, 3))  # top half: index 0, declared transparent
        img.save(p.with_suffix(".png"), transparency=0)

    root = _two_class_folder(tmp_path / "palette", save_p)  # class a: palette
    for i in range(3):  # class b: RGBA
        (root / "b" / f"{i}.png").unlink()
        Image.fromarray(rgba, "RGBA").save(root / "b" / f"{i}.png")
    ds = F.from_image_folder(root, test_fraction=0.5)
    x, y = _all_images(ds), np.concatenate([ds.y_train, ds.y_test])
    assert x.shape == (6, 6, 6, 3)
    for p_img in x[y == 0]:  # transparent index -> white; opaque blue stays blue
        assert (p_img[:3] == 255).all() and (p_img[3:] == [0, 0, 255]).all()
    for rgba_img in x[y == 1]:  # transparent red -> white (alpha was dropped: red)
        assert (rgba_img[:3] == 255).all() and (rgba_img[3:] == [255, 0, 0]).all()
    # Grey with alpha stays grey: 50 % black on white is mid-grey.
    la = Image.fromarray(np.dstack([np.zeros((2, 2), np.uint8),
                                    np.full((2, 2), 128, np.uint8)]), "LA")
    assert D._pil_to_array(la).tolist() == [[127, 127], [127, 127]]


def test_bad_size_is_a_clear_error(tmp_path):
    root = _photo_folder(tmp_path / "photos")
    for bad in ("big", 0, (8,), -3):
        with pytest.raises(TaskrelInputError, match="`size` must be None, 'auto'"):
            F.from_image_folder(root, size=bad)


def test_rank_runs_on_a_photo_folder(tmp_path, monkeypatch):
    from taskrel.cli import main

    monkeypatch.setenv("TASKREL_CACHE_DIR", str(tmp_path / "cache"))
    root = _photo_folder(tmp_path / "photos")
    out = tmp_path / "out.json"
    argv = ["rank", str(root), "--encoders", "effnet_lite0_random", "--json", str(out),
            "--out", str(tmp_path / "o"), "--reference", "digits", "--image-size", "32",
            "--max-reference", "100", "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    got = json.loads(out.read_text())
    assert [r["encoder"] for r in got["ranking"]] == ["effnet_lite0_random"]
    assert got["target"]["rows"] >= 12 and got["target"]["classes"] == 3


def _varied_folder(root, per_class, split=False):
    """Classes of unequal size with mixed-size JPEG/PNG files, each image distinct (its
    index is written into its pixels), optionally as ``train/`` and ``test/``."""
    from PIL import Image

    rng = np.random.default_rng(1)
    k = 0
    for part in (("train", "test") if split else ("",)):
        for c, n in per_class.items():
            d = root / part / c
            d.mkdir(parents=True)
            for i in range(n if part != "test" else max(2, n // 3)):
                w, h = SIZES[k % len(SIZES)]
                a = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
                a[:4, :4] = k % 256
                img = Image.fromarray(a)
                if k % 2:
                    img.save(d / f"{i:03d}.png")
                else:
                    img.save(d / f"{i:03d}.jpg", quality=90)
                k += 1
    return root


@pytest.mark.parametrize("split", [False, True])
def test_limit_decodes_only_the_rows_extraction_uses(tmp_path, monkeypatch, split):
    """``from_image_folder(limit=N)`` decodes N rows per split, and they are the very
    images (pixels and labels) ``extract_task(limit=N)`` encodes from the whole folder."""
    from taskrel.features.extract import selected_rows

    root = _varied_folder(tmp_path / "f", {"a": 30, "b": 7, "c": 12}, split)
    full = F.from_image_folder(root, size="auto")
    decoded = []
    real = F._read_image
    monkeypatch.setattr(F, "_read_image",
                        lambda f, *a: decoded.append(f) or real(f, *a))
    limit = 9
    capped = F.from_image_folder(root, size="auto", limit=limit)
    assert len(decoded) == len(capped.y_train) + len(capped.y_test)
    assert len(capped.y_train) == limit and len(capped.y_test) <= limit
    assert capped.class_names == full.class_names
    assert capped.meta["files"] == {"train": len(full.y_train), "test": len(full.y_test)}
    for s in ("train", "test"):
        rows = selected_rows(full, s, limit)
        x_full = (full.x_train if s == "train" else full.x_test)[rows]
        y_full = (full.y_train if s == "train" else full.y_test)[rows]
        x_cap = capped.x_train if s == "train" else capped.x_test
        y_cap = capped.y_train if s == "train" else capped.y_test
        np.testing.assert_array_equal(x_cap, x_full)
        np.testing.assert_array_equal(y_cap, y_full)
        # What extraction selects from the capped split is all of it.
        np.testing.assert_array_equal(selected_rows(capped, s, limit),
                                      np.arange(len(y_cap)))
    # A limit above the folder's size reads everything, as without one.
    big = F.from_image_folder(root, size="auto", limit=10_000)
    np.testing.assert_array_equal(big.x_train, full.x_train)
    np.testing.assert_array_equal(big.y_test, full.y_test)


def test_limit_counts_unreadable_files_and_checks_its_argument(tmp_path):
    root = _varied_folder(tmp_path / "f", {"a": 6, "b": 6})
    (root / "a" / "broken.jpg").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        ds = F.from_image_folder(root, size="auto", limit=4)
    assert ds.meta["skipped"] == 1 and len(ds.y_train) == 4
    with pytest.raises(TaskrelInputError, match="has 1 unreadable image file"):
        resolve_target(str(root), limit=4)
    for bad in (0, -1, 2.5, True, "10"):
        with pytest.raises(TaskrelInputError, match="`limit` must be None or a positive"):
            F.from_image_folder(root, size="auto", limit=bad)


def test_more_classes_than_rows_keeps_every_class_name(tmp_path):
    root = _varied_folder(tmp_path / "f", {c: 4 for c in "abcdef"})
    ds = F.from_image_folder(root, size="auto", limit=3)
    assert ds.class_names == tuple("abcdef") and len(ds.y_train) == 3
    # 24 photos in 6 classes cannot be stratified at 0.2 by scikit-learn (5 test rows
    # < 6 classes): each class gives round(0.2 * 4) = 1 test row instead.
    assert ds.meta["files"] == {"train": 18, "test": 6}
    full = F.from_image_folder(root, size="auto")
    assert sorted(full.y_test.tolist()) == list(range(6)) and len(ds.y_test) == 3


def test_rank_on_a_folder_decodes_only_the_capped_rows(tmp_path, monkeypatch):
    """``rank`` on a folder gives the same features as on the whole folder read into a
    Dataset, and decodes only ``--max-target`` training rows (plus as many test rows)."""
    from taskrel.ranking import rank

    monkeypatch.setenv("TASKREL_CACHE_DIR", str(tmp_path / "cache"))
    root = _varied_folder(tmp_path / "photos", {"a": 40, "b": 25, "c": 15})
    kw = dict(encoders=["effnet_lite0_random"], reference="digits", image_size=32,
              max_reference=60, max_target=20, device="cpu", progress=False,
              estimators=("knn_accuracy", "h_score"), cache_dir=False)
    whole = rank(F.from_image_folder(root, size="auto"), **kw)
    decoded = []
    real = F._read_image
    monkeypatch.setattr(F, "_read_image",
                        lambda f, *a: decoded.append(f) or real(f, *a))
    folder = rank(str(root), **kw)
    assert 20 <= len(decoded) <= 40  # 20 training rows and at most 20 test rows
    for a, b in zip(whole.rows, folder.rows):
        for est in ("knn_accuracy", "h_score"):
            assert a["values"][est] is not None
            assert a["values"][est] == pytest.approx(b["values"][est], rel=1e-6)
