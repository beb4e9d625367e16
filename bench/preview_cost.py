"""CPU seconds per optimizer iteration at the working sizes of a 1080p frame: the preview
frame's (192 px high), the preview preset's (256) and the final preset's (512).

    python bench/preview_cost.py        (from the repository root; prints one line per size)

README ("An artist's first ten minutes") turns these into the cost of a full run's frame
(iterations x seconds per iteration) to compare with `python -m engine preview-frame`.

    OMP_NUM_THREADS=1 python bench/preview_cost.py --network [--width 1920 --height 1080]

Preview Frame with a trained network against the optimizing preview, on the same rendered
frame (tests/render_shot.py, 1 sample): seconds of `engine.preview_frame.preview_frame`,
end to end (reading the EXR, the network or VGG + 60 iterations at 192 px, writing the
side-by-side EXR), best of 3 for the network. The network is the default architecture
trained for 1 step: its speed does not depend on how well it is trained.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from engine.defaults import CONTENT_LAYERS, STYLE_LAYERS, Settings, StyleImage  # noqa: E402
from engine.run import load_style_images  # noqa: E402
from engine.stylize import Stylizer, resize, resolve_device  # noqa: E402
from engine.vgg import VGGFeatures  # noqa: E402


def preview_with_network(width: int, height: int, work: str) -> None:
    from engine.preview_frame import preview_frame
    from engine.train import Trainer
    shot = os.path.join(work, f"shot_{width}x{height}")
    if not os.path.isdir(shot) or len(os.listdir(shot)) < 2:
        subprocess.run([sys.executable, os.path.join(ROOT, "tests", "render_shot.py"), shot,
                        "--width", str(width), "--height", str(height), "--frames", "2",
                        "--samples", "1"], check=True, capture_output=True)
    style = os.path.join(ROOT, "addon", "styles", "starry_night.jpg")
    model = os.path.join(work, f"model_{width}x{height}.pt")
    settings = Settings(styles=[StyleImage(style)], train_steps=1, train_crop=256,
                        train_preview_every=0)
    Trainer(shot, model, settings).run()
    out = os.path.join(work, "preview.exr")
    began = time.perf_counter()
    report = preview_frame(shot, 2, out, settings)
    optimizing = time.perf_counter() - began
    print(f"optimizing preview of frame 2 ({width}x{height}, working size "
          f"{report['working_size'][1]}x{report['working_size'][0]}): {optimizing:.1f} s",
          flush=True)
    network = Settings(styles=[StyleImage(style)], method="network", model=model)
    times = []
    for _ in range(3):
        began = time.perf_counter()
        report = preview_frame(shot, 2, out, network)
        times.append(time.perf_counter() - began)
    assert report["method"] == "network"
    print(f"network preview of frame 2 ({width}x{height}, at full size "
          f"{report['working_size'][1]}x{report['working_size'][0]}): {min(times):.2f} s "
          f"(best of 3; {optimizing / min(times):.0f}x faster)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", action="store_true",
                        help="Preview Frame with a trained network vs optimizing")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(),
                                                       "flowstyle-bench-preview"))
    args = parser.parse_args()
    if args.network:
        preview_with_network(args.width, args.height, args.work)
        return
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
