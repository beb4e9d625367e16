"""Render settings Flowstyle needs, applied so that they can be put back exactly.

The engine needs, per frame, a multilayer EXR with Combined (RGBA) and Vector (optionally
Depth). The Vector pass is only written with motion blur off. These are the user's own scene
settings, so every change is recorded as a `Change` (what, old value, new value) that can be
shown to the user and undone by `restore_changes`.

A Change names its setting by scene name and RNA path rather than holding a Python reference
to Blender data: references die on undo or file reload (and crash when used), paths do not.
Changes are also plain JSON, so the panel can keep "what Set Up Passes changed" in the .blend.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import bpy

# Lossless EXR codecs. PXR24/B44/DWA* are lossy and would degrade the Vector pass.
LOSSLESS_EXR_CODECS = ("ZIP", "PIZ", "ZIPS", "RLE", "NONE")

_LABELS = {
    "use_pass_vector": "Vector pass",
    "use_pass_z": "Depth (Z) pass",
    "use_pass_object_index": "Object Index pass",
    "use_motion_blur": "Motion blur",
    "media_type": "Output media type",
    "file_format": "Output file format",
    "color_mode": "Output colour channels",
    "color_depth": "Output colour depth",
    "exr_codec": "EXR codec",
    "filepath": "Output path",
    "use_file_extension": "File extensions",
    "use_compositing": "Compositing",
    "use_sequencer": "Sequencer",
}


@dataclasses.dataclass
class Change:
    """One setting changed by Flowstyle: `scene.path_resolve(owner).<attr>` went old -> new."""

    scene: str
    owner: str  # RNA path relative to the scene, e.g. "render.image_settings"
    attr: str
    old: Any
    new: Any

    def __str__(self) -> str:
        label = _LABELS.get(self.attr, self.attr)
        where = ""
        if self.owner.startswith("view_layers["):
            where = f" (view layer {self.owner[len('view_layers['):-1]})"
        return f"{label}{where}: {_show(self.old)} -> {_show(self.new)}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Change:
        return cls(**data)


class PassesError(RuntimeError):
    """A pass or setting Flowstyle needs cannot be turned on; the message says why."""


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return repr(value) if isinstance(value, str) else str(value)


def _owner_path(view_layer: bpy.types.ViewLayer) -> str:
    return f'view_layers["{bpy.utils.escape_identifier(view_layer.name)}"]'


def set_recorded(scene: bpy.types.Scene, owner: str, attr: str, value: Any,
                 changes: list[Change]) -> None:
    """Set one setting, and record the change (and any side effect on the image format).

    Setting `media_type` also changes file_format and colour depth; diffing the whole image
    format before and after catches such knock-on changes, so the list stays exact.
    """
    target = scene.path_resolve(owner) if owner else scene
    watched = _watched(scene, owner, attr)
    before = {key: _get(scene, *key) for key in watched}
    try:
        setattr(target, attr, value)
    except (AttributeError, TypeError, ValueError) as exc:
        raise PassesError(f"Cannot set {_LABELS.get(attr, attr)} to {_show(value)}: {exc}") from exc
    for key in watched:
        after = _get(scene, *key)
        if after != before[key]:
            merge_change(changes, Change(scene.name, key[0], key[1], before[key], after))


def merge_change(changes: list[Change], change: Change) -> None:
    """Record `change`; a setting changed twice keeps its first old value and first place."""
    for i, earlier in enumerate(changes):
        if (earlier.scene, earlier.owner, earlier.attr) == (change.scene, change.owner, change.attr):
            if change.new == earlier.old:
                del changes[i]
            else:
                earlier.new = change.new
            return
    changes.append(change)


def _watched(scene: bpy.types.Scene, owner: str, attr: str) -> list[tuple[str, str]]:
    """Settings that may change when `owner.attr` is set, in the order that restores them."""
    if owner == "render.image_settings":
        return [(owner, key) for key in _image_keys(scene)]
    return [(owner, attr)]


def _image_keys(scene: bpy.types.Scene) -> list[str]:
    # media_type (5.0+) resets file_format, which resets colour depth: restore in this order.
    keys = ["media_type", "file_format", "color_mode", "color_depth", "exr_codec"]
    return [k for k in keys if hasattr(scene.render.image_settings, k)]


def _get(scene: bpy.types.Scene, owner: str, attr: str) -> Any:
    target = scene.path_resolve(owner) if owner else scene
    return getattr(target, attr)


def set_multilayer_exr(scene: bpy.types.Scene, changes: list[Change]) -> None:
    """Full-float, lossless, RGBA multilayer EXR (what the engine reads)."""
    settings = scene.render.image_settings
    owner = "render.image_settings"
    if hasattr(settings, "media_type"):
        # Blender 5.0: file_format 'OPEN_EXR_MULTILAYER' is refused until media_type is set.
        if settings.media_type != "MULTI_LAYER_IMAGE":
            set_recorded(scene, owner, "media_type", "MULTI_LAYER_IMAGE", changes)
    if settings.file_format != "OPEN_EXR_MULTILAYER":
        set_recorded(scene, owner, "file_format", "OPEN_EXR_MULTILAYER", changes)
    if settings.color_mode != "RGBA":
        set_recorded(scene, owner, "color_mode", "RGBA", changes)
    if settings.color_depth != "32":
        set_recorded(scene, owner, "color_depth", "32", changes)
    if settings.exr_codec not in LOSSLESS_EXR_CODECS:
        set_recorded(scene, owner, "exr_codec", "ZIP", changes)


def enable_stylize_passes(scene: bpy.types.Scene, view_layer: bpy.types.ViewLayer,
                          use_depth: bool, object_index: bool = False) -> list[Change]:
    """Turn on what the engine needs; return exactly what changed (empty if nothing).

    On failure, whatever was already changed is put back before PassesError is raised, so the
    scene is never left half set up.
    """
    changes: list[Change] = []
    layer = _owner_path(view_layer)
    try:
        if not view_layer.use_pass_vector:
            set_recorded(scene, layer, "use_pass_vector", True, changes)
        if use_depth and not view_layer.use_pass_z:
            set_recorded(scene, layer, "use_pass_z", True, changes)
        if object_index and not view_layer.use_pass_object_index:  # per-object styles' masks
            set_recorded(scene, layer, "use_pass_object_index", True, changes)
        if scene.render.use_motion_blur:
            set_recorded(scene, "render", "use_motion_blur", False, changes)
        set_multilayer_exr(scene, changes)
        if not view_layer.use_pass_vector:
            raise PassesError(f"The Vector pass of view layer {view_layer.name!r} stays off.")
    except BaseException:
        restore_changes(changes)
        raise
    return changes


def restore_changes(changes: list[Change]) -> list[str]:
    """Put every recorded setting back, in recorded order; return problems (empty = all back).

    Never raises for one failing setting: restoring as much as possible matters more.
    Order matters for the image format (media_type before file_format before depth), and the
    recorded order already is that order.
    """
    problems: list[str] = []
    for change in changes:
        scene = bpy.data.scenes.get(change.scene)
        if scene is None:
            problems.append(f"Scene {change.scene!r} is gone; cannot restore {change}.")
            continue
        try:
            target = scene.path_resolve(change.owner) if change.owner else scene
            setattr(target, change.attr, change.old)
        except (AttributeError, TypeError, ValueError) as exc:
            problems.append(f"Could not restore {change}: {exc}")
    return problems


def describe(changes: list[Change]) -> str:
    """Human summary for a report."""
    if not changes:
        return "Nothing to change: the scene was already set up for Flowstyle."
    return "Changed: " + "; ".join(str(c) for c in changes)


def vector_pass_problem(scene: bpy.types.Scene) -> str | None:
    """Why this scene's render engine cannot give a Vector pass, or None if it can."""
    if scene.render.engine in {"CYCLES", "BLENDER_EEVEE", "BLENDER_EEVEE_NEXT"}:
        return None
    return (f"The render engine {scene.render.engine!r} writes no Vector pass; switch to Cycles "
            "or EEVEE, or set the flow source to Estimated.")
