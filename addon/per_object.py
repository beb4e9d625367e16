"""Per-object styles in the panel: give objects or a collection their own painting.

A region is a Pass Index (Object Properties > Relations > Pass Index) with a style image or
"Keep Original". The add-on renders the Object Index pass, where every pixel holds its
object's Pass Index exactly, and the engine applies each region's style inside its own
pixels (engine/regions.py). Adding a region from the selection or from a collection gives
those objects a Pass Index no other region uses, so the artist never types one.
"""

from __future__ import annotations

from typing import Any

import bpy
from bpy.props import EnumProperty

from . import settings
from .typing_bl import OperatorResult, context_scene


def next_free_index(scene: bpy.types.Scene) -> int:
    """A Pass Index that no region and no object of the scene uses yet (>= 1)."""
    used = {r.index for r in settings.settings_of(scene).regions}
    used.update(obj.pass_index for obj in scene.objects)
    index = 1
    while index in used:
        index += 1
    return index


def add_region(scene: bpy.types.Scene, objects: list[bpy.types.Object], name: str) -> Any:
    """Give `objects` a new Pass Index and add a region for it; returns the region."""
    props = settings.settings_of(scene)
    index = next_free_index(scene)
    for obj in objects:
        obj.pass_index = index
    region = props.regions.add()
    region.name = name
    region.index = index
    props.active_region = len(props.regions) - 1
    return region


class FLOWSTYLE_OT_region_add(bpy.types.Operator):
    """Give the selected objects (or the active collection) their own style"""

    bl_idname = "flowstyle.region_add"
    bl_label = "Add Per-Object Style"
    bl_options = {"REGISTER", "UNDO"}

    source: EnumProperty(name="From", items=[
        ("SELECTED", "Selected Objects", "The objects selected now"),
        ("COLLECTION", "Active Collection", "Every object in the active collection"),
    ], default="SELECTED")

    def execute(self, context: bpy.types.Context) -> OperatorResult:
        scene = context_scene(context)
        if self.source == "COLLECTION":
            collection = context.collection
            objects = list(collection.all_objects) if collection is not None else []
            name = collection.name if collection is not None else ""
        else:
            objects = list(context.selected_objects or [])
            active = context.active_object
            name = active.name if active is not None else (objects[0].name if objects else "")
        if not objects:
            self.report({"ERROR"}, "Flowstyle: select objects (or a collection with objects) first.")
            return {"CANCELLED"}
        region = add_region(scene, objects, name)
        self.report({"INFO"}, f"Flowstyle: {len(objects)} object(s) now use Pass Index "
                              f"{region.index}; pick a style image for {name!r}.")
        return {"FINISHED"}


class FLOWSTYLE_OT_region_remove(bpy.types.Operator):
    """Remove the selected per-object style (those objects get the main style again)"""

    bl_idname = "flowstyle.region_remove"
    bl_label = "Remove Per-Object Style"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and len(settings.settings_of(context.scene).regions) > 0

    def execute(self, context: bpy.types.Context) -> OperatorResult:
        settings.remove_active(settings.settings_of(context_scene(context)), "regions", "active_region")
        return {"FINISHED"}


class FLOWSTYLE_UL_regions(bpy.types.UIList):
    """Per-object styles: name, Keep Original or a style image."""

    def draw_item(self, context: bpy.types.Context, layout: bpy.types.UILayout, data: Any,
                  item: Any, icon: int | None, active_data: Any, active_property: str | None,
                  index: int | None = 0, flt_flag: int | None = 0) -> None:
        row = layout.row(align=True)
        row.label(text=f"{item.name or 'Region'} ({item.index})", icon="OBJECT_DATA")
        row.prop(item, "keep_original", text="", icon="HIDE_OFF" if item.keep_original else "BRUSH_DATA")
        if not item.keep_original:
            row.prop(item, "path", text="")


def draw_regions(layout: bpy.types.UILayout, props: Any) -> None:
    """The "Per-Object Styles" sub-panel body."""
    row = layout.row()
    row.template_list("FLOWSTYLE_UL_regions", "", props, "regions", props, "active_region", rows=2)
    buttons = row.column(align=True)
    buttons.operator("flowstyle.region_add", icon="RESTRICT_SELECT_OFF", text="").source = "SELECTED"
    buttons.operator("flowstyle.region_add", icon="OUTLINER_COLLECTION", text="").source = "COLLECTION"
    buttons.operator("flowstyle.region_remove", icon="REMOVE", text="")
    if len(props.regions):
        layout.label(text="Objects in no region get the main style images", icon="INFO")


CLASSES = (FLOWSTYLE_OT_region_add, FLOWSTYLE_OT_region_remove, FLOWSTYLE_UL_regions)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
