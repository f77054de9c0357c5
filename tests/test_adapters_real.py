"""The ``timm:``, ``torchvision:``, ``open_clip:`` and ``hf:`` adapters against their real
libraries (issue 23).

They run in the adapter venv (``make adapters-venv``; ``make test`` runs this file there
with ``TASKREL_ADAPTERS=1``): PyPI's torchvision does not load beside the main venv's CPU
torch 2.13.0, so there the file is skipped. With ``TASKREL_ADAPTERS=1`` a missing library
fails :func:`test_adapter_libraries_are_installed` (and the tests that need it) instead of
skipping, so a broken install cannot pass unseen.

No download: every model is built locally with random weights, saved the way users hold
it (a state-dict file, a ``save_pretrained`` folder, a sentence-transformers folder) and
loaded through the adapter from that file. The library's own forward and evaluation
transform, applied to the same real images (scikit-learn's digits and its two sample
photographs) or texts (scikit-learn's docstrings), are the reference.

Tolerances: preprocessing is compared exactly (the adapters apply the library's own
transform); features with ``rtol=1e-5, atol=1e-6`` (the same float32 model and inputs;
only the batch differs), except where the reference is an independent implementation
(one unpadded text at a time against the padded batch: ``rtol=1e-4, atol=1e-5``).
"""

from __future__ import annotations

import importlib
import json
import os

import numpy as np
import pytest
from _hf_models import bert_folder, hidden_state_means
from _hf_models import texts as _texts

LIBRARIES = ("torchvision", "timm", "open_clip", "transformers", "sentence_transformers")
REQUIRED = os.environ.get("TASKREL_ADAPTERS") == "1"


def _import_error(module: str) -> str | None:
    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - torchvision beside another torch: RuntimeError
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


_MISSING = {m: e for m in LIBRARIES if (e := _import_error(m)) is not None}

pytestmark = pytest.mark.skipif(
    bool(_MISSING) and not REQUIRED,
    reason=f"adapter venv only (make test-adapters); here {', '.join(sorted(_MISSING))}"
           " cannot be imported")

FEAT_TOL = {"rtol": 1e-5, "atol": 1e-6}


def test_adapter_libraries_are_installed():
    """In the adapter venv every library imports (this fails, never skips, there)."""
    assert not _MISSING, f"adapter libraries that cannot be imported: {_MISSING}"


# ---- real inputs -----------------------------------------------------------------

def _digits(n: int = 4, size: tuple[int, int] = (37, 45)):
    """scikit-learn digits (8x8, 0..16) as grey uint8 images upscaled to ``size``
    (H, W), an odd, non-square size so that every resize rule shows."""
    from PIL import Image
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    small = (X[:n].reshape(-1, 8, 8) * 255 / 16).astype(np.uint8)
    return np.stack([np.asarray(Image.fromarray(a).resize(size[::-1], Image.BICUBIC))
                     for a in small]), y[:n]


def _photos():
    """scikit-learn's two sample photographs (427x640 RGB), as a uint8 batch."""
    from sklearn.datasets import load_sample_images

    return np.stack(load_sample_images().images).astype(np.uint8)


INPUTS = {"grey digits": lambda: _digits()[0], "rgb photos": _photos}


def _library_batch(transform, images):
    """The library's own transform on each image, as the user's PIL pipeline runs it."""
    import torch
    from PIL import Image

    return torch.stack([transform(Image.fromarray(a).convert("RGB")) for a in images])


def _forward(fn, x):
    import torch

    with torch.no_grad():
        return fn(x).float().numpy()


