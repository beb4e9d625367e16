"""Operators: stylize (modal, non-blocking), cancel, pass set-up and its undo, styles list.

The stylize operator is a thin shell around `pipeline.StylizeRun`: a timer calls
`run.step()`, and the operator only mirrors the run's progress into Blender's UI (the status
bar text with frame count and ETA, the panel's progress bar). Frames render through Blender's
own render job, so Blender stays usable while they render and shows each frame as it comes;
Esc in the render cancels the frame and the run, Esc elsewhere (or Cancel in the panel)
cancels the run. In background mode (scripts, `blender -b`) timers never fire, so there it
runs the same steps synchronously.
"""

from __future__ import annotations

import json
from typing import Any

import bpy

from . import compositor, passes, pipeline, preferences, settings
from .pipeline import Phase, StylizeError, StylizeRun
from .typing_bl import OperatorResult, ReportLevel, context_scene, window_manager

TIMER_INTERVAL = 0.1  # s between steps; no step waits for a render or the engine


def active_view_layer(context: bpy.types.Context, scene: bpy.types.Scene) -> str:
    """The view layer to render: the one the user is looking at, else the first one."""
    if context.scene == scene and context.view_layer is not None:
        return context.view_layer.name
    return scene.view_layers[0].name


def _redraw(context: bpy.types.Context) -> None:
    screen = context.screen
    if screen is None:
        return
    for area in screen.areas:
        if area.type in {"NODE_EDITOR", "PROPERTIES", "STATUSBAR"}:
            area.tag_redraw()


class _StylizeOperator(bpy.types.Operator):
    """What Stylize and Send to Farm share. Never registered itself: Blender rebinds a
    registered operator class when a subclass of it is registered, which broke Stylize."""

    rerender: bool  # each registered subclass declares it as a BoolProperty

    _run: StylizeRun | None = None
    _timer: Any = None

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and context.scene.name not in pipeline.ACTIVE

    def _make_run(self, context: bpy.types.Context) -> StylizeRun | None:
        scene = context_scene(context)
        spec = settings.spec_from_scene(scene)
        spec.rerender = spec.rerender or bool(self.rerender)
        spec.cluster = self.cluster()
        run = StylizeRun(scene, active_view_layer(context, scene), spec)
        try:
            run.start()
        except StylizeError as exc:
            pipeline.LAST_RESULT[scene.name] = ("ERROR", str(exc), "")
            self.report({"ERROR"}, f"Flowstyle: {exc}")
            return None
        return run

    def cluster(self) -> str:
        """Where the engine runs: here (empty) for Stylize."""
        return ""

    def execute(self, context: bpy.types.Context) -> OperatorResult:
        """Synchronous run (background mode and scripts): blocks until done."""
        run = self._make_run(context)
        if run is None:
            return {"CANCELLED"}
        run.run_to_completion()
        return self._report_end(context, run)

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> OperatorResult:
        if bpy.app.background or context.window is None:
            return self.execute(context)
        run = self._make_run(context)
        if run is None:
            return {"CANCELLED"}
        if not run.running:  # failed at once (e.g. the engine check was cached as bad)
            return self._report_end(context, run)
        self._run = run
        wm = window_manager(context)
        self._timer = wm.event_timer_add(TIMER_INTERVAL, window=context.window)
        wm.modal_handler_add(self)
        self._show(context)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> OperatorResult:
        run = self._run
        if run is None:
            return {"CANCELLED"}
        if event.type == "ESC" and event.value == "PRESS":
            run.cancel()
        elif event.type == "TIMER":  # events do not say whose timer: a spare step is harmless
            run.step()
        else:
            return {"PASS_THROUGH"}  # Blender stays fully usable while we work
        if run.running:
            self._show(context)
            return {"RUNNING_MODAL"}
        self._teardown(context)
        return self._report_end(context, run)

    def cancel(self, context: bpy.types.Context) -> None:
        # Blender calls this when it drops the operator (file load, quit): stop the engine.
        if self._run is not None:
            self._run.cancel()
        self._teardown(context)

    def _show(self, context: bpy.types.Context) -> None:
        run = self._run
        assert run is not None
        if context.workspace is not None:
            context.workspace.status_text_set(run.status_text() + "   (Esc: cancel)")
        _redraw(context)

    def _teardown(self, context: bpy.types.Context) -> None:
        wm = window_manager(context)
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        if context.workspace is not None:
            context.workspace.status_text_set(None)
        _redraw(context)

    def _report_end(self, context: bpy.types.Context, run: StylizeRun) -> OperatorResult:
        for warning in run.warnings:
            self.report({"WARNING"}, f"Flowstyle: {warning}")
        if run.phase is Phase.DONE:
            self.report({"INFO"}, f"Flowstyle: {run.message}")
            return {"FINISHED"}
        level: ReportLevel = "WARNING" if run.phase is Phase.CANCELLED else "ERROR"
        self.report({level}, f"Flowstyle: {run.message}")
        return {"CANCELLED"}


class FLOWSTYLE_OT_stylize(_StylizeOperator):
    """Render the frames, stylize them with the engine and show the result in the compositor.
Esc cancels; finished frames are kept and a new run resumes"""

    bl_idname = "flowstyle.stylize"
    bl_label = "Stylize"
    bl_options = {"REGISTER"}

    rerender: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Replace Renders", default=False, options={"SKIP_SAVE"},
        description="Render again, deleting the renders already in the output folder, also "
                    "those of another shot")


