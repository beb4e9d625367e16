"""Compositor write-back on Blender 5.0: wiring, no duplicates, user nodes untouched, and the
composited render really shows the stylized frame of the right number, mixed by the factor."""

from __future__ import annotations

import os
import pathlib

from addon_helpers import new_scene, read_rgba_mean, write_rgba_exr

import bpy
from addon import compositor
from addon.job import JobSpec


def _spec(out: str, start: int = 3, end: int = 5, mix: float = 1.0) -> JobSpec:
    """Stylized frames start..end, frame f a flat grey of f/10."""
    os.makedirs(out, exist_ok=True)
    for frame in range(start, end + 1):
        write_rgba_exr(os.path.join(out, f"flowstyle_{frame:04d}.exr"), frame / 10)
    return JobSpec(styles=[], out_dir=out, frame_start=start, frame_end=end, python="", mix=mix)


def _links(tree: bpy.types.NodeTree) -> set[tuple[str, str, str, str]]:
    return {(l.from_node.name, l.from_socket.identifier, l.to_node.name, l.to_socket.identifier)
            for l in tree.links}


def test_wires_a_new_tree_to_the_group_output(tmp_path: pathlib.Path) -> None:
    scene = new_scene()
    assert scene.compositing_node_group is None
    compositor.wire(scene, _spec(str(tmp_path), mix=0.7))

    tree = scene.compositing_node_group
    assert tree is not None and tree.bl_idname == "CompositorNodeTree"
    mix = tree.nodes["Flowstyle Mix"]
    image = tree.nodes["Flowstyle Result"]
    assert mix.bl_idname == "ShaderNodeMix" and mix.data_type == "RGBA"
    output = next(n for n in tree.nodes if n.bl_idname == "NodeGroupOutput")
    assert output.inputs[0].links[0].from_node == mix
    assert ("Flowstyle Result", "Image", "Flowstyle Mix", "B_Color") in _links(tree)
    assert ("Flowstyle Render Layers", "Image", "Flowstyle Mix", "A_Color") in _links(tree)
    factor = next(s for s in mix.inputs if s.identifier == "Factor_Float")
    assert abs(factor.default_value - 0.7) < 1e-6
    assert image.image.source == "SEQUENCE"
    assert (image.frame_start, image.frame_duration, image.frame_offset) == (3, 3, 2)


def test_rerun_updates_instead_of_stacking(tmp_path: pathlib.Path) -> None:
    scene = new_scene()
    spec = _spec(str(tmp_path))
    compositor.wire(scene, spec)
    tree = scene.compositing_node_group
    assert tree is not None
    names, links = sorted(n.name for n in tree.nodes), _links(tree)
    images = len(bpy.data.images)
    spec.mix = 0.25
    compositor.wire(scene, spec)
    compositor.wire(scene, spec)
    assert sorted(n.name for n in tree.nodes) == names
    assert _links(tree) == links
    assert len(bpy.data.images) == images
    assert compositor.set_mix_factor(scene, 0.5)


def test_users_own_nodes_are_left_alone(tmp_path: pathlib.Path) -> None:
    scene = new_scene()
    tree = bpy.data.node_groups.new("My Comp", "CompositorNodeTree")
    tree.interface.new_socket(name="Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    layers = tree.nodes.new("CompositorNodeRLayers")
    layers.scene = scene
    blur = tree.nodes.new("CompositorNodeBlur")
    blur.name = "My Blur"
    blur.location = (123.0, 45.0)
    out = tree.nodes.new("NodeGroupOutput")
    tree.links.new(layers.outputs[0], blur.inputs[0])
    tree.links.new(blur.outputs[0], out.inputs[0])
    scene.compositing_node_group = tree

    compositor.wire(scene, _spec(str(tmp_path)))
    compositor.wire(scene, _spec(str(tmp_path)))

    assert scene.compositing_node_group == tree  # the user's tree, not a new one
    assert tuple(blur.location) == (123.0, 45.0)
    links = _links(tree)
    assert (layers.name, "Image", "My Blur", "Image") in links  # untouched
    assert ("My Blur", "Image", "Flowstyle Mix", "A_Color") in links  # the original, as A
    assert out.inputs[0].links[0].from_node.name == "Flowstyle Mix"
    assert sorted(n.name for n in compositor.flowstyle_nodes(tree)) == [
        "Flowstyle Mix", "Flowstyle Result"]  # no extra Render Layers: the user's is used


def test_composited_render_shows_the_right_stylized_frame(tmp_path: pathlib.Path) -> None:
    """Render frames 3..5 through the compositor: frame f must show f/10 (file numbers =
    scene frames), and mix 0 must show the original render instead."""
    scene = new_scene(frames=(3, 5))
    compositor.wire(scene, _spec(str(tmp_path / "out")))
    scene.render.image_settings.file_format = "OPEN_EXR"
    for frame in (3, 4, 5):
        scene.frame_set(frame)
        scene.render.filepath = str(tmp_path / f"comp_{frame}.exr")
        bpy.ops.render.render(write_still=True, scene=scene.name)
        assert abs(read_rgba_mean(scene.render.filepath) - frame / 10) < 1e-4

    compositor.set_mix_factor(scene, 0.0)
    scene.render.filepath = str(tmp_path / "comp_mix0.exr")
    bpy.ops.render.render(write_still=True, scene=scene.name)
    assert abs(read_rgba_mean(scene.render.filepath) - 0.5) > 0.05  # the render, not 0.5


def test_wiring_before_stylizing_says_so(tmp_path: pathlib.Path) -> None:
    scene = new_scene()
    spec = JobSpec(styles=[], out_dir=str(tmp_path), frame_start=1, frame_end=3, python="")
    try:
        compositor.wire(scene, spec)
    except FileNotFoundError as exc:
        assert "stylize before wiring" in str(exc)
    else:
        raise AssertionError("wiring without frames must fail")
