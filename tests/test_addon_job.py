"""The add-on's plain-data side: job.json, argument parsing, reading the engine's output."""

from __future__ import annotations

import json
import pathlib
import sys
import time

import pytest

import addon_helpers  # noqa: F401  (hermetic Blender, repo on sys.path)
from addon import engine_client, job
from addon.engine_client import EngineProcess, Progress, parse_check_output


def test_style_argument_weights_and_windows_paths() -> None:
    assert job.parse_style_arg("a.jpg") == job.StyleRef("a.jpg", 1.0)
    assert job.parse_style_arg("a.jpg:0.25") == job.StyleRef("a.jpg", 0.25)
    assert job.parse_style_arg("C:\\art\\a.jpg") == job.StyleRef("C:\\art\\a.jpg", 1.0)
    assert job.parse_style_arg("C:\\art\\a.jpg:2") == job.StyleRef("C:\\art\\a.jpg", 2.0)


def test_frames_argument() -> None:
    assert job.parse_frames("3:7") == (3, 7)
    assert job.parse_frames("5") == (5, 5)
    with pytest.raises(job.JobError, match="START:END"):
        job.parse_frames("1-5")


def test_job_json_follows_the_engine_contract(tmp_path: pathlib.Path) -> None:
    spec = job.JobSpec(styles=[job.StyleRef("/s.jpg", 0.5)], out_dir=str(tmp_path),
                       frame_start=2, frame_end=4, python="python3", iterations=7)
    data = json.loads(pathlib.Path(job.write_job(spec)).read_text())
    assert data == {
        "input": str(tmp_path / "render"), "out": str(tmp_path),
        "styles": [{"path": "/s.jpg", "weight": 0.5}], "preset": "preview",
        "style_strength": 1.0, "temporal_strength": 1.0, "flow": "auto", "use_depth": True,
        "frames": [2, 4], "device": "auto", "weights": "caffe", "iterations": 7,
        "first_iterations": None, "height": None, "allow_download": False,
        "working_space": "Linear Rec.709", "display": "sRGB", "view": "Standard",
        "look": "None", "exposure": 0.0, "gamma": 1.0, "ocio_config": "",
        "preserve_colour": False}
    assert spec.render_path(3).endswith("render/render_0003.exr")
    assert spec.output_path(12345).endswith("flowstyle_12345.exr")


def test_check_output_garbage_and_missing_torch() -> None:
    bad = parse_check_output(1, "", "ModuleNotFoundError: No module named 'engine'\n")
    assert not bad.ok and "No module named 'engine'" in bad.problems[0]
    no_torch = parse_check_output(0, json.dumps({"ok": True, "torch": None}), "")
    assert not no_torch.ok and "torch" in no_torch.problems[0]


def test_progress_from_events() -> None:
    progress = Progress()
    for event in ({"event": "start", "total": 4, "todo": 3, "out": "/o"},
                  {"event": "frame_skipped", "frame": 1, "reason": "resumed"},
                  {"event": "frame_done", "frame": 2, "done": 2, "total": 4, "eta": 125.0}):
        progress.apply(event)
    assert progress.skipped == [1] and progress.fraction == 0.5
    assert progress.text() == "Stylizing 2/4, ETA 2m05s"
    assert engine_client.describe_event({"event": "frame_done", "frame": 2, "done": 2,
                                         "total": 4, "seconds": 1.5, "eta": 3}) == \
        "frame 2 done (2/4) in 1.5s, ETA 3s"


def test_engine_process_reads_lines_and_non_json_output(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "root"
    (root / "engine").mkdir(parents=True)
    (root / "engine" / "__init__.py").write_text("")
    (root / "engine" / "__main__.py").write_text(
        "import json, sys\n"
        "print(json.dumps({'event': 'start', 'total': 1, 'todo': 1, 'out': 'x'}))\n"
        "print('not json')\n"
        "print('to the log', file=sys.stderr)\n"
        "sys.exit(3)\n")
    proc = EngineProcess(sys.executable, str(root), ["stylize"], str(tmp_path / "log.txt"))
    events: list[dict[str, object]] = []
    while proc.exit_code is None:
        events += proc.poll()
        time.sleep(0.01)
    events += proc.poll()
    assert [e["event"] for e in events] == ["start", "output"]
    assert proc.exit_code == 3
    assert proc.log_tail() == "to the log"


def test_network_job_names_the_model_beside_the_output(tmp_path: pathlib.Path) -> None:
    spec = job.JobSpec(styles=[job.StyleRef("/s.jpg", 1.0)], out_dir=str(tmp_path),
                       frame_start=1, frame_end=3, python="python3", method="network")
    data = json.loads(pathlib.Path(job.write_job(spec)).read_text())
    assert data["method"] == "network" and data["model"] == str(tmp_path / "model.pt")
    progress = Progress()
    for event in ({"event": "train_start", "total": 800, "todo": 800, "out": data["model"]},
                  {"event": "step_done", "step": 200, "total": 800, "eta": 60.0, "loss": 1.0}):
        progress.apply(event)
    assert progress.fraction == 0.25 and progress.text() == "Training step 200/800, ETA 1m00s"
