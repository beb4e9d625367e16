"""Benchmark of tiled network inference (engine/tiling.py); prints a table.

    python bench/tiling.py [--width 1024 --height 576 --tile 256 --steps 100 --crop 128]
                           [--work /tmp/flowstyle-bench-tiling]

Renders the demo shot with real Blender (tests/render_shot.py: 4 frames at 384x256 to train
on, and one frame at --width x --height to stylize), trains the default network on it for
--steps steps, then stylizes that frame whole and in --tile px tiles with each way of
getting the instance-norm statistics:

  exact         the whole frame's, gathered tile by tile (what the engine does: the
                tiles' activations kept between the residual blocks' layers)
  exact-rerun   the same statistics, each layer's by running every tile from the input
  downscaled:F  from one whole-frame pass at 1/F of the size (the cheaper alternative)
  per-tile      each tile its own (naive tiling, for comparison)

For each: the largest and mean |difference| from the untiled output (display RGB, 0-1;
1/255 = 0.0039 is one 8-bit level), the seam ratio (mean |difference| of neighbouring
pixels across tile borders over the same elsewhere; the untiled frame's own ratio at the
same places is the no-seam reference), the time, and the peak memory (each measured in a
fresh process: its peak resident size during the pass, reset through /proc/self/clear_refs,
less its size before, with glibc returning large buffers when freed; Linux; float32, one
thread). 4K is extrapolated from these, as printed: the untiled peak grows with the
frame's pixels, the tiled peak with the tile's (plus the frame's input and output).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

STYLE = os.path.join(ROOT, "engine", "styles", "starry_night.jpg")
MODES = ("whole", "exact", "exact-rerun", "downscaled:2", "downscaled:4", "per-tile")
UHD = (2160, 3840)


def render(out: str, width: int, height: int, frames: int, samples: int) -> str:
    if not os.path.isdir(out) or len(os.listdir(out)) < frames:
        subprocess.run([sys.executable, os.path.join(ROOT, "tests", "render_shot.py"), out,
                        "--width", str(width), "--height", str(height), "--frames", str(frames),
                        "--samples", str(samples)], check=True, capture_output=True)
    return out


def seam_ratio(image: torch.Tensor, tile: int) -> float:
    """Mean |difference| of neighbouring pixels across every `tile`-th row and column over
    the same elsewhere (tests/test_network.py uses the same statistic)."""
    dx = (image[..., 1:] - image[..., :-1]).abs().mean(dim=(0, 1, 2))
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(dim=(0, 1, 3))
    bx = torch.zeros_like(dx, dtype=torch.bool)
    bx[tile - 1::tile] = True
    by = torch.zeros_like(dy, dtype=torch.bool)
    by[tile - 1::tile] = True
    across = torch.cat([dx[bx], dy[by]]).mean()
    return float(across / torch.cat([dx[~bx], dy[~by]]).mean())


def _status_bytes(key: str) -> int:
    """A size from /proc/self/status (VmRSS: resident now, VmHWM: peak resident), bytes."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status (Linux only)")


