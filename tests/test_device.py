"""Device and precision choice (faked device facts: no GPU here) and fp16 loss scaling."""

from __future__ import annotations

import pytest
import torch

from conftest import STYLE
from engine import defaults, stylize
from engine.defaults import Settings, StyleImage
from engine.errors import FlowstyleError
from engine.run import check_memory, load_style_images
from engine.stylize import DeviceFacts, Stylizer, autocast_dtype, resolve_device
from engine.vgg import VGGFeatures

CUDA = torch.device("cuda")
TURING, AMPERE, HOPPER = (7, 5), (8, 0), (9, 0)


def test_auto_prefers_cuda_then_mps_then_the_cpu():
    assert resolve_device("auto", DeviceFacts(cuda=True, mps=True)).type == "cuda"
    assert resolve_device("auto", DeviceFacts(mps=True)).type == "mps"
    assert resolve_device("auto", DeviceFacts()).type == "cpu"
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("mps").type == "mps"


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "meta", ""])
def test_a_bad_device_name_is_a_clear_value_error(name):
    with pytest.raises(ValueError, match="auto, cpu, cuda, cuda:N or mps"):
        resolve_device(name)


@pytest.mark.parametrize("device, facts, expected", [
    (CUDA, DeviceFacts(cuda=True, cuda_capability=AMPERE), torch.bfloat16),  # native bf16
    (CUDA, DeviceFacts(cuda=True, cuda_capability=HOPPER), torch.bfloat16),
    (CUDA, DeviceFacts(cuda=True, cuda_capability=TURING), torch.float16),  # bf16 emulated: fp16
    (CUDA, DeviceFacts(cuda=True, cuda_capability=(6, 1)), torch.float16),
    (torch.device("mps"), DeviceFacts(mps=True), torch.float16),
    (torch.device("cpu"), DeviceFacts(cpu_bf16=True), torch.bfloat16),  # AVX512-BF16 / AMX
    (torch.device("cpu"), DeviceFacts(cpu_bf16=False), None),  # fp32
])
def test_auto_precision_uses_bf16_only_where_native(device, facts, expected):
    assert autocast_dtype(device, "auto", facts) is expected


def test_a_forced_precision_is_honoured():
    facts = DeviceFacts(cuda=True, cuda_capability=TURING)
    assert autocast_dtype(CUDA, "fp32", facts) is None
    assert autocast_dtype(CUDA, "bf16", facts) is torch.bfloat16
    assert autocast_dtype(torch.device("cpu"), "fp16", facts) is torch.float16


def test_cuda_memory_is_read_from_the_device_and_refused_with_a_size_that_fits(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 * 2**30, 8 * 2**30))
    assert stylize.available_bytes(CUDA) == 2 * 2**30
    assert (stylize.estimate_peak_bytes(1080, 1440, 4, "cuda")
            > stylize.estimate_peak_bytes(1080, 1440, 4, "cpu"))
    with pytest.raises(FlowstyleError, match=r"only 2.0 GB is free on cuda.*--height (\d+) fits"):
        check_memory((1080, 1440), CUDA, "fp32")


@pytest.fixture(scope="module")
def vgg():
    return VGGFeatures(list(defaults.CONTENT_LAYERS + defaults.STYLE_LAYERS))


def _gradient(stylizer: Stylizer, image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        feats = stylizer.features(image)
    content = {n: feats[n] for n in defaults.CONTENT_LAYERS}
    grams = stylizer.style_grams(tuple(image.shape[-2:]))
    return stylizer._loss_and_gradient(image.flip(-1), content, grams, [])[2]


def test_fp16_scales_the_loss_backs_off_on_overflow_and_returns_the_true_gradient(vgg):
    # CPU autocast runs fp16 too, so the scaling is exercised for real here.
    settings = Settings(styles=[StyleImage(str(STYLE))])
    styles, _ = load_style_images(settings.resolved())
    image = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    fp32 = _gradient(Stylizer(Settings(**{**vars(settings), "precision": "fp32"}), vgg, styles,
                              torch.device("cpu")), image)
    half = Stylizer(Settings(**{**vars(settings), "precision": "fp16"}), vgg, styles,
                    torch.device("cpu"))
    assert half.autocast is torch.float16 and half.loss_scale == stylize.INITIAL_LOSS_SCALE
    half.loss_scale = 2.0**40  # far too large: the scaled gradient overflows fp16
    grad = _gradient(half, image)
    assert torch.isfinite(grad).all()
    assert half.loss_scale < 2.0**40  # it backed off
    cosine = float(torch.nn.functional.cosine_similarity(grad.flatten(), fp32.flatten(), dim=0))
    assert cosine > 0.99
    assert float(grad.norm() / fp32.norm()) == pytest.approx(1.0, rel=0.05)  # unscaled
