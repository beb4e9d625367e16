"""The demo: a built-in animated shot, rendered, stylized and wired, in a few minutes.

    ./dev.sh demo                 (or: python -m addon.demo [--out DIR] [--frames N])

Runs the product's own batch path, as `blender -b shot.blend --command flowstyle stylize`
would (render with the Vector pass -> engine in its own process -> compositor wiring ->
save), then measures the result with `engine evaluate` and writes a side-by-side GIF
(render | stylized) and a contact sheet. Needs Blender as a Python module (bpy) and an
engine Python with torch; the project's venv has both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import bpy

from . import batch, register
from .demo_scene import build_demo_scene

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_STYLE = os.path.join(ROOT, "engine", "styles", "starry_night.jpg")


def _engine(*args: str) -> subprocess.CompletedProcess:
    """Run `python -m engine ARGS` with this interpreter, from the engine's folder."""
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, check=True,
                          capture_output=True, text=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m addon.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(ROOT, "demo_output"), help="output folder")
    parser.add_argument("--frames", type=int, default=10, help="length of the shot")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--style", default=DEFAULT_STYLE, help="the painting")
    parser.add_argument("--preset", default="preview", choices=["preview", "final"])
    args = parser.parse_args(argv)

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    started = time.perf_counter()
    register()
    build_demo_scene(width=args.width, height=args.height, frames=args.frames, samples=16)
    blend = os.path.join(out, "demo.blend")
    bpy.ops.wm.save_as_mainfile(filepath=blend)
    print(f"flowstyle demo: {args.frames} frames at {args.width}x{args.height} -> {out}", flush=True)

    stylized = os.path.join(out, "stylized")
    code = batch.main(["stylize", "--style", args.style, "--out", stylized, "--preset",
                       args.preset, "--python", sys.executable, "--engine-root", ROOT, "--save"])
    if code != 0:
        print(f"flowstyle demo: stylize failed (exit {code}); see {stylized}/flowstyle.log",
              file=sys.stderr)
        return code

    renders = os.path.join(stylized, "render")
    report_path = os.path.join(out, "evaluate.json")
    report = json.loads(_engine("evaluate", renders, stylized, "--json", "--report", report_path).stdout)
    gif = os.path.join(out, "side_by_side.gif")
    sheet = os.path.join(out, "contact_sheet.png")
    _engine("preview", renders, stylized, "--gif", gif, "--sheet", sheet)

    warping = report["warping_error"]
    print(f"""
flowstyle demo done in {time.perf_counter() - started:.0f} s
  stylized EXRs      {stylized}/flowstyle_####.exr  (linear, RGBA, premultiplied)
  Blender file       {blend}  (compositor wired: Image -> Mix -> output)
  side by side       {gif}
  contact sheet      {sheet}
  evaluation         {report_path}
    warping error    {warping['output']:.6f}  (the render itself: {warping['input']:.6f};
                     lower = steadier; Lai et al. 2018, display space)
    style loss       {report['style_loss']:.1f}
    content loss     {report['content_loss']:.1f}""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
