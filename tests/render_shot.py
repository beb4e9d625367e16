"""Render the demo shot with real Blender (bpy) into multilayer EXRs, in its own process.

    python tests/render_shot.py OUT_DIR [--width 96 --height 72 --frames 6 --samples 16]
                                        [--transparent] [--no-depth] [--moving-camera]
                                        [--scene demo|crossing|overhead]

Run as a subprocess by the tests: bpy and torch are kept out of one process
(docs/architecture.md).
Also writes an Object Index pass (cube = 1, ball = 2) so tests can find what moved;
--index-floor-wall also gives the floor 3 and the back wall 4 (per-object style tests).

Scenes: "demo" is the add-on's demo shot. "crossing" and "overhead" are moving-object
shots for the ghost-trail measurement (evaluate's ghost ratio): the cube and the ball
cross the frame in opposite directions, fast (several pixels per frame), so every frame
uncovers a band of textured background behind each of them. "crossing" looks at the
back wall past the objects, "overhead" looks down on the textured floor.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bpy  # noqa: E402

from addon.demo_scene import build_demo_scene, render_multilayer_exrs  # noqa: E402


def _linear_keys(obj, keys: list[tuple[int, tuple]]) -> None:
    """Replace obj's location animation with `keys` [(frame, location)], linear between."""
    obj.animation_data_clear()
    for frame, location in keys:
        obj.location = location
        obj.keyframe_insert("location", frame=frame)
    for fc in _fcurves(obj):
        for kp in fc.keyframe_points:
            kp.interpolation = "LINEAR"


def _fcurves(obj):
    action = obj.animation_data.action
    try:
        from bpy_extras import anim_utils
        return anim_utils.action_get_channelbag_for_slot(action, obj.animation_data.action_slot).fcurves
    except (ImportError, AttributeError):
        return action.fcurves  # Blender < 4.4


def moving_objects(scene, kind: str) -> None:
    """Turn the demo scene into a moving-object shot (see the module docstring)."""
    cube, ball, cam = (bpy.data.objects[n] for n in ("FS_Cube", "FS_Ball", "FS_Camera"))
    last = scene.frame_end
    if kind == "crossing":
        _linear_keys(cube, [(1, (-3.2, 0.0, 0.6)), (last, (3.2, 0.0, 0.6))])
        _linear_keys(ball, [(1, (2.8, -2.0, 1.0)), (last, (-2.8, -2.0, 1.0))])
    elif kind == "overhead":
        cam.location = (0.0, -4.5, 7.5)
        cam.rotation_euler = (0.55, 0.0, 0.0)
        _linear_keys(cube, [(1, (-3.0, 0.8, 0.6)), (last, (3.0, 0.8, 0.6))])
        _linear_keys(ball, [(1, (2.5, -1.2, 0.6)), (last, (-2.5, -1.2, 0.6))])
    else:
        raise SystemExit(f"unknown scene {kind!r}: use demo, crossing or overhead")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--width", type=int, default=96)
    p.add_argument("--height", type=int, default=72)
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--transparent", action="store_true")
    p.add_argument("--no-depth", action="store_true")
    p.add_argument("--no-vectors", action="store_true")
    p.add_argument("--scene", default="demo", help="demo, crossing or overhead")
    p.add_argument("--moving-camera", action="store_true",
                   help="the camera pans and dollies across the shot (every pixel moves)")
    p.add_argument("--index-floor-wall", action="store_true")
    args = p.parse_args()
    scene = build_demo_scene(width=args.width, height=args.height, frames=args.frames,
                             samples=args.samples, transparent_sky=args.transparent)
    if args.scene != "demo":
        moving_objects(scene, args.scene)
    if args.moving_camera:
        import math
        cam = bpy.data.objects["FS_Camera"]
        last = scene.frame_end
        for frame, x, y, turn in ((1, -1.5, -9.0, 6.0), (last, 1.5, -7.5, -6.0)):
            cam.location = (x, y, 3.2)
            cam.rotation_euler = (math.radians(78), 0, math.radians(turn))
            cam.keyframe_insert("location", frame=frame)
            cam.keyframe_insert("rotation_euler", frame=frame)
    bpy.data.objects["FS_Cube"].pass_index = 1
    bpy.data.objects["FS_Ball"].pass_index = 2
    if args.index_floor_wall:
        bpy.data.objects["FS_Floor"].pass_index = 3
        bpy.data.objects["FS_Wall"].pass_index = 4
    scene.view_layers[0].use_pass_object_index = True
    render_multilayer_exrs(scene, args.out, depth=not args.no_depth, vectors=not args.no_vectors)


if __name__ == "__main__":
    main()