def _digits_folder(root, classes, n_per_class=20):
    """Real digits, upscaled to 32 px, one sub-folder per class (a taskrel image
    target)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    for c in classes:
        d = root / str(c)
        d.mkdir(parents=True)
        for i in np.flatnonzero(y == c)[:n_per_class]:
            img = (X[i].reshape(8, 8) * 255 / 16).astype(np.uint8)
            Image.fromarray(img).resize((32, 32)).save(d / f"{i}.png")
    return root


def _rank(target, encoders, tmp_path, **kw):
    import taskrel

    r = taskrel.rank(target, encoders, device="cpu", max_reference=100, max_target=100,
                     cache_dir=tmp_path / "cache", progress=False, **kw)
    assert len(r.rows) == 2
    for row in r.rows:  # an encoder that fails is a row without values: not here
        v = row["values"]["knn_accuracy"]
        assert v is not None and np.isfinite(v), row
        assert row["why"]
    return r


@pytest.fixture(scope="module")
def image_target(tmp_path_factory):
    return _digits_folder(tmp_path_factory.mktemp("digits"), classes=range(5))


# ---- timm ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def timm_ckpt(tmp_path_factory):
    """resnet18 with random weights: headless, ImageNet-head and 10-class checkpoints."""
    import timm
    import torch

    d = tmp_path_factory.mktemp("timm")
    out = {}
    for classes in (0, 1000, 10):
        torch.manual_seed(classes)
        m = timm.create_model("resnet18", pretrained=False, num_classes=classes)
        out[classes] = d / f"resnet18_{classes}.pth"
        torch.save(m.state_dict(), out[classes])
    return out


def _timm_reference(path, classes):
    """timm's own model with the checkpoint, and its own evaluation transform."""
    import timm
    import torch
    from timm.data import create_transform, resolve_data_config

    ref = timm.create_model("resnet18", pretrained=False, num_classes=classes).eval()
    ref.load_state_dict(torch.load(path, weights_only=True))
    cfg = resolve_data_config({}, model=ref)
    assert cfg["interpolation"] == "bicubic" and cfg["crop_pct"] == 0.95  # not 224/256
    return ref, create_transform(**cfg)


@pytest.mark.parametrize("inputs", sorted(INPUTS))
def test_timm_transform_is_timm_own(timm_ckpt, inputs):
    from taskrel.encoders import load_encoder

    _, transform = _timm_reference(timm_ckpt[0], 0)
    images = INPUTS[inputs]()
    enc = load_encoder("timm:resnet18", weights=str(timm_ckpt[0]), device="cpu")
    np.testing.assert_array_equal(enc.preprocess(images).numpy(),
                                  _library_batch(transform, images).numpy())


@pytest.mark.parametrize("classes", [0, 1000, 10])
def test_timm_checkpoint_features_and_head_are_timm_own(timm_ckpt, classes):
    """Headless, ImageNet-head and fine-tuned (10-class) checkpoints all load, with
    the head they hold; features are timm's pre-logits output."""
    import torch

    from taskrel.encoders import load_encoder

    ref, transform = _timm_reference(timm_ckpt[classes], classes)
    images = _digits(3)[0]
    enc = load_encoder("timm:resnet18", weights=str(timm_ckpt[classes]), device="cpu")
    assert enc.dim == ref.num_features == 512
    assert enc.has_source_head == (classes > 0) and enc.source_classes == classes
    x = _library_batch(transform, images)
    feats, probs = enc.encode_with_probs(images)
    pre_logits = _forward(lambda t: ref.forward_head(ref.forward_features(t),
                                                     pre_logits=True), x)
    np.testing.assert_allclose(feats, pre_logits, **FEAT_TOL)
    if classes:
        want = torch.softmax(torch.from_numpy(_forward(ref, x)).double(), 1).numpy()
        np.testing.assert_allclose(probs, want, rtol=1e-4, atol=1e-7)
    else:  # timm's own num_classes=0 forward is the pre-logits feature too
        assert probs is None
        np.testing.assert_allclose(feats, _forward(ref, x), **FEAT_TOL)


