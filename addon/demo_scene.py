"""A small animated scene built from code: the demo's shot and the tests' real renders.

Everything here is procedural (no files), so a fresh machine renders it in seconds with
Cycles on the CPU. The scene is chosen to exercise what Flowstyle relies on:

* a textured floor and back wall under a perspective camera, so every pixel has geometry
  and a Vector pass value (optionally a transparent sky, to check that alpha survives);
* a textured cube sliding across the floor, which occludes and then uncovers the wall:
  the disocclusion case that the reliability mask must catch;
* a sphere rising and falling, so motion is not only horizontal.
"""

from __future__ import annotations

import math
import os

import bpy


def _textured_material(name: str, colour_a: tuple, colour_b: tuple, scale: float) -> bpy.types.Material:
    """A diffuse material with a checker-over-noise texture: strong detail to track."""
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nodes = mat.node_tree.nodes
    links = mat.node_tree.links
    bsdf = nodes.get("Principled BSDF")
    checker = nodes.new("ShaderNodeTexChecker")
    checker.inputs["Scale"].default_value = scale
    checker.inputs["Color1"].default_value = (*colour_a, 1.0)
    checker.inputs["Color2"].default_value = (*colour_b, 1.0)
    noise = nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = scale * 2.0
    mix = nodes.new("ShaderNodeMix")
    mix.data_type = "RGBA"
    mix.inputs["Factor"].default_value = 0.35
    links.new(checker.outputs["Color"], mix.inputs["A"])
    links.new(noise.outputs["Color"], mix.inputs["B"])
    links.new(mix.outputs["Result"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.8
    return mat


def _plane(name: str, size: float, location: tuple, rotation: tuple, mat: bpy.types.Material,
           scene: bpy.types.Scene) -> bpy.types.Object:
    mesh = bpy.data.meshes.new(name)
    h = size / 2.0
    mesh.from_pydata([(-h, -h, 0), (h, -h, 0), (h, h, 0), (-h, h, 0)], [], [(0, 1, 2, 3)])
    mesh.uv_layers.new()
    obj = bpy.data.objects.new(name, mesh)
    obj.location = location
    obj.rotation_euler = rotation
    obj.data.materials.append(mat)
    scene.collection.objects.link(obj)
    return obj


def _cube(name: str, size: float, mat: bpy.types.Material, scene: bpy.types.Scene) -> bpy.types.Object:
    h = size / 2.0
    verts = [(x, y, z) for x in (-h, h) for y in (-h, h) for z in (-h, h)]
    faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(verts, [], faces)
    obj = bpy.data.objects.new(name, mesh)
    obj.data.materials.append(mat)
    scene.collection.objects.link(obj)
    return obj


def _sphere(name: str, radius: float, mat: bpy.types.Material, scene: bpy.types.Scene,
            segments: int = 24, rings: int = 12) -> bpy.types.Object:
    verts = [(0.0, 0.0, radius)]
    for r in range(1, rings):
        theta = math.pi * r / rings
        for s in range(segments):
            phi = 2 * math.pi * s / segments
            verts.append((radius * math.sin(theta) * math.cos(phi),
                          radius * math.sin(theta) * math.sin(phi),
                          radius * math.cos(theta)))
    verts.append((0.0, 0.0, -radius))
    faces = []
    for s in range(segments):
        faces.append((0, 1 + s, 1 + (s + 1) % segments))
    for r in range(rings - 2):
        a, b = 1 + r * segments, 1 + (r + 1) * segments
        for s in range(segments):
            s1 = (s + 1) % segments
            faces.append((a + s, b + s, b + s1, a + s1))
    last = len(verts) - 1
    base = 1 + (rings - 2) * segments
    for s in range(segments):
        faces.append((base + s, last, base + (s + 1) % segments))
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(verts, [], faces)
    for poly in mesh.polygons:
        poly.use_smooth = True
    obj = bpy.data.objects.new(name, mesh)
    obj.data.materials.append(mat)
    scene.collection.objects.link(obj)
    return obj


def _key(obj: bpy.types.Object, frame: int, location: tuple) -> None:
    obj.location = location
    obj.keyframe_insert("location", frame=frame)


def build_demo_scene(*, width: int = 128, height: int = 96, frames: int = 8, samples: int = 8,
                     transparent_sky: bool = False, name: str = "FlowstyleDemo") -> bpy.types.Scene:
    """Create (or replace) a scene named `name` with the demo shot, and make it active.

    width, height: render size in pixels. frames: the shot runs from frame 1 to `frames`.
    samples: Cycles samples per pixel (denoising off, so renders are deterministic).
    transparent_sky: if True the back wall is left out and the film is transparent, so the
    upper part of the frame has alpha 0 (tests that alpha survives stylization).
    """
    old = bpy.data.scenes.get(name)
    if old is not None:
        bpy.data.scenes.remove(old)
    scene = bpy.data.scenes.new(name)
    if bpy.context.window is not None:
        bpy.context.window.scene = scene

    floor_mat = _textured_material("FS_Floor", (0.55, 0.45, 0.3), (0.2, 0.25, 0.35), 6.0)
    wall_mat = _textured_material("FS_Wall", (0.7, 0.65, 0.55), (0.3, 0.35, 0.25), 5.0)
    cube_mat = _textured_material("FS_Cube", (0.8, 0.15, 0.1), (0.95, 0.8, 0.2), 3.0)
    ball_mat = _textured_material("FS_Ball", (0.1, 0.3, 0.8), (0.85, 0.9, 0.95), 4.0)

    _plane("FS_Floor", 20.0, (0, 0, 0), (0, 0, 0), floor_mat, scene)
    if not transparent_sky:
        _plane("FS_Wall", 20.0, (0, 4.0, 5.0), (math.pi / 2, 0, 0), wall_mat, scene)
    cube = _cube("FS_Cube", 1.2, cube_mat, scene)
    ball = _sphere("FS_Ball", 0.6, ball_mat, scene)
    cube.rotation_euler = (0, 0, 0.4)

    last = max(frames, 2)
    _key(cube, 1, (-2.2, 0.5, 0.6))
    _key(cube, last, (2.2, 0.5, 0.6))
    for f in range(1, last + 1):
        t = (f - 1) / (last - 1)
        _key(ball, f, (1.0 - 1.5 * t, -1.2, 0.6 + 1.2 * abs(math.sin(math.pi * t))))
    for obj in (cube, ball):
        # Linear interpolation: constant speed makes the expected motion easy to reason about.
        action = obj.animation_data.action
        try:
            from bpy_extras import anim_utils
            bag = anim_utils.action_get_channelbag_for_slot(action, obj.animation_data.action_slot)
            curves = bag.fcurves
        except (ImportError, AttributeError):
            curves = action.fcurves  # Blender < 4.4
        for fc in curves:
            for kp in fc.keyframe_points:
                kp.interpolation = "LINEAR"

    cam_data = bpy.data.cameras.new("FS_Camera")
    cam_data.lens = 35
    cam = bpy.data.objects.new("FS_Camera", cam_data)
    cam.location = (0, -9.0, 3.2)
    cam.rotation_euler = (math.radians(78), 0, 0)
    scene.collection.objects.link(cam)
    scene.camera = cam

    sun_data = bpy.data.lights.new("FS_Sun", "SUN")
    sun_data.energy = 3.0
    sun = bpy.data.objects.new("FS_Sun", sun_data)
    sun.rotation_euler = (math.radians(40), math.radians(20), math.radians(30))
    scene.collection.objects.link(sun)

    world = bpy.data.worlds.new("FS_World")
    world.use_nodes = True
    bg = world.node_tree.nodes.get("Background")
    if bg is not None:
        bg.inputs["Color"].default_value = (0.35, 0.45, 0.6, 1.0)
        bg.inputs["Strength"].default_value = 0.6
    scene.world = world

    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.cycles.seed = 0
    scene.render.resolution_x = width
    scene.render.resolution_y = height
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = transparent_sky
    scene.render.use_motion_blur = False
    scene.frame_start = 1
    scene.frame_end = last
    return scene


def render_multilayer_exrs(scene: bpy.types.Scene, out_dir: str, *, depth: bool = True,
                           vectors: bool = True) -> list[str]:
    """Render every frame of `scene` to `out_dir/render_####.exr` (multilayer, with vectors).

    Used by the demo and the tests; the add-on's own render path also restores the user's
    settings, which a throwaway demo scene does not need.
    """
    os.makedirs(out_dir, exist_ok=True)
    layer = scene.view_layers[0]
    layer.use_pass_vector = vectors
    layer.use_pass_z = depth
    scene.render.use_motion_blur = False
    settings = scene.render.image_settings
    settings.media_type = "MULTI_LAYER_IMAGE"  # must precede file_format in 5.0
    settings.file_format = "OPEN_EXR_MULTILAYER"
    settings.color_depth = "32"
    settings.exr_codec = "ZIP"
    scene.render.use_file_extension = True
    paths = []
    for frame in range(scene.frame_start, scene.frame_end + 1):
        scene.frame_set(frame)
        scene.render.filepath = os.path.join(out_dir, f"render_{frame:04d}")
        bpy.ops.render.render(write_still=True, scene=scene.name)
        paths.append(os.path.join(out_dir, f"render_{frame:04d}.exr"))
    return paths
