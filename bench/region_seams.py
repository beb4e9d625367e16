"""Per-object styles in network mode: compositing per-style outputs, or per-pixel (γ, β)?

    OMP_NUM_THREADS=1 python bench/region_seams.py [--width 192 --height 128 --steps 300]
                                                   [--work /tmp/flowstyle-bench-seams]

Renders the demo shot with the floor (index 3) and the back wall (4) as regions
(tests/render_shot.py --index-floor-wall), trains one network with Starry Night (floor) and
The Scream (wall), and stylizes frame 1 two ways:
  * composite (what engine/network_run.py does): one pass per style, each region taken from
    its own style's output by the Object Index mask;
  * spatial CIN (Dumoulin et al. 2017, spatial style mixing): one pass whose (γ, β) at
    each pixel of each norm layer are those of the pixel's region (masks area-averaged to the
    layer's size).
Printed per method, in display units [0, 1]:
  * bleed at d px from the floor/wall border: mean |output − the region's own style's
    full-frame output| (how far a style leaks across the border);
  * border contrast: mean gradient magnitude within 1 px of the border divided by the
    render's there (a seam is a border sharper than the render's own edge), next to the
    same ratio inside the regions (what the painting's texture adds everywhere);
  * masked Gram distance of each region to its own painting and to the other (VGG, as
    the per-object tests measure it);
  * seconds per frame (best of 3).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from engine import colour, defaults, losses  # noqa: E402
from engine.defaults import Region, Settings, StyleImage  # noqa: E402
from engine.frames import open_sequence  # noqa: E402
from engine.network import ConvNorm, StyleNetwork, one_hot  # noqa: E402
from engine.network_run import regional_output  # noqa: E402
from engine.regions import region_masks  # noqa: E402
from engine.run import load_style_images  # noqa: E402
from engine.stylize import resize  # noqa: E402
from engine.train import Trainer, load_model  # noqa: E402
from engine.vgg import VGGFeatures  # noqa: E402

STARRY = os.path.join(ROOT, "engine", "styles", "starry_night.jpg")
SCREAM = os.path.join(ROOT, "addon", "styles", "scream.jpg")


def spatial_cin(network: StyleNetwork, image: torch.Tensor, mixes: torch.Tensor,
                masks: torch.Tensor) -> torch.Tensor:
    """StyleNetwork.forward with per-pixel (γ, β): image 1×3×H×W, mixes K×S (one mix per
    mask channel), masks 1×K×H×W summing to 1. Each norm layer's γ at a pixel is
    Σ_k mask_k · (mix_k · Γ), the masks area-averaged to the layer's size."""
    h, w = image.shape[-2:]
    pad_h, pad_w = (-h) % 4, (-w) % 4
    x = F.pad(image, (0, pad_w, 0, pad_h), mode="reflect") - 0.5
    masks = F.pad(masks, (0, pad_w, 0, pad_h), mode="replicate")

    def layer(module: ConvNorm, x: torch.Tensor) -> torch.Tensor:
        if module.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = module.conv(module.pad(x))
        m = F.interpolate(masks, size=x.shape[-2:], mode="area")
        gamma = torch.einsum("nkhw,kc->nchw", m, mixes @ module.norm.gamma)
        beta = torch.einsum("nkhw,kc->nchw", m, mixes @ module.norm.beta)
        x = F.instance_norm(x) * gamma + beta
        return F.relu(x) if module.relu else x

    for module in network.down:
        x = layer(module, x)
    for block in network.res:
        x = x + layer(block.b, layer(block.a, x))
    for module in network.up:
        x = layer(module, x)
    return torch.sigmoid(network.out(x)[:, :, :h, :w])


def grad_magnitude(image: torch.Tensor) -> torch.Tensor:
    """1×3×H×W -> H×W: |horizontal| + |vertical| forward difference, mean over channels."""
    dx = F.pad((image[..., :, 1:] - image[..., :, :-1]).abs(), (0, 1, 0, 0))
    dy = F.pad((image[..., 1:, :] - image[..., :-1, :]).abs(), (0, 0, 0, 1))
    return (dx + dy).mean(dim=1)[0]


