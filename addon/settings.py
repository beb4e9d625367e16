"""Per-scene Flowstyle settings (saved in the .blend) and how they become a JobSpec.

They live on the scene (`scene.flowstyle`) rather than in preferences because they describe
a shot: another shot, in another scene or file, has other styles and another frame range.
Machine-specific things (which Python runs the engine, device) are preferences instead.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import bpy
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, FloatProperty,
                       IntProperty, StringProperty)

from . import animation, compositor
from .job import JobSpec, RegionRef, StyleRef
from .preferences import engine_prefs

# An empty Output Folder means "automatic": one folder per .blend file and scene, so two
# shots never share renders or results (see default_output_dir).
DEFAULT_OUTPUT_DIR = ""
OUTPUT_ROOT = "flowstyle"  # next to the .blend: //flowstyle/<blend name>/<scene name>/

# '//' (relative to the .blend) in a path property must be declared from Blender 4.5 on, or
# Blender warns on every assignment; 4.2-4.4 do not know the flag and refuse it.
_RELATIVE_PATH: Any = ({"PATH_SUPPORTS_BLEND_RELATIVE"} if bpy.app.version >= (4, 5, 0)
                       else set())

PRESET_ITEMS = [
    ("preview", "Preview", "Fast: small working resolution, few iterations per frame"),
    ("final", "Final", "Slow: larger working resolution, many iterations per frame"),
]
FLOW_ITEMS = [
    ("auto", "Auto", "Render vectors when the render has them, else estimated flow"),
    ("vectors", "Render Vectors", "Blender's Vector pass: exact motion (Cycles or EEVEE)"),
    ("estimated", "Estimated", "Optical flow estimated from the images (slower, less exact)"),
]


def _update_mix(self: Any, context: bpy.types.Context) -> None:
    # Move the compositor's Mix slider with the panel's, so the artist sees it at once.
    scene = self.id_data
    if isinstance(scene, bpy.types.Scene):
        compositor.set_mix_factor(scene, self.mix)


class FlowstyleStyle(bpy.types.PropertyGroup):
    """One style image with its weight."""

    path: StringProperty(name="Style Image", subtype="FILE_PATH",
                         description="A painting or picture whose look to transfer")
    weight: FloatProperty(name="Weight", default=1.0, min=0.0, soft_max=10.0,
                          description="Share of this image in the style (weights are normalised)")


class FlowstyleRegion(bpy.types.PropertyGroup):
    """Per-object style: the objects with this Pass Index get their own painting."""

    name: StringProperty(name="Name", description="The object or collection this region is")
    index: IntProperty(name="Pass Index", default=1, min=1, max=32767,
                       description="Objects whose Pass Index (Object Properties > Relations) is "
                                   "this get the region's style")
    keep_original: BoolProperty(name="Keep Original", default=False,
                                description="Leave these objects as rendered (no style)")
    path: StringProperty(name="Style Image", subtype="FILE_PATH",
                         description="The painting for these objects")


class FlowstyleSettings(bpy.types.PropertyGroup):
    """Settings of one shot; see JobSpec for what each becomes."""

    styles: CollectionProperty(type=FlowstyleStyle)
    active_style: IntProperty(name="Active Style", default=0)
    regions: CollectionProperty(type=FlowstyleRegion)
    active_region: IntProperty(name="Active Region", default=0)
    style_strength: FloatProperty(
        name="Style Strength", default=1.0, min=0.0, soft_max=5.0, options={"ANIMATABLE"},
        description="Balance between style and content: higher paints more and keeps less "
                    "of the render's detail. Can be keyframed (sampled per frame)")
    temporal_strength: FloatProperty(
        name="Temporal Strength", default=1.0, min=0.0, soft_max=5.0,
        description="How strongly each frame follows the previous one along the motion: "
                    "0 stylizes frames independently (flickers)")
    method: EnumProperty(
        name="Method", default="optimize",
        items=[("optimize", "Optimize", "Optimize every frame (best quality, slowest)"),
               ("network", "Network", "Train a network on this shot once, then stylize every "
                "frame in one pass (fast; trains again when styles or frames change)"),
               ("hybrid", "Hybrid", "Optimize every frame, starting from the trained "
                "network's output where there is no previous frame to follow")],
        description="How frames are stylized")
    preset: EnumProperty(name="Quality", items=PRESET_ITEMS, default="preview",
                         description="Iterations and working resolution")
    use_scene_range: BoolProperty(name="Scene Frame Range", default=True,
                                  description="Stylize the scene's frame range")
    frame_start: IntProperty(name="Start", default=1, min=0)
    frame_end: IntProperty(name="End", default=250, min=0)
    output_dir: StringProperty(
        name="Output Folder", subtype="DIR_PATH", default=DEFAULT_OUTPUT_DIR,
        options=_RELATIVE_PATH,
        description="Where renders and stylized frames go. Empty: automatic, "
                    "//flowstyle/<blend name>/<scene name>/ next to the .blend (an unsaved "
                    "file uses a temporary folder until it is saved). '//' = next to the .blend")
    flow: EnumProperty(name="Flow Source", items=FLOW_ITEMS, default="auto",
                       description="Where the motion between frames comes from")
    use_depth: BoolProperty(name="Use Depth", default=True,
                            description="Render the Depth pass and use it to find occlusions")
    mix: FloatProperty(name="Mix", default=1.0, min=0.0, max=1.0, subtype="FACTOR",
                       update=_update_mix, options={"ANIMATABLE"},
                       description="Compositor mix: 0 = original render, 1 = stylized")
    iterations: IntProperty(name="Iterations", default=0, min=0,
                            description="Optimizer iterations per frame after the first "
                                        "(0 = from the preset)")
    first_iterations: IntProperty(name="First Frame Iterations", default=0, min=0,
                                  description="Optimizer iterations for the first frame, which "
                                              "starts from scratch (0 = from the preset)")
    height: IntProperty(name="Working Height", default=0, min=0, subtype="PIXEL",
                        description="Working height in pixels (0 = from the preset)")
    preserve_colour: BoolProperty(
        name="Preserve Colours", default=False,
        description="Keep the render's colours and take only the painting's brushwork and "
                    "light and dark pattern (luminance-only transfer)")
    rerender: BoolProperty(
        name="Always Re-render", default=False,
        description="Render the frames again, replacing the renders in the output folder, "
                    "even when they match the scene, range and resolution (after changing "
                    "animation or materials), or when they belong to another shot")
    passes_backup: StringProperty(
        name="Pass Setup Backup", default="", options={"HIDDEN"},
        description="What 'Set Up Passes' changed (JSON), for 'Undo Pass Setup'")


CLASSES = (FlowstyleStyle, FlowstyleRegion, FlowstyleSettings)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    pointer = bpy.props.PointerProperty(type=FlowstyleSettings)  # type: ignore[func-returns-value]
    setattr(bpy.types.Scene, "flowstyle", pointer)


def unregister() -> None:
    if hasattr(bpy.types.Scene, "flowstyle"):
        delattr(bpy.types.Scene, "flowstyle")
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)


def settings_of(scene: bpy.types.Scene) -> FlowstyleSettings:
    """The scene's Flowstyle settings (typed accessor for a registered pointer property)."""
    settings: FlowstyleSettings = getattr(scene, "flowstyle")
    return settings


