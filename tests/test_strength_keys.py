"""Keyframed style strength: the job's per-frame strengths drive each frame, and enter each
frame's fingerprint (a changed key redoes that frame, not the frames before it)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import STYLE, jsonl_events, read_frame, run_engine
from engine import exr
from engine.run import ATTR_FINGERPRINT

pytestmark = pytest.mark.slow
QUICK = ["--height", "72", "--first-iterations", "12"]  # two independent frames, cold starts


def _job(tmp_path, shot, strengths):
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"input": str(shot), "out": str(tmp_path / "out"),
                                "styles": [{"path": str(STYLE)}], "frames": [1, 2],
                                "temporal_strength": 0, "style_strengths": strengths}))
    return str(path)


def test_strength_follows_the_keys_and_a_changed_key_redoes_only_its_frame(shot, tmp_path):
    run_engine("stylize", "--job", _job(tmp_path, shot, {"1": 0.0, "2": 1.0}), *QUICK,
               "--progress", "none")
    out = tmp_path / "out"
    change = []
    for n in (1, 2):
        source = read_frame(shot / f"render_{n:04d}.exr")["Combined"][..., :3]
        result = read_frame(out / f"flowstyle_{n:04d}.exr")["Combined"][..., :3]
        change.append(float(np.abs(np.clip(result, 0, 1) - np.clip(source, 0, 1)).mean()))
    # Strength 0: content only, the render comes back almost untouched; strength 1 paints.
    assert change[0] < 0.25 * change[1], change
    prints = [exr.read_attributes(str(out / f"flowstyle_{n:04d}.exr"))[ATTR_FINGERPRINT]
              for n in (1, 2)]
    assert prints[0] != prints[1]

    result = run_engine("stylize", "--job", _job(tmp_path, shot, {"1": 0.0, "2": 0.5}), *QUICK,
                        "--progress", "jsonl")
    events = jsonl_events(result.stdout)
    assert [e["frame"] for e in events if e["event"] == "frame_skipped"] == [1]
    assert [e["frame"] for e in events if e["event"] == "frame_done"] == [2]
