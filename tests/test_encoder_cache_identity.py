"""Cache identity of the adapter encoders (issue 22): local weights are keyed by their
content, not their path, and randomly initialised adapters are seeded, with the seed in
the key.

timm, torchvision and open_clip need not be installed: small stand-in modules with the
few calls the adapters make are put in ``sys.modules``, so the adapters' own code (and
its ``cache_key``) is what is tested. The ``hf:`` adapter runs on a tiny local BERT.
"""

from __future__ import annotations

import os
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn as nn

from taskrel.encoders import load_encoder
from taskrel.exceptions import TaskrelInputError
from taskrel.features.encoders.adapters import weights_digest

IMAGES = np.random.default_rng(0).integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)


class _Pool(nn.Module):
    def forward(self, x):
        return x.mean((2, 3))


class _TimmNet(nn.Module):
    """The part of a timm model the adapter uses."""

    num_features, num_classes = 4, 3

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(3, 4)
        self.fc = nn.Linear(4, 3)

    def forward_features(self, x):
        return self.body(x.mean((2, 3)))

    def forward_head(self, x, pre_logits=False):
        return x if pre_logits else self.fc(x)

    def get_classifier(self):
        return self.fc


class _Transform:
    """Stands in for a library's evaluation transform: PIL RGB image -> (3, S, S)."""

    def __init__(self, size, mean=(0.5,) * 3, std=(0.5,) * 3, **_):
        self.size, self.mean, self.std = int(size), mean, std

    def __call__(self, img):
        a = np.asarray(img.resize((self.size, self.size)), np.float32) / 255
        x = torch.from_numpy(a).permute(2, 0, 1)
        return (x - torch.tensor(self.mean).view(3, 1, 1)) / torch.tensor(
            self.std).view(3, 1, 1)

    def __repr__(self):
        return f"_Transform(size={self.size})"


def _fake_timm():
    def create_model(name, pretrained=False, pretrained_cfg_overlay=None):
        net = _TimmNet()
        if pretrained:
            net.load_state_dict(torch.load(pretrained_cfg_overlay["file"],
                                           weights_only=True))
        return net

    cfg = {"input_size": (3, 8, 8), "mean": (0.5,) * 3, "std": (0.5,) * 3,
           "crop_pct": 1.0}
    return types.SimpleNamespace(
        create_model=create_model,
        models=types.SimpleNamespace(get_pretrained_cfg=lambda name: None),
        data=types.SimpleNamespace(
            resolve_data_config=lambda c, model: dict(cfg),
            create_transform=lambda input_size, mean, std, **_: _Transform(
                input_size[-1], mean, std)))


def _tv_net():
    return nn.Sequential(_Pool(), nn.Linear(3, 4), nn.Linear(4, 5))


class _Preset(_Transform):
    """A torchvision weights' transforms(): the transform, with its settings."""

    def __init__(self, crop_size=8, resize_size=8):
        super().__init__(crop_size)
        self.crop_size, self.resize_size = [crop_size], [resize_size]


def _fake_torchvision():
    default = types.SimpleNamespace(url="https://example.invalid/net-0123abcd.pth",
                                    transforms=_Preset, meta={"min_size": (1, 1)})
    models = types.SimpleNamespace(
        get_model=lambda name, weights=None: _tv_net(),
        get_model_weights=lambda name: types.SimpleNamespace(DEFAULT=default))
    return types.SimpleNamespace(models=models)


class _ClipModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.visual = nn.Linear(3, 4)
        self.visual.image_size = 8
        self.visual.output_dim = 4

    def encode_image(self, x):
        return self.visual(x.mean((2, 3)))


def _fake_open_clip():
    def create_model_and_transforms(arch, pretrained=None, force_image_size=None):
        model = _ClipModel()
        if pretrained:
            model.load_state_dict(torch.load(pretrained, weights_only=True))
        return model, None, _Transform(force_image_size or model.visual.image_size)

    return types.SimpleNamespace(
        create_model_and_transforms=create_model_and_transforms,
        get_model_config=lambda arch: {"vision_cfg": {"image_size": 8}})