# Names Windows refuses as file names, whatever the extension.
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
             *(f"LPT{i}" for i in range(1, 10))}


def remove_active(props: FlowstyleSettings, items: str, active: str) -> None:
    """Remove the selected entry of the list `items` (e.g. "styles") whose selection is
    the index `active` (e.g. "active_style"), keeping a valid entry selected."""
    collection = getattr(props, items)
    collection.remove(getattr(props, active))
    setattr(props, active, max(0, min(getattr(props, active), len(collection) - 1)))


def safe_name(name: str) -> str:
    """`name` (a scene or file name) as one folder name that works on every filesystem.

    Letters (any script), digits, space, '-', '_' and '.' stay; anything else (slashes,
    colons, '?', control characters) becomes '_'. No leading or trailing dots or spaces,
    never empty, never a Windows device name.
    """
    text = "".join(c if c.isalnum() or c in "-_. " else "_" for c in name).strip(" .")
    if not text:
        return "_"
    if text.split(".")[0].upper() in _RESERVED:
        text = "_" + text
    return text[:100].rstrip(" .") or "_"


def unsaved_root() -> str:
    """Where an unsaved file's outputs go: a temporary folder of this Blender session (the
    pid keeps two unsaved sessions apart; such outputs are not meant to be kept)."""
    return os.path.join(tempfile.gettempdir(), OUTPUT_ROOT, f"unsaved-{os.getpid()}")