def test_timm_image_size_is_timm_transform_at_that_size(timm_ckpt):
    import timm
    from timm.data import create_transform, resolve_data_config

    from taskrel.encoders import load_encoder

    images = _photos()
    enc = load_encoder("timm:resnet18", weights=str(timm_ckpt[0]), image_size=96,
                       device="cpu")
    ref = timm.create_model("resnet18", pretrained=False, num_classes=0)
    cfg = {**resolve_data_config({}, model=ref), "input_size": (3, 96, 96)}
    x = _library_batch(create_transform(**cfg), images)
    assert x.shape[-2:] == (96, 96) and enc.image_size == 96
    np.testing.assert_array_equal(enc.preprocess(images).numpy(), x.numpy())


def test_timm_ranks_end_to_end(timm_ckpt, image_target, tmp_path):
    from taskrel.encoders import load_encoder

    vit = load_encoder("timm:test_vit", pretrained=False, image_size=64, device="cpu")
    r = _rank(image_target, ["timm:resnet18", vit], tmp_path, reference="mnist5k",
              image_size=32, encoder_options={"weights": str(timm_ckpt[1000])})
    assert {row["encoder"] for row in r.rows} == {"timm:resnet18", "timm:test_vit"}


def test_timm_native_size_is_the_pretrained_config_input_size(timm_ckpt):
    from taskrel.encoders import load_encoder

    r18 = load_encoder("timm:resnet18", weights=str(timm_ckpt[0]), device="cpu")
    vit = load_encoder("timm:test_vit", pretrained=False, device="cpu")
    assert (r18.image_size, r18.native_image_size) == (224, 224)
    assert (vit.image_size, vit.native_image_size) == (160, 160)
    small = load_encoder("timm:resnet18", weights=str(timm_ckpt[0]), image_size=96,
                         device="cpu")
    assert (small.image_size, small.native_image_size) == (96, 224)


def test_timm_fixed_size_vit_is_built_at_the_size_asked(tmp_path):
    """The issue's case: a fixed-size ViT at 64 px raised ``AssertionError: Input height
    (64) doesn't match model (224)`` from inside timm. Now it is built with timm's
    ``img_size=64``, its checkpoint's position embedding resampled by timm."""
    import timm
    import torch

    from taskrel.encoders import load_encoder

    torch.manual_seed(0)
    path = tmp_path / "vit.pth"
    torch.save(timm.create_model("vit_tiny_patch16_224", num_classes=0).state_dict(),
               path)
    enc = load_encoder("timm:vit_tiny_patch16_224", weights=str(path), image_size=64,
                       device="cpu")
    ref = timm.create_model("vit_tiny_patch16_224", pretrained=True, num_classes=0,
                            img_size=64, pretrained_cfg_overlay={"file": str(path)})
    images = _photos()
    x = enc.preprocess(images)
    assert x.shape[-2:] == (64, 64) and enc.native_image_size == 224
    np.testing.assert_allclose(enc.encode(images), _forward(ref.eval(), x), **FEAT_TOL)


