"""Pixels a compositor accepts: no ghost trails behind moving objects, clean frame edges.

The two measures (engine/evaluate.py) are checked on images whose answer is known, then
used on real renders: a cube and a ball crossing a textured wall (tests/render_shot.py
--scene crossing), stylized by the engine as a user runs it.
"""

from __future__ import annotations

import json

import pytest
import torch

from conftest import STYLE, render_shot, run_engine
from engine import defaults, flow
from engine.defaults import Settings, StyleImage
from engine.evaluate import edge_score, ghost_ratio
from engine.run import load_style_images
from engine.stylize import Stylizer
from engine.vgg import VGGFeatures


def _texture(h: int = 48, w: int = 64, seed: int = 0) -> torch.Tensor:
    """1×3×H×W display image: smooth random texture in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, h // 4, w // 4, generator=g)
    return torch.nn.functional.interpolate(noise, size=(h, w), mode="bicubic").clamp(0, 1)


# -- the measures ----------------------------------------------------------------------

def test_colour_transfer_recovers_an_affine_colour_map():
    source = _texture()
    matrix = torch.tensor([[0.5, 0.2, 0.0], [0.1, 0.7, 0.1], [0.0, 0.3, 0.4]])
    target = torch.einsum("ij,njhw->nihw", matrix, source) + torch.tensor([0.1, 0.0, 0.2]).view(1, 3, 1, 1)
    mapped = flow.colour_transfer(source, target, torch.ones_like(source[:, :1]))
    assert (mapped - target).abs().max() < 1e-4


def test_ghost_ratio_is_one_for_a_recoloured_frame_and_high_with_a_dark_trail():
    source = _texture()
    target = 1 - 0.8 * source  # a global colour change: no ghost at all
    reliable = torch.ones_like(source[:, :1])
    reliable[..., 10:30, 20:34] = 0  # what a moving object uncovered
    valid = torch.ones_like(reliable)
    noisy = target + 0.03 * torch.randn(target.shape, generator=torch.Generator().manual_seed(1))
    assert ghost_ratio(source, noisy, reliable, valid) == pytest.approx(1.0, abs=0.15)
    ghost = noisy.clone()
    ghost[..., 10:30, 20:34] = 0.1  # the occluder's dark colour left behind
    assert ghost_ratio(source, ghost, reliable, valid) > 3
    # Too few uncovered pixels to tell: no number rather than a noisy one.
    assert ghost_ratio(source, noisy, torch.ones_like(reliable), valid) is None


def test_edge_score_flags_a_bright_rim_and_passes_a_clean_frame():
    image = _texture(seed=2)
    assert edge_score(image) < 1.2
    rim = image.clone()
    rim[..., 0, :] = rim[..., -1, :] = 1.0
    rim[..., :, 0] = rim[..., :, -1] = 1.0  # a 1-px bright rim on all four sides
    assert edge_score(rim) > 1.5
