"""Add-on preferences: which Python runs the engine, on which device, with which weights.

These belong to the machine, not the shot, so they live in Blender's preferences. The
"Check Engine" button runs `engine check --json` in that interpreter and shows what it found
and how to fix what is missing: the engine needs torch, which Blender's own Python lacks.
The check runs in the background (a timer polls it; Blender stays usable) and is stopped
after `engine_client.CHECK_TIMEOUT` seconds; in background mode it waits, up to that timeout.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

from . import engine_client
from .engine_client import CheckProcess, CheckResult
from .typing_bl import OperatorResult, window_manager

ADDON_ID = __package__ or "flowstyle"

DEVICE_ITEMS = [
    ("auto", "Auto", "CUDA when the engine's torch sees a GPU, else the CPU"),
    ("cpu", "CPU", "Always the CPU (slow but works everywhere)"),
    ("cuda", "CUDA", "An NVIDIA GPU through CUDA"),
]
WEIGHTS_ITEMS = [
    ("caffe", "Caffe VGG19 (offline)", "The original VGG19 weights shipped for the engine"),
    ("torchvision", "torchvision VGG19 (download)",
     "torchvision's VGG19 weights: a ~550 MB download on first use, needs Online Access"),
    ("file", "File", "A local weights file"),
]

# The last "Check Engine" result, shown in the preferences (not saved: it is about now).
LAST_CHECK: dict[str, CheckResult] = {}
# The check running now, if any (the preferences show "Checking...").
RUNNING_CHECK: dict[str, CheckProcess] = {}
TIMER_INTERVAL = 0.25  # s between polls of a running check


@dataclasses.dataclass
class EnginePrefs:
    """Preference values as plain data (defaults when the add-on was registered by hand)."""

    python: str
    device: str = "auto"
    weights: str = "caffe"
    cluster: str = ""  # Dask scheduler for Send to Farm; empty: no farm
    chunk_frames: int = 32  # frames per chunk task on the farm (the engine's default)


class FlowstylePreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    python_path: StringProperty(
        name="Engine Python", subtype="FILE_PATH", default="",
        description="Python interpreter with torch installed that runs the Flowstyle engine "
                    "(empty: the first python3 on PATH)")
    device: EnumProperty(name="Device", items=DEVICE_ITEMS, default="auto")
    weights: EnumProperty(name="Weights", items=WEIGHTS_ITEMS, default="caffe",
                          description="VGG19 weights the style loss is measured with")
    weights_path: StringProperty(name="Weights File", subtype="FILE_PATH", default="")
    farm_scheduler: StringProperty(
        name="Scheduler", default="",
        description="Dask scheduler address for Send to Farm (tcp://host:8786), or local:N "
                    "for N engine processes on this machine. Every worker must see the output "
                    "folder under the same path")
    farm_chunk_frames: IntProperty(
        name="Chunk Size", default=32, min=2, soft_max=200,
        description="Frames per farm task; each chunk after the first starts a few frames "
                    "early and the shared frames are blended")
    # Install Engine (install_ui.py): where its packages come from, which Python it uses.
    install_python: StringProperty(
        name="Python for the Environment", subtype="FILE_PATH", default="",
        description="A Python 3.11+ to make the engine's environment from (empty: Blender's own)")
    install_wheels: StringProperty(
        name="Wheel Folder", subtype="DIR_PATH", default="",
        description="Install from this folder of wheel files only, offline (empty: download)")
    install_index_url: StringProperty(
        name="Torch Index", default="",
        description="Extra package index for torch's build (e.g. PyTorch's CPU-only or CUDA "
                    "wheel index from its install selector; empty: the default index)")

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        from . import install_ui  # (imports this module)
        install_ui.draw_install(layout, self)
        layout.prop(self, "python_path")
        if not self.python_path:
            layout.label(text=f"Using: {engine_client.guess_python()}", icon="INFO")
        layout.prop(self, "device")
        layout.prop(self, "weights")
        if self.weights == "file":
            layout.prop(self, "weights_path")
        elif self.weights == "torchvision" and not bpy.app.online_access:
            layout.label(text="Online access is off: torchvision weights cannot be downloaded",
                         icon="ERROR")
        farm = layout.box()
        farm.label(text="Farm (Dask)", icon="NETWORK_DRIVE")
        farm.prop(self, "farm_scheduler")
        farm.prop(self, "farm_chunk_frames")
        if "check" in RUNNING_CHECK:
            layout.label(text="Checking the engine (up to "
                              f"{engine_client.CHECK_TIMEOUT:g} s)...", icon="SORTTIME")
        else:
            layout.operator("flowstyle.check_engine", icon="CHECKMARK")
        draw_check_result(layout, LAST_CHECK.get("result"))


def draw_check_result(layout: bpy.types.UILayout, result: CheckResult | None) -> None:
    if result is None:
        return
    box = layout.box()
    box.label(text=result.summary()[:200], icon="CHECKMARK" if result.ok else "ERROR")
    for problem in result.problems:
        box.label(text=problem[:200], icon="ERROR")
    for fix in result.fixes:
        box.label(text=fix[:200], icon="INFO")


def _addon_prefs() -> FlowstylePreferences | None:
    preferences = bpy.context.preferences
    addon = preferences.addons.get(ADDON_ID) if preferences is not None else None
    prefs = getattr(addon, "preferences", None) if addon else None
    return prefs if isinstance(prefs, FlowstylePreferences) else None


def engine_prefs() -> EnginePrefs:
    """Current preference values, whether or not the add-on was enabled through Blender."""
    prefs = _addon_prefs()
    if prefs is None:
        return EnginePrefs(python=engine_client.guess_python())
    weights = prefs.weights
    if weights == "file":
        weights = bpy.path.abspath(prefs.weights_path)
    return EnginePrefs(python=bpy.path.abspath(prefs.python_path) or engine_client.guess_python(),
                       device=prefs.device, weights=weights, cluster=prefs.farm_scheduler.strip(),
                       chunk_frames=prefs.farm_chunk_frames)


def start_check(timeout: float | None = None) -> CheckProcess | str:
    """Start `engine check` for the current preferences in the background (stopped after
    `timeout`, default engine_client.CHECK_TIMEOUT, seconds); a problem (str) when it cannot
    start at all."""
    root = engine_client.default_engine_root()
    if root is None:
        return "The engine is missing from this add-on: reinstall Flowstyle."
    prefs = engine_prefs()
    check = CheckProcess(prefs.python, root, prefs.weights, prefs.device,
                         timeout=engine_client.CHECK_TIMEOUT if timeout is None else timeout)
    RUNNING_CHECK["check"] = check
    LAST_CHECK.pop("result", None)
    return check


def poll_check() -> CheckResult | None:
    """One timer tick: the result once the running check has ended (then kept in LAST_CHECK
    for the preferences to show), else None. Returns at once."""
    check = RUNNING_CHECK.get("check")
    result = check.poll() if check is not None else None
    if result is not None:
        RUNNING_CHECK.pop("check", None)
        LAST_CHECK["result"] = result
    return result


def stop_check() -> None:
    check = RUNNING_CHECK.pop("check", None)
    if check is not None:
        check.terminate()


class FLOWSTYLE_OT_check_engine(bpy.types.Operator):
    """Run the engine's self-check in the chosen interpreter: torch, device, weights.