def test_timm_size_a_model_cannot_take_is_one_line_exit_2(image_target, tmp_path,
                                                          monkeypatch, capsys):
    """Checked from timm's pretrained config before the model is built: this model
    takes at least 256 px."""
    from taskrel.cli import main

    monkeypatch.setenv("TASKREL_CACHE_DIR", str(tmp_path / "cache"))
    rc = main(["rank", str(image_target), "--encoders",
               "timm:bat_resnext26ts[pretrained=false],effnet_lite0_random",
               "--image-size", "64", "--reference", "mnist5k", "--device", "cpu",
               "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert "timm:bat_resnext26ts takes inputs of at least 256 px" in err
    assert "asked for 64 px" in err


@pytest.mark.parametrize("layer", [0, 2, -1, "layer3"])
def test_timm_layer_is_timm_intermediate_output_pooled(timm_ckpt, layer):
    """``layer=k``: timm's own ``forward_intermediates`` output k (on the unpruned
    model), averaged over its spatial positions."""
    from taskrel.encoders import load_encoder

    ref, transform = _timm_reference(timm_ckpt[1000], 1000)
    images = _digits(3)[0]
    enc = load_encoder("timm:resnet18", weights=str(timm_ckpt[1000]), layer=layer,
                       device="cpu")
    index = {"layer3": 3}.get(layer, layer) % 5
    x = _library_batch(transform, images)
    want = _forward(lambda t: ref.forward_intermediates(
        t, indices=[index], intermediates_only=True)[0].mean((2, 3)), x)
    assert enc.dim == want.shape[1] == [64, 64, 128, 256, 512][index]
    assert not enc.has_source_head and enc.cache_key()["layer"] == index
    np.testing.assert_allclose(enc.encode(images), want, **FEAT_TOL)


def test_timm_vit_layer_is_the_block_output_of_its_patch_tokens():
    import timm
    import torch

    from taskrel.encoders import load_encoder

    images = _photos()
    enc = load_encoder("timm:test_vit", pretrained=False, layer=1, device="cpu", seed=3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        ref = timm.create_model("test_vit", pretrained=False).eval()
    x = enc.preprocess(images)
    tokens = _forward(lambda t: ref.forward_intermediates(
        t, indices=[1], intermediates_only=True, output_fmt="NLC")[0], x)
    np.testing.assert_allclose(enc.encode(images), tokens.mean(1), **FEAT_TOL)


def test_timm_layers_rank_as_candidates_and_out_of_range_is_one_line(
        timm_ckpt, image_target, tmp_path):
    import taskrel
    from taskrel.encoders import load_encoder

    w = str(timm_ckpt[1000])
    r = _rank(image_target, f"timm:resnet18[weights={w},layer=2,label=r18-l2],"
              f"timm:resnet18[weights={w},layer=4,label=r18-l4]", tmp_path,
              reference="mnist5k", image_size=32)
    assert {row["encoder"] for row in r.rows} == {"r18-l2", "r18-l4"}
    with pytest.raises(taskrel.TaskrelInputError,
                       match=r"timm:resnet18: `layer` must be an int in \[-5, 4\].*"
                             r"'layer4'\]; got 5$"):
        load_encoder("timm:resnet18", weights=w, layer=5, device="cpu")


# ---- torchvision -----------------------------------------------------------------

@pytest.fixture(scope="module")
def tv_ckpt(tmp_path_factory):
    import torch
    import torchvision

    torch.manual_seed(1)
    p = tmp_path_factory.mktemp("tv") / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), p)
    return p


@pytest.mark.parametrize("inputs", sorted(INPUTS))
def test_torchvision_features_and_transform_are_the_weights_own(tv_ckpt, inputs):
    import copy

    import torch
    import torchvision

    from taskrel.encoders import load_encoder

    ref = torchvision.models.resnet18(weights=None).eval()
    ref.load_state_dict(torch.load(tv_ckpt, weights_only=True))
    trunk = copy.deepcopy(ref)
    trunk.fc = torch.nn.Identity()  # the penultimate (pooled, 512-d) output
    transform = torchvision.models.ResNet18_Weights.DEFAULT.transforms()
    images = INPUTS[inputs]()

    enc = load_encoder("torchvision:resnet18", weights=str(tv_ckpt), device="cpu")
    x = _library_batch(transform, images)
    np.testing.assert_array_equal(enc.preprocess(images).numpy(), x.numpy())
    feats, probs = enc.encode_with_probs(images)
    np.testing.assert_allclose(feats, _forward(trunk, x), **FEAT_TOL)
    want = torch.softmax(torch.from_numpy(_forward(ref, x)).double(), 1).numpy()
    np.testing.assert_allclose(probs, want, rtol=1e-4, atol=1e-7)
    assert (enc.dim, enc.source_classes) == (512, 1000)


def test_torchvision_random_init_uses_the_same_transform():
    import torchvision

    from taskrel.encoders import load_encoder

    images = _digits()[0]
    enc = load_encoder("torchvision:resnet18", pretrained=False, device="cpu")
    x = _library_batch(torchvision.models.ResNet18_Weights.DEFAULT.transforms(), images)
    np.testing.assert_array_equal(enc.preprocess(images).numpy(), x.numpy())


def test_torchvision_ranks_end_to_end(tv_ckpt, image_target, tmp_path):
    from taskrel.encoders import load_encoder

    small = load_encoder("torchvision:mobilenet_v3_small", pretrained=False,
                         image_size=32, device="cpu")
    r = _rank(image_target, ["torchvision:resnet18", small], tmp_path,
              reference="mnist5k", image_size=32,
              encoder_options={"weights": str(tv_ckpt)})
    assert {row["encoder"] for row in r.rows} == {"torchvision:resnet18",
                                                  "torchvision:mobilenet_v3_small"}


# ---- open_clip -------------------------------------------------------------------

#: Small OpenCLIP configs (a ViT and a modified-ResNet image tower), registered with
#: open_clip.add_model_config as users register their own.
OPEN_CLIP_CONFIGS = {
    "taskrel-tiny-vit": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8,
                       "head_width": 32},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32,
                     "heads": 2, "layers": 1}},
    "taskrel-tiny-rn": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32,
                     "heads": 2, "layers": 1}},
}