class FLOWSTYLE_OT_send_to_farm(_StylizeOperator):
    """Render the frames here if needed, then stylize them on the Dask scheduler set in the
add-on preferences (Farm); progress shows here as for Stylize, the result is wired the same"""

    bl_idname = "flowstyle.send_to_farm"
    bl_label = "Send to Farm"
    bl_options = {"REGISTER"}

    rerender: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Replace Renders", default=False, options={"SKIP_SAVE"},
        description="Render again, deleting the renders already in the output folder")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not preferences.engine_prefs().cluster:
            cls.poll_message_set("Set the Farm scheduler in the add-on preferences first")
            return False
        return super().poll(context)

    def cluster(self) -> str:
        return preferences.engine_prefs().cluster


class FLOWSTYLE_OT_cancel(bpy.types.Operator):
    """Stop the running stylization now; finished frames are kept"""

    bl_idname = "flowstyle.cancel"
    bl_label = "Cancel Stylize"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and context.scene.name in pipeline.ACTIVE

    def execute(self, context: bpy.types.Context) -> OperatorResult:
        run = pipeline.ACTIVE.get(context_scene(context).name)
        if run is not None:
            run.cancel()  # the modal operator notices on its next tick and tidies the UI
        return {"FINISHED"}


class FLOWSTYLE_OT_setup_passes(bpy.types.Operator):
    """Turn on the Vector (and Depth) pass, turn off motion blur and set multilayer EXR
output; reports exactly what changed, and Undo Pass Setup puts it back"""

    bl_idname = "flowstyle.setup_passes"
    bl_label = "Set Up Passes"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> OperatorResult:
        scene = context_scene(context)
        prefs = settings.settings_of(scene)
        layer = scene.view_layers[active_view_layer(context, scene)]
        try:
            changes = passes.enable_stylize_passes(scene, layer, prefs.use_depth,
                                                   object_index=len(prefs.regions) > 0)
        except passes.PassesError as exc:
            self.report({"ERROR"}, f"Flowstyle: {exc}")
            return {"CANCELLED"}
        if changes:
            # Accumulate: a second set-up must not forget what the first one changed.
            merged = _load_backup(prefs.passes_backup)
            for change in changes:
                passes.merge_change(merged, change)
            prefs.passes_backup = json.dumps([c.to_dict() for c in merged])
        self.report({"INFO"}, "Flowstyle: " + passes.describe(changes))
        return {"FINISHED"}


def _load_backup(text: str) -> list[passes.Change]:
    try:
        return [passes.Change.from_dict(d) for d in json.loads(text)] if text else []
    except (ValueError, TypeError):
        return []


class FLOWSTYLE_OT_restore_passes(bpy.types.Operator):
    """Put back the render settings that Set Up Passes changed"""

    bl_idname = "flowstyle.restore_passes"
    bl_label = "Undo Pass Setup"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and bool(settings.settings_of(context.scene).passes_backup)

    def execute(self, context: bpy.types.Context) -> OperatorResult:
        prefs = settings.settings_of(context_scene(context))
        changes = _load_backup(prefs.passes_backup)
        problems = passes.restore_changes(changes)
        prefs.passes_backup = ""
        if problems:
            self.report({"WARNING"}, "Flowstyle: " + "; ".join(problems))
        else:
            self.report({"INFO"}, f"Flowstyle: restored {len(changes)} setting(s)")
        return {"FINISHED"}


class FLOWSTYLE_OT_wire_compositor(bpy.types.Operator):
    """Add or update the Flowstyle nodes in the compositor (Image node on the stylized
frames, mixed with the original)"""

    bl_idname = "flowstyle.wire_compositor"
    bl_label = "Wire Compositor"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> OperatorResult:
        scene = context_scene(context)
        spec = settings.spec_from_scene(scene)
        try:
            compositor.wire(scene, spec)
        except (FileNotFoundError, RuntimeError) as exc:
            self.report({"ERROR"}, f"Flowstyle: {exc}")
            return {"CANCELLED"}
        return {"FINISHED"}


class FLOWSTYLE_OT_style_add(bpy.types.Operator):
    """Add a style image slot"""

    bl_idname = "flowstyle.style_add"
    bl_label = "Add Style Image"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> OperatorResult:
        prefs = settings.settings_of(context_scene(context))
        prefs.styles.add()
        prefs.active_style = len(prefs.styles) - 1
        return {"FINISHED"}


class FLOWSTYLE_OT_style_remove(bpy.types.Operator):
    """Remove the selected style image slot"""

    bl_idname = "flowstyle.style_remove"
    bl_label = "Remove Style Image"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and len(settings.settings_of(context.scene).styles) > 0

    def execute(self, context: bpy.types.Context) -> OperatorResult:
        settings.remove_active(settings.settings_of(context_scene(context)), "styles", "active_style")
        return {"FINISHED"}


CLASSES = (FLOWSTYLE_OT_stylize, FLOWSTYLE_OT_send_to_farm, FLOWSTYLE_OT_cancel,
           FLOWSTYLE_OT_setup_passes,
           FLOWSTYLE_OT_restore_passes, FLOWSTYLE_OT_wire_compositor, FLOWSTYLE_OT_style_add,
           FLOWSTYLE_OT_style_remove)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