def distance_to_border(a: torch.Tensor, b: torch.Tensor, most: int) -> torch.Tensor:
    """H×W bool masks of two regions -> H×W: the chessboard distance (px) of each pixel of
    a or b to the nearest pixel of the other region (most+1 beyond `most`)."""
    dist = torch.full(a.shape, float(most + 1))
    grow_a, grow_b = a[None, None].float(), b[None, None].float()
    for d in range(1, most + 1):
        grow_a = F.max_pool2d(grow_a, 3, 1, 1)
        grow_b = F.max_pool2d(grow_b, 3, 1, 1)
        near = ((grow_a[0, 0] > 0) & b) | ((grow_b[0, 0] > 0) & a)
        dist = torch.where(near & (dist > d), torch.tensor(float(d)), dist)
    return dist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=192)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--work", default="/tmp/flowstyle-bench-seams")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    shot = os.path.join(args.work, "shot")
    if not os.path.isdir(shot) or len(os.listdir(shot)) < 2:
        subprocess.run([sys.executable, os.path.join(ROOT, "tests", "render_shot.py"), shot,
                        "--width", str(args.width), "--height", str(args.height), "--frames",
                        "2", "--samples", "8", "--index-floor-wall"], check=True,
                       capture_output=True)
    regions = [Region(4, [StyleImage(SCREAM)])]
    settings = Settings(styles=[StyleImage(STARRY)], regions=regions, train_steps=args.steps,
                        train_crop=min(96, args.height), network_channels=(16, 32, 64),
                        network_blocks=3, train_lr=0.01, train_preview_every=0,
                        train_checkpoint_every=1000)
    model_path = os.path.join(args.work, "model.pt")
    began = time.perf_counter()
    with torch.enable_grad():
        Trainer(shot, model_path, settings).run()
    print(f"trained {args.steps} steps in {time.perf_counter() - began:.0f} s "
          f"(or reused {model_path})", flush=True)
    model = load_model(model_path)
    net = model.network

    frame = open_sequence(shot).read(1)
    display = torch.from_numpy(colour.to_display(frame.rgba)[0]).permute(2, 0, 1)[None]
    masks = region_masks(frame.index, regions)  # channel 0: floor & the rest, 1: wall
    index = torch.from_numpy(np.rint(frame.index)).long()
    floor, wall = index == 3, index == 4
    starry, scream = one_hot(0, 2), one_hot(1, 2)
    own = {"starry": net(display, starry), "scream": net(display, scream)}
    outputs = {
        "composite": regional_output(net, display, starry.tolist(), [scream.tolist()], masks),
        "spatial CIN": spatial_cin(net, display, torch.stack([starry, scream]), masks),
    }
    dist = distance_to_border(floor, wall, 8)
    own_output = torch.where(wall[None, None], own["scream"], own["starry"])
    render_grad = grad_magnitude(display)
    band, inside = dist <= 1, (dist > 8) & (floor | wall)

    vgg = VGGFeatures(list(defaults.STYLE_LAYERS), "caffe")
    grams = {}
    for name, path in (("starry", STARRY), ("scream", SCREAM)):
        (image, _), = load_style_images(Settings(styles=[StyleImage(path)]))[0]
        h = args.height
        feats = vgg(resize(image, (h, round(image.shape[-1] * h / image.shape[-2]))))
        grams[name] = {n: losses.gram_matrix(feats[n]) for n in defaults.STYLE_LAYERS}

    def gram_distance(image: torch.Tensor, mask: torch.Tensor, style: str) -> float:
        feats = vgg(image)
        total = 0.0
        for n in defaults.STYLE_LAYERS:
            m = F.interpolate(mask[None, None].float(), size=feats[n].shape[-2:], mode="area")
            total += float((losses.masked_gram(feats[n], m) - grams[style][n]).pow(2).mean())
        return total

    timings = {
        "composite": lambda: regional_output(net, display, starry.tolist(), [scream.tolist()], masks),
        "spatial CIN": lambda: spatial_cin(net, display, torch.stack([starry, scream]), masks),
    }
    print(f"\nframe 1 of {args.width}x{args.height}; floor {int(floor.sum())} px, wall "
          f"{int(wall.sum())} px, border band (<=1 px) {int(band.sum())} px")
    print("method       | bleed d=1   2     4     8  | border contrast / inside | "
          "floor->starry (scream) | wall->scream (starry) | s/frame")
    for name, out in outputs.items():
        diff = (out - own_output).abs().mean(dim=1)[0]
        bleed = [float(diff[dist == d].mean()) for d in (1, 2, 4, 8)]
        grad = grad_magnitude(out)
        contrast = float(grad[band].mean() / render_grad[band].mean())
        texture = float(grad[inside].mean() / render_grad[inside].mean())
        f_own, f_other = gram_distance(out, floor, "starry"), gram_distance(out, floor, "scream")
        w_own, w_other = gram_distance(out, wall, "scream"), gram_distance(out, wall, "starry")
        best = min(_time(timings[name]) for _ in range(3))
        print(f"{name:12s} | " + " ".join(f"{b:.3f}" for b in bleed)
              + f" | {contrast:5.2f} / {texture:5.2f}          | {f_own:9.0f} ({f_other:7.0f}) "
              f"| {w_own:9.0f} ({w_other:7.0f}) | {best:.3f}")
    print(f"render       |                            |  1.00 /  1.00          | "
          f"{gram_distance(display, floor, 'starry'):9.0f} "
          f"({gram_distance(display, floor, 'scream'):7.0f}) | "
          f"{gram_distance(display, wall, 'scream'):9.0f} "
          f"({gram_distance(display, wall, 'starry'):7.0f}) |")


def _time(fn) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


if __name__ == "__main__":
    main()