@pytest.fixture(scope="module")
def clip_ckpt(tmp_path_factory):
    import open_clip
    import torch

    d = tmp_path_factory.mktemp("open_clip")
    out = {}
    for i, (arch, cfg) in enumerate(OPEN_CLIP_CONFIGS.items()):
        (d / f"{arch}.json").write_text(json.dumps(cfg))
        open_clip.add_model_config(d / f"{arch}.json")
        torch.manual_seed(i)
        model = open_clip.create_model(arch, pretrained=None)
        out[arch] = d / f"{arch}.pt"
        torch.save(model.state_dict(), out[arch])
    return out


@pytest.mark.parametrize("arch", sorted(OPEN_CLIP_CONFIGS))
@pytest.mark.parametrize("inputs", sorted(INPUTS))
def test_open_clip_features_and_preprocess_are_open_clip_own(clip_ckpt, arch, inputs):
    import open_clip

    from taskrel.encoders import load_encoder

    ref, _, pre = open_clip.create_model_and_transforms(arch,
                                                        pretrained=str(clip_ckpt[arch]))
    ref.eval()
    images = INPUTS[inputs]()
    enc = load_encoder(f"open_clip:{arch}/{clip_ckpt[arch]}", device="cpu")
    x = _library_batch(pre, images)
    np.testing.assert_array_equal(enc.preprocess(images).numpy(), x.numpy())
    np.testing.assert_allclose(enc.encode(images), _forward(ref.encode_image, x),
                               **FEAT_TOL)
    assert enc.dim == 32 and not enc.has_source_head
    # weights= is the same as ARCH/PATH
    enc2 = load_encoder(f"open_clip:{arch}", weights=str(clip_ckpt[arch]), device="cpu")
    np.testing.assert_array_equal(enc2.encode(images), enc.encode(images))


def test_open_clip_image_size_builds_the_model_at_that_size(clip_ckpt):
    import open_clip

    from taskrel.encoders import load_encoder

    arch, images = "taskrel-tiny-vit", _photos()
    enc = load_encoder(f"open_clip:{arch}/{clip_ckpt[arch]}", image_size=64,
                       device="cpu")
    ref, _, pre = open_clip.create_model_and_transforms(
        arch, pretrained=str(clip_ckpt[arch]), force_image_size=64)
    x = _library_batch(pre, images)
    assert x.shape[-2:] == (64, 64) and enc.image_size == 64
    np.testing.assert_array_equal(enc.preprocess(images).numpy(), x.numpy())
    np.testing.assert_allclose(enc.encode(images), _forward(ref.eval().encode_image, x),
                               **FEAT_TOL)


