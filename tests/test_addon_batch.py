"""The batch entry point (`blender -b f.blend --command flowstyle ...`), called directly with
argument lists, against a fake engine that follows the engine's command-line contract.

Every failure must give a non-zero code and a reason, and leave the scene's render settings
exactly as they were."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time

import pytest

from addon_helpers import (batch_args, fake_calls, fake_engine, new_scene,
                           render_settings_snapshot, set_fake_config, style_image)

import bpy
from addon import batch, compositor, pipeline


@pytest.fixture
def engine_root(tmp_path: pathlib.Path) -> str:
    return fake_engine(str(tmp_path / "fake"))


def _args(tmp_path: pathlib.Path, engine_root: str, *extra: str) -> list[str]:
    return batch_args(str(tmp_path), engine_root, *extra)


def test_good_run_renders_stylizes_wires_and_restores(
        tmp_path: pathlib.Path, engine_root: str, capsys: pytest.CaptureFixture[str]) -> None:
    scene = new_scene()
    before = render_settings_snapshot(scene)

    assert batch.main(_args(tmp_path, engine_root, "--preset", "final", "--mix", "0.6")) == 0

    out = tmp_path / "out"
    for frame in (1, 2, 3):
        assert (out / "render" / f"render_{frame:04d}.exr").is_file()
        assert (out / f"flowstyle_{frame:04d}.exr").is_file()
    assert render_settings_snapshot(scene) == before
    tree = scene.compositing_node_group
    assert tree is not None and "Flowstyle Mix" in tree.nodes
    printed = capsys.readouterr().out
    assert "frame 3 done (3/3)" in printed and "finished 3 frames" in printed

    (call,) = fake_calls(engine_root)
    assert call["argv"][-3:] == ["--progress", "jsonl", "--watch-parent"]
    job = call["job"]
    assert job["frames"] == [1, 3] and job["preset"] == "final"
    assert job["input"] == str(out / "render") and job["out"] == str(out)
    assert job["styles"] == [{"path": style_image(str(tmp_path)), "weight": 1.0}]
    assert job["allow_download"] is False  # bpy's online access is off here
    assert "fake engine log line" in (out / "flowstyle.log").read_text()


def test_rerun_reuses_the_render_and_resumes(
        tmp_path: pathlib.Path, engine_root: str, capsys: pytest.CaptureFixture[str]) -> None:
    scene = new_scene()
    assert batch.main(_args(tmp_path, engine_root)) == 0
    tree = scene.compositing_node_group
    assert tree is not None
    nodes = sorted(n.name for n in tree.nodes)
    render = tmp_path / "out" / "render" / "render_0002.exr"
    mtime = render.stat().st_mtime_ns
    capsys.readouterr()

    assert batch.main(_args(tmp_path, engine_root)) == 0
    printed = capsys.readouterr().out
    assert "reusing 3 rendered frame(s)" in printed
    assert printed.count("skipped (resumed)") == 3
    assert render.stat().st_mtime_ns == mtime  # not rendered again
    assert sorted(n.name for n in tree.nodes) == nodes

    # A different resolution is a different render: nothing is deleted unless asked...
    scene.render.resolution_percentage = 50
    capsys.readouterr()
    assert batch.main(_args(tmp_path, engine_root)) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "out" / "render") in err and "differs from this run in: resolution" in err
    assert "--rerender" in err and "Replace Renders" in err and "another output folder" in err
    assert render.stat().st_mtime_ns == mtime
    # ...and with --rerender everything is rendered again.
    assert batch.main(_args(tmp_path, engine_root, "--rerender")) == 0
    assert render.stat().st_mtime_ns != mtime


def test_renders_of_another_shot_are_never_deleted_without_asking(
        tmp_path: pathlib.Path, engine_root: str, capsys: pytest.CaptureFixture[str]) -> None:
    first = new_scene()
    assert batch.main(_args(tmp_path, engine_root)) == 0
    out = tmp_path / "out"
    kept = {p.name: p.stat().st_mtime_ns for p in [*(out / "render").glob("render_*.exr"),
                                                  *out.glob("flowstyle_*.exr")]}
    assert len(kept) == 6
    second = new_scene()  # another shot, same output folder
    before = render_settings_snapshot(second)
    calls = len(fake_calls(engine_root))
    capsys.readouterr()

    assert batch.main(_args(tmp_path, engine_root)) == 1
    err = capsys.readouterr().err
    assert f"scene {first.name!r}" in err and "3 rendered frame(s)" in err
    assert "--rerender" in err and str(out / "render") in err
    assert {p: (out / "render" / p if p.startswith("render") else out / p).stat().st_mtime_ns
            for p in kept} == kept  # nothing touched
    assert len(fake_calls(engine_root)) == calls  # the engine never started
    assert render_settings_snapshot(second) == before
    assert pipeline.OFFER_RERENDER == {second.name}  # the panel offers "Replace Renders"

    assert batch.main(_args(tmp_path, engine_root, "--rerender")) == 0  # asked: replaced
    assert (out / "render" / "render_0001.exr").stat().st_mtime_ns != kept["render_0001.exr"]
    assert second.name not in pipeline.OFFER_RERENDER


def test_scene_settings_are_used_when_options_are_left_out(
        tmp_path: pathlib.Path, engine_root: str) -> None:
    scene = new_scene(frames=(2, 4))
    props = scene.flowstyle  # type: ignore[attr-defined]
    item = props.styles.add()
    item.path = style_image(str(tmp_path))
    item.weight = 0.5
    props.output_dir = str(tmp_path / "from_scene")
    props.temporal_strength = 0.0
    assert batch.main(["stylize", "--python", sys.executable, "--engine-root", engine_root]) == 0
    job = fake_calls(engine_root)[-1]["job"]
    assert job["frames"] == [2, 4]
    assert job["styles"][0]["weight"] == 0.5 and job["temporal_strength"] == 0.0
    assert (tmp_path / "from_scene" / "flowstyle_0004.exr").is_file()


def test_the_scenes_colour_management_and_preserve_colour_reach_the_engine(
        tmp_path: pathlib.Path, engine_root: str) -> None:
    scene = new_scene(frames=(1, 2))
    scene.view_settings.view_transform = "Filmic"
    scene.view_settings.exposure = -0.5
    assert batch.main(_args(tmp_path, engine_root, "--preserve-colour")) == 0
    job = fake_calls(engine_root)[-1]["job"]
    assert (job["view"], job["exposure"], job["preserve_colour"]) == ("Filmic", -0.5, True)
    assert job["working_space"] == "Linear Rec.709" and job["ocio_config"].endswith("config.ocio")


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str], *needles: str,
           code: int = 1) -> str:
    scene = bpy.context.scene
    assert scene is not None
    before = render_settings_snapshot(scene)
    assert batch.main(argv) == code
    err = capsys.readouterr().err
    for needle in needles:
        assert needle in err, err
    assert render_settings_snapshot(scene) == before
    return err


def test_missing_style_image(tmp_path: pathlib.Path, engine_root: str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    new_scene()
    argv = _args(tmp_path, engine_root)
    argv[argv.index("--style") + 1] = str(tmp_path / "nope.jpg")
    _fails(argv, capsys, "nope.jpg", "does not exist")


def test_no_style_at_all(tmp_path: pathlib.Path, engine_root: str,
                         capsys: pytest.CaptureFixture[str]) -> None:
    new_scene()
    _fails(["stylize", "--out", str(tmp_path), "--python", sys.executable,
            "--engine-root", engine_root], capsys, "No style image")


def test_no_camera(tmp_path: pathlib.Path, engine_root: str,
                   capsys: pytest.CaptureFixture[str]) -> None:
    new_scene(camera=False)
    _fails(_args(tmp_path, engine_root), capsys, "has no camera")
    assert not (tmp_path / "out" / "render").exists()  # nothing started


def test_bad_frame_ranges(tmp_path: pathlib.Path, engine_root: str,
                          capsys: pytest.CaptureFixture[str]) -> None:
    new_scene()
    _fails(_args(tmp_path, engine_root, "--frames", "5:2"), capsys, "has no frames")
    _fails(_args(tmp_path, engine_root, "--frames", "a:b"), capsys, "START:END")
    # Blender keeps a scene's own range non-empty; the panel's custom range is not clamped.
    props = new_scene().flowstyle  # type: ignore[attr-defined]
    props.use_scene_range = False
    props.frame_start, props.frame_end = 10, 3
    _fails(_args(tmp_path, engine_root), capsys, "10-3 has no frames")


def test_unwritable_output_folder(tmp_path: pathlib.Path, engine_root: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    new_scene()
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    argv = _args(tmp_path, engine_root)
    argv[argv.index("--out") + 1] = str(blocker / "out")  # works even as root, unlike chmod
    _fails(argv, capsys, "cannot be written")


def test_interpreter_without_torch(tmp_path: pathlib.Path, engine_root: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    new_scene()
    set_fake_config(engine_root, torch=False)
    err = _fails(_args(tmp_path, engine_root), capsys, "torch is not installed",
                 "pip install torch")
    assert "rendered" not in err
    assert not list((tmp_path / "out").glob("render/render_*.exr"))  # checked before rendering


def _python_without_torch() -> str | None:
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.isfile(candidate) and subprocess.run(
                [candidate, "-c", "import torch"], capture_output=True).returncode != 0:
            return candidate
    return None


def test_real_engine_check_in_a_python_without_torch(
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real engine's own check, run by a Python that lacks torch (no fake here)."""
    python = _python_without_torch()
    if python is None:
        pytest.skip("no system Python without torch on this machine")
    new_scene()
    argv = ["stylize", "--style", style_image(str(tmp_path)), "--out", str(tmp_path / "out"),
            "--python", python]
    _fails(argv, capsys, "torch is not installed", "pip install torch")


