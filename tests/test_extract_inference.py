"""Extraction's inference path gives the features of a plain forward of the same module.

``TorchImageEncoder`` encodes through a faster plan where it has one (EfficientNet-Lite
on the CPU: batch norms folded into the convolutions, channels-last, ReLU6 in place),
under ``torch.inference_mode()`` with denormals flushed. The reference here is computed
afresh in each test the way the encoders computed features before (the module called on
the preprocessed batch under ``torch.no_grad()``), never a stored number. Speed is
measured in ``benchmarks/bench_extract.py``, not asserted here.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from taskrel.data import load_dataset, subsample
from taskrel.encoders import load_encoder
from taskrel.features.extract import extract_task

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")

from taskrel._internal.denormals import denormals_flushed, flush_denormals  # noqa: E402
from taskrel.features.encoders.image import (  # noqa: E402
    TorchImageEncoder,
    _inference_plan,
)

#: Features of the inference plan vs the module's own forward: float rounding only,
#: bounded relative to the features' scale (a near-zero feature has no relative digits).
RTOL = 1e-5
PACKAGED = ["effnet_lite0", "effnet_lite1", "effnet_lite2", "effnet_lite0_random",
            "effnet_lite0_b11"]


def _images(n: int = 4, rgb: bool = False) -> np.ndarray:
    rng = np.random.default_rng(0)
    shape = (n, 28, 28, 3) if rgb else (n, 28, 28)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _old_preprocess(enc: TorchImageEncoder, images: np.ndarray):
    """The preprocessing as it was: grey repeated to 3 channels before the resize."""
    import torch.nn.functional as F

    x = torch.from_numpy(np.array(images, dtype=np.uint8)).float().div_(255.0)
    x = x.unsqueeze(1).expand(-1, 3, -1, -1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    h, w = x.shape[-2:]
    s = enc.image_size
    if enc.center_crop < 1.0 or h != w:
        scale = s / (enc.center_crop * min(h, w))
        nh, nw = max(s, round(h * scale)), max(s, round(w * scale))
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True,
                          align_corners=False)
        top, left = (nh - s) // 2, (nw - s) // 2
        x = x[..., top:top + s, left:left + s]
    elif (h, w) != (s, s):
        x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True,
                          align_corners=False)
    mean = torch.tensor(enc.mean).view(1, 3, 1, 1)
    std = torch.tensor(enc.std).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def _module_forward(enc: TorchImageEncoder, images: np.ndarray):
    """Features and source probabilities as the encoders computed them before."""
    with torch.no_grad():
        f = enc.torch_module()(_old_preprocess(enc, images))
        p = None
        if enc.head_module() is not None:
            p = torch.softmax(enc.head_module()(f).double(), dim=1).float().numpy()
    return f.numpy(), p


def _assert_rounding_close(got, want, rtol=RTOL):
    scale = float(np.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


@pytest.fixture(scope="module", params=PACKAGED)
def packaged(request):
    return load_encoder(request.param, image_size=64, device="cpu")


def test_packaged_encoders_use_a_plan_and_match_the_module(packaged):
    enc = packaged
    assert _inference_plan(enc.torch_module(), enc.device) is not None
    x = _images(4)
    want, want_p = _module_forward(enc, x)
    if enc.has_source_head:
        got, got_p = enc.encode_with_probs(x)
        _assert_rounding_close(got_p, want_p)
    else:
        got = enc.encode(x)
    assert got.dtype == np.float32 and got.shape == want.shape
    _assert_rounding_close(got, want)


def test_plan_is_float_rounding_of_the_exact_forward():
    """Against the float64 forward of the same module, the plan's error is of the order
    of the module's own float32 error (both well inside RTOL of the scale)."""
    enc = load_encoder("effnet_lite2", image_size=64, device="cpu")
    x = _images(4)
    pre = _old_preprocess(enc, x)
    with torch.no_grad():
        exact = copy.deepcopy(enc.torch_module()).double()(pre.double()).numpy()
    _assert_rounding_close(enc.encode(x), exact)
    _assert_rounding_close(_module_forward(enc, x)[0], exact)


