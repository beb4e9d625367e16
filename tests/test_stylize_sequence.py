"""The engine on real renders: what a compositor gets back, stability, resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import pytest

from conftest import FAST, ROOT, _env, jsonl_events, read_frame, run_engine
from engine import exr

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stylized(shot, tmp_path_factory):
    """The 6-frame shot stylized once with default settings at test size."""
    out = tmp_path_factory.mktemp("stylized")
    result = run_engine("stylize", str(shot), "--out", str(out), *FAST, "--progress", "jsonl")
    return out, jsonl_events(result.stdout)


def test_output_is_linear_rgba_exr_with_the_input_alpha_and_size(transparent_shot, tmp_path):
    out = tmp_path / "out"
    run_engine("stylize", str(transparent_shot), "--out", str(out), "--height", "72",
               "--first-iterations", "10", "--iterations", "5")
    for n in range(1, 4):
        source = read_frame(transparent_shot / f"render_{n:04d}.exr")["Combined"]
        result = exr.read_rgba(str(out / f"flowstyle_{n:04d}.exr"))
        assert result.shape == source.shape == (72, 96, 4)
        assert np.array_equal(result[..., 3], source[..., 3]), "alpha must pass through untouched"
        assert (source[..., 3] == 0).mean() > 0.2, "the sky should be transparent"
        # Premultiplied like the input: no colour where there is no alpha, and colour never
        # exceeds alpha where the input had no highlights above 1.
        empty = source[..., 3] == 0
        assert np.all(result[empty][:, :3] == 0)
        highlights = np.maximum(source[..., :3] - source[..., 3:4], 0)
        assert np.all(result[..., :3] <= result[..., 3:4] * 1.0001 + highlights)
        # Stylized, not copied (measured where there is something to stylize).
        assert np.abs(result[~empty][:, :3] - source[~empty][:, :3]).mean() > 0.02
        # Linear, not display-encoded: mean brightness stays in the input's range.
        assert abs(result[~empty][:, :3].mean() - source[~empty][:, :3].mean()) < 0.15


def test_settings_are_recorded_and_progress_reports_every_frame(stylized, shot):
    out, events = stylized
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "finished"
    done = [e for e in events if e["event"] == "frame_done"]
    assert [e["frame"] for e in done] == [1, 2, 3, 4, 5, 6]
    assert done[-1]["done"] == 6 and done[-1]["total"] == 6 and done[-1]["eta"] == 0
    attributes = exr.read_attributes(str(out / "flowstyle_0003.exr"))
    settings = json.loads(attributes["flowstyle.settings"])
    assert settings["temporal_strength"] == 1.0 and settings["height"] == 72
    assert settings["styles"][0]["path"].endswith("starry_night.jpg")
    assert settings["input"].endswith("render_0003.exr")


def test_rerun_skips_finished_frames_and_redoes_them_when_settings_change(shot, tmp_path):
    out = tmp_path / "out"
    args = ["stylize", str(shot), "--out", str(out), "--frames", "1:3", "--height", "48",
            "--first-iterations", "4", "--iterations", "2", "--progress", "jsonl"]
    run_engine(*args)
    again = jsonl_events(run_engine(*args).stdout)
    assert [e["frame"] for e in again if e["event"] == "frame_skipped"] == [1, 2, 3]
    assert not [e for e in again if e["event"] == "frame_done"]
    changed = jsonl_events(run_engine(*args, "--style-strength", "2").stdout)
    assert [e["frame"] for e in changed if e["event"] == "frame_done"] == [1, 2, 3]


def test_temporal_terms_halve_the_warping_error_at_no_cost_in_style(stylized, shot, tmp_path):
    out, _ = stylized
    per_frame = tmp_path / "per_frame"
    run_engine("stylize", str(shot), "--out", str(per_frame), *FAST, "--temporal-strength", "0")
    stable = json.loads(run_engine("evaluate", str(shot), str(out), "--json").stdout)
    flicker = json.loads(run_engine("evaluate", str(shot), str(per_frame), "--json").stdout)
    print("temporal:", stable["warping_error"], stable["style_loss"])
    print("per-frame:", flicker["warping_error"], flicker["style_loss"])
    assert stable["warping_error"]["output"] <= 0.5 * flicker["warping_error"]["output"]
    assert stable["style_loss"] <= 1.25 * flicker["style_loss"]
    # Stylization itself is not a no-op: per-frame results flicker far above the render's
    # own noise floor, which is what the temporal terms are there to fix.
    assert flicker["warping_error"]["output"] > 2 * flicker["warping_error"]["input"]


def test_a_run_killed_mid_sequence_resumes_to_the_same_frames(stylized, shot, tmp_path):
    reference, _ = stylized
    out = tmp_path / "resumed"
    cmd = [sys.executable, "-m", "engine", "stylize", str(shot), "--out", str(out), *FAST,
           "--progress", "jsonl"]
    process = subprocess.Popen(cmd, env=_env(), cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    finished = 0
    for line in process.stdout:
        if json.loads(line)["event"] == "frame_done":
            finished += 1
            if finished == 3:
                process.send_signal(signal.SIGKILL)  # no chance to clean up: like a crash
                break
    process.wait()
    assert process.returncode == -signal.SIGKILL
    resumed = jsonl_events(run_engine(*cmd[3:]).stdout)
    skipped = [e["frame"] for e in resumed if e["event"] == "frame_skipped"]
    assert skipped[:3] == [1, 2, 3] and len(skipped) <= 4
    for n in range(1, 7):
        a = exr.read_rgba(str(reference / f"flowstyle_{n:04d}.exr"))
        b = exr.read_rgba(str(out / f"flowstyle_{n:04d}.exr"))
        assert np.abs(a - b).max() < 1e-6, f"frame {n} differs after resume"
