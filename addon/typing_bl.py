"""Type aliases for Blender's string-enum returns, so mypy checks them against the stubs."""

from __future__ import annotations

from typing import Literal

import bpy

OperatorResult = set[Literal["RUNNING_MODAL", "CANCELLED", "FINISHED", "PASS_THROUGH", "INTERFACE"]]
ReportLevel = Literal["INFO", "WARNING", "ERROR"]


def context_scene(context: bpy.types.Context) -> bpy.types.Scene:
    """The context's scene; operators' poll() guarantees there is one."""
    scene = context.scene
    if scene is None:
        raise RuntimeError("Flowstyle needs a scene in the context.")
    return scene


def window_manager(context: bpy.types.Context) -> bpy.types.WindowManager:
    wm = context.window_manager
    if wm is None:
        raise RuntimeError("Flowstyle needs a window manager in the context.")
    return wm
