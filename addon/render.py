"""Rendering the frames the engine reads, one frame at a time, reusing an earlier render.

Frames go to `<out>/render/render_####.exr` as multilayer EXR (Combined + Vector (+ Depth)).
Two ways to render a frame, one frame per call either way:

* `render_next()` blocks until the frame is written (`bpy.ops.render.render()`): batch mode
  and scripts (`bpy.app.background`), where nothing else happens meanwhile anyway.
* `start_job()` / `collect_job()`, with Blender has a window: the frame is rendered by
  Blender's own render job (`render.render('INVOKE_DEFAULT')`, what F12 does), so the UI
  stays live, Blender shows the frame as it renders, and Esc cancels it mid-frame. A
  `RenderJob` listens to the `render_complete` / `render_cancel` handlers and only records
  what happened; the caller's next timer tick acts on it (handlers may run outside the main
  thread, where Blender data must not be changed).

Each frame is first written into `render/.partial/` and then renamed, so a file named
`render_####.exr` is always complete. A stamp file records which scene, view layer, camera,
frame range and resolution the frames belong to: a rerun with the same stamp renders only the
frames that are missing (an interrupted render resumes too).

Renders with another stamp (another .blend or scene in the same folder, or the same shot with
another range or resolution) are never deleted unless the user asks with `JobSpec.rerender`
(`--rerender` in batch, "Replace Renders" / "Always Re-render" in the panel); without it the
run stops before anything is touched, with an error naming the folder and both ways out.
`rerender` also serves changes the stamp cannot see (an edited animation, a new material).

The user's render settings are changed only between `begin()` and `end()`, every change is
recorded, and `end()` puts them all back (callers call it in `finally`).
"""

from __future__ import annotations

import enum
import glob
import json
import os
import shutil
from typing import Any

import bpy

from . import passes
from .job import RENDER_PREFIX, JobSpec, write_json_atomic

STAMP_FILE = "flowstyle_render.json"
PARTIAL_SUBDIR = ".partial"
STAMP_VERSION = 1


class RenderError(RuntimeError):
    """Blender could not render a frame; the message says which and why."""


class ForeignRendersError(RenderError):
    """The render folder holds renders of another stamp and the user did not ask to replace
    them."""


_KEY_WORDS = {"blend": ".blend file", "scene": "scene", "view_layer": "view layer",
              "camera": "camera", "engine": "render engine", "frames": "frame range",
              "resolution": "resolution", "use_depth": "Depth pass", "version": "stamp version"}


def _describe_key(key: Any) -> str:
    if not isinstance(key, dict):
        return "renders of unknown origin (no readable stamp)"
    frames = key.get("frames") or ["?", "?"]
    return (f"scene {key.get('scene')!r} of {key.get('blend') or 'an unsaved file'}, "
            f"frames {frames[0]}-{frames[-1]}")


def foreign_renders_problem(render_dir: str, stamp: Any, key: dict[str, Any]) -> str | None:
    """Why the renders in `render_dir` may not be replaced silently, or None when there are
    none of another stamp. `stamp`: the key read from the folder's stamp file (or None)."""
    if stamp == key:
        return None
    old = sorted(glob.glob(os.path.join(glob.escape(render_dir), RENDER_PREFIX + "*.exr")))
    if not old:
        return None  # nothing would be lost
    if isinstance(stamp, dict):
        differs = [word for name, word in _KEY_WORDS.items() if stamp.get(name) != key.get(name)]
        what = f"{_describe_key(stamp)}; differs from this run in: {', '.join(differs)}"
    else:
        what = _describe_key(stamp)
    return (f"The output folder's render folder {render_dir} holds {len(old)} rendered "
            f"frame(s) of another render ({what}). Flowstyle deletes them only if you ask: "
            "render again and replace them with --rerender (batch) or 'Replace Renders' "
            "(panel), or choose another output folder.")


def render_key(scene: bpy.types.Scene, view_layer: str, spec: JobSpec) -> dict[str, Any]:
    """What makes an earlier render reusable: same file, scene, camera, range and size."""
    r = scene.render
    return {
        "version": STAMP_VERSION,
        "blend": bpy.data.filepath,
        "scene": scene.name,
        "view_layer": view_layer,
        "camera": scene.camera.name if scene.camera else None,
        "engine": r.engine,
        "frames": [spec.frame_start, spec.frame_end],
        "resolution": [r.resolution_x, r.resolution_y, r.resolution_percentage],
        "use_depth": spec.use_depth,
        **_object_index_key(scene, spec),
    }


class JobState(enum.Enum):
    IDLE = "idle"  # no frame in flight
    RUNNING = "running"  # Blender's render job is rendering our frame
    COMPLETE = "complete"  # it finished (render_complete): the frame can be collected
    CANCELLED = "cancelled"  # the user stopped it (Esc, render_cancel)