Runs in the background; Blender stays usable"""

    bl_idname = "flowstyle.check_engine"
    bl_label = "Check Engine"

    _timer: Any = None

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return "check" not in RUNNING_CHECK

    def execute(self, context: bpy.types.Context) -> OperatorResult:
        """Synchronous (background mode, scripts): waits for the check, up to the timeout."""
        started = start_check()
        if isinstance(started, str):
            self.report({"ERROR"}, started)
            return {"CANCELLED"}
        while (result := poll_check()) is None:
            time.sleep(0.1)
        return self._report(result)

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> OperatorResult:
        if bpy.app.background or context.window is None:
            return self.execute(context)
        started = start_check()
        if isinstance(started, str):
            self.report({"ERROR"}, started)
            return {"CANCELLED"}
        wm = window_manager(context)
        self._timer = wm.event_timer_add(TIMER_INTERVAL, window=context.window)
        wm.modal_handler_add(self)
        _redraw_preferences(context)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> OperatorResult:
        if event.type != "TIMER":
            return {"PASS_THROUGH"}  # never in the user's way
        result = poll_check()
        if result is None:
            return {"PASS_THROUGH"}
        self._end(context)
        return self._report(result)

    def cancel(self, context: bpy.types.Context) -> None:
        # Blender drops the operator (file load, quit): stop the check process.
        stop_check()
        self._end(context)

    def _end(self, context: bpy.types.Context) -> None:
        if self._timer is not None:
            window_manager(context).event_timer_remove(self._timer)
            self._timer = None
        _redraw_preferences(context)

    def _report(self, result: CheckResult) -> OperatorResult:
        if result.ok:
            self.report({"INFO"}, "Flowstyle engine OK: " + result.summary())
            return {"FINISHED"}
        self.report({"ERROR"}, "Flowstyle engine not usable: " + "; ".join(
            result.problems + result.fixes))
        return {"CANCELLED"}


def _redraw_preferences(context: bpy.types.Context) -> None:
    wm = context.window_manager
    for window in wm.windows if wm is not None else []:
        screen = window.screen
        for area in screen.areas if screen is not None else []:
            if area.type == "PREFERENCES":
                area.tag_redraw()


CLASSES = (FlowstylePreferences, FLOWSTYLE_OT_check_engine)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