def test_open_clip_checkpoint_that_cannot_be_resized_is_one_clear_error(clip_ckpt):
    from taskrel.encoders import load_encoder
    from taskrel.exceptions import TaskrelInputError

    # open_clip resizes a ViT's position embedding, not a ResNet's attention pool.
    with pytest.raises(TaskrelInputError, match=r"do not load at image_size=32 .*"
                                                r"attnpool.*--image-size"):
        load_encoder(f"open_clip:taskrel-tiny-rn/{clip_ckpt['taskrel-tiny-rn']}",
                     image_size=32, device="cpu")


def test_open_clip_ranks_end_to_end(clip_ckpt, image_target, tmp_path):
    # By name, at rank's default image size: each model's own (the ViT's 32 px, the
    # ResNet's 64 px), recorded in its row and in a note.
    names = [f"open_clip:{arch}/{p}" for arch, p in sorted(clip_ckpt.items())]
    r = _rank(image_target, names, tmp_path, reference="mnist5k")
    assert {row["encoder"]: row["image_size"] for row in r.rows} == {
        names[0]: 64, names[1]: 32}  # taskrel-tiny-rn, taskrel-tiny-vit
    assert any(n.startswith("input sizes") and "32 px" in n for n in r.notes)
    # Forced, the ViT is built at 64 px and its checkpoint's 32-px position embedding
    # resized by open_clip.
    r = _rank(image_target, names, tmp_path, reference="mnist5k", image_size=64)
    assert {row["image_size"] for row in r.rows} == {64}
    assert not any(n.startswith("input sizes") for n in r.notes)


# ---- hf: transformers and sentence-transformers (text) ---------------------------

@pytest.fixture(scope="module")
def text_models(tmp_path_factory):
    """A tiny BERT (save_pretrained + a WordPiece vocabulary built from the texts), the
    same as a sentence-transformers folder (mean pooling), and a tiny ViT folder."""
    import transformers as tr

    d = tmp_path_factory.mktemp("hf")
    bert = bert_folder(d / "bert")

    from sentence_transformers import SentenceTransformer
    try:
        from sentence_transformers.base.modules import Transformer
        from sentence_transformers.sentence_transformer.modules import Pooling
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Pooling, Transformer
    word = Transformer(str(bert))
    st = d / "st"
    SentenceTransformer(modules=[word, Pooling(32, "mean")]).save(str(st))

    vit = d / "vit"
    tr.ViTModel(tr.ViTConfig(image_size=32, patch_size=8, hidden_size=32,
                             num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=64)).save_pretrained(vit)
    tr.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(vit)
    return {"bert": bert, "st": st, "vit": vit}


def test_hf_text_is_masked_mean_of_the_last_layer(text_models):
    import torch
    import transformers as tr

    from taskrel.encoders import load_encoder

    texts = _texts()[0][:12]
    enc = load_encoder(f"hf:{text_models['bert']}", device="cpu")
    tok = tr.AutoTokenizer.from_pretrained(text_models["bert"])
    model = tr.AutoModel.from_pretrained(text_models["bert"]).eval()
    assert tok.tokenize(texts[0]).count("[UNK]") == 0  # the vocabulary covers the text
    # Independent reference: each text alone (no padding), mean over its tokens.
    with torch.no_grad():
        ref = np.stack([model(**tok(t, truncation=True, max_length=256,
                                    return_tensors="pt")).last_hidden_state[0].mean(0)
                        .numpy() for t in texts])
    np.testing.assert_allclose(enc.encode(texts), ref, rtol=1e-4, atol=1e-5)
    assert enc.dim == 32


@pytest.mark.parametrize("layer", [0, 1, -1])
def test_hf_layer_is_that_hidden_state_pooled_alike(text_models, layer):
    from taskrel.encoders import load_encoder

    texts = _texts()[0][:12]
    enc = load_encoder(f"hf:{text_models['bert']}", layer=layer, device="cpu")
    np.testing.assert_allclose(enc.encode(texts), hidden_state_means(
        text_models["bert"], texts, layer), rtol=1e-4, atol=1e-5)
    assert enc.cache_key()["layer"] == layer % 3