def test_preprocess_is_unchanged_bit_for_bit():
    enc = load_encoder("effnet_lite0", image_size=64, device="cpu")
    for x in (_images(3), _images(3, rgb=True), _images(2)[:, :, :20]):  # resize, crop
        np.testing.assert_array_equal(enc.preprocess(x).numpy(),
                                      _old_preprocess(enc, x).numpy())
    same = load_encoder("effnet_lite0", image_size=32, device="cpu")  # no resize
    x = np.random.default_rng(1).integers(0, 256, (2, 32, 32), dtype=np.uint8)
    np.testing.assert_array_equal(same.preprocess(x).numpy(),
                                  _old_preprocess(same, x).numpy())


def _small_cnn() -> TorchImageEncoder:
    from taskrel.features.encoders.smallcnn import _small_cnn as build

    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(0)
        feats, head = build(10, 28)
    return TorchImageEncoder("smallcnn", feats, head, dim=128, image_size=28,
                             mean=(0.5,) * 3, std=(0.5,) * 3, device="cpu")


def test_other_modules_are_called_as_they_are():
    enc = _small_cnn()
    assert _inference_plan(enc.torch_module(), enc.device) is None
    x = _images(5)
    got, got_p = enc.encode_with_probs(x)
    want, want_p = _module_forward(enc, x)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_p, want_p)


def test_plan_follows_the_weights_and_the_mode():
    """The plan is rebuilt from the module at every call: weights changed in place
    between two calls are seen; a module in training mode gets no plan."""
    enc = load_encoder("effnet_lite0_random", image_size=32, device="cpu")
    x = _images(3)
    before = enc.encode(x)
    with torch.no_grad():
        enc.torch_module().net._bn1.weight.mul_(2.0)
        enc.torch_module().net._blocks[3]._depthwise_conv.weight.add_(0.1)
    after = enc.encode(x)
    assert not np.allclose(after, before)
    _assert_rounding_close(after, _module_forward(enc, x)[0])
    enc.torch_module().train()
    try:
        assert _inference_plan(enc.torch_module(), enc.device) is None
    finally:
        enc.torch_module().eval()
    seen = []  # a forward hook is honoured: the module itself is called
    hook = enc.torch_module().net._blocks[2].register_forward_hook(
        lambda *_: seen.append(1))
    try:
        assert _inference_plan(enc.torch_module(), enc.device) is None
        enc.encode(x)
        assert seen
    finally:
        hook.remove()


def test_flush_denormals_context_restores_the_setting():
    assert not denormals_flushed()
    with flush_denormals() as on:
        assert denormals_flushed() == on
        with flush_denormals(False):
            assert not denormals_flushed()
        assert denormals_flushed() == on
    assert not denormals_flushed()
    if torch.set_flush_denormal(True):  # on before: stays on after
        try:
            with flush_denormals(False):
                assert not denormals_flushed()
            assert denormals_flushed()
        finally:
            torch.set_flush_denormal(False)
    with pytest.raises(RuntimeError, match="boom"):
        with flush_denormals():
            raise RuntimeError("boom")
    assert not denormals_flushed()


def test_extraction_flushes_denormals_and_restores_the_setting(tmp_path):
    enc = _small_cnn()  # no plan: its module is called, so a hook sees the forward
    seen = []
    hook = enc.torch_module().register_forward_hook(
        lambda *_: seen.append(denormals_flushed()))
    try:
        ds = subsample(load_dataset("digits"), per_class=2)
        assert not denormals_flushed()
        extract_task(enc, ds, cache_dir=tmp_path, progress=False)
        assert not denormals_flushed()
        enc.encode(_images(2))
        assert not denormals_flushed()
    finally:
        hook.remove()
    on = torch.set_flush_denormal(False)  # whether this CPU can flush at all
    assert seen and all(s == on for s in seen)


def test_flushing_changes_features_below_the_denormal_range():
    """Flushing denormals moves a feature by less than the smallest normal float32
    (1.2e-38): on one thread (all arithmetic on the calling thread), plan and module."""
    enc = load_encoder("effnet_lite0_random", image_size=32, device="cpu")
    x = enc.preprocess(_images(4))
    plan = _inference_plan(enc.torch_module(), enc.device)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            for forward in (plan, enc.torch_module()):
                plain = forward(x).numpy()
                with flush_denormals():
                    flushed = forward(x).numpy()
                np.testing.assert_allclose(flushed, plain, rtol=0,
                                           atol=np.finfo(np.float32).tiny)
    finally:
        torch.set_num_threads(threads)