@pytest.fixture
def fake_libs(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", _fake_timm())
    monkeypatch.setitem(sys.modules, "torchvision", _fake_torchvision())
    monkeypatch.setitem(sys.modules, "open_clip", _fake_open_clip())


def _rewrite(path, module_factory, seed):
    """Overwrite ``path`` (same name) with other weights of the same shapes."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.save(module_factory().state_dict(), path)


# ---- the digest itself -------------------------------------------------------

def test_weights_digest_hashes_the_whole_file_once_per_version(tmp_path, monkeypatch):
    p = tmp_path / "w.bin"
    data = bytearray(np.random.default_rng(0).bytes(3 << 20))
    p.write_bytes(bytes(data))
    d0 = weights_digest(p)
    assert d0.startswith("sha256:") and weights_digest(str(p)) == d0
    # A change in the middle (same size): head/tail sampling would miss it.
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    d1 = weights_digest(p)
    assert d1 != d0
    # Cached per (path, size, mtime): an unchanged file is not read again.
    import hashlib

    calls = []
    real = hashlib.sha256
    monkeypatch.setattr(hashlib, "sha256", lambda *a: calls.append(1) or real(*a))
    assert weights_digest(p) == d1 and not calls
    with pytest.raises(TaskrelInputError, match="`path`"):
        weights_digest(tmp_path / "missing.bin")


def test_weights_digest_of_a_folder_covers_weights_and_config(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"w1")
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "README.md").write_text("docs")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "x.json").write_text("1")
    d0 = weights_digest(tmp_path)
    (tmp_path / "README.md").write_text("other docs")  # not a weight or config file
    (tmp_path / ".cache" / "x.json").write_text("2")  # hidden: download metadata
    assert weights_digest(tmp_path) == d0
    (tmp_path / "model.safetensors").write_bytes(b"w2")
    d1 = weights_digest(tmp_path)
    assert d1 != d0
    (tmp_path / "config.json").write_text('{"a": 1}')
    assert weights_digest(tmp_path) not in (d0, d1)


# ---- local weights: content, not path ----------------------------------------

def test_timm_local_weights_keyed_by_content(tmp_path, fake_libs):
    w = tmp_path / "ckpt.pth"
    _rewrite(w, _TimmNet, 1)
    a = load_encoder("timm:fake", weights=str(w), device="cpu")
    _rewrite(w, _TimmNet, 2)
    b = load_encoder("timm:fake", weights=str(w), device="cpu")
    assert not np.array_equal(a.encode(IMAGES), b.encode(IMAGES))
    assert a.cache_key() != b.cache_key()
    # Same content under another path: same key.
    w2 = tmp_path / "copy.pth"
    w2.write_bytes(w.read_bytes())
    assert load_encoder("timm:fake", weights=str(w2), device="cpu").cache_key() \
        == b.cache_key()


def test_torchvision_local_weights_keyed_by_content(tmp_path, fake_libs):
    w = tmp_path / "sd.pth"
    _rewrite(w, _tv_net, 1)
    a = load_encoder("torchvision:fake", weights=str(w), device="cpu")
    _rewrite(w, _tv_net, 2)
    b = load_encoder("torchvision:fake", weights=str(w), device="cpu")
    assert not np.array_equal(a.encode(IMAGES), b.encode(IMAGES))
    assert a.cache_key() != b.cache_key()


def test_open_clip_local_weights_keyed_by_content(tmp_path, fake_libs):
    w = tmp_path / "clip.pt"
    _rewrite(w, _ClipModel, 1)
    a = load_encoder(f"open_clip:RN/{w}", device="cpu")
    _rewrite(w, _ClipModel, 2)
    b = load_encoder(f"open_clip:RN/{w}", device="cpu")
    assert not np.array_equal(a.encode(IMAGES), b.encode(IMAGES))
    assert a.cache_key() != b.cache_key()
    c = load_encoder("open_clip:RN", weights=str(w), device="cpu")
    assert c.cache_key()["weights_digest"] == b.cache_key()["weights_digest"]


def _tiny_bert(tmp_path, seed):
    tr = pytest.importorskip("transformers")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "cat"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = tr.BertTokenizer(str(tmp_path / "vocab.txt"))
    cfg = tr.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tr.BertModel(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)


def test_hf_local_folder_keyed_by_content(tmp_path):
    _tiny_bert(tmp_path, 1)
    a = load_encoder(f"hf:{tmp_path}", device="cpu")
    fa = a.encode(["hello world", "cat"])
    _tiny_bert(tmp_path, 2)
    b = load_encoder(f"hf:{tmp_path}", device="cpu")
    assert not np.array_equal(fa, b.encode(["hello world", "cat"]))
    assert a.cache_key() != b.cache_key()


def test_hf_cache_models_are_keyed_by_their_snapshot_commit(tmp_path):
    from taskrel.features.encoders.adapters import _hub_revision

    repo = tmp_path / "models--org--tiny"
    for commit in ("a" * 40, "b" * 40):
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("b" * 40)
    assert _hub_revision("org/tiny", cache_dir=tmp_path) == "b" * 40
    assert _hub_revision("org/absent", cache_dir=tmp_path) is None


# ---- random initialisation: seeded, seed in the key --------------------------

@pytest.mark.parametrize("prefix", ["timm", "torchvision", "open_clip"])
def test_random_init_image_adapters_are_seeded(prefix, fake_libs):
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    a = load_encoder(f"{prefix}:fake", pretrained=False, device="cpu")
    b = load_encoder(f"{prefix}:fake", pretrained=False, device="cpu")
    c = load_encoder(f"{prefix}:fake", pretrained=False, seed=1, device="cpu")
    # The caller's global RNG is left as it was.
    torch.testing.assert_close(torch.rand(3), want, rtol=0, atol=0)
    np.testing.assert_array_equal(a.encode(IMAGES), b.encode(IMAGES))
    assert a.cache_key() == b.cache_key()
    assert not np.array_equal(a.encode(IMAGES), c.encode(IMAGES))
    assert a.cache_key() != c.cache_key()
    assert a.cache_key()["seed"] == 0 and c.cache_key()["seed"] == 1


def test_random_init_hf_adapter_is_seeded(tmp_path):
    _tiny_bert(tmp_path, 1)
    texts = ["hello world", "cat"]
    torch.manual_seed(7)
    want = torch.rand(3)
    torch.manual_seed(7)
    a = load_encoder(f"hf:{tmp_path}", pretrained=False, device="cpu")
    b = load_encoder(f"hf:{tmp_path}", pretrained=False, device="cpu")
    c = load_encoder(f"hf:{tmp_path}", pretrained=False, seed=3, device="cpu")
    torch.testing.assert_close(torch.rand(3), want, rtol=0, atol=0)
    np.testing.assert_array_equal(a.encode(texts), b.encode(texts))
    assert a.cache_key() == b.cache_key() != c.cache_key()
    assert not np.array_equal(a.encode(texts), c.encode(texts))


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_adapter_seed_is_validated(seed, fake_libs):
    with pytest.raises(TaskrelInputError, match="`seed` must be"):
        load_encoder("timm:fake", pretrained=False, seed=seed, device="cpu")


def test_packaged_weights_digest_sees_a_change_in_the_middle(tmp_path):
    # The small CNN / fine-tuned EfficientNet keys hashed only the first and last MiB:
    # a change in between kept the key (and served stale cached features).
    import os

    from taskrel.features.encoders._common import file_digest

    f = tmp_path / "w.pt"
    data = bytearray(os.urandom(3 << 20))
    f.write_bytes(bytes(data))
    before = file_digest(f)
    data[(3 << 20) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    os.utime(f, ns=(1, 2))  # another modification time, as any rewrite has
    assert file_digest(f) != before
