"""CPU seconds per optimizer iteration at the working sizes of a 1080p frame: the preview
frame's (192 px high), the preview preset's (256) and the final preset's (512).

    python bench/preview_cost.py        (from the repository root; prints one line per size)

README ("An artist's first ten minutes") turns these into the cost of a full run's frame
(iterations x seconds per iteration) to compare with `python -m engine preview-frame`.
"""

from __future__ import annotations

import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from engine.defaults import CONTENT_LAYERS, STYLE_LAYERS, Settings, StyleImage  # noqa: E402
from engine.run import load_style_images  # noqa: E402
from engine.stylize import Stylizer, resize, resolve_device  # noqa: E402
from engine.vgg import VGGFeatures  # noqa: E402


def main() -> None:
    style = os.path.join(ROOT, "addon", "styles", "starry_night.jpg")
    settings = Settings(styles=[StyleImage(style)], early_stop=0)
    images, _ = load_style_images(settings.resolved())
    vgg = VGGFeatures(list(CONTENT_LAYERS + STYLE_LAYERS), "caffe")
    stylizer = Stylizer(settings, vgg, images, resolve_device("cpu"))
    torch.manual_seed(0)
    frame = torch.rand(1, 3, 1080, 1920)
    for height in (192, 256, 512):
        size = (height, round(1920 * height / 1080))
        content = resize(frame, size)
        stylizer.stylize(content, content, [], 1, pyramid=False)  # the style Grams of this size
        cpu, wall = time.process_time(), time.perf_counter()
        _, stats = stylizer.stylize(content, content, [], 4, pyramid=False)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(f"{size[1]}x{size[0]}: {stats.iterations} it, {stats.evaluations} evals, "
              f"cpu {cpu / stats.iterations:.2f} s/it, wall {wall / stats.iterations:.2f} s/it",
              flush=True)


if __name__ == "__main__":
    main()
