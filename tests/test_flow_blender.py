"""The Vector pass convention, pinned against real Blender renders.

If the sign or axis convention in engine/flow.py were wrong, warping frame t-1 would not
reproduce frame t, and the mask would not find the background a moving cube uncovers.
"""

from __future__ import annotations

import numpy as np
import OpenEXR
import torch

from engine import exr, flow


def _load(shot, n):
    path = str(shot / f"render_{n:04d}.exr")
    passes = exr.read_passes(path, exr.read_layout(path))
    f = OpenEXR.File(path, separate_channels=True)
    index = next(c.pixels for p in f.parts for name, c in p.channels.items()
                 if name.endswith(".Object Index.X"))
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None]  # noqa: E731
    return {"rgb": t(passes["Combined"][..., :3]), "vectors": passes["Vector"],
            "depth": t(passes["Depth"]), "index": torch.from_numpy(index.copy())[None, None]}


def test_warping_previous_frame_reproduces_the_next_render(shot):
    # Summed over every frame pair: a single pair can hold a real lighting change (the
    # ball's shadow crosses the cube) that no flow can explain.
    errors = {"none": 0.0, "warp": 0.0, "y_not_flipped": 0.0, "negated": 0.0}
    moving_pixels = 0
    for n in range(2, 7):
        prev, cur = _load(shot, n - 1), _load(shot, n)
        backward, _ = flow.flows_from_vector_pass(cur["vectors"])
        _, forward_prev = flow.flows_from_vector_pass(prev["vectors"])
        mask = flow.reliability_mask(backward, forward_prev, cur["depth"], prev["depth"])
        moving = (backward.abs().sum(1, keepdim=True) > 1.0) & (mask > 0)
        moving_pixels += int(moving.sum())
        flipped = backward.clone()
        flipped[:, 1] *= -1  # Blender's +Y is up: forgetting the flip must be visibly worse
        for key, image in (("none", prev["rgb"]), ("warp", flow.warp(prev["rgb"], backward)),
                           ("y_not_flipped", flow.warp(prev["rgb"], flipped)),
                           ("negated", flow.warp(prev["rgb"], -backward))):
            errors[key] += float((image - cur["rgb"]).abs().mean(1, keepdim=True)[moving].sum())
    assert moving_pixels > 500, "the cube and ball should cover many moving pixels"
    assert errors["warp"] < 0.35 * errors["none"], errors
    assert errors["warp"] < 0.5 * errors["y_not_flipped"], errors
    assert errors["warp"] < 0.5 * errors["negated"], errors


def test_mask_is_zero_where_the_cube_uncovers_background(shot):
    prev, cur = _load(shot, 3), _load(shot, 4)
    backward, _ = flow.flows_from_vector_pass(cur["vectors"])
    _, forward_prev = flow.flows_from_vector_pass(prev["vectors"])
    # Background pixels of frame t that the cube (index 1) covered at frame t-1. The
    # floor and wall are static, so the same pixel position is where they were.
    uncovered = (cur["index"] == 0) & (prev["index"] == 1)
    assert uncovered.sum() >= 20
    without_depth = flow.reliability_mask(backward, forward_prev)
    with_depth = flow.reliability_mask(backward, forward_prev, cur["depth"], prev["depth"])
    # Forward-backward consistency alone already catches disocclusions...
    assert without_depth[uncovered].mean() < 0.1
    # ...and the depth test only removes more.
    assert with_depth[uncovered].mean() <= without_depth[uncovered].mean()
    # Yet most of the frame stays usable: the mask is not simply all zeros.
    assert with_depth.mean() > 0.7


def test_the_start_replaces_the_ghost_the_warp_drags_into_uncovered_background(shot):
    # The raw warp puts the cube's colours where the cube just left (the "ghost"); the
    # start of a frame (a few px of same-surface growth, then the current frame in the
    # previous result's colours) must be much closer to the background the next render shows.
    raw = filled = 0.0
    for n in range(2, 7):
        prev, cur = _load(shot, n - 1), _load(shot, n)
        backward, _ = flow.flows_from_vector_pass(cur["vectors"])
        _, forward_prev = flow.flows_from_vector_pass(prev["vectors"])
        mask = flow.reliability_mask(backward, forward_prev, cur["depth"], prev["depth"])
        uncovered = (cur["index"] == 0) & (prev["index"] == 1)
        warped = flow.warp(prev["rgb"], backward)
        raw += float((warped - cur["rgb"]).abs().mean(1, keepdim=True)[uncovered].sum())
        grown, known = flow.fill_same_surface(warped, mask, backward)
        image = flow.fill_from_content(grown, known, cur["rgb"])
        filled += float((image - cur["rgb"]).abs().mean(1, keepdim=True)[uncovered].sum())
    assert filled < 0.5 * raw, (filled, raw)
