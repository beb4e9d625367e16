"""The stylize run as the modal operator drives it: one `step()` per timer tick.

Timers never fire in background mode, so these tests call `StylizeRun.step()` themselves:
the very function the modal operator's timer calls. A fake engine (the engine's command-line
contract, scripted) makes the timing deterministic: with `delay` it pauses before each frame
after the first, long enough to cancel in the middle."""

from __future__ import annotations

import os
import pathlib
import sys
import time
from typing import Any

import pytest

from addon_helpers import (fake_engine, new_scene, render_settings_snapshot, set_fake_config,
                           set_styles, style_image)

import bpy
from addon import pipeline, render, settings
from addon.pipeline import Phase, StylizeRun
from addon.render import JobState


def _run(scene: bpy.types.Scene, tmp_path: pathlib.Path, engine_root: str,
         render_job: bool | None = None) -> StylizeRun:
    set_styles(scene, [style_image(str(tmp_path))])
    spec = settings.spec_from_scene(scene)
    spec.out_dir = str(tmp_path / "out")
    spec.python = sys.executable
    spec.engine_root = engine_root
    return StylizeRun(scene, scene.view_layers[0].name, spec, render_job=render_job)


def _step_until(run: StylizeRun, done: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():  # type: ignore[operator]
        running = run.step()
        if done():  # type: ignore[operator]
            break
        assert running, f"run ended early: {run.phase} {run.message}"
        assert time.monotonic() < deadline, f"timed out in {run.phase}"
        time.sleep(0.02)


def test_cancel_while_stylizing_keeps_finished_frames_and_resumes(tmp_path: pathlib.Path) -> None:
    engine_root = fake_engine(str(tmp_path / "fake"), delay=60.0)
    scene = new_scene()
    before = render_settings_snapshot(scene)
    run = _run(scene, tmp_path, engine_root)
    run.start()
    assert pipeline.ACTIVE[scene.name] is run

    _step_until(run, lambda: run.phase is Phase.RENDER)
    assert "rendering" in run.status_text()
    _step_until(run, lambda: run.progress.done >= 1)  # frame 1 done; frame 2 waits 60 s
    assert run.status_text() == "Flowstyle: Stylizing 1/3, ETA 0s"
    assert 0.1 < run.fraction() < 1.0

    started = time.monotonic()
    run.cancel()
    assert time.monotonic() - started < 5.0  # at once, not after the 60 s frame
    assert run.phase is Phase.CANCELLED and not run.step()
    assert "1 finished frame(s) kept" in run.message
    out = tmp_path / "out"
    assert (out / "flowstyle_0001.exr").is_file() and not (out / "flowstyle_0002.exr").exists()
    assert render_settings_snapshot(scene) == before
    assert scene.name not in pipeline.ACTIVE
    assert pipeline.LAST_RESULT[scene.name][0] == "WARNING"

    # Run again: the render is reused, frame 1 is skipped by the engine, 2 and 3 are made.
    set_fake_config(engine_root, delay=0.0)
    again = _run(scene, tmp_path, engine_root)
    again.start()
    _step_until(again, lambda: not again.running)
    assert again.phase is Phase.DONE, again.message
    assert again.renderer is not None and again.renderer.reused == [1, 2, 3]
    assert again.renderer.rendered == []
    assert [e["frame"] for e in again.events if e["event"] == "frame_skipped"] == [1]
    assert (out / "flowstyle_0003.exr").is_file()
    assert render_settings_snapshot(scene) == before


def test_cancel_while_rendering_restores_settings_and_keeps_rendered_frames(
        tmp_path: pathlib.Path) -> None:
    engine_root = fake_engine(str(tmp_path / "fake"))
    scene = new_scene()
    before = render_settings_snapshot(scene)
    run = _run(scene, tmp_path, engine_root)
    run.start()
    _step_until(run, lambda: run.renderer is not None and len(run.renderer.rendered) == 1)
    assert scene.render.image_settings.file_format == "OPEN_EXR_MULTILAYER"  # mid-render
    run.cancel()
    assert render_settings_snapshot(scene) == before
    render_dir = tmp_path / "out" / "render"
    assert (render_dir / "render_0001.exr").is_file()
    assert not (render_dir / "render_0002.exr").exists()
    assert not (render_dir / ".partial").exists()

    # The next run renders only what is missing.
    again = _run(scene, tmp_path, engine_root)
    again.start()
    _step_until(again, lambda: not again.running)
    assert again.phase is Phase.DONE
    assert again.renderer is not None
    assert (again.renderer.reused, again.renderer.rendered) == ([1], [2, 3])


def test_an_error_in_a_step_restores_settings(tmp_path: pathlib.Path) -> None:
    engine_root = fake_engine(str(tmp_path / "fake"))
    scene = new_scene()
    before = render_settings_snapshot(scene)
    run = _run(scene, tmp_path, engine_root)
    run.start()
    _step_until(run, lambda: run.renderer is not None and len(run.renderer.rendered) == 1)
    camera = scene.camera
    scene.camera = None  # the user deletes the camera between two frames: Blender refuses
    try:
        assert not run.step()
    finally:
        scene.camera = camera
    assert run.phase is Phase.FAILED
    assert "could not render frame 2" in run.message and "camera" in run.message.lower()
    assert render_settings_snapshot(scene) == before
    assert (tmp_path / "out" / "render" / "render_0001.exr").is_file()


def test_operator_runs_synchronously_in_background(tmp_path: pathlib.Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    engine_root = fake_engine(str(tmp_path / "fake"))
    monkeypatch.setenv("FLOWSTYLE_PYTHON", sys.executable)
    monkeypatch.setenv("FLOWSTYLE_ENGINE_ROOT", engine_root)
    scene = new_scene()
    set_styles(scene, [style_image(str(tmp_path))])
    settings.settings_of(scene).output_dir = str(tmp_path / "op_out")
    assert bpy.ops.flowstyle.stylize("INVOKE_DEFAULT") == {"FINISHED"}
    assert os.path.isfile(tmp_path / "op_out" / "flowstyle_0003.exr")
    assert pipeline.LAST_RESULT[scene.name][0] == "INFO"

    set_styles(scene, [str(tmp_path / "missing.png")])
    with pytest.raises(RuntimeError, match="missing.png"):  # an ERROR report, from Python
        bpy.ops.flowstyle.stylize()
    level, message, _log = pipeline.LAST_RESULT[scene.name]
    assert level == "ERROR" and "missing.png" in message


def test_second_run_on_the_same_scene_is_refused(tmp_path: pathlib.Path) -> None:
    engine_root = fake_engine(str(tmp_path / "fake"), delay=60.0)
    scene = new_scene()
    run = _run(scene, tmp_path, engine_root)
    run.start()
    try:
        with pytest.raises(pipeline.StylizeError, match="already running"):
            _run(scene, tmp_path, engine_root).start()
        assert not bpy.ops.flowstyle.stylize.poll()
    finally:
        run.cancel()
    assert bpy.ops.flowstyle.stylize.poll()


def test_panel_offers_to_replace_renders_of_another_shot(tmp_path: pathlib.Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    engine_root = fake_engine(str(tmp_path / "fake"))
    monkeypatch.setenv("FLOWSTYLE_PYTHON", sys.executable)
    monkeypatch.setenv("FLOWSTYLE_ENGINE_ROOT", engine_root)
    out = str(tmp_path / "shared")
    names = []
    for name in ("A", "B"):
        scene = new_scene(name)
        set_styles(scene, [style_image(str(tmp_path))])
        settings.settings_of(scene).output_dir = out
        names.append(scene.name)
    first_render = os.path.join(out, "render", "render_0001.exr")
    bpy.context.window.scene = bpy.data.scenes[names[0]]  # type: ignore[union-attr]
    assert bpy.ops.flowstyle.stylize() == {"FINISHED"}
    mtime = os.stat(first_render).st_mtime_ns

    scene = bpy.data.scenes[names[1]]
    bpy.context.window.scene = scene  # type: ignore[union-attr]
    with pytest.raises(RuntimeError, match="rendered frame"):
        bpy.ops.flowstyle.stylize()
    level, message, _log = pipeline.LAST_RESULT[scene.name]
    assert level == "ERROR" and os.path.join(out, "render") in message
    assert scene.name in pipeline.OFFER_RERENDER and os.stat(first_render).st_mtime_ns == mtime

    assert bpy.ops.flowstyle.stylize(rerender=True) == {"FINISHED"}  # the panel's button
    assert os.stat(first_render).st_mtime_ns != mtime
    assert not settings.settings_of(scene).rerender  # a one-off, not a saved setting


# -- The windowed path: frames rendered by Blender's own render job --------------------------
# bpy is always in background mode here, where `render.render('INVOKE_DEFAULT')` renders before
# it returns and fires the real render_complete handler; a test that plays a job still running
# after the call (as in a windowed Blender) replaces RenderJob._invoke.


def _ours(handlers: list[Any], job: render.RenderJob) -> bool:
    return any(getattr(h, "__self__", None) is job for h in handlers)


def test_render_job_path_is_driven_by_blenders_render_handlers(tmp_path: pathlib.Path) -> None:
    engine_root = fake_engine(str(tmp_path / "fake"))
    scene = new_scene()
    before = render_settings_snapshot(scene)
    run = _run(scene, tmp_path, engine_root, render_job=True)
    job = run.render_job
    assert job is not None
    run.start()
    _step_until(run, lambda: run.phase is Phase.RENDER)
    run.step()  # hands frame 1 to Blender's render job
    assert _ours(bpy.app.handlers.render_complete, job)
    assert _ours(bpy.app.handlers.render_cancel, job)
    assert job.state is JobState.COMPLETE  # set by the real render_complete handler
    render_dir = tmp_path / "out" / "render"
    assert (render_dir / ".partial" / "render_0001.exr").is_file()
    assert not (render_dir / "render_0001.exr").exists()  # collected on the next step
    run.step()
    assert (render_dir / "render_0001.exr").is_file() and job.state is JobState.IDLE
    _step_until(run, lambda: not run.running)
    assert run.phase is Phase.DONE, run.message
    assert run.renderer is not None and run.renderer.rendered == [1, 2, 3]
    assert not _ours(bpy.app.handlers.render_complete, job)  # handlers removed at the end
    assert not _ours(bpy.app.handlers.render_cancel, job)
    assert render_settings_snapshot(scene) == before


def test_render_job_cancelled_with_esc_cancels_the_run(tmp_path: pathlib.Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    engine_root = fake_engine(str(tmp_path / "fake"))
    scene = new_scene()
    before = render_settings_snapshot(scene)
    run = _run(scene, tmp_path, engine_root, render_job=True)
    run.start()
    _step_until(run, lambda: run.phase is Phase.RENDER)
    # A windowed Blender: the job goes on rendering after F12 returns.
    monkeypatch.setattr(render.RenderJob, "_invoke", lambda self, s, layer: {"RUNNING_MODAL"})
    run.step()
    job = run.render_job
    assert job is not None and job.state is JobState.RUNNING
    started = time.monotonic()
    for _ in range(5):  # timer ticks while Blender renders: they return at once
        assert run.step()
    assert time.monotonic() - started < 1.0
    assert "rendering frame 1" in run.message

    for handler in list(bpy.app.handlers.render_cancel):  # Esc: Blender cancels the render
        handler(scene, None)
    assert run.step() is False
    assert run.phase is Phase.CANCELLED and run.message.startswith("Rendering cancelled")
    assert render_settings_snapshot(scene) == before
    assert not _ours(bpy.app.handlers.render_cancel, job)
    assert not (tmp_path / "out" / "render" / "render_0001.exr").exists()
    assert scene.name not in pipeline.ACTIVE


def test_cancel_during_a_render_job_restores_settings_once_blender_stops(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blender writes the frame with the scene's settings when its job ends: putting the
    user's settings back earlier would write a stray file with them."""
    engine_root = fake_engine(str(tmp_path / "fake"))
    scene = new_scene()
    before = render_settings_snapshot(scene)
    run = _run(scene, tmp_path, engine_root, render_job=True)
    run.start()
    _step_until(run, lambda: run.phase is Phase.RENDER)
    monkeypatch.setattr(render.RenderJob, "_invoke", lambda self, s, layer: {"RUNNING_MODAL"})
    run.step()
    job = run.render_job
    assert job is not None
    monkeypatch.setattr(render.RenderJob, "_blender_rendering", staticmethod(lambda: True))
    run.cancel()  # the panel's Cancel button while Blender renders
    assert run.phase is Phase.CANCELLED
    assert scene.render.image_settings.file_format == "OPEN_EXR_MULTILAYER"  # not yet
    assert run._restore_after_job() == 0.2  # the timer keeps waiting
    for handler in list(bpy.app.handlers.render_complete):  # the frame ends
        handler(scene, None)
    assert run._restore_after_job() is None
    assert render_settings_snapshot(scene) == before
    assert not _ours(bpy.app.handlers.render_complete, job)