class RenderJob:
    """Blender's render job for one frame at a time, seen through its handlers.

    `install()` adds `on_complete` / `on_cancel` to `bpy.app.handlers.render_complete` /
    `render_cancel`, `remove()` takes them away again. The handlers only change `state`.
    """

    def __init__(self) -> None:
        self.state = JobState.IDLE
        self.installed = False

    def install(self) -> None:
        if not self.installed:
            bpy.app.handlers.render_complete.append(self.on_complete)
            bpy.app.handlers.render_cancel.append(self.on_cancel)
            self.installed = True

    def remove(self) -> None:
        for handlers, handler in ((bpy.app.handlers.render_complete, self.on_complete),
                                  (bpy.app.handlers.render_cancel, self.on_cancel)):
            while handler in handlers:
                handlers.remove(handler)
        self.installed = False

    def on_complete(self, scene: bpy.types.Scene, *args: object) -> None:
        if self.state is JobState.RUNNING:
            self.state = JobState.COMPLETE

    def on_cancel(self, scene: bpy.types.Scene, *args: object) -> None:
        if self.state is JobState.RUNNING:
            self.state = JobState.CANCELLED

    def in_flight(self) -> bool:
        """True while Blender still renders our frame (its settings must not change yet)."""
        return self.state is JobState.RUNNING and self._blender_rendering()

    @staticmethod
    def _blender_rendering() -> bool:
        """Blender's own word (a handler might never fire, e.g. if its job failed to start)."""
        return bpy.app.is_job_running("RENDER")

    def _invoke(self, scene: bpy.types.Scene, view_layer: str) -> set[str]:
        """F12 for one frame, as if pressed in the UI (a test replaces this to play the
        windowed case, where the job goes on after the call returns)."""
        result = bpy.ops.render.render("INVOKE_DEFAULT", write_still=True, scene=scene.name,
                                       layer=view_layer)
        return set(result or ())

    def start(self, scene: bpy.types.Scene, view_layer: str) -> None:
        """Start rendering the scene's current frame with write_still. In a windowed Blender
        this returns at once (RUNNING_MODAL) and a handler reports the end; in background
        mode Blender renders before returning and the handler has already fired."""
        self.install()
        self.state = JobState.RUNNING
        try:
            result = self._invoke(scene, view_layer)
        except RuntimeError as exc:
            self.state = JobState.IDLE
            raise RenderError(f"Blender could not render frame {scene.frame_current}: "
                              f"{exc}") from exc
        if not result & {"RUNNING_MODAL", "FINISHED"}:
            self.state = JobState.IDLE
            raise RenderError(f"Blender did not start rendering frame {scene.frame_current} "
                              "(is another render running?): wait for it, then run again.")


def _object_index_key(scene: bpy.types.Scene, spec: JobSpec) -> dict[str, Any]:
    """With per-object styles the render must hold the Object Index pass, and which objects
    carry which Pass Index matters: a render made before the artist assigned them is stale."""
    if not spec.regions:
        return {}  # the stamp of a plain run stays as it was
    wanted = {r.index for r in spec.regions}
    return {"object_index": sorted([obj.name, obj.pass_index] for obj in scene.objects
                                   if obj.pass_index in wanted)}


