"""Add-on preferences: which Python runs the engine, on which device, with which weights.

These belong to the machine, not the shot, so they live in Blender's preferences. The
"Check Engine" button runs `engine check --json` in that interpreter and shows what it found
and how to fix what is missing: the engine needs torch, which Blender's own Python lacks.
"""

from __future__ import annotations

import dataclasses

import bpy
from bpy.props import EnumProperty, StringProperty

from . import engine_client
from .engine_client import CheckResult
from .typing_bl import OperatorResult

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


@dataclasses.dataclass
class EnginePrefs:
    """Preference values as plain data (defaults when the add-on was registered by hand)."""

    python: str
    device: str = "auto"
    weights: str = "caffe"


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

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
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
                       device=prefs.device, weights=weights)


class FLOWSTYLE_OT_check_engine(bpy.types.Operator):
    """Run the engine's self-check in the chosen interpreter: torch, device, weights"""

    bl_idname = "flowstyle.check_engine"
    bl_label = "Check Engine"

    def execute(self, context: bpy.types.Context) -> OperatorResult:
        root = engine_client.default_engine_root()
        if root is None:
            self.report({"ERROR"}, "The engine is missing from this add-on: reinstall Flowstyle.")
            return {"CANCELLED"}
        # Blocks for a few seconds (torch imports slowly); fine for a button the user pressed.
        prefs = engine_prefs()
        result = engine_client.run_check(prefs.python, root, prefs.weights, prefs.device)
        LAST_CHECK["result"] = result
        if result.ok:
            self.report({"INFO"}, "Flowstyle engine OK: " + result.summary())
            return {"FINISHED"}
        self.report({"ERROR"}, "Flowstyle engine not usable: " + "; ".join(
            result.problems + result.fixes))
        return {"CANCELLED"}


CLASSES = (FlowstylePreferences, FLOWSTYLE_OT_check_engine)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
