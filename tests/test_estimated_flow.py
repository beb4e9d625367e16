"""Footage without motion vectors: EXRs rendered without the Vector pass, PNG sequences,
video files. The same command works and says it fell back to estimated flow."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import ROOT, jsonl_events, read_frame, render_shot, run_engine
from engine import colour, exr, flow
from engine.estimated_flow import estimate_flow

pytestmark = pytest.mark.slow
TINY = ["--height", "48", "--first-iterations", "4", "--iterations", "2", "--progress", "jsonl"]
VTEST = ROOT.parent / "shared" / "footage" / "vtest.avi"


def _display_u8(path: Path) -> np.ndarray:
    display, _, _ = colour.to_display(read_frame(path)["Combined"])
    return np.clip(display * 255 + 0.5, 0, 255).astype(np.uint8)


def _fell_back(events: list[dict]) -> bool:
    return any(e["event"] == "warning" and "estimating optical flow" in e["message"] for e in events)


def test_estimated_flow_follows_the_true_motion(shot):
    error = still = 0.0
    for n in range(2, 7):
        prev, cur = read_frame(shot / f"render_{n - 1:04d}.exr"), read_frame(shot / f"render_{n:04d}.exr")
        true_backward, _ = flow.flows_from_vector_pass(cur["Vector"])
        estimated = estimate_flow(colour.to_display(cur["Combined"])[0],
                                  colour.to_display(prev["Combined"])[0])
        moving = true_backward.abs().sum(1) > 2
        error += float((estimated - true_backward).pow(2).sum(1).sqrt()[moving].sum())
        still += float(true_backward.pow(2).sum(1).sqrt()[moving].sum())
    # Far from exact on 96x72 frames with noise and occlusions (that is why renders use
    # the Vector pass), but it must follow the motion.
    assert error < 0.6 * still, (error, still)


def test_exrs_without_vectors_fall_back_with_a_warning(tmp_path):
    frames = render_shot(tmp_path / "novec", "--frames", "3", "--samples", "4", "--no-vectors")
    assert "Vector" not in exr.read_layout(str(frames / "render_0001.exr")).passes
    out = tmp_path / "out"
    events = jsonl_events(run_engine("stylize", str(frames), "--out", str(out), *TINY).stdout)
    assert _fell_back(events)
    assert len(list(out.glob("flowstyle_*.exr"))) == 3
    # Asking for vectors explicitly on such frames is an error that says what to do.
    result = run_engine("stylize", str(frames), "--out", str(out), "--flow", "vectors", *TINY,
                        check=False)
    assert result.returncode == 2 and "no Vector pass" in result.stderr
    assert "Enable the Vector pass" in result.stderr


def test_png_sequence_and_video_file(shot, tmp_path):
    pngs = tmp_path / "pngs"
    pngs.mkdir()
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 72))
    for n in range(1, 4):
        rgb = _display_u8(shot / f"render_{n:04d}.exr")
        cv2.imwrite(str(pngs / f"frame_{n:03d}.png"), rgb[..., ::-1])
        writer.write(np.ascontiguousarray(rgb[..., ::-1]))
    writer.release()
    for source, out in ((pngs, tmp_path / "png_out"), (video, tmp_path / "video_out")):
        events = jsonl_events(run_engine("stylize", str(source), "--out", str(out), *TINY).stdout)
        assert _fell_back(events), source
        outputs = sorted(out.glob("flowstyle_*.exr"))
        assert [p.name for p in outputs] == [f"flowstyle_{n:04d}.exr" for n in (1, 2, 3)]
        rgba = exr.read_rgba(str(outputs[0]))
        assert rgba.shape == (72, 96, 4) and np.all(rgba[..., 3] == 1)


@pytest.mark.skipif(not VTEST.is_file(), reason="../shared/footage/vtest.avi not present")
def test_real_camera_footage(tmp_path):
    out = tmp_path / "vtest"
    events = jsonl_events(run_engine("stylize", str(VTEST), "--out", str(out), "--frames", "1:2",
                                     *TINY).stdout)
    assert _fell_back(events)
    rgba = exr.read_rgba(str(out / "flowstyle_0002.exr"))
    assert rgba.shape == (576, 768, 4)
    assert torch.isfinite(torch.from_numpy(rgba)).all()
