"""Keyframed panel values, sampled per frame for the engine.

Style strength (and the compositor mix) are ordinary animatable properties: the artist
keyframes them like anything else (hover + I). The engine runs outside Blender and cannot
evaluate Blender's curves, so the job carries the value of each frame. Blender 5.0 moved
F-curves from `Action.fcurves` into channel bags per action slot (BLENDER_NOTES); the
helper below reads them either way.
"""

from __future__ import annotations

from typing import Any

import bpy


def _fcurves(id_data: Any) -> Any:
    """The F-curves animating `id_data` (a Scene), or None."""
    anim = getattr(id_data, "animation_data", None)
    action = anim.action if anim is not None else None
    if anim is None or action is None:
        return None
    try:  # Blender 4.4+: layered actions, curves live in the slot's channel bag
        from bpy_extras import anim_utils
        channelbag_for_slot: Any = getattr(anim_utils, "action_get_channelbag_for_slot")
        bag = channelbag_for_slot(action, anim.action_slot)
        return bag.fcurves if bag is not None else None
    except (ImportError, AttributeError):
        return getattr(action, "fcurves", None)  # Blender < 4.4


def fcurve_for(id_data: Any, data_path: str, index: int = 0) -> Any:
    """The F-curve of `data_path` on `id_data`, or None when it is not keyframed."""
    curves = _fcurves(id_data)
    if curves is None:
        return None
    for fc in curves:
        if fc.data_path == data_path and fc.array_index == index:
            return fc
    return None


def sample_per_frame(scene: bpy.types.Scene, data_path: str, start: int, end: int) -> dict[int, float]:
    """Frame -> value of the keyframed `scene.<data_path>` over start..end (inclusive);
    empty when the property is not animated (then its constant value applies)."""
    fc = fcurve_for(scene, data_path)
    if fc is None or getattr(fc, "mute", False):
        return {}
    return {frame: round(float(fc.evaluate(frame)), 6) for frame in range(start, end + 1)}
