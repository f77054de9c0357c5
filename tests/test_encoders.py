"""Encoders: real packaged weights (ImageNet head, MiniLM), controls, adapters.

ImageNet class indices (the standard ILSVRC-2012 1000-class order): 281-285 are the
domestic cats (285 = Egyptian cat), 967 = espresso.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from taskrel import TaskrelInputError
from taskrel.encoders import list_encoders, load_encoder, train_small_cnn

CAT_CLASSES = {281, 282, 283, 284, 285}
ESPRESSO = 967


@pytest.fixture(scope="module")
def lite0():
    return load_encoder("effnet_lite0", device="cpu")


def test_lite0_imagenet_head_sees_cat_and_espresso(lite0):
    skdata = pytest.importorskip("skimage.data")
    p = lite0.source_probs(np.stack([skdata.chelsea()[:300, :451],
                                     skdata.coffee()[:300, :451]]))
    assert p.shape == (2, 1000) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=0, atol=1e-5)
    assert int(p[0].argmax()) in CAT_CLASSES
    assert int(p[1].argmax()) == ESPRESSO


def test_lite0_native_size_and_preprocessing(lite0):
    assert (lite0.dim, lite0.image_size, lite0.has_source_head) == (1280, 224, True)
    grey = np.zeros((2, 28, 28), np.uint8)
    x = lite0.preprocess(grey)
    assert tuple(x.shape) == (2, 3, 224, 224)
    # (0 - 127/255) / (128/255): EfficientNet-Lite's own input scaling
    np.testing.assert_allclose(float(x[0, 0, 0, 0]), -127 / 128, rtol=1e-6)


def test_features_deterministic_shape_dtype_and_module_agrees():
    import torch

    enc = load_encoder("effnet_lite0_random", image_size=32, device="cpu", seed=1)
    assert not enc.has_source_head and enc.trainable
    x = np.random.default_rng(0).integers(0, 255, (5, 20, 20, 3), dtype=np.uint8)
    a, b = enc.encode(x), enc.encode(x)
    assert a.shape == (5, 1280) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    # another batch size changes only float rounding (different BLAS blocking)
    scale = float(np.abs(a).max())
    np.testing.assert_allclose(enc.encode(x, batch_size=2), a, rtol=0, atol=1e-5 * scale)
    with torch.no_grad():
        m = enc.torch_module()(enc.preprocess(x)).numpy()
    np.testing.assert_allclose(m, a, rtol=0, atol=1e-5 * scale)
    other = load_encoder("effnet_lite0_random", image_size=32, device="cpu", seed=2)
    assert not np.allclose(other.encode(x), a)
    with pytest.raises(TaskrelInputError, match="has no source classifier head"):
        enc.source_probs(x)
    with pytest.raises(TaskrelInputError, match=r"`inputs` must be images"):
        enc.encode(np.zeros((3, 4)))


def test_minilm_paraphrase_closer_than_unrelated():
    enc = load_encoder("minilm", device="cpu")
    f = enc.encode(["A man is playing a guitar.", "Someone plays the guitar.",
                    "The central bank raised interest rates."])
    assert f.shape == (3, 384) and f.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, rtol=1e-5)
    assert f[0] @ f[1] > f[0] @ f[2] + 0.3


@pytest.mark.parametrize("name,dim", [("glove_mean", 50), ("e5_small", 384)])
def test_other_text_encoders(name, dim):
    enc = load_encoder(name)
    t = ["the cat sat on the mat", "a kitten sits on a rug", "stock prices fell sharply"]
    f = enc.encode(t)
    assert f.shape == (3, dim) and f.dtype == np.float32
    np.testing.assert_array_equal(f, enc.encode(t))
    cos = (f / np.linalg.norm(f, axis=1, keepdims=True)) @ (
        f / np.linalg.norm(f, axis=1, keepdims=True)).T
    assert cos[0, 1] > cos[0, 2]


def test_tfidf_svd_fits_on_given_texts():
    texts = [f"word{i % 7} common term{i % 5} other{i % 3}" for i in range(60)]
    enc = load_encoder("tfidf_svd", dim=4)
    f = enc.encode(texts)
    assert f.shape == (60, 4) and enc.fitted_on.startswith("60 texts")
    with pytest.raises(TaskrelInputError, match="must be below the vocabulary size"):
        load_encoder("tfidf_svd", dim=500).encode(texts)


def test_small_cnn_train_save_reload(tmp_path):
    from taskrel.data import load_dataset, subsample

    ds = subsample(load_dataset("digits"), per_class=10)
    path = train_small_cnn(ds, epochs=1, seed=0, out=tmp_path / "cnn.pt", image_size=8,
                           device="cpu", progress=False)
    enc = load_encoder(f"smallcnn:{path}", device="cpu")
    assert (enc.dim, enc.source_classes, enc.trainable) == (128, 10, True)
    f = enc.encode(ds.x_test)
    p = enc.source_probs(ds.x_test)
    assert f.shape == (100, 128) and p.shape == (100, 10)
    np.testing.assert_array_equal(f, load_encoder(f"smallcnn:{path}").encode(ds.x_test))
    with pytest.raises(TaskrelInputError, match="does not exist"):
        load_encoder(f"smallcnn:{tmp_path / 'nope.pt'}")


def test_unknown_encoder_and_options():
    with pytest.raises(TaskrelInputError, match=r"one of \[.*'effnet_lite0'.*did you mean"):
        load_encoder("effnet_lite9")
    with pytest.raises(TaskrelInputError, match="does not take option"):
        load_encoder("glove_mean", image_size=3)
    assert "timm:NAME" in list_encoders()


@pytest.mark.parametrize("prefix,module,pip", [
    ("timm", "timm", "pip install timm"),
    ("torchvision", "torchvision", "pip install torchvision"),
    ("open_clip", "open_clip", "pip install open_clip_torch"),
])
def test_adapters_offline(prefix, module, pip):
    if importlib.util.find_spec(module) is None:
        with pytest.raises(TaskrelInputError, match=f"`{pip}`"):
            load_encoder(f"{prefix}:resnet18", pretrained=False)
        return
    name = {"timm": "resnet18", "torchvision": "resnet18", "open_clip": "RN50"}[prefix]
    enc = load_encoder(f"{prefix}:{name}", pretrained=False, device="cpu", image_size=64)
    f = enc.encode(np.zeros((2, 40, 40, 3), np.uint8))
    assert f.shape == (2, enc.dim) and f.dtype == np.float32


def test_hf_adapter_with_a_tiny_random_local_model(tmp_path):
    tr = pytest.importorskip("transformers")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "cat"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = tr.BertTokenizer(str(tmp_path / "vocab.txt"))
    cfg = tr.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32)
    tr.BertModel(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    enc = load_encoder(f"hf:{tmp_path}", device="cpu")
    f = enc.encode(["hello world", "cat", "hello cat world cat"])
    assert f.shape == (3, 16) and f.dtype == np.float32
    np.testing.assert_array_equal(f, enc.encode(["hello world", "cat",
                                                 "hello cat world cat"]))


def test_module_property_is_the_wrapped_model_or_none():
    from taskrel.encoders import SentenceTransformerEncoder

    class Model:  # the two methods SentenceTransformerEncoder reads
        max_seq_length = 16

        def get_sentence_embedding_dimension(self):
            return 4

    model = Model()
    enc = SentenceTransformerEncoder("stub", model, {})
    assert enc.module is model and enc.dim == 4
    assert load_encoder("tfidf_svd").module is None
    with pytest.raises(AttributeError):
        enc.module = None  # read-only