def test_hf_layer_of_a_sentence_transformers_folder_is_refused(text_models):
    from taskrel.encoders import load_encoder
    from taskrel.exceptions import TaskrelInputError

    with pytest.raises(TaskrelInputError, match="`layer` is for transformers models"):
        load_encoder(f"hf:{text_models['st']}", layer=1, device="cpu")


def test_sentence_transformers_folder_is_its_own_encode(text_models):
    from sentence_transformers import SentenceTransformer

    from taskrel.encoders import SentenceTransformerEncoder, load_encoder

    texts = _texts()[0][:12]
    enc = load_encoder(f"hf:{text_models['st']}", device="cpu")
    assert isinstance(enc, SentenceTransformerEncoder) and enc.dim == 32
    ref = SentenceTransformer(str(text_models["st"]), device="cpu").encode(texts)
    np.testing.assert_allclose(enc.encode(texts), ref, **FEAT_TOL)
    # Same weights, same (mean) pooling: the transformers path agrees.
    bert = load_encoder(f"hf:{text_models['bert']}", device="cpu")
    np.testing.assert_allclose(enc.encode(texts), bert.encode(texts), rtol=1e-4,
                               atol=1e-5)


def test_hf_image_model_folder_is_refused_in_one_clear_line(text_models):
    from taskrel.encoders import load_encoder
    from taskrel.exceptions import TaskrelInputError

    with pytest.raises(TaskrelInputError, match="image processor.*text models only"):
        load_encoder(f"hf:{text_models['vit']}", device="cpu")


def test_hf_ranks_end_to_end(text_models, tmp_path):
    from taskrel.data import from_arrays

    texts, labels = _texts()
    # reference: cluster + decomposition docstrings; target: linear_model + metrics
    ref_rows = [i for i, lab in enumerate(labels) if lab in ("cluster", "decomposition")]
    tgt_rows = [i for i in range(len(texts)) if i not in ref_rows]
    assert len(ref_rows) >= 30 and len(tgt_rows) >= 30
    ref = from_arrays([texts[i] for i in ref_rows], [labels[i] for i in ref_rows])
    tgt = from_arrays([texts[i] for i in tgt_rows], [labels[i] for i in tgt_rows])
    names = [f"hf:{text_models['bert']}", f"hf:{text_models['st']}"]
    r = _rank(tgt, names, tmp_path, reference=ref)
    assert {row["encoder"] for row in r.rows} == set(names)


# ---- the CLI: by name, and offline without weights ---------------------------------

def test_cli_ranks_two_adapters_by_name(image_target, tmp_path, monkeypatch):
    from taskrel.cli import main

    monkeypatch.setenv("TASKREL_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "r.json"
    rc = main(["rank", str(image_target), "--encoders", "timm:resnet18,"
               "torchvision:resnet18", "--encoder-options", '{"pretrained": false}',
               "--reference", "mnist5k", "--max-reference", "100", "--image-size", "32",
               "--device", "cpu", "--quiet", "--json", str(out)])
    assert rc == 0
    got = json.loads(out.read_text())
    assert {r["encoder"] for r in got["ranking"]} == {"timm:resnet18",
                                                      "torchvision:resnet18"}


@pytest.mark.parametrize("name, hint", [
    ("timm:resnet18", "weights=/path/to/checkpoint"),
    ("torchvision:resnet18", "weights=/path/to/state_dict.pth"),
    ("open_clip:RN50/openai", "ARCH/PATH or weights="),
])
def test_cli_pretrained_without_local_weights_is_one_line_exit_2(
        name, hint, image_target, tmp_path, monkeypatch, capsys):
    from taskrel.cli import main

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty hub cache
    monkeypatch.setenv("TASKREL_CACHE_DIR", str(tmp_path / "cache"))
    rc = main(["rank", str(image_target), "--encoders", name, "--reference", "mnist5k",
               "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("taskrel: error: "), err
    assert "no local weights" in err and hint in err and "download=True" in err
