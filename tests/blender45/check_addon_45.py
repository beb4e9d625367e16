"""Blender 4.5 LTS checks, run by tests/test_addon_blender45.py under bpy 4.5 in its own venv.

Named check_*.py so the main (bpy 5.0) pytest run does not collect them: the API differs
(4.x compositor: scene.use_nodes + scene.node_tree + a Composite node; no media_type).
"""

from __future__ import annotations

import os
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="flowstyle_b45_"))
sys.path.insert(0, REPO)

import bpy  # noqa: E402
import numpy as np  # noqa: E402
import OpenEXR  # noqa: E402

import addon  # noqa: E402
from addon import compositor, passes  # noqa: E402
from addon.job import JobSpec  # noqa: E402


def setup_module() -> None:
    assert bpy.app.version[:2] == (4, 5), bpy.app.version_string
    addon.register()


def teardown_module() -> None:
    addon.unregister()


def _scene(name: str) -> bpy.types.Scene:
    scene = bpy.data.scenes.new(name)
    bpy.context.window.scene = scene if bpy.context.window else scene
    scene.render.resolution_x, scene.render.resolution_y = 64, 48
    scene.render.resolution_percentage = 100
    return scene


def _frames(out: str, start: int, end: int) -> JobSpec:
    os.makedirs(out, exist_ok=True)
    for frame in range(start, end + 1):
        grey = np.full((48, 64), frame / 10, np.float32)
        channels = {"R": grey, "G": grey, "B": grey, "A": np.ones_like(grey)}
        OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
                     channels).write(os.path.join(out, f"flowstyle_{frame:04d}.exr"))
    return JobSpec(styles=[], out_dir=out, frame_start=start, frame_end=end, python="", mix=0.6)


def test_registers_operators_settings_and_the_batch_command() -> None:
    assert hasattr(bpy.types.Scene, "flowstyle")
    assert hasattr(bpy.ops.flowstyle, "stylize") and hasattr(bpy.ops.flowstyle, "setup_passes")


def test_compositor_wiring_on_4x_uses_the_composite_node(tmp_path) -> None:
    scene = _scene("Wire45")
    spec = _frames(str(tmp_path), 3, 5)
    scene.use_nodes = True
    tree = scene.node_tree
    user_node = tree.nodes.new("CompositorNodeBlur")
    user_node.name = "My Blur"
    compositor.wire(scene, spec)
    composite = next(n for n in tree.nodes if n.bl_idname == "CompositorNodeComposite")
    mix = tree.nodes["Flowstyle Mix"]
    assert composite.inputs["Image"].links[0].from_node == mix
    assert mix.bl_idname == "CompositorNodeMixRGB"
    assert abs(mix.inputs[0].default_value - 0.6) < 1e-6
    image = tree.nodes["Flowstyle Result"]
    assert image.image.source == "SEQUENCE"
    assert (image.frame_start, image.frame_duration, image.frame_offset) == (3, 3, 2)
    names = sorted(n.name for n in tree.nodes)
    links = len(tree.links)
    compositor.wire(scene, spec)  # a rerun updates, never stacks
    assert sorted(n.name for n in tree.nodes) == names and len(tree.links) == links
    assert "My Blur" in tree.nodes and not tree.nodes["My Blur"].get(compositor.NODE_TAG)


def test_pass_setup_and_restore_on_4x() -> None:
    scene = _scene("Passes45")
    layer = scene.view_layers[0]
    layer.use_pass_vector = False
    scene.render.use_motion_blur = True
    scene.render.image_settings.file_format = "PNG"
    changes = passes.enable_stylize_passes(scene, layer, use_depth=True)
    assert layer.use_pass_vector and layer.use_pass_z and not scene.render.use_motion_blur
    assert scene.render.image_settings.file_format == "OPEN_EXR_MULTILAYER"
    passes.restore_changes(changes)
    assert not layer.use_pass_vector and scene.render.use_motion_blur
    assert scene.render.image_settings.file_format == "PNG"


def test_scene_colour_on_4x_has_no_working_space_so_sends_rec709() -> None:
    from addon import settings
    assert not hasattr(bpy.data, "colorspace")  # 5.0's per-file working space
    scene = _scene("Colour45")
    scene.view_settings.view_transform = "Filmic"
    colour = settings.scene_colour(scene)
    assert colour["working_space"] == "Linear Rec.709"
    assert colour["view"] == "Filmic" and colour["display"] == "sRGB"
    assert os.path.isfile(colour["ocio_config"])  # 4.5's own config, in the bpy 4.5 wheel
