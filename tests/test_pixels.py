"""Pixels a compositor accepts: no ghost trails behind moving objects or moved shadows,
clean frame edges.

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
from engine.evaluate import edge_band, edge_score, ghost_ratio, ghost_ratio_matched, shading_follow


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


def test_the_appearance_test_releases_a_moved_shadow_but_not_render_noise():
    g = torch.Generator().manual_seed(4)
    previous = 0.4 + 0.5 * _texture(seed=5)  # a lit surface (a shadow on black changes nothing)
    noisy = (previous + 0.04 * torch.randn(previous.shape, generator=g)).clamp(0, 1)  # ~8 spp
    assert flow.appearance_mask(noisy, previous, 0.08).mean() > 0.99
    shadowed = noisy.clone()
    shadowed[..., 12:30, 16:40] *= 0.55  # a shadow slid over a still surface
    mask = flow.appearance_mask(shadowed, previous, 0.08)
    assert mask[..., 14:28, 18:38].max() == 0  # released inside
    assert mask[..., :, 44:].mean() > 0.99  # kept away from it


def test_shading_follow_is_zero_when_the_old_look_is_held_and_one_when_it_follows():
    previous = _texture(seed=6)
    current = previous.clone()
    current[..., 12:30, 16:40] *= 0.5  # the render: a shadow moved in
    reliable = valid = torch.ones_like(previous[:, :1])
    previous_output = 1 - 0.8 * previous
    follows = 1 - 0.8 * current  # the stylization changed with the render
    held, _ = shading_follow(current, previous_output, previous, previous_output, reliable, valid)
    followed, share = shading_follow(current, follows, previous, previous_output, reliable, valid)
    assert held == pytest.approx(0.0, abs=1e-6)
    assert followed == pytest.approx(0.8, abs=0.05)  # the output's contrast is 0.8x the input's
    assert share == pytest.approx(18 * 24 / (48 * 64), rel=0.3)


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
def test_no_ghost_trails_behind_objects_crossing_a_textured_wall(crossing, tmp_path):
    # Uncovered background must look like the rest of the painted background: its colour
    # residual after the frame's global colour map no larger than the reliable pixels'.
    # The old start (the warped previous result, filled from neighbours) scored 1.31 here;
    # the new one 0.85 (at style weight 50; 1.10 at the old weight 5).
    shot, _, report = crossing
    ghost = report["ghost_ratio"]
    print("ghost ratio", ghost, "warping error", report["warping_error"])
    assert ghost["pairs"] >= 3, "the objects should uncover background in most pairs"
    assert ghost["output"] <= 1.1
    # ...and without giving up stability: on surfaces whose look did not change (where a
    # shadow moved, the output must change), less than half the flicker of the same run
    # without the temporal term (measured 0.00055 against 0.0081).
    loose = tmp_path / "no_temporal"
    run_engine("stylize", str(shot), "--out", str(loose), "--temporal-strength", "0", *FAST)
    unstable = json.loads(run_engine("evaluate", str(shot), str(loose), "--json").stdout)
    print("steady warping error, temporal term on / off:", report["warping_error"]["output_steady"],
          unstable["warping_error"]["output_steady"])
    assert report["warping_error"]["output_steady"] < 0.5 * unstable["warping_error"]["output_steady"]


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


@pytest.mark.slow
def test_a_moved_shadow_leaves_no_trail(crossing, tmp_path):
    # The objects' shadows slide over the floor, which the Vector pass says is still: the
    # geometric masks trust those pixels, and the temporal term used to hold them to the
    # previous frame's painted shadow (a shadow trail; output change 0.13x the render's
    # there at 192x128). The appearance test carries the render's change of look into the
    # held result instead. The same run with the test off (tolerance 1) shows the trail.
    shot, _, report = crossing
    follow = report["shading_follow"]
    assert follow["pairs"] >= 3, "the shadows should move in most pairs"
    off = tmp_path / "off"
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"appearance_tolerance": 1.0}))
    run_engine("stylize", str(shot), "--out", str(off), "--job", str(job), *FAST)
    without = json.loads(run_engine("evaluate", str(shot), str(off), "--json").stdout)
    held = without["shading_follow"]
    print("shading follow, appearance test on / off:", follow, held)
    assert follow["output"] >= 2 * held["output"]
    # Carrying the change of look steadies nothing less elsewhere (0.00055 both ways).
    steady, steady_without = (r["warping_error"]["output_steady"] for r in (report, without))
    assert steady <= 1.2 * steady_without, (steady, steady_without)
