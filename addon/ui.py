"""Panels: one in the compositor's sidebar (N panel, "Flowstyle" tab) and the same settings
in Properties > Output, where render settings already live. Both draw with `draw_flowstyle`.
"""

from __future__ import annotations

import textwrap
from typing import Any, Literal

import bpy

from . import model_state, per_object, pipeline, settings, shelf
from .render import FrameRenderer

Icon = Literal["CHECKMARK", "INFO", "ERROR"]


class FLOWSTYLE_UL_styles(bpy.types.UIList):
    """Style images with their weights."""

    def draw_item(self, context: bpy.types.Context, layout: bpy.types.UILayout, data: Any,
                  item: Any, icon: int | None, active_data: Any, active_property: str | None,
                  index: int | None = 0, flt_flag: int | None = 0) -> None:
        row = layout.row(align=True)
        row.prop(item, "path", text="", emboss=True)
        row.prop(item, "weight", text="")


def draw_flowstyle(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    """The whole Flowstyle UI for the context's scene."""
    scene = context.scene
    if scene is None:
        return
    props = settings.settings_of(scene)
    layout.use_property_split = True
    layout.use_property_decorate = False

    _draw_run(layout, scene)

    col = layout.column()
    col.label(text="Style Images")
    row = col.row()
    row.template_list("FLOWSTYLE_UL_styles", "", props, "styles", props, "active_style", rows=2)
    buttons = row.column(align=True)
    buttons.operator("flowstyle.style_add", icon="ADD", text="")
    buttons.operator("flowstyle.style_remove", icon="REMOVE", text="")

    header, body = layout.panel("flowstyle_shelf", default_closed=False)
    header.label(text="Style Shelf")
    if body is not None:
        shelf.draw_shelf(body)

    header, body = layout.panel("flowstyle_per_object", default_closed=True)
    header.label(text="Per-Object Styles")
    if body is not None:
        per_object.draw_regions(body, props)

    col = layout.column()
    col.prop(props, "style_strength")
    col.prop(props, "temporal_strength")
    col.prop(props, "method")
    if props.method != "optimize":
        _draw_model_state(col, context, scene)
    col.prop(props, "preserve_colour")
    col.prop(props, "preset")
    col.prop(props, "use_scene_range")
    if not props.use_scene_range:
        sub = col.column(align=True)
        sub.prop(props, "frame_start")
        sub.prop(props, "frame_end")
    col.prop(props, "output_dir", placeholder="Automatic: one folder per file and scene")
    _draw_output_dir(col, scene)
    col.prop(props, "flow")
    col.prop(props, "use_depth")
    col.prop(props, "mix", slider=True)

    header, body = layout.panel("flowstyle_advanced", default_closed=True)
    header.label(text="Advanced")
    if body is not None:
        body.prop(props, "first_iterations")
        body.prop(props, "iterations")
        body.prop(props, "height")
        body.prop(props, "rerender")
        row = body.row(align=True)
        row.operator("flowstyle.setup_passes", icon="RENDERLAYERS")
        row.operator("flowstyle.restore_passes", icon="LOOP_BACK", text="Undo")
        body.operator("flowstyle.wire_compositor", icon="NODETREE")


def model_state_of(context: bpy.types.Context, scene: bpy.types.Scene) -> tuple[bool, str]:
    """(will_train, reason) for the scene's next Network / Hybrid run (model_state.py),
    counting frames that will be rendered again first."""
    spec = settings.spec_from_scene(scene)
    layer = (context.view_layer.name if context.scene == scene and context.view_layer is not None
             else scene.view_layers[0].name)
    stale = FrameRenderer(scene, layer, spec).stale_reason() if scene.camera else ""
    root = pipeline.resolve_engine_root(spec)
    return model_state.training_decision(spec, model_state.engine_version(root), stale)


def _draw_model_state(layout: bpy.types.UILayout, context: bpy.types.Context,
                      scene: bpy.types.Scene) -> None:
    try:
        will_train, reason = model_state_of(context, scene)
    except Exception as exc:  # a panel must draw whatever the disk holds
        will_train, reason = True, f"cannot tell ({exc})"
    text = ("Will train the network: " if will_train else "") + reason
    column = layout.column(align=True)
    lines = textwrap.wrap(text, 60, break_on_hyphens=False) or [""]
    for i, line in enumerate(lines[:6]):
        icon: Icon | Literal["BLANK1"] = ("INFO" if will_train else "CHECKMARK") if i == 0 \
            else "BLANK1"
        column.label(text=line, icon=icon)


def output_dir_lines(scene: bpy.types.Scene) -> list[str]:
    """What the panel says under Output Folder: the folder a run will really use."""
    props = settings.settings_of(scene)
    lines = [settings.resolve_output_dir(props.output_dir, scene.name)]
    if not bpy.data.filepath and (not props.output_dir or props.output_dir.startswith("//")):
        lines.append("File not saved: a temporary folder until you save the .blend")
    return lines


def _draw_output_dir(layout: bpy.types.UILayout, scene: bpy.types.Scene) -> None:
    row = layout.row()
    row.alignment = "RIGHT"
    column = row.column(align=True)
    for i, line in enumerate(output_dir_lines(scene)):
        column.label(text=line, icon="FILE_FOLDER" if i == 0 else "INFO")


def _draw_run(layout: bpy.types.UILayout, scene: bpy.types.Scene) -> None:
    run = pipeline.ACTIVE.get(scene.name)
    if run is not None:
        row = layout.row(align=True)
        row.progress(factor=run.fraction(), type="BAR", text=run.status_text())
        row.operator("flowstyle.cancel", text="", icon="CANCEL")
        return
    row = layout.row(align=True)
    row.operator("flowstyle.preview_frame", icon="IMAGE_DATA")
    row.operator("flowstyle.stylize", icon="BRUSH_DATA")
    row.operator("flowstyle.send_to_farm", icon="NETWORK_DRIVE")
    last = pipeline.LAST_RESULT.get(scene.name)
    if last is not None:
        level, message, log_path = last
        box = layout.box()
        icon: Icon = "CHECKMARK" if level == "INFO" else "INFO" if level == "WARNING" else "ERROR"
        lines = [part for line in message.splitlines()
                 for part in textwrap.wrap(line, 90, break_on_hyphens=False) or [""]]
        for i, line in enumerate(lines[:12]):  # the panel does not wrap labels itself
            box.label(text=line, icon=icon if i == 0 else "BLANK1")
        if log_path:
            box.operator("wm.path_open", text="Open Log", icon="TEXT").filepath = log_path
        if scene.name in pipeline.OFFER_RERENDER:
            replace = box.operator("flowstyle.stylize", text="Replace Renders and Stylize",
                                   icon="FILE_REFRESH")
            setattr(replace, "rerender", True)  # an operator property (not in the stubs)


class FLOWSTYLE_PT_compositor(bpy.types.Panel):
    bl_label = "Flowstyle"
    bl_space_type = "NODE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Flowstyle"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        space = context.space_data
        return getattr(space, "tree_type", "") == "CompositorNodeTree" and context.scene is not None

    def draw(self, context: bpy.types.Context) -> None:
        if self.layout is not None:
            draw_flowstyle(self.layout, context)


class FLOWSTYLE_PT_output(bpy.types.Panel):
    bl_label = "Flowstyle"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "output"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        if self.layout is not None:
            draw_flowstyle(self.layout, context)


CLASSES = (FLOWSTYLE_UL_styles, FLOWSTYLE_PT_compositor, FLOWSTYLE_PT_output)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
