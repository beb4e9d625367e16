"""Benchmark of the network method against optimization on the same shot; prints a table.

    python bench/network.py [--width 192 --height 128 --frames 8 --steps 800 --crop 128]
                            [--seeds 3] [--scenes crossing,overhead] [--scene-seeds 2]
                            [--hybrid-height 256] [--gpu-tflops 20]
                            [--work /tmp/flowstyle-bench-network]

Renders the demo shot with real Blender (tests/render_shot.py), then on it:
  * optimize (the preview preset's iterations, at the frames' full size) and the
    network (trained here for --steps steps on --crop crops, once per seed 0..--seeds-1):
    seconds per frame, warping error against the render's own floor, style loss, ghost
    ratio, edge band (evaluate). A network's quality moves with its seed (style loss
    1.27-1.35x optimize's over seeds 0-2 at the defaults, 1.40-1.62x before the learning
    rate's decay), so the quality rows give the mean and the range over the seeds;
  * the same quality rows on our own moving-object shots (--scenes, tests/render_shot.py
    --scene), each with its own optimize run and --scene-seeds networks;
  * the network's inference alone (best of 5, one frame at the shot's size and at 1080p);
  * a training step at 256-px crops with the default network (a 384x256 render);
  * FLOPs of one 1080p frame (convolutions, counted from the layer shapes) and the frame
    rate that implies at --gpu-tflops sustained;
  * hybrid's first frame: iterations to reach optimize's first-frame loss (full budget, no
    early stop), on the shot and on a --hybrid-height render (default: the preview preset's
    working height, where optimize's cold start climbs all its pyramid levels; one network
    trained there at the default crop);
  * a 100-frame 1080p shot: train + stylize against optimize, extrapolated as printed.
Sizes are small because the machine is small; every extrapolation says how it was made.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from statistics import mean

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from engine.defaults import PRESETS, Settings, StyleImage  # noqa: E402
from engine.evaluate import evaluate  # noqa: E402
from engine.network import flops_per_pixel, parameter_count  # noqa: E402
from engine.network_run import HybridRun, NetworkRun  # noqa: E402
from engine.run import SequenceRun  # noqa: E402
from engine.stylize import resize  # noqa: E402
from engine.train import Trainer, load_model  # noqa: E402

STYLE = os.path.join(ROOT, "engine", "styles", "starry_night.jpg")
HD = (1080, 1920)
# Seconds are CPU seconds of this process with torch on one thread (--threads 1, the
# default): on a shared 2-core machine they hardly move with other load, where wall
# seconds do. With more threads they are wall seconds (then measure on a quiet machine).
clock = time.process_time


def render(out: str, width: int, height: int, frames: int, samples: int, scene: str = "demo") -> str:
    if not os.path.isdir(out) or len(os.listdir(out)) < frames:
        subprocess.run([sys.executable, os.path.join(ROOT, "tests", "render_shot.py"), out,
                        "--width", str(width), "--height", str(height), "--frames", str(frames),
                        "--samples", str(samples), "--scene", scene], check=True, capture_output=True)
    return out


def train_seeds(shot: str, work: str, seeds: int, steps: int, crop: int) -> tuple[list[str], list[float]]:
    """A fresh network per seed 0..seeds-1 (no checkpoint reuse); (model paths, seconds)."""
    models, seconds = [], []
    for seed in range(seeds):
        path = os.path.join(work, f"model_seed{seed}.pt")
        for old in (path, os.path.splitext(path)[0] + ".checkpoint.pt"):
            if os.path.exists(old):
                os.remove(old)
        settings = Settings(styles=[StyleImage(STYLE)], train_steps=steps, train_crop=crop,
                            train_preview_every=0, train_checkpoint_every=10**9, train_seed=seed)
        start = clock()
        Trainer(shot, path, settings).run()
        seconds.append(clock() - start)
        models.append(path)
    return models, seconds


def quality_rows(label: str, shot: str, work: str, e_opt: dict, models: list[str],
                 e_first: dict | None = None) -> list[tuple[str, str, str]]:
    """Optimize's and the networks' quality on one shot (evaluate), the networks' as the
    mean and range over their seeds. e_first: the first model's report if already made."""
    e_nets = [e_first] if e_first is not None else []
    for seed, path in enumerate(models[len(e_nets):], start=len(e_nets)):
        out = os.path.join(work, f"network_seed{seed}")
        shutil.rmtree(out, ignore_errors=True)
        NetworkRun(shot, out, Settings(method="network", model=path)).run()
        e_nets.append(evaluate(shot, out))
    floor = e_opt["warping_error"]["input"]
    measures = {  # name: (how, value from an evaluate report, format)
        "warping error / floor": (f"render floor {floor:.5f}; target <= 2",
                                  lambda e: e["warping_error"]["output"] / floor, ".2f"),
        "warping error on steady surfaces / the render's": (
            f"no moved shadow; render {e_opt['warping_error']['input_steady']:.6f}",
            lambda e: e["warping_error"]["output_steady"] / e_opt["warping_error"]["input_steady"], ".2f"),
        "style loss": ("evaluate, same height", lambda e: e["style_loss"], ".0f"),
        "style loss / optimize's": ("target <= 1.5", lambda e: e["style_loss"] / e_opt["style_loss"], ".2f"),
        "ghost ratio": ("evaluate (about 1: no trail; target <= 1.1)",
                        lambda e: e["ghost_ratio"]["output"], ".2f"),
        "ghost ratio, edge-matched": ("evaluate", lambda e: e["ghost_ratio"]["edge_matched"], ".2f"),
        "shading follow": ("evaluate (near 0: a moved shadow's trail)",
                           lambda e: e["shading_follow"]["output"] or float("nan"), ".2f"),
        "edge band": (f"evaluate (render {e_opt['edge_band']['input']:.2f}; about 1: clean)",
                      lambda e: e["edge_band"]["output"], ".2f"),
    }
    rows = []
    for name, (how, value, fmt) in measures.items():
        if "optimize's" not in name:
            rows.append((f"{label}optimize: {name}", how, format(value(e_opt), fmt)))
        values = [value(e) for e in e_nets]
        spread = (f" ({format(min(values), fmt)}-{format(max(values), fmt)} over {len(values)} seeds)"
                  if len(values) > 1 else "")
        rows.append((f"{label}network: {name}", how, format(mean(values), fmt) + spread))
    return rows


