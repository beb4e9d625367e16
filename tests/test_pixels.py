"""Pixels a compositor accepts: no ghost trails behind moving objects, clean frame edges.

The two measures (engine/evaluate.py) are checked on images whose answer is known, then
used on real renders: a cube and a ball crossing a textured wall (tests/render_shot.py
--scene crossing), stylized by the engine as a user runs it.
"""

from __future__ import annotations

import json

import pytest
import torch

from conftest import FAST, render_shot, run_engine
from engine import flow
from engine.evaluate import edge_band, edge_score, ghost_ratio, ghost_ratio_matched


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


def test_edge_matched_ghost_ratio_sees_through_an_outline_but_not_a_trail():
    # Uncovered pixels lie along a moving object's outline. A stylization that departs
    # from the colour map more on edges than on flat areas (here: sharpened edges), with
    # no trail at all, lifts the plain ratio well above 1; the edge-matched one stays ~1.
    source = 0.3 * _texture(96, 128)
    source[..., 30:70, 40:80] += 0.6  # an object's outline: sharp edges
    reliable = torch.ones_like(source[:, :1])
    reliable[..., 26:74, 76:84] = 0  # uncovered along its right edge
    valid = torch.ones_like(reliable)
    blurred = torch.nn.functional.avg_pool2d(source, 5, 1, 2, count_include_pad=False)
    sharpened = (1 - 0.8 * source) + 0.8 * (source - blurred)
    noisy = sharpened + 0.01 * torch.randn(source.shape, generator=torch.Generator().manual_seed(3))
    assert ghost_ratio(source, noisy, reliable, valid) > 1.3
    assert ghost_ratio_matched(source, noisy, reliable, valid) == pytest.approx(1.0, abs=0.15)
    trail = noisy.clone()
    trail[..., 26:74, 76:84] = 0.1  # the occluder's colour left behind
    assert ghost_ratio_matched(source, trail, reliable, valid) > 3


def test_edge_score_flags_a_bright_rim_and_passes_a_clean_frame():
    image = _texture(seed=2)
    assert edge_score(image) < 1.2
    rim = image.clone()
    rim[..., 0, :] = rim[..., -1, :] = 1.0
    rim[..., :, 0] = rim[..., :, -1] = 1.0  # a 1-px bright rim on all four sides
    assert edge_score(rim) > 1.5


def test_edge_band_flags_a_dark_band_the_edge_score_misses():
    image = _texture(seed=2)
    assert edge_band(image) < 1.0
    band = image.clone()
    band[..., -7:-1, :] *= 0.6  # darker 6 px above the bottom row, as the bare network paints
    assert edge_band(band) > 1.8 * edge_band(image)  # one side of four: 0.71 -> 1.44
    assert edge_score(band) < 1.2  # the outer 3 px alone do not show it


# -- on real renders -------------------------------------------------------------------

@pytest.fixture(scope="module")
def crossing(tmp_path_factory):
    """5 frames, 96x72: a cube and a ball cross a textured wall in opposite directions,
    ~20 px per frame, so each frame uncovers a band of background behind each."""
    shot = render_shot(tmp_path_factory.mktemp("crossing"), "--scene", "crossing", "--frames", "5",
                       "--samples", "8")
    out = tmp_path_factory.mktemp("crossing_out")
    run_engine("stylize", str(shot), "--out", str(out), *FAST)
    report = json.loads(run_engine("evaluate", str(shot), str(out), "--json").stdout)
    return shot, out, report


@pytest.mark.slow
def test_no_ghost_trails_behind_objects_crossing_a_textured_wall(crossing):
    # Uncovered background must look like the rest of the painted background: its colour
    # residual after the frame's global colour map no larger than the reliable pixels'.
    # The old start (the warped previous result, filled from neighbours) scored 1.31 here;
    # the new one 0.85 (at style weight 50; 1.10 at the old weight 5).
    _, _, report = crossing
    ghost = report["ghost_ratio"]
    print("ghost ratio", ghost, "warping error", report["warping_error"])
    assert ghost["pairs"] >= 3, "the objects should uncover background in most pairs"
    assert ghost["output"] <= 1.1
    # ...and without giving up stability: within 1.5x the render's own noise floor.
    assert report["warping_error"]["output"] <= 1.5 * report["warping_error"]["input"]


@pytest.mark.slow
def test_stylized_frames_have_clean_edges(crossing):
    # Zero padding in VGG painted a bright rainbow rim 1-3 px wide (edge score 1.75 here).
    # Now the border is like the interior: 1.00-1.01 measured, and a single frame's score
    # moves by about 0.1 (docs/tuning.md), so "like the interior" is 1.0 within that noise.
    _, _, report = crossing
    assert report["edge_score"]["output"] <= 1.1, report["edge_score"]


@pytest.mark.slow
def test_edge_matched_ghost_ratio_sees_a_trail_pasted_into_real_frames(crossing):
    # The engine's own output scores about 1 or below; the same output with a trail (the
    # previous output warped into the uncovered pixels, what the old start left there)
    # scores clearly higher on the same real frames.
    from engine import exr
    from engine.evaluate import _display
    from engine.frames import open_sequence
    from engine.run import output_path
    shot, out, report = crossing
    assert report["ghost_ratio"]["edge_matched"] <= 1.1, report["ghost_ratio"]
    sequence = open_sequence(str(shot))
    clean, trailed = [], []
    for n in sequence.numbers[1:]:
        frame, previous = sequence.read(n), sequence.read(n - 1)
        source, valid = _display(frame.rgba)
        output = _display(exr.read_rgba(output_path(str(out), n)))[0]
        previous_output = _display(exr.read_rgba(output_path(str(out), n - 1)))[0]
        backward = flow.flows_from_vector_pass(frame.vectors)[0]
        reliable = flow.reliability_mask(backward, flow.flows_from_vector_pass(previous.vectors)[1]) * valid
        trail = reliable * output + (1 - reliable) * flow.warp(previous_output, backward)
        ratio = ghost_ratio_matched(source, output, reliable, valid)
        if ratio is not None:
            clean.append(ratio)
            trailed.append(ghost_ratio_matched(source, trail, reliable, valid))
    assert len(clean) >= 3
    print("edge-matched ghost ratio, as is / with a trail:", clean, trailed)
    assert sum(trailed) / len(trailed) > 1.25 * sum(clean) / len(clean)
