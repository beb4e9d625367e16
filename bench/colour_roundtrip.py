"""Colour round trips with Blender's OCIO config: prints numbers, asserts nothing.

    python bench/colour_roundtrip.py [--engine-root DIR]

1. Per view and working space, on an HDR plate (tests/test_colour_management.hdr_plate:
   shadows, saturated colours, highlights up to 50, partial alpha), the largest relative
   scene-linear error of
   - a plain inverse: inverse(clip(view(x), 0, 1)), what a naive way back would give
     (on all pixels, and on pixels with no channel above 1, relative to max(x, 0.01));
   - Flowstyle's way back (colour.to_display, then colour.to_linear unchanged).
   Relative error = |out - in| / max(|in|, 1): absolute below 1, relative above.
2. With --ways-back, a real AgX stylization of the plate brought back three ways (plain
   inverse, the change, the change limited to diffuse white): the largest output, the share
   of invented highlights and how far the artist's view of it is from what was painted.
3. With --engine-root, a real `python -m engine stylize` run from that source tree at style
   strength 0 and temporal strength 0 on the same plate (2 frames, 32x24), and its largest
   relative error (the style-0 invariant). Point it at an older checkout to compare.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from engine import colour, exr  # noqa: E402

VIEWS = ("Standard", "Filmic", "AgX")
SPACES = ("Linear Rec.709", "Linear Rec.2020", "ACEScg")


def relative_error(out: np.ndarray, ref: np.ndarray) -> float:
    return float((np.abs(out - ref) / np.maximum(np.abs(ref), 1.0)).max())


def round_trips(config: str) -> None:
    from test_colour_management import hdr_plate
    rgba = hdr_plate()
    opaque = rgba[rgba[..., 3] == 1][:, :3]
    low = opaque[opaque.max(-1) <= 1.0]
    print(f"{'view':10} {'working space':16} {'plain inverse':>14} {'plain, x<=1':>12} "
          f"{'flowstyle':>10}")
    for view_name in VIEWS:
        for space in SPACES:
            view = colour.ocio_view(config, space, "sRGB", view_name)
            plain = view.inverse(np.clip(view.forward(opaque), 0, 1))
            display, alpha, excess = colour.to_display(rgba, view)
            back = colour.to_linear(display, alpha, excess, view)
            plain_low = view.inverse(np.clip(view.forward(low), 0, 1))
            low_error = float((np.abs(plain_low - low) / np.maximum(low, 0.01)).max())
            print(f"{view_name:10} {space:16} {relative_error(plain, opaque):14.3g} "
                  f"{low_error:12.3g} {relative_error(back, rgba):10.3g}")
    agx = colour.ocio_view(config, view="AgX")
    points = np.array([[0.18] * 3, [1.0, 0.5, 0.2], [4.0] * 3], np.float32)
    back = agx.inverse(agx.forward(points))
    print("AgX on (0.18 grey, (1, 0.5, 0.2), 4.0 white):", np.round(back, 4).tolist())


def engine_invariant(engine_root: str, config: str, views: bool) -> None:
    from conftest import STYLE, write_multilayer
    from test_colour_management import hdr_plate
    frames = [hdr_plate(seed=0), hdr_plate(seed=1)]
    cases = [(v, s) for v, s in [("Standard", "Linear Rec.709"), ("Filmic", "Linear Rec.709"),
                                 ("AgX", "Linear Rec.709"), ("AgX", "Linear Rec.2020")]]
    env = dict(os.environ, PYTHONPATH=engine_root)
    for view_name, space in cases if views else [("(none)", "(none)")]:
        with tempfile.TemporaryDirectory() as tmp:
            for i, rgba in enumerate(frames, start=1):
                write_multilayer(Path(tmp) / f"render_{i:04d}.exr", {"Combined": rgba})
            out = os.path.join(tmp, "out")
            args = [sys.executable, "-m", "engine", "stylize", tmp, "--out", out, "--style",
                    str(STYLE), "--style-strength", "0", "--temporal-strength", "0",
                    "--height", "24", "--first-iterations", "30", "--progress", "none"]
            if views:
                args += ["--ocio-config", config, "--view", view_name, "--working-space", space]
            subprocess.run(args, cwd=engine_root, env=env, check=True, capture_output=True)
            worst = max(relative_error(exr.read_rgba(os.path.join(out, f"flowstyle_{i:04d}.exr")),
                                       rgba) for i, rgba in enumerate(frames, start=1))
            print(f"engine {engine_root}: {view_name} / {space}: style 0 max relative error "
                  f"{worst:.3g}")


def ways_back(config: str) -> None:
    """Stylize the HDR plate for real (AgX, this tree's engine), then bring the painted
    display image back three ways and measure what a compositor would see."""
    import torch
    from conftest import STYLE, write_multilayer
    from test_colour_management import hdr_plate
    rgba = hdr_plate(seed=0)
    view = colour.ocio_view(config, view="AgX")
    with tempfile.TemporaryDirectory() as tmp:
        write_multilayer(Path(tmp) / "render_0001.exr", {"Combined": rgba})
        out = os.path.join(tmp, "out")
        subprocess.run([sys.executable, "-m", "engine", "stylize", tmp, "--out", out, "--style",
                        str(STYLE), "--height", "24", "--first-iterations", "60", "--progress",
                        "none", "--ocio-config", config, "--view", "AgX"], cwd=ROOT, check=True,
                       capture_output=True)
        state = torch.load(os.path.join(out, ".flowstyle", "state_000001.pt"), weights_only=True)
    painted = state["image"][0].permute(1, 2, 0).numpy().clip(0, 1)
    display, alpha, excess = colour.to_display(rgba, view)
    opaque = rgba[..., 3] == 1
    straight_in = rgba[..., :3]
    results = {
        "plain inverse": view.inverse(painted),
        "change, no limit": colour.to_linear(painted, alpha, excess, view)[..., :3],
        "change + white limit": colour.to_linear(painted, alpha, excess, view, display)[..., :3],
    }
    shown = opaque & (display.max(-1) < 0.99)  # pixels the view does not saturate
    print(f"{'way back (AgX, style 1)':24} {'max out':>8} {'invented':>9} {'seen err':>9} "
          f"{'(shown)':>8} {'(saturated)':>11}   input max {straight_in[opaque].max():.1f}, "
          f"{(opaque & ~shown).sum() / opaque.sum():.0%} of pixels saturated by the view")
    for name, linear in results.items():
        out_px, in_px = linear[opaque], straight_in[opaque]
        invented = float((out_px.max(-1) > 2 * np.maximum(in_px.max(-1), 1.0)).mean())
        error = np.abs(np.clip(view.forward(linear), 0, 1) - painted).mean(-1)
        print(f"{name:24} {out_px.max():8.2f} {invented:9.2%} {error[opaque].mean():9.4f} "
              f"{error[shown].mean():8.4f} {error[opaque & ~shown].mean():11.4f}")
    print("invented: pixels more than 2x brighter than max(input, 1); seen err: mean |view(out)"
          " - painted| (display units), also on pixels the view shows and on those it saturates")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine-root", help="a source tree to run `python -m engine` from")
    parser.add_argument("--ways-back", action="store_true",
                        help="stylize the plate with AgX and compare three ways back")
    parser.add_argument("--no-colour-flags", action="store_true",
                        help="for an engine without --view/--working-space (before OCIO)")
    args = parser.parse_args()
    config = colour.installed_blender_config()
    if not config:
        sys.exit("no installed bpy package with a config.ocio found")
    print(f"config: {config}")
    round_trips(config)
    if args.ways_back:
        ways_back(config)
    if args.engine_root:
        engine_invariant(os.path.abspath(args.engine_root), config, not args.no_colour_flags)


if __name__ == "__main__":
    main()