class FrameRenderer:
    """Renders a JobSpec's frames into its render folder; see the module docstring."""

    def __init__(self, scene: bpy.types.Scene, view_layer: str, spec: JobSpec) -> None:
        self.scene_name = scene.name
        self.view_layer = view_layer
        self.spec = spec
        self.todo: list[int] = []
        self.reused: list[int] = []
        self.rendered: list[int] = []
        self.changes: list[passes.Change] = []
        self._frame_before: int | None = None
        self.active = False

    @property
    def stamp_path(self) -> str:
        return os.path.join(self.spec.render_dir, STAMP_FILE)

    def _scene(self) -> bpy.types.Scene:
        scene = bpy.data.scenes.get(self.scene_name)
        if scene is None:
            raise RenderError(f"The scene {self.scene_name!r} no longer exists.")
        return scene

    def plan(self) -> list[int]:
        """Decide which frames need rendering; forget an earlier render that does not match."""
        spec = self.spec
        os.makedirs(spec.render_dir, exist_ok=True)
        key = render_key(self._scene(), self.view_layer, spec)
        frames = list(range(spec.frame_start, spec.frame_end + 1))
        stamp = self._read_stamp()
        if not spec.rerender:
            problem = foreign_renders_problem(spec.render_dir, stamp, key)
            if problem:
                raise ForeignRendersError(problem)
        if spec.rerender or stamp != key:
            for old in glob.glob(os.path.join(glob.escape(spec.render_dir), RENDER_PREFIX + "*.exr")):
                os.remove(old)
            write_json_atomic(self.stamp_path, {"key": key})
            self.todo, self.reused = frames, []
        else:
            self.todo = [f for f in frames if not os.path.isfile(spec.render_path(f))]
            self.reused = [f for f in frames if f not in self.todo]
        return self.todo

    def foreign_renders(self) -> str | None:
        """The problem `plan()` would raise about renders of another stamp, or None (checked
        before a run starts, so nothing else happens first)."""
        if self.spec.rerender:
            return None
        key = render_key(self._scene(), self.view_layer, self.spec)
        return foreign_renders_problem(self.spec.render_dir, self._read_stamp(), key)

    def stale_reason(self) -> str:
        """Why frames will be rendered (again) before the engine runs, in words ("" when
        every frame of an earlier matching render is reused): the panel's model status."""
        spec = self.spec
        if spec.rerender:
            return "Re-render is on"
        key = render_key(self._scene(), self.view_layer, spec)
        stamp = self._read_stamp()
        if stamp != key:
            if not isinstance(stamp, dict):
                return "no earlier render"
            differs = [word for name, word in _KEY_WORDS.items() if stamp.get(name) != key.get(name)]
            return f"{', '.join(differs) or 'object indices'} changed"
        missing = [f for f in range(spec.frame_start, spec.frame_end + 1)
                   if not os.path.isfile(spec.render_path(f))]
        return f"{len(missing)} frame(s) not rendered yet" if missing else ""

    def _read_stamp(self) -> Any:
        try:
            with open(self.stamp_path, encoding="utf-8") as fh:
                return json.load(fh).get("key")
        except (OSError, ValueError, AttributeError):
            return None

    def begin(self) -> list[passes.Change]:
        """Apply the render settings Flowstyle needs; returns what changed (for the log)."""
        scene = self._scene()
        layer = scene.view_layers.get(self.view_layer)
        if layer is None:
            raise RenderError(f"The view layer {self.view_layer!r} does not exist in {scene.name!r}.")
        self._frame_before = scene.frame_current
        self.active = True
        self.changes = passes.enable_stylize_passes(scene, layer, self.spec.use_depth,
                                                    object_index=bool(self.spec.regions))
        try:
            # The compositor and sequencer would otherwise replace the passes we need by their
            # result (and our own compositor nodes would read the stylized frames back).
            for attr, value in (("use_compositing", False), ("use_sequencer", False),
                                ("use_file_extension", True)):
                if getattr(scene.render, attr) != value:
                    passes.set_recorded(scene, "render", attr, value, self.changes)
        except BaseException:
            self.end()
            raise
        partial = os.path.join(self.spec.render_dir, PARTIAL_SUBDIR)
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(partial, exist_ok=True)
        return list(self.changes)

    def _prepare(self) -> tuple[int, bpy.types.Scene, str]:
        """Set the scene to the next frame and the output path to its partial file."""
        if not self.active:
            raise RenderError("FrameRenderer.begin() must be called before rendering.")
        frame = self.todo[0]
        scene = self._scene()
        partial = self._partial_path(frame)
        scene.frame_set(frame)
        passes.set_recorded(scene, "render", "filepath", partial, self.changes)
        return frame, scene, partial

    def _partial_path(self, frame: int) -> str:
        final = self.spec.render_path(frame)
        return os.path.join(self.spec.render_dir, PARTIAL_SUBDIR, os.path.basename(final))

    def _collect(self, frame: int) -> int:
        """The frame's partial file is complete: give it its final name."""
        partial = self._partial_path(frame)
        if not os.path.isfile(partial):
            raise RenderError(f"Blender did not write frame {frame} ({partial}); see the console.")
        os.replace(partial, self.spec.render_path(frame))
        self.todo.remove(frame)
        self.rendered.append(frame)
        return frame

    def render_next(self) -> int | None:
        """Render the next missing frame, blocking; return its number, or None when all are
        done."""
        if not self.todo:
            return None
        frame, scene, _partial = self._prepare()
        try:
            result = bpy.ops.render.render(write_still=True, scene=scene.name, layer=self.view_layer)
        except RuntimeError as exc:
            raise RenderError(f"Blender could not render frame {frame}: {exc}") from exc
        if "FINISHED" not in (result or set()):
            raise RenderError(f"Blender did not render frame {frame}; see the console.")
        return self._collect(frame)

    def start_job(self, job: RenderJob) -> int:
        """Hand the next missing frame to Blender's render job; return its number."""
        frame, scene, _partial = self._prepare()
        job.start(scene, self.view_layer)
        return frame

    def collect_job(self, job: RenderJob) -> int:
        """After `job` reported COMPLETE: keep the frame it rendered; return its number."""
        assert job.state is JobState.COMPLETE
        job.state = JobState.IDLE
        return self._collect(self.todo[0])

    def end(self) -> list[str]:
        """Put every setting back as it was; safe to call more than once."""
        if not self.active:
            return []
        self.active = False
        problems = passes.restore_changes(self.changes)
        self.changes = []
        scene = bpy.data.scenes.get(self.scene_name)
        if scene is not None and self._frame_before is not None:
            scene.frame_set(self._frame_before)
        shutil.rmtree(os.path.join(self.spec.render_dir, PARTIAL_SUBDIR), ignore_errors=True)
        return problems
