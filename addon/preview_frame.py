"""Preview Frame: the current frame, stylized in seconds, next to the render.

Look development needs a quick answer to "does this painting suit this shot?". Preview
Frame renders the current frame (reusing an earlier preview render of it when the scene,
camera and resolution match, as Stylize does), runs the engine's `preview-frame` command on
that one frame at a small working size, and shows one image with the render on the left and
the stylized frame on the right in an Image Editor ("Flowstyle Preview").

Everything goes to a scratch folder (`<temp>/flowstyle_preview/<file>/<scene>/frame_N/`),
never to the shot's output folder, so a preview cannot disturb a run's finished frames or
its resume state. It is the Stylize pipeline with a different engine command and a different
last step (`PreviewRun`), so the engine check, pass set-up and restore, non-blocking render,
progress, Esc and the error messages are the same code.

With the Network or Hybrid method and a trained network kept beside the shot's output that
is still current (the shot's renders match the scene, as Stylize's reuse test; the engine
then checks the styles, settings and frames as `train` would before reusing it), the
preview runs that network on the frame at its full size instead of optimizing: instant.

Batch: `blender -b shot.blend --command flowstyle preview --frame N --out preview.exr`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from typing import Any, Callable

import bpy

from . import job, model_state, settings
from .engine_client import EngineProcess
from .job import JobSpec
from .pipeline import Phase, StylizeError, StylizeRun, resolve_engine_root
from .render import FrameRenderer
from .operators import _StylizeOperator, active_view_layer
from .typing_bl import OperatorResult, context_scene, window_manager

IMAGE_NAME = "Flowstyle Preview"


def scratch_dir(scene: bpy.types.Scene, frame: int) -> str:
    """The preview's own folder for `frame` (outside the shot's output folder)."""
    blend = os.path.splitext(os.path.basename(bpy.data.filepath))[0] or "unsaved"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{blend}/{scene.name}")
    return os.path.join(tempfile.gettempdir(), "flowstyle_preview", safe, f"frame_{frame:04d}")


def preview_spec(scene: bpy.types.Scene, frame: int) -> JobSpec:
    """The scene's settings for a one-frame preview in the scratch folder. The working size
    and iterations stay empty, so the engine uses its preview defaults (engine/defaults.py
    PREVIEW_FRAME) unless the panel sets them."""
    spec = settings.spec_from_scene(scene)
    spec.out_dir = scratch_dir(scene, frame)
    spec.frame_start = spec.frame_end = frame
    spec.style_strengths = {frame: spec.style_strengths[frame]} if frame in spec.style_strengths else {}
    return spec


SHOT_JOB_FILE = "shot_job.json"  # in the preview's scratch folder: the shot's job, for its model


def kept_model_spec(scene: bpy.types.Scene, view_layer: str,
                    spec: JobSpec) -> tuple[JobSpec | None, str]:
    """(the shot's job whose kept network the preview uses, or None; why, in words).

    spec: the preview's. None for the optimize method, and whenever Stylize would train the
    network again (model_state.training_decision, the panel's own test: no model, styles,
    frames, settings or engine changed, or the shot's renders would be made again). The
    engine checks once more (`train`'s own reuse test) before using it."""
    if spec.method == "optimize":
        return None, ""
    shot = settings.spec_from_scene(scene)
    shot_spec = dataclasses.replace(spec, out_dir=shot.out_dir, frame_start=shot.frame_start,
                                    frame_end=shot.frame_end,
                                    style_strengths=shot.style_strengths, rerender=False)
    stale = FrameRenderer(scene, view_layer, shot_spec).stale_reason()
    will_train, why = model_state.training_decision(
        shot_spec, model_state.engine_version(resolve_engine_root(spec)), stale)
    if will_train:
        return None, f"optimizing (the shot's network will train again: {why})"
    return shot_spec, ""


class PreviewRun(StylizeRun):
    """StylizeRun for one frame: runs `engine preview-frame`, then loads the image."""

    def __init__(self, scene: bpy.types.Scene, view_layer: str, spec: JobSpec, out_file: str,
                 on_message: Callable[[str], None] | None = None,
                 render_job: bool | None = None) -> None:
        super().__init__(scene, view_layer, spec, on_message, render_job)
        self.out_file = out_file
        self.image_name = ""

    def start(self) -> None:
        """As StylizeRun.start; a scratch render of another stamp (the resolution or camera
        changed since the last preview of this frame) is simply replaced: it is ours."""
        if FrameRenderer(self._scene(), self.view_layer, self.spec).foreign_renders():
            shutil.rmtree(self.spec.render_dir, ignore_errors=True)
        super().start()

    def _start_engine(self) -> None:
        spec = self.spec
        root = resolve_engine_root(spec)
        assert root is not None
        shot, why_not = kept_model_spec(self._scene(), self.view_layer, spec)
        if why_not:
            self._say(f"preview of frame {spec.frame_start}: {why_not}")
        model_args: list[str] = []
        if shot is not None:  # the engine uses the shot's network if it is current
            shot_job = os.path.join(spec.out_dir, SHOT_JOB_FILE)
            job.write_json_atomic(shot_job, shot.to_job_dict())
            model_args = ["--shot-job", shot_job]
        # Without the shot's network the preview optimizes (a scratch folder has no model).
        job.write_job(spec if shot is not None else dataclasses.replace(spec, method="optimize"))
        self._engine = EngineProcess(
            spec.python, root,
            ["preview-frame", "--job", spec.job_path, "--frame", str(spec.frame_start),
             "--out", self.out_file, "--progress", "jsonl", "--watch-parent", *model_args],
            spec.log_path)
        how = f" with the shot's network {shot.model_path}" if shot is not None else ""
        self._say(f"previewing frame {spec.frame_start}{how} (log: {spec.log_path})")
        self.phase = Phase.ENGINE

    def _step_wire(self) -> None:
        if not os.path.isfile(self.out_file):
            raise StylizeError(f"The engine wrote no preview ({self.out_file}); see {self.spec.log_path}.")
        self.image_name = load_preview_image(self.out_file).name
        self._finish(Phase.DONE, f"Preview of frame {self.spec.frame_start} (render | stylized) "
                                 f"in the image {self.image_name!r}: {self.out_file}")


def load_preview_image(path: str) -> bpy.types.Image:
    """Load (or reload) the side-by-side EXR as the image "Flowstyle Preview"."""
    image = bpy.data.images.get(IMAGE_NAME)
    if image is not None and os.path.normpath(bpy.path.abspath(image.filepath)) == os.path.normpath(path):
        image.reload()
        return image
    if image is not None:
        bpy.data.images.remove(image)
    image = bpy.data.images.load(path, check_existing=False)
    image.name = IMAGE_NAME
    return image


def show_in_image_editor(context: bpy.types.Context, image: bpy.types.Image) -> bool:
    """Show `image` in an Image Editor of the current screen, or in a new window with one.
    False when there is no UI (background mode)."""
    screen = context.screen
    if bpy.app.background or screen is None:
        return False
    for area in screen.areas:
        if area.type == "IMAGE_EDITOR":
            space: Any = area.spaces.active
            space.image = image
            area.tag_redraw()
            return True
    # No Image Editor on this screen: open one in a new window, as F12 does.
    bpy.ops.wm.window_new()
    window = window_manager(context).windows[-1]
    new_screen = window.screen
    if new_screen is None or not len(new_screen.areas):
        return False
    area = new_screen.areas[0]
    area.type = "IMAGE_EDITOR"
    space = area.spaces.active
    space.image = image
    return True


class FLOWSTYLE_OT_preview_frame(_StylizeOperator):
    """Stylize only the current frame, small and fast, and show it next to the render in an
Image Editor (the shot's output folder is not touched). Esc cancels"""

    bl_idname = "flowstyle.preview_frame"
    bl_label = "Preview Frame"
    bl_options = {"REGISTER"}

    def _make_run(self, context: bpy.types.Context) -> PreviewRun | None:
        scene = context_scene(context)
        spec = preview_spec(scene, scene.frame_current)
        out_file = os.path.join(spec.out_dir, f"preview_{scene.frame_current:04d}.exr")
        run = PreviewRun(scene, active_view_layer(context, scene), spec, out_file)
        try:
            run.start()
        except StylizeError as exc:
            self.report({"ERROR"}, f"Flowstyle: {exc}")
            return None
        return run

    def _report_end(self, context: bpy.types.Context, run: StylizeRun) -> OperatorResult:
        """Stylize's report, and on success the render | stylized image in an Image Editor."""
        result = super()._report_end(context, run)
        image = bpy.data.images.get(run.image_name) if isinstance(run, PreviewRun) else None
        if run.phase is Phase.DONE and image is not None:
            show_in_image_editor(context, image)
        return result


def run_batch(scene: bpy.types.Scene, view_layer: str, spec: JobSpec, out_file: str,
              say: Callable[[str], None]) -> PreviewRun:
    """`--command flowstyle preview`: the whole preview, synchronously (no timers in -b)."""
    run = PreviewRun(scene, view_layer, spec, os.path.abspath(out_file), on_message=say,
                     render_job=False)
    run.start()
    run.run_to_completion()
    return run


def register() -> None:
    bpy.utils.register_class(FLOWSTYLE_OT_preview_frame)


def unregister() -> None:
    bpy.utils.unregister_class(FLOWSTYLE_OT_preview_frame)
