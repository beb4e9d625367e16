"""The style shelf: public-domain paintings shipped with the extension, one click to use.

The images live in `styles/` next to this file (downscaled to keep the extension small;
sources and licences in styles/README.md). The panel shows them as thumbnails from a
`bpy.utils.previews` collection; clicking one adds it as a style image with weight 1.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import bpy
import bpy.utils.previews
from bpy.props import StringProperty

from . import settings
from .typing_bl import OperatorResult, context_scene

SHELF_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "styles")


@dataclasses.dataclass(frozen=True)
class Painting:
    """One painting of the shelf (see styles/README.md for its source and licence)."""

    key: str  # file name without extension
    title: str
    artist: str
    year: int

    @property
    def path(self) -> str:
        return os.path.join(SHELF_DIR, f"{self.key}.jpg")

    @property
    def label(self) -> str:
        return f"{self.title} ({self.artist}, {self.year})"


PAINTINGS = (
    Painting("starry_night", "The Starry Night", "Vincent van Gogh", 1889),
    Painting("scream", "The Scream", "Edvard Munch", 1893),
    Painting("great_wave", "The Great Wave", "Katsushika Hokusai", 1831),
    Painting("moulin_de_la_galette", "Moulin de la Galette", "Pierre-Auguste Renoir", 1876),
    Painting("village_street_auvers", "Village Street in Auvers", "Vincent van Gogh", 1890),
    Painting("harvesters", "The Harvesters", "Pieter Bruegel the Elder", 1565),
)

_previews: dict[str, Any] = {}  # "shelf" -> the previews collection, while registered


def painting(key: str) -> Painting | None:
    return next((p for p in PAINTINGS if p.key == key), None)


def icon_id(key: str) -> int:
    """The thumbnail's icon id for the UI (0 when previews are unavailable)."""
    collection = _previews.get("shelf")
    if collection is None or key not in collection:
        return 0
    return int(collection[key].icon_id)


def add_to_scene(scene: bpy.types.Scene, key: str) -> Any:
    """Add shelf painting `key` as a style image of `scene` (weight 1); returns the slot.
    A painting already in the list is not added twice: its slot becomes the active one."""
    found = painting(key)
    if found is None:
        raise KeyError(f"no painting {key!r} on the shelf")
    props = settings.settings_of(scene)
    for i, style in enumerate(props.styles):
        if os.path.normpath(bpy.path.abspath(style.path)) == os.path.normpath(found.path):
            props.active_style = i
            return style
    slot = props.styles.add()
    slot.path = found.path
    slot.weight = 1.0
    props.active_style = len(props.styles) - 1
    return slot


class FLOWSTYLE_OT_shelf_add(bpy.types.Operator):
    """Use this painting as a style image"""

    bl_idname = "flowstyle.shelf_add"
    bl_label = "Add Painting"
    bl_options = {"REGISTER", "UNDO"}

    key: StringProperty(name="Painting", default="")

    @classmethod
    def description(cls, context: bpy.types.Context, properties: Any) -> str:
        found = painting(getattr(properties, "key", ""))
        return f"Use {found.label} as a style image" if found else "Use this painting"

    def execute(self, context: bpy.types.Context) -> OperatorResult:
        try:
            add_to_scene(context_scene(context), self.key)
        except KeyError as exc:
            self.report({"ERROR"}, f"Flowstyle: {exc}")
            return {"CANCELLED"}
        return {"FINISHED"}


def draw_shelf(layout: bpy.types.UILayout) -> None:
    """Thumbnails in a grid, each a button that adds its painting."""
    grid = layout.grid_flow(columns=3, even_columns=True, align=True)
    for p in PAINTINGS:
        col = grid.column(align=True)
        icon = icon_id(p.key)
        if icon:
            col.template_icon(icon_value=icon, scale=4.0)
        col.operator("flowstyle.shelf_add", text=p.title, icon_value=icon).key = p.key


def register() -> None:
    bpy.utils.register_class(FLOWSTYLE_OT_shelf_add)
    collection = bpy.utils.previews.new()
    for p in PAINTINGS:
        if os.path.isfile(p.path):
            collection.load(p.key, p.path, "IMAGE")
    _previews["shelf"] = collection


def unregister() -> None:
    collection = _previews.pop("shelf", None)
    if collection is not None:
        bpy.utils.previews.remove(collection)
    bpy.utils.unregister_class(FLOWSTYLE_OT_shelf_add)
