"""Wiring the stylized frames into the scene's compositor.

    original (what fed the output before, or Render Layers) --A--\
                                                                  Mix (factor) --> final output
    Image node on flowstyle_####.exr (a sequence) ----------B----/

Final output: Blender 5.0 = the Group Output node of `scene.compositing_node_group` (created
if the scene has none); Blender 4.2-4.5 = the Composite node of `scene.node_tree`.

Flowstyle's nodes carry a custom property (`NODE_TAG`) and a name starting with "Flowstyle",
so a rerun finds and updates them instead of adding more, and nothing else in the tree is
touched: the user's nodes stay as they were, we only re-route the one link into the output.
"""

from __future__ import annotations

import os
from typing import Any

import bpy

from . import animation
from .job import JobSpec

NODE_TAG = "flowstyle_role"  # custom property on our nodes: "image", "mix" or "render_layers"
IMAGE_TAG = "flowstyle_out"  # custom property on our image datablock: the output folder
IS_5 = bpy.app.version >= (5, 0, 0)


def _tagged(tree: bpy.types.NodeTree, role: str) -> bpy.types.Node | None:
    for node in tree.nodes:
        if node.get(NODE_TAG) == role:
            return node
    return None


def _new_tagged(tree: bpy.types.NodeTree, node_type: str, role: str, name: str) -> bpy.types.Node:
    node = tree.nodes.new(node_type)
    node[NODE_TAG] = role
    node.name = name
    node.label = name
    return node


def flowstyle_nodes(tree: bpy.types.NodeTree) -> list[bpy.types.Node]:
    """Nodes Flowstyle made in `tree` (for tests and for a clean-up)."""
    return [n for n in tree.nodes if n.get(NODE_TAG)]


def _socket(sockets: Any, identifier: str) -> Any:
    """A socket by identifier: ShaderNodeMix has several sockets called "A", "B", "Result"."""
    for socket in sockets:
        if socket.identifier == identifier:
            return socket
    raise KeyError(identifier)


# ---------------------------------------------------------------------------------------------
# The output tree (version-specific)

def _tree_and_output(scene: bpy.types.Scene) -> tuple[bpy.types.NodeTree, Any]:
    """The compositor tree and the socket that is the final image, creating what is missing."""
    if IS_5:
        return _tree_and_output_5(scene)
    return _tree_and_output_4(scene)