def optimize(shot: str, out: str) -> tuple[float, dict]:
    """Optimize every frame at full size (preview preset iterations); (s/frame, first frame stats)."""
    shutil.rmtree(out, ignore_errors=True)
    run = SequenceRun(shot, out, Settings(styles=[StyleImage(STYLE)], height=0))
    seconds, first = [], None
    for number in run.sequence.numbers:
        start = clock()
        image, stats = run.stylize_frame(number)
        stats.seconds = clock() - start
        run.results[number] = image
        run.write(number, image)
        seconds.append(stats.seconds)
        first = first or stats
    return sum(seconds) / len(seconds), {"iterations": first.iterations, "loss": first.loss_end,
                                         "seconds": first.seconds, "levels": first.levels}


def first_frame(shot: str, out: str) -> dict:
    """Optimize's cold start of the shot's first frame at its full size: iterations, loss."""
    run = SequenceRun(shot, out, Settings(styles=[StyleImage(STYLE)], height=0))
    content = resize(run.inputs(run.sequence.numbers[0]).display, run.size)
    _, stats = run.stylizer.stylize(content, content, [], run.settings.first_iterations, pyramid=True)
    return {"iterations": stats.iterations, "loss": stats.loss_end, "levels": stats.levels}


def hybrid_rows(label: str, shot: str, work: str, models: list[str], opt_first: dict) -> list[tuple[str, str, str]]:
    """Hybrid's first frame from each model's output: with optimize's whole budget and no
    early stop, the iterations it needs to reach the loss optimize's cold start ends at
    (same objective: content + style + TV, no temporal term on a first frame), and its loss
    after its own budget (a third of optimize's)."""
    third = max(1, opt_first["iterations"] // 3)
    levels = opt_first["levels"]
    how = f"{len(levels)} levels, {'+'.join(str(lv[2]) for lv in levels)}"
    rows = [(f"{label}: optimize", f"iterations ({how}), final loss",
             f"{opt_first['iterations']}, {opt_first['loss']:.4g}")]
    for seed, path in enumerate(models):
        hybrid = HybridRun(shot, os.path.join(work, "hybrid"), Settings(method="hybrid", model=path,
                                                                          height=0, early_stop=0))
        first = hybrid.sequence.numbers[0]
        content = resize(hybrid.inputs(first).display, hybrid.size)
        _, stats = hybrid.stylizer.stylize(content, hybrid.network_output(first), [],
                                           opt_first["iterations"], pyramid=False)
        reach = next((i + 1 for i, loss in enumerate(stats.losses) if loss <= opt_first["loss"]), None)
        rows.append((f"{label}, seed {seed}", "iterations to optimize's final loss (target <= 1/3)",
                     "never in the same budget" if reach is None else
                     f"{reach} ({reach / opt_first['iterations']:.2f} of optimize's)"))
        rows.append((f"{label}, seed {seed}", f"loss after {third} iterations (hybrid's budget) / optimize's final",
                     f"{stats.losses[min(third, len(stats.losses)) - 1] / opt_first['loss']:.3f} "
                     f"(network output alone: {stats.loss_start / opt_first['loss']:.2f})"))
    return rows


def best_of(fn, repeats: int = 5) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--width", type=int, default=192)
    p.add_argument("--height", type=int, default=128)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--seeds", type=int, default=3, help="networks trained (seeds 0..N-1)")
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--gpu-tflops", type=float, default=20.0,
                   help="sustained dense bf16 TFLOP/s assumed for the GPU frame rate")
    p.add_argument("--scenes", default="crossing,overhead",
                   help="moving-object shots measured too (tests/render_shot.py --scene), comma-separated")
    p.add_argument("--scene-seeds", type=int, default=2, help="networks trained per moving-object shot")
    p.add_argument("--hybrid-height", type=int, default=PRESETS["preview"]["height"],
                   help="also measure hybrid's first frame on a render this high (0: skip)")
    p.add_argument("--work", default="/tmp/flowstyle-bench-network")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; 1 (default) times in CPU seconds, more in wall seconds")
    args = p.parse_args()
    global clock
    torch.set_num_threads(args.threads)
    if args.threads != 1:
        clock = time.perf_counter
    os.makedirs(args.work, exist_ok=True)
    w = args.work
    shot = render(os.path.join(w, "shot"), args.width, args.height, args.frames, 16)
    big = render(os.path.join(w, "shot256"), 384, 256, 3, 4)
    rows: list[tuple[str, str, str]] = []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads "
          f"({'CPU' if clock is time.process_time else 'wall'} seconds), shot "
          f"{args.width}x{args.height} x {args.frames} frames", flush=True)

    # Training on the shot, once per seed (fresh: no checkpoint reuse).
    models, train_seconds = train_seeds(shot, w, args.seeds, args.steps, args.crop)
    model = models[0]  # timings use seed 0's network (every seed's costs the same)
    per_step = mean(train_seconds) / args.steps
    rows.append(("train on the shot", f"{args.steps} steps, {args.crop}-px crops, mean of {args.seeds}",
                 f"{mean(train_seconds):.0f} s ({per_step:.2f} s/step)"))

    # A training step at 256 px with the default network.
    t256 = Trainer(big, os.path.join(w, "m256.pt"), Settings(
        styles=[StyleImage(STYLE)], train_steps=6, train_preview_every=0,
        train_checkpoint_every=10**9))
    for path in (t256.model_path, os.path.splitext(t256.model_path)[0] + ".checkpoint.pt"):
        if os.path.exists(path):
            os.remove(path)
    network, optimizer, generator = t256.new_state()
    step_times = []
    for step in range(6):
        start = clock()
        batch = t256.batch(generator)
        loss, _ = t256.loss_terms(network, batch.previous, batch.current, batch.flow, batch.mask, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step_times.append(clock() - start)
    step256 = sorted(step_times[1:])[len(step_times[1:]) // 2]
    rows.append(("train step at 256 px", "batch 1 pair (2 images), default network",
                 f"{step256:.2f} s/step -> 800 steps {800 * step256 / 60:.1f} min"))

    # Stylizing: network vs optimize.
    net_out = os.path.join(w, "network")
    shutil.rmtree(net_out, ignore_errors=True)
    net_run = NetworkRun(shot, net_out, Settings(method="network", model=model))
    start = clock()
    net_run.run()
    net_per_frame_run = (clock() - start) / args.frames
    frame = net_run.inputs(net_run.sequence.numbers[0]).display
    infer = best_of(lambda: net_run.stylize_batch(frame))
    hd = torch.rand(1, 3, *HD)
    infer_hd = best_of(lambda: net_run.stylize_batch(hd), repeats=2)
    opt_per_frame, opt_first = optimize(shot, os.path.join(w, "optimize"))
    rows.append(("optimize, s/frame", f"{args.width}x{args.height}, preview preset iterations "
                 f"({PRESETS['preview']['first_iterations']}/{PRESETS['preview']['iterations']})",
                 f"{opt_per_frame:.2f}"))
    rows.append(("network inference, s/frame", f"{args.width}x{args.height}, best of 5",
                 f"{infer:.4f} ({opt_per_frame / infer:.0f}x faster)"))
    rows.append(("network stylize, s/frame", "whole run incl. EXR read/write",
                 f"{net_per_frame_run:.3f} ({opt_per_frame / net_per_frame_run:.0f}x faster)"))
    rows.append(("network inference at 1080p", "CPU, best of 2", f"{infer_hd:.2f} s"))
    config = load_model(model).network.config
    flops = flops_per_pixel(config) * HD[0] * HD[1]
    rows.append(("network FLOPs per 1080p frame", f"{parameter_count(load_model(model).network) / 1e6:.2f} M "
                 "params, convolutions from layer shapes",
                 f"{flops / 1e9:.0f} GFLOP -> {args.gpu_tflops * 1e12 / flops:.0f} fps at "
                 f"{args.gpu_tflops:g} TFLOP/s"))

    # Quality: optimize once, the network of every seed.
    e_opt = evaluate(shot, os.path.join(w, "optimize"))
    rows += quality_rows("", shot, w, e_opt, models, e_first=evaluate(shot, net_out))

    # Hybrid's first frame, here and at the preview preset's working height (below).
    rows += hybrid_rows(f"hybrid first frame, {args.height} px", shot, w, models, opt_first)

    # A 100-frame 1080p shot, extrapolated linearly in pixels from the measured sizes.
    pixels = args.width * args.height
    preview_h = PRESETS["preview"]["height"]
    preview_px = preview_h * round(preview_h * 16 / 9)
    opt_preview = 100 * opt_per_frame * preview_px / pixels
    opt_full = 100 * opt_per_frame * HD[0] * HD[1] / pixels
    # The final preset: its working height's pixels, and its iterations over the preview's
    # (the measured s/frame is at the preview preset's budget).
    final = PRESETS["final"]
    final_px = final["height"] * round(final["height"] * 16 / 9)
    budget_ratio = ((final["first_iterations"] + 99 * final["iterations"])
                    / (PRESETS["preview"]["first_iterations"] + 99 * PRESETS["preview"]["iterations"]))
    opt_final = 100 * opt_per_frame * final_px / pixels * budget_ratio
    net_total = 800 * step256 + 100 * infer_hd
    rows.append(("100 frames 1080p: optimize", f"preview preset (working {preview_h} px), "
                 "s/frame x pixels ratio", f"{opt_preview / 60:.0f} min"))
    rows.append(("100 frames 1080p: optimize", f"final preset (working {final['height']} px), "
                 f"x pixels x {budget_ratio:.2f} iterations", f"{opt_final / 60:.0f} min"))
    rows.append(("100 frames 1080p: optimize", "at full 1080p, s/frame x pixels ratio",
                 f"{opt_full / 3600:.1f} h"))
    rows.append(("100 frames 1080p: network", "800 steps at 256 px + 100 x 1080p inference",
                 f"{net_total / 60:.0f} min ({net_total / opt_preview:.2f}x preview optimize, "
                 f"{net_total / opt_final:.3f}x final, {net_total / opt_full:.3f}x full-size)"))

    # The same quality measures on moving-object shots of our own (tests/render_shot.py
    # --scene): objects crossing fast over textured background, so every frame uncovers a
    # band of it (the ghost ratio's pixels), each with its own networks and optimize run.
    for scene in [name for name in args.scenes.split(",") if name]:
        sw = os.path.join(w, scene)
        os.makedirs(sw, exist_ok=True)
        scene_shot = render(os.path.join(sw, "shot"), args.width, args.height, args.frames, 16, scene)
        scene_models, _ = train_seeds(scene_shot, sw, args.scene_seeds, args.steps, args.crop)
        optimize(scene_shot, os.path.join(sw, "optimize"))
        rows += quality_rows(f"{scene}: ", scene_shot, sw, evaluate(scene_shot, os.path.join(sw, "optimize")),
                             scene_models)
        print(f"{scene}: measured", flush=True)

    # Hybrid's first frame at the height the preview preset works at, where optimize's cold
    # start climbs its full pyramid: one network trained there at the default crop.
    if args.hybrid_height:
        hw = os.path.join(w, f"hybrid{args.hybrid_height}")
        os.makedirs(hw, exist_ok=True)
        tall = render(os.path.join(hw, "shot"), round(args.hybrid_height * 3 / 2), args.hybrid_height,
                      args.frames, 16)
        tall_models, _ = train_seeds(tall, hw, 1, args.steps, Settings.train_crop)
        rows += hybrid_rows(f"hybrid first frame, {args.hybrid_height} px", tall, hw, tall_models,
                            first_frame(tall, os.path.join(hw, "optimize")))
        print(f"hybrid at {args.hybrid_height} px: measured", flush=True)

    width = max(len(r[0]) for r in rows)
    how = max(len(r[1]) for r in rows)
    print(f"\n{'measure'.ljust(width)}  {'how'.ljust(how)}  value")
    for name, detail, value in rows:
        print(f"{name.ljust(width)}  {detail.ljust(how)}  {value}")


if __name__ == "__main__":
    main()
