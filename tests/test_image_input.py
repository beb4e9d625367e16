"""PNG/TIFF frames are read at their full depth: 16 bits stay 16 bits."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from engine.frames import open_sequence


def _levels(frame) -> int:
    return len(np.unique(frame.rgba[..., 1]))


@pytest.mark.parametrize("extension", ["png", "tif"])
def test_a_16_bit_gradient_keeps_more_than_256_levels(tmp_path, extension):
    ramp = np.linspace(0, 65535, 2048).round().astype(np.uint16)
    bgr = np.stack([ramp // 2, ramp, ramp[::-1]], axis=1)[None].repeat(4, axis=0)  # 4x2048
    folder = tmp_path / "frames"
    folder.mkdir()
    for n in (1, 2):
        assert cv2.imwrite(str(folder / f"frame_{n:04d}.{extension}"), bgr)
    frame = open_sequence(str(folder)).read(1)
    assert frame.rgba.shape == (4, 2048, 4)
    assert _levels(frame) > 1500  # 8 bits would leave at most 256
    assert frame.rgba[0, 0, 1] == 0 and frame.rgba[0, -1, 1] == pytest.approx(1.0)
    # Channel order (OpenCV reads BGR): red falls where green rises.
    assert frame.rgba[0, 0, 0] == pytest.approx(1.0) and frame.rgba[0, -1, 0] == 0
    assert (frame.rgba[..., 3] == 1).all()


def test_8_bit_grey_and_rgba_frames_read_as_before(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    rgba = np.random.default_rng(0).integers(0, 256, (8, 10, 4), dtype=np.uint8)
    rgba[..., 3] = 255  # opaque: premultiplication leaves the colour alone
    Image.fromarray(rgba, "RGBA").save(folder / "a_0001.png")
    Image.fromarray(rgba[..., 0], "L").save(folder / "a_0002.png")
    sequence = open_sequence(str(folder))
    colour, grey = sequence.read(1).rgba, sequence.read(2).rgba
    srgb = rgba[..., :3] / 255.0
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    assert np.allclose(colour[..., :3], linear, atol=2e-3)
    assert np.allclose(grey[..., 0], grey[..., 2]) and np.allclose(grey[..., 0], linear[..., 0], atol=2e-3)
