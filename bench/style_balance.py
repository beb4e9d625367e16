"""The default style weight against the classic Gatys balance, on one frame per painting.

    python bench/style_balance.py INPUT [--frame N] [--height 144] [--style a.jpg ...]

INPUT is anything `python -m engine stylize` reads (a folder of renders, a video, ...).
For each painting, the frame is stylized cold (coarse-to-fine, the preview preset's
first-frame budget) at style weight 5 (the old default), the current default, and 100 (the
classic neural-style balance, content 5 : style 100 summed over five layers, in this
engine's units). It prints the style and content loss of each, and each style loss as a
multiple of the classic balance's: docs/tuning.md explains the choice these numbers support.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from engine import colour  # noqa: E402
from engine.defaults import CONTENT_LAYERS, STYLE_LAYERS, Settings, StyleImage  # noqa: E402
from engine.frames import open_sequence  # noqa: E402
from engine.run import load_style_images, working_size  # noqa: E402
from engine.stylize import Stylizer, resize, resolve_device  # noqa: E402
from engine.vgg import VGGFeatures  # noqa: E402

CLASSIC_STYLE_WEIGHT = 100.0  # neural-style's 5 : 100, in this engine's loss normalization
OLD_DEFAULT = 5.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input")
    p.add_argument("--frame", type=int, help="frame number (default: the first)")
    p.add_argument("--height", type=int, default=144, help="working height in px")
    p.add_argument("--style", action="append", help="painting(s); default: the add-on's shelf")
    args = p.parse_args()
    styles = args.style or [os.path.join(ROOT, "addon", "styles", name)
                            for name in ("starry_night.jpg", "scream.jpg")]
    sequence = open_sequence(args.input)
    number = args.frame if args.frame is not None else sequence.numbers[0]
    display, _, _ = colour.to_display(sequence.read(number).rgba)
    content = torch.from_numpy(display).permute(2, 0, 1)[None].contiguous()
    content = resize(content, working_size(content.shape[-2], content.shape[-1], args.height))
    vgg = VGGFeatures(list(CONTENT_LAYERS + STYLE_LAYERS), "caffe")
    device = resolve_device("auto")
    default_weight = Settings().style_weight
    weights = sorted({OLD_DEFAULT, default_weight, CLASSIC_STYLE_WEIGHT})
    print(f"{sequence.description}, frame {number}, working size "
          f"{content.shape[-1]}x{content.shape[-2]}, cold start, preview preset budget")
    print(f"{'painting':<20} {'style weight':>12} {'style loss':>12} {'content loss':>13} {'x classic':>10}")
    for path in styles:
        losses: dict[float, tuple[float, float]] = {}
        for weight in weights:
            settings = Settings(styles=[StyleImage(path)], style_weight=weight).resolved()
            images, _ = load_style_images(settings)
            stylizer = Stylizer(settings, vgg, images, device)
            assert settings.first_iterations is not None
            _, stats = stylizer.stylize(content.to(device), content.to(device), [],
                                        settings.first_iterations, pyramid=True)
            losses[weight] = (stats.terms["style"], stats.terms["content"])
        classic = losses[CLASSIC_STYLE_WEIGHT][0]
        for weight in weights:
            style, content_loss = losses[weight]
            mark = " (default)" if weight == default_weight else ""
            print(f"{os.path.basename(path):<20} {weight:>12g} {style:>12.1f} {content_loss:>13.1f} "
                  f"{style / classic:>9.2f}x{mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