def _tree_and_output_5(scene: bpy.types.Scene) -> tuple[bpy.types.NodeTree, Any]:
    tree = scene.compositing_node_group
    if tree is None:
        tree = bpy.data.node_groups.new(f"{scene.name} Compositing", "CompositorNodeTree")
        scene.compositing_node_group = tree
    interface: Any = tree.interface
    if not any(item.item_type == "SOCKET" and item.in_out == "OUTPUT"
               for item in interface.items_tree):
        interface.new_socket(name="Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    outputs = [n for n in tree.nodes if n.bl_idname == "NodeGroupOutput"]
    active = [n for n in outputs if getattr(n, "is_active_output", False)]
    out_node = (active or outputs or [tree.nodes.new("NodeGroupOutput")])[0]
    if not outputs:
        out_node.location = (600, 0)
    return tree, out_node.inputs[0]


def _tree_and_output_4(scene: bpy.types.Scene) -> tuple[bpy.types.NodeTree, Any]:
    # Blender 4.2-4.5 (checked with bpy 4.5.15 by tests/test_addon_blender45.py).
    scene.use_nodes = True
    tree: Any = getattr(scene, "node_tree")
    composites = [n for n in tree.nodes if n.bl_idname == "CompositorNodeComposite"]
    if composites:
        out_node = composites[0]
    else:
        out_node = tree.nodes.new("CompositorNodeComposite")
        out_node.location = (600, 0)
    return tree, out_node.inputs["Image"]


def _new_mix(tree: bpy.types.NodeTree) -> bpy.types.Node:
    if IS_5:
        # 5.0 has no CompositorNodeMixRGB: the compositor uses the shared Mix node.
        mix: Any = _new_tagged(tree, "ShaderNodeMix", "mix", "Flowstyle Mix")
        mix.data_type = "RGBA"
        mix.blend_type = "MIX"
        return mix
    mix = _new_tagged(tree, "CompositorNodeMixRGB", "mix", "Flowstyle Mix")
    mix.blend_type = "MIX"
    return mix


def _mix_sockets(mix: bpy.types.Node) -> tuple[Any, Any, Any, Any]:
    """(factor, A, B, result) of our Mix node, for either node type."""
    if mix.bl_idname == "ShaderNodeMix":
        return (_socket(mix.inputs, "Factor_Float"), _socket(mix.inputs, "A_Color"),
                _socket(mix.inputs, "B_Color"), _socket(mix.outputs, "Result_Color"))
    return mix.inputs[0], mix.inputs[1], mix.inputs[2], mix.outputs[0]


# ---------------------------------------------------------------------------------------------
# The stylized image sequence

def load_sequence(spec: JobSpec, scene_name: str) -> bpy.types.Image:
    """The image datablock on the stylized frames, reused (and reloaded) on reruns."""
    first = spec.output_path(spec.frame_start)
    if not os.path.isfile(first):
        raise FileNotFoundError(f"No stylized frame at {first}: stylize before wiring.")
    image = None
    for candidate in bpy.data.images:
        if candidate.get(IMAGE_TAG) == os.path.normpath(spec.out_dir):
            image = candidate
            break
    if image is None:
        image = bpy.data.images.load(first, check_existing=False)
        image.name = f"Flowstyle {scene_name}"
        image[IMAGE_TAG] = os.path.normpath(spec.out_dir)
    else:
        image.filepath = first
    image.source = "SEQUENCE"
    image.reload()
    return image


def wire(scene: bpy.types.Scene, spec: JobSpec) -> list[bpy.types.Node]:
    """Add or update Flowstyle's nodes in `scene`'s compositor; return them.

    A = whatever fed the final output before Flowstyle was first wired (the user's own
    compositing, or a Render Layers node when there was none), B = the stylized sequence.
    """
    tree, output = _tree_and_output(scene)
    links = tree.links

    image_node: Any = _tagged(tree, "image")
    if image_node is None:
        image_node = _new_tagged(tree, "CompositorNodeImage", "image", "Flowstyle Result")
    mix = _tagged(tree, "mix") or _new_mix(tree)
    factor, in_a, in_b, result = _mix_sockets(mix)

    # Where the original picture comes from. On a rerun our Mix already feeds the output and
    # its A input already holds the original: leave it.
    feeding = output.links[0].from_socket if output.is_linked else None
    if feeding is not None and feeding.node != mix:
        links.new(feeding, in_a)
    elif not in_a.is_linked:
        layers: Any = _tagged(tree, "render_layers")
        if layers is None:
            layers = _new_tagged(tree, "CompositorNodeRLayers", "render_layers",
                                 "Flowstyle Render Layers")
        layers.scene = scene
        links.new(layers.outputs[0], in_a)

    image_node.image = load_sequence(spec, scene.name)
    image_node.frame_start = spec.frame_start
    image_node.frame_duration = spec.frame_count
    # The image user's frame is (scene frame - frame_start + 1 + offset): files are numbered
    # by scene frame, so the offset is frame_start - 1.
    image_node.frame_offset = spec.frame_start - 1
    links.new(image_node.outputs[0], in_b)
    factor.default_value = spec.mix
    if animation.fcurve_for(scene, "flowstyle.mix") is not None:
        drive_from_mix(tree, factor, scene)
    links.new(result, output)

    _place(output.node, mix, image_node)
    return [n for n in (image_node, mix, _tagged(tree, "render_layers")) if n is not None]


def _place(out_node: bpy.types.Node, mix: bpy.types.Node, image_node: bpy.types.Node) -> None:
    """Put our nodes left of the output, once (a user who moves them keeps their layout)."""
    if mix.get("flowstyle_placed"):
        return
    x, y = out_node.location.x, out_node.location.y
    mix.location = (x - 220, y)
    image_node.location = (x - 520, y - 260)
    mix["flowstyle_placed"] = True


def drive_from_mix(tree: bpy.types.NodeTree, factor: Any, scene: bpy.types.Scene) -> None:
    """Make the Mix factor follow the panel's keyframed Mix: a driver reading
    `scene.flowstyle.mix`, so keyframes on the panel's slider animate the compositor."""
    curve = factor.driver_add("default_value")
    driver = curve.driver
    driver.type = "AVERAGE"
    variable = driver.variables[0] if len(driver.variables) else driver.variables.new()
    variable.type = "SINGLE_PROP"
    target = variable.targets[0]
    target.id_type = "SCENE"
    target.id = scene
    target.data_path = "flowstyle.mix"


def set_mix_factor(scene: bpy.types.Scene, factor: float) -> bool:
    """Update the Mix node's factor live (the panel's slider); False if not wired yet."""
    tree: Any = scene.compositing_node_group if IS_5 else getattr(scene, "node_tree", None)
    if tree is None:
        return False
    mix = _tagged(tree, "mix")
    if mix is None:
        return False
    _mix_sockets(mix)[0].default_value = factor
    return True


def compositor_tree(scene: bpy.types.Scene) -> bpy.types.NodeTree | None:
    """The tree `wire` writes into, if any."""
    if IS_5:
        return scene.compositing_node_group
    return getattr(scene, "node_tree", None)