def child(args: argparse.Namespace) -> None:
    """One mode in this fresh process: prints JSON {seconds, peak_bytes}; saves the output."""
    from engine.tiling import stylize_tiled
    from engine.train import load_model
    torch.set_num_threads(1)
    model = load_model(args.model)
    frame = torch.load(args.frame)
    mix = torch.ones(1)
    with torch.no_grad():  # warm up the kernels on a small image (little memory)
        model.network(frame[..., :64, :64], mix)
    with open("/proc/self/clear_refs", "w") as f:  # Linux: reset the peak (VmHWM) to now
        f.write("5")
    before = _status_bytes("VmRSS")
    began = time.perf_counter()
    with torch.no_grad():
        if args.child == "whole":
            out = model.network(frame, mix).float()
        else:
            out = stylize_tiled(model.network, frame, mix, args.tile, statistics=args.child)
    seconds = time.perf_counter() - began
    peak = _status_bytes("VmHWM") - before
    torch.save(out, args.result)
    print(json.dumps({"seconds": seconds, "peak_bytes": peak}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--height", type=int, default=576)
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--modes", default=",".join(MODES),
                   help="which of the statistics to run (whole is always run), e.g. exact,per-tile")
    p.add_argument("--skip-bf16", action="store_true", help="skip the bfloat16 comparison")
    p.add_argument("--work", default="/tmp/flowstyle-bench-tiling")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--frame", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    from engine.defaults import Settings, StyleImage
    from engine.network_run import NetworkRun
    from engine.tiling import norm_layers, receptive_radius
    from engine.train import Trainer
    w = args.work
    os.makedirs(w, exist_ok=True)
    train_shot = render(os.path.join(w, "train"), 384, 256, 4, 16)
    big_shot = render(os.path.join(w, f"frame_{args.width}x{args.height}"), args.width,
                      args.height, 1, 16)
    model = os.path.join(w, f"model_{args.steps}.pt")
    Trainer(train_shot, model, Settings(styles=[StyleImage(STYLE)], train_steps=args.steps,
                                        train_crop=args.crop, train_preview_every=0)).run()
    run = NetworkRun(big_shot, os.path.join(w, "unused"), Settings(method="network", model=model))
    frame_path = os.path.join(w, "frame.pt")
    torch.save(run.inputs(run.sequence.numbers[0]).display, frame_path)
    network = run.model.network
    print(f"frame {args.width}x{args.height}, tiles of {args.tile} px + a margin of "
          f"{receptive_radius(network.config)} px, default network ({len(norm_layers(network))} "
          f"norm layers), trained {args.steps} steps; float32, 1 thread\n")

    results, outputs = {}, {}
    # glibc: every buffer of 128 KB or more is its own mapping, returned when freed, so the
    # peak resident size is the peak of live tensors, not of the allocator's cached heap.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "131072"}
    modes = ["whole"] + [m for m in MODES if m != "whole" and m in args.modes.split(",")]
    for mode in modes:
        out_path = os.path.join(w, f"out_{mode.replace(':', '_')}.pt")
        line = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", mode,
                               "--model", model, "--frame", frame_path, "--result", out_path,
                               "--tile", str(args.tile)], check=True, capture_output=True,
                              text=True, env=env).stdout.strip().splitlines()[-1]
        results[mode] = json.loads(line)
        outputs[mode] = torch.load(out_path)
    whole = outputs["whole"]
    base = results["whole"]
    print(f"{'statistics':<14}{'max |diff|':>12}{'mean |diff|':>13}{'seam ratio':>12}"
          f"{'seconds':>10}{'x whole':>9}{'peak MB':>9}")
    for mode in modes:
        diff = (outputs[mode] - whole).abs()
        r = results[mode]
        print(f"{mode:<14}{float(diff.max()):>12.2e}{float(diff.mean()):>13.2e}"
              f"{seam_ratio(outputs[mode], args.tile):>12.4f}{r['seconds']:>10.2f}"
              f"{r['seconds'] / base['seconds']:>9.2f}{r['peak_bytes'] / 2**20:>9.0f}")
    # Under bfloat16 autocast (CUDA Ampere+ and CPUs with native bf16: the engine's "auto")
    # a tile's convolutions round differently than the whole frame's; no seam should follow.
    from engine.tiling import stylize_tiled
    frame, mix = torch.load(frame_path), torch.ones(1)
    if not args.skip_bf16:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            whole_bf16 = network(frame, mix).float()
            tiled_bf16 = stylize_tiled(network, frame, mix, args.tile)
        diff = (tiled_bf16 - whole_bf16).abs()
        print(f"\nbfloat16 autocast, exact tiles vs untiled: max |diff| {float(diff.max()):.2e}, "
              f"mean {float(diff.mean()):.2e}; seam ratio {seam_ratio(tiled_bf16, args.tile):.4f} "
              f"(untiled {seam_ratio(whole_bf16, args.tile):.4f})")
    if not {"exact", "per-tile"} <= set(modes):
        return
    pixels = args.width * args.height
    uhd = UHD[0] * UHD[1]
    per_pixel = base["peak_bytes"] / pixels
    io = 2 * 3 * 4  # the frame in and out, float32 RGB
    # The naive tiling's peak is one tile's activations plus the frame in and out; the
    # exact tiling's adds the tiles' kept activations, which grow with the frame.
    tile_peak = results["per-tile"]["peak_bytes"] - io * pixels
    per_pixel_tiled = (results["exact"]["peak_bytes"] - tile_peak) / pixels
    print(f"\nuntiled peak: {per_pixel:.0f} bytes per pixel (the engine budgets "
          f"NETWORK_BYTES_PER_PIXEL = {__import__('engine.network_run').network_run.NETWORK_BYTES_PER_PIXEL})")
    print(f"4K ({UHD[1]}x{UHD[0]}), extrapolated: untiled peak {per_pixel * uhd / 2**30:.1f} GB "
          f"(measured bytes per pixel x pixels); tiled ({args.tile} px) peak "
          f"{(tile_peak + per_pixel_tiled * uhd) / 2**30:.2f} GB (the per-tile peak less its "
          f"{io} bytes/px of frame in and out: {tile_peak / 2**20:.0f} MB, plus the exact "
          f"tiling's {per_pixel_tiled:.0f} bytes per frame pixel at 4K); exact tiling time "
          f"{results['exact']['seconds'] * uhd / pixels:.0f} s vs untiled "
          f"{base['seconds'] * uhd / pixels:.0f} s on this CPU (time x pixels)")


if __name__ == "__main__":
    main()