def test_missing_interpreter(tmp_path: pathlib.Path, engine_root: str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    new_scene()
    argv = _args(tmp_path, engine_root)
    argv[argv.index("--python") + 1] = str(tmp_path / "no_python")
    _fails(argv, capsys, "does not exist or cannot be run")


def test_engine_crash_keeps_renders_and_points_to_the_log(
        tmp_path: pathlib.Path, engine_root: str, capsys: pytest.CaptureFixture[str]) -> None:
    new_scene()
    set_fake_config(engine_root, mode="crash")
    log = str(tmp_path / "out" / "flowstyle.log")
    _fails(_args(tmp_path, engine_root), capsys, "crashed", "CUDA out of memory (fake)", log)
    assert len(list((tmp_path / "out" / "render").glob("render_*.exr"))) == 3


def test_engine_refusing_input_shows_its_reason(
        tmp_path: pathlib.Path, engine_root: str, capsys: pytest.CaptureFixture[str]) -> None:
    new_scene()
    set_fake_config(engine_root, mode="bad")
    _fails(_args(tmp_path, engine_root), capsys, "refused the input",
           "the Vector pass is missing (fake)")


def test_usage_errors_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    new_scene()
    assert batch.main(["stylize", "--preset", "ultra"]) == 2
    assert batch.main(["frobnicate"]) == 2
    assert batch.main(["--help"]) == 0
    assert "--command flowstyle" in capsys.readouterr().out


def test_check_command(tmp_path: pathlib.Path, engine_root: str,
                       capsys: pytest.CaptureFixture[str]) -> None:
    assert batch.main(["check", "--python", sys.executable, "--engine-root", engine_root]) == 0
    assert "torch 2.0-fake" in capsys.readouterr().out
    set_fake_config(engine_root, torch=False)
    assert batch.main(["check", "--python", sys.executable, "--engine-root", engine_root]) == 1
    assert "torch is not installed" in capsys.readouterr().err


def test_save_writes_the_wiring_into_the_blend(
        tmp_path: pathlib.Path, engine_root: str, capsys: pytest.CaptureFixture[str]) -> None:
    scene = new_scene()
    assert batch.main(_args(tmp_path, engine_root, "--save")) == 1  # never saved: refused
    assert "--save needs a saved .blend" in capsys.readouterr().err
    blend = str(tmp_path / "shot.blend")
    bpy.ops.wm.save_as_mainfile(filepath=blend)
    assert batch.main(_args(tmp_path, engine_root, "--save")) == 0
    tree_name = scene.compositing_node_group.name  # type: ignore[union-attr]
    copy = str(tmp_path / "copy.blend")  # Blender will not "load" from the open file itself
    shutil.copy(blend, copy)
    with bpy.data.libraries.load(copy) as (data_from, _data_to):
        assert tree_name in data_from.node_groups
    assert compositor.compositor_tree(scene) is not None
    assert not pipeline.ACTIVE
    assert json.loads((tmp_path / "out" / "job.json").read_text())["frames"] == [1, 3]
    assert os.path.isfile(blend)


def test_real_engine_check_reports_the_chosen_device(capsys: pytest.CaptureFixture[str]) -> None:
    """Only what the user chose can fail the check: CUDA on a machine without a GPU does."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert batch.main(["check", "--python", sys.executable, "--engine-root", root,
                       "--device", "cpu"]) == 0
    capsys.readouterr()
    if torch_sees_cuda():
        pytest.skip("this machine has a CUDA GPU")
    assert batch.main(["check", "--python", sys.executable, "--engine-root", root,
                       "--device", "cuda"]) == 1
    assert "sees no CUDA GPU" in capsys.readouterr().err


def torch_sees_cuda() -> bool:
    import subprocess
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                           capture_output=True, text=True)
    return probe.stdout.strip() == "True"


def _hold_lock(out: pathlib.Path, pid: int, command: str) -> pathlib.Path:
    """A lock file as the engine writes it (engine/lock.py) for a run with process `pid`."""
    lock = out / ".flowstyle" / "lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"pid": pid, "host": socket.gethostname(),
                                "started": time.time(), "command": command, "token": "x"}))
    return lock


def test_a_folder_in_use_by_another_run_is_refused_before_rendering(
        tmp_path: pathlib.Path, engine_root: str, capsys: pytest.CaptureFixture[str]) -> None:
    new_scene()
    lock = _hold_lock(tmp_path / "out", os.getpid(), "python -m engine stylize --job other.json")
    err = _fails(_args(tmp_path, engine_root), capsys, "in use by another Flowstyle run",
                 f"pid {os.getpid()}", "other.json", "another output folder", str(lock))
    assert "rendered" not in err
    assert not (tmp_path / "out" / "render").exists()  # the other run's input is untouched
    assert fake_calls(engine_root) == []


def test_a_dead_runs_lock_does_not_block(tmp_path: pathlib.Path, engine_root: str) -> None:
    new_scene()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid now belongs to no process
    _hold_lock(tmp_path / "out", gone.pid, "python -m engine stylize (crashed)")
    assert batch.main(_args(tmp_path, engine_root)) == 0  # the engine takes the lock over


def test_cluster_sends_the_stylize_step_to_the_farm(tmp_path: pathlib.Path, engine_root: str) -> None:
    new_scene()
    assert batch.main(_args(tmp_path, engine_root, "--cluster", "tcp://farm:8786",
                            "--chunk-frames", "8")) == 0
    (call,) = fake_calls(engine_root)
    assert call["argv"][-2:] == ["--cluster", "tcp://farm:8786"]
    assert call["job"]["chunk_frames"] == 8
    assert (tmp_path / "out" / "flowstyle_0003.exr").is_file()  # wired back as for a local run
