"""Render the demo shot with real Blender (bpy) into multilayer EXRs, in its own process.

    python tests/render_shot.py OUT_DIR [--width 96 --height 72 --frames 6 --samples 16]
                                        [--transparent] [--no-depth]

Run as a subprocess by the tests: bpy and torch are kept out of one process (DESIGN.md).
Also writes an Object Index pass (cube = 1, ball = 2) so tests can find what moved.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bpy  # noqa: E402

from addon.demo_scene import build_demo_scene, render_multilayer_exrs  # noqa: E402


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
    args = p.parse_args()
    scene = build_demo_scene(width=args.width, height=args.height, frames=args.frames,
                             samples=args.samples, transparent_sky=args.transparent)
    bpy.data.objects["FS_Cube"].pass_index = 1
    bpy.data.objects["FS_Ball"].pass_index = 2
    scene.view_layers[0].use_pass_object_index = True
    render_multilayer_exrs(scene, args.out, depth=not args.no_depth, vectors=not args.no_vectors)


if __name__ == "__main__":
    main()