def default_output_dir(scene_name: str) -> str:
    """The automatic output folder of a scene (absolute).

    Saved file: `<folder of the .blend>/flowstyle/<blend name>/<scene name>/`, i.e.
    `//flowstyle/<blend name>/<scene name>/`; unsaved file: `unsaved_root()/<scene name>/`.
    """
    if not bpy.data.filepath:
        return os.path.join(unsaved_root(), safe_name(scene_name))
    blend = os.path.splitext(os.path.basename(bpy.data.filepath))[0]
    return os.path.normpath(os.path.join(os.path.dirname(bpy.path.abspath(bpy.data.filepath)),
                                         OUTPUT_ROOT, safe_name(blend), safe_name(scene_name)))


def resolve_output_dir(path: str, scene_name: str) -> str:
    """An absolute output folder: `path`, or the automatic one when `path` is empty.

    A '//' path in an unsaved file (which has no folder yet) goes under `unsaved_root()`.
    """
    if not path:
        return default_output_dir(scene_name)
    if path.startswith("//") and not bpy.data.filepath:
        return os.path.normpath(os.path.join(unsaved_root(), safe_name(scene_name), path[2:]))
    return os.path.normpath(bpy.path.abspath(path))


def frame_range(scene: bpy.types.Scene) -> tuple[int, int]:
    settings = settings_of(scene)
    if settings.use_scene_range:
        return scene.frame_start, scene.frame_end
    return settings.frame_start, settings.frame_end


def blender_ocio_config() -> str:
    """The running Blender's own OCIO config ("" when not found: the engine looks itself).

    $OCIO wins, as it does for Blender itself; otherwise it ships in
    <version>/datafiles/colormanagement/ of the installation (and of the bpy wheel).
    """
    if os.environ.get("OCIO"):
        return os.environ["OCIO"]
    path = os.path.join(bpy.utils.resource_path("LOCAL"), "datafiles", "colormanagement",
                        "config.ocio")
    return path if os.path.isfile(path) else ""


def scene_colour(scene: bpy.types.Scene) -> dict[str, Any]:
    """The scene's colour management as JobSpec fields: what the artist sees the render as.

    Blender 5.0 has a per-file working space (bpy.data.colorspace); 4.x renders in the
    config's scene_linear role, Linear Rec.709 in Blender's config.
    """
    colour: dict[str, Any] = {"ocio_config": blender_ocio_config()}
    blend_colour = getattr(bpy.data, "colorspace", None)  # 5.0+
    working = getattr(blend_colour, "working_space", "") if blend_colour is not None else ""
    colour["working_space"] = working or "Linear Rec.709"
    if scene.display_settings is not None:
        colour["display"] = scene.display_settings.display_device
    view = scene.view_settings
    if view is not None:
        colour.update(view=view.view_transform, look=view.look or "None",
                      exposure=float(view.exposure), gamma=float(view.gamma))
    return colour


def spec_from_scene(scene: bpy.types.Scene) -> JobSpec:
    """A JobSpec from the scene's settings and the add-on preferences."""
    settings = settings_of(scene)
    prefs = engine_prefs()
    start, end = frame_range(scene)
    return JobSpec(
        **scene_colour(scene),
        preserve_colour=settings.preserve_colour,
        styles=[StyleRef(bpy.path.abspath(s.path) if s.path else "", s.weight)
                for s in settings.styles],
        out_dir=resolve_output_dir(settings.output_dir, scene.name),
        frame_start=start,
        frame_end=end,
        python=prefs.python,
        preset=settings.preset,
        method=settings.method,
        style_strength=settings.style_strength,
        temporal_strength=settings.temporal_strength,
        flow=settings.flow,
        use_depth=settings.use_depth,
        device=prefs.device,
        weights=prefs.weights,
        iterations=settings.iterations or None,
        first_iterations=settings.first_iterations or None,
        height=settings.height or None,
        mix=settings.mix,
        rerender=settings.rerender,
        allow_download=bool(bpy.app.online_access),
        chunk_frames=prefs.chunk_frames,
        regions=[RegionRef(r.index, [] if r.keep_original else
                           [StyleRef(bpy.path.abspath(r.path) if r.path else "", 1.0)], r.name)
                 for r in settings.regions],
        style_strengths=animation.sample_per_frame(scene, "flowstyle.style_strength", start, end),
    )
