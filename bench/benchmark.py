"""Speed and memory benchmark (issue 4): what the engine costs next to VGG itself, and next
to naive per-frame style transfer, measured in one run on this machine.

    python bench/benchmark.py [--heights 128,256,512] [--frames 6] [--probe 1080]
                            [--naive-frames 2] [--naive-budget 400] [--threads N]
                            [--quick] [--json out.json]
    python bench/benchmark.py --levers [--json levers.json]   # one lever at a time, 256 px
    python bench/benchmark.py --report out.json                # re-print a saved (partial) run

For each working height H the demo shot is rendered by Blender at H px high (4:3), so the
working size is the render's own size and nothing is resized. Per height:

  a. floor    one VGG19 forward + backward up to relu5_1 (the deepest layer the losses
              read), gradient w.r.t. the image: what one optimizer evaluation cannot avoid.
              In the engine's VGG precision (bf16 where the hardware has it).
  b. engine   `Stylizer.stylize` on frame 1 for a fixed number of iterations, early stop
              off: seconds per VGG evaluation and per L-BFGS iteration (everything the
              engine does: content features, losses, line search), and the ratios b/a.
              a and b are interleaved (3 rounds of floor passes then engine iterations),
              because this kind of machine drifts by 15% in speed within minutes.
  c. cold vs warm iterations to one loss target. L = the engine's objective without the
              temporal term (content + style + TV, weighted as the engine weighs them) at
              the working size; T = (1 + CONVERGENCE_TOLERANCE) x the L that frame 1
              reaches after its full cold-start budget (pyramid, `first_iterations` per
              level, early stop off). Cold: frame 1's iterations over all pyramid levels
              until L <= T at the finest level. Warm: frames 2.. started from the warped
              previous result as `SequenceRun` starts them, iterations until L <= T
              (0 when the warm start is already there). Same L and same T for both.
  d. sequence `SequenceRun.run()` over the whole shot at the default preset, working
              height H: seconds per frame (reading, flow, masks, optimization, writing);
              then `engine.evaluate.evaluate`: warping error and style loss.
  e. memory   the peak memory of the process that ran d: on the CPU its resident memory
              (the OS high-water mark, `ru_maxrss`), on CUDA `torch.cuda.max_memory_allocated`
              (device memory; the CPU's RSS says nothing about it). Every measurement runs in a fresh subprocess (`--worker`),
              so peaks of different sizes and phases never mix.
  f. naive    independent per-frame Gatys, written here: content init, torch's L-BFGS as
              the PyTorch tutorial uses it (no line search), 300 evaluations, no temporal
              term, no warm start, no pyramid, no early stop; same VGG, losses and loss
              weights as the engine. Seconds per frame, warping error and style loss on the
              first `--naive-frames` frames (2: one warping-error pair), compared with the
              engine's on the same frames. When one naive frame would take longer than
              `--naive-budget` seconds, only its speed is measured (10 evaluations,
              extrapolated: without a line search every evaluation costs the same), and the
              output says so.

Then the issue's targets with PASS or MISS and by how much. `--probe 1080` (on by default)
adds a memory probe at that height: the floor, and the peak memory of a 2-frame run with
one iteration per level, plus the L-BFGS history that a long run fills and this one did not
(an estimate, printed separately).

`--levers` measures each known speed lever on its own at 256 px (channels_last, bf16
autocast, Grams cached or recomputed, VGG cut at relu5_1 or not, early stop on or off,
and OpenMP's wait policy alone and next to a busy process).

Timings on CUDA synchronize the device before the clock is read (`clock()`): CUDA calls
return before the GPU has finished, so an unsynchronized timer measures the queueing.

Lives outside the `engine` package on purpose: it is a developer's tool, not shipped in
the extension zip. Run it from a source checkout (`./dev.sh bench`). The demo shot is
rendered with the add-on's demo scene (`addon/demo_scene.py`) by Blender in a subprocess
(bpy and torch never share a process) and cached in the temp dir, one folder per size. Numbers are printed, not
asserted: this measures, it does not test. The machine may be shared: the load average is
printed at the start and the end so a noisy run can be recognised.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import importlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as a script from a checkout: the engine is next to bench/

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine import colour, defaults, exr, losses  # noqa: E402
from engine.defaults import Settings, StyleImage  # noqa: E402
from engine.evaluate import evaluate  # noqa: E402
from engine.frames import open_sequence  # noqa: E402
from engine.progress import Progress  # noqa: E402
from engine.run import SequenceRun, load_style_images, output_path, working_size  # noqa: E402
from engine.stylize import (LBFGS_HISTORY, FrameStats, Stylizer, TemporalTerm, autocast_dtype, resize,
                      resolve_device)
from engine.vgg import LAYER_INDEX, VGGFeatures  # noqa: E402

# Renders the add-on's demo shot: argv = out_dir width height frames samples.
RENDER_CODE = (
    "import sys; sys.path.insert(0, %r)\n"
    "from addon.demo_scene import build_demo_scene, render_multilayer_exrs\n"
    "out, w, h, n, spp = sys.argv[1], *map(int, sys.argv[2:])\n"
    "render_multilayer_exrs(build_demo_scene(width=w, height=h, frames=n, samples=spp), out)\n"
    % ROOT)
RENDER_SAMPLES = 8  # Cycles samples per pixel of the benchmark shot
ASPECT = 4 / 3  # width / height of the rendered shot (the demo scene's)
LAYERS = list(defaults.CONTENT_LAYERS + defaults.STYLE_LAYERS)

NAIVE_EVALUATIONS = 300  # the PyTorch tutorial's "num_steps": closure evaluations per frame
NAIVE_TIME_ONLY_EVALUATIONS = 10  # evaluations timed when the full naive run is too long
CONVERGENCE_TOLERANCE = 0.05  # T = (1 + this) x frame 1's loss after its full budget
# The engine stops a level when (previous - current) < early_stop * |previous|; with -1
# that needs the loss to double, which a descent method never does: early stop is off.
EARLY_STOP_OFF: dict[str, Any] = {"early_stop": -1.0}

# The issue's targets.
TARGET_ITERATION_RATIO = 1.15  # engine s/iteration over the VGG floor, at most
TARGET_WARM_FRACTION = 1 / 3  # warm iterations to target over cold ones, at most
TARGET_SPEEDUP = 5.0  # naive s/frame over engine s/frame, at least
TARGET_MEMORY_GB = 6.0  # peak memory at the probe height, at most
TARGET_MEMORY_HEIGHT = 1080
SHOT_FRAMES = 250  # the issue's shot length, for the projected seconds per frame

GB = 1024 ** 3


class BenchmarkError(RuntimeError):
    """A measurement could not run (a render or a worker failed)."""


# ---------------------------------------------------------------------------------------
# The plan: how much work each measurement does
# ---------------------------------------------------------------------------------------

@dataclass
class Plan:
    """Budgets of one benchmark run. `quick` shrinks everything to prove the script runs."""

    heights: list[int]
    frames: int = 6  # frames rendered per height (the shot's motion spans all of them)
    quick: bool = False
    first_iterations: int | None = None  # None: the default preset's
    iterations: int | None = None
    speed_iterations: int = 20  # iterations timed in b (10 at 512 px and above)
    warm_frames: int = 2  # warm frames measured in c
    naive_evaluations: int = NAIVE_EVALUATIONS
    naive_frames: int = 2  # frames of the naive reference (2: one warping-error pair)
    naive_budget: float = 400.0  # s: above this per frame, the naive speed only
    probe_height: int | None = TARGET_MEMORY_HEIGHT
    probe_iterations: int = 1
    device: str = "auto"
    threads: int | None = None  # torch threads in the workers; None: torch's default

    @staticmethod
    def make_quick(heights: list[int], frames: int, device: str, threads: int | None) -> Plan:
        return Plan(heights=heights, frames=frames, quick=True, first_iterations=8, iterations=4,
                    speed_iterations=3, warm_frames=1, naive_evaluations=10, probe_height=None,
                    device=device, threads=threads)

    def floor_runs(self, height: int) -> tuple[int, int]:
        """(timed runs, warm-up runs) of the VGG floor at this height."""
        if self.quick:
            return 2, 1
        return (3, 2) if height < 512 else (2, 1)

    def timed_iterations(self, height: int) -> int:
        return self.speed_iterations if self.quick or height < 512 else min(self.speed_iterations, 10)


# ---------------------------------------------------------------------------------------
# Memory and small helpers (used inside the workers)
# ---------------------------------------------------------------------------------------

def _psutil() -> Any:
    """The psutil module if it is installed (optional), else None."""
    try:
        return importlib.import_module("psutil")
    except ImportError:
        return None


def peak_rss() -> int | None:
    """This process's peak resident memory in bytes so far (the OS high-water mark)."""
    try:
        import resource
    except ImportError:  # Windows: psutil's peak working set, if psutil is there
        psutil = _psutil()
        return int(psutil.Process().memory_info().peak_wset) if psutil else None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # Linux: kilobytes


def current_rss() -> int | None:
    """This process's resident memory in bytes now."""
    psutil = _psutil()
    if psutil:
        return int(psutil.Process().memory_info().rss)
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def _peak(memory: dict[str, Any]) -> int | None:
    """The limiting peak of a memory report (older saved reports have only the RSS)."""
    return memory.get("peak", memory["peak_rss"])


def cuda_in_use() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def clock() -> float:
    """time.perf_counter(), after the GPU has finished what was queued (CUDA is async)."""
    if cuda_in_use():
        torch.cuda.synchronize()
    return time.perf_counter()


def memory_report(baseline: int | None) -> dict[str, int | None]:
    """Peak RSS, RSS at `baseline` (after torch, the VGG and the inputs were loaded), and
    `peak`: the memory that limits the working size, i.e. the peak RSS on the CPU and
    torch.cuda.max_memory_allocated on CUDA."""
    report = {"peak_rss": peak_rss(), "baseline_rss": baseline}
    if cuda_in_use():
        torch.cuda.synchronize()
        report["cuda_max_allocated"] = int(torch.cuda.max_memory_allocated())
    report["peak"] = report.get("cuda_max_allocated", report["peak_rss"])
    return report


def read_display(render_dir: str, index: int, height: int) -> torch.Tensor:
    """Frame number `index` (0-based) of a render as 1×3×H×W display RGB at working height."""
    sequence = open_sequence(render_dir)
    frame = sequence.read(sequence.numbers[index])
    display = torch.from_numpy(colour.to_display(frame.rgba)[0]).permute(2, 0, 1)[None].contiguous()
    return resize(display, working_size(sequence.height, sequence.width, height))


def bench_settings(height: int, device: str, **changes: Any) -> Settings:
    """The default preset, the default painting, working height `height`; `changes` on top.

    A None in `changes` keeps the preset's value (e.g. first_iterations=None).
    """
    base = Settings(styles=[StyleImage(defaults.DEFAULT_STYLE)], height=height, device=device)
    return dataclasses.replace(base, **changes).resolved()


def vgg_floor(vgg: VGGFeatures, image: torch.Tensor, runs: int, warmup: int,
              autocast: torch.dtype | None = None) -> float:
    """Median seconds of one forward + backward through `vgg` to its deepest layer.

    The gradient is taken w.r.t. the image only (the weights are frozen, as in the
    engine). `VGGFeatures` built with the engine's layers already stops at the deepest
    one (relu5_1), so this is exactly the network part of one engine evaluation. autocast:
    the engine's VGG precision (`Stylizer.autocast`), so a and b are measured alike.
    """
    deepest = max(vgg.layers, key=LAYER_INDEX.__getitem__)
    x = image.detach().clone().requires_grad_(True)
    times = []
    for _ in range(warmup + runs):
        start = clock()
        with (torch.autocast(x.device.type, dtype=autocast) if autocast else contextlib.nullcontext()):
            out = vgg(x)[deepest]
        out.backward(torch.ones_like(out))
        times.append(clock() - start)
        x.grad = None
    return statistics.median(times[warmup:]) if runs else 0.0


# ---------------------------------------------------------------------------------------
# Reading the engine's own per-iteration record (FrameStats.trajectory)
# ---------------------------------------------------------------------------------------

def gatys_trajectory(stylizer: Stylizer, stats: FrameStats) -> list[float]:
    """L (content + style + TV, weighted as the engine weighs them, no temporal term) at
    the start of the finest level and after each of its iterations."""
    return [float(stylizer.weighted({k: torch.tensor(v) for k, v in terms.items() if k != "temporal"}))
            for terms in stats.trajectory]


def first_at_or_below(values: list[float], target: float) -> int | None:
    """Index of the first value <= target, or None."""
    return next((k for k, v in enumerate(values) if v <= target), None)


class FrameTimes(Progress):
    """A silent Progress that remembers when each frame finished and what it did."""

    def __init__(self) -> None:
        super().__init__("none")
        self.frames: list[dict[str, Any]] = []
        self.t0 = clock()

    def start(self, total: int, todo: int, out_dir: str) -> None:
        super().start(total, todo, out_dir)
        self.t0 = clock()

    def frame_done(self, frame: int, seconds: float, path: str, **extra: Any) -> None:
        super().frame_done(frame, seconds, path, **extra)
        now = clock()
        previous = self.frames[-1]["done_at"] if self.frames else self.t0
        self.frames.append({"frame": frame, "wall_seconds": now - previous, "done_at": now,
                            "optimize_seconds": seconds, **extra})


# ---------------------------------------------------------------------------------------
# f: the naive reference (independent per-frame Gatys, as in the PyTorch tutorial)
# ---------------------------------------------------------------------------------------

def tutorial_gram(features: torch.Tensor) -> torch.Tensor:
    """The PyTorch tutorial's Gram matrix: F·Fᵀ with autograd's own backward (the engine's
    `losses.gram_matrix` has a faster hand-written one; the reference must not borrow it)."""
    n, c, h, w = features.shape
    f = features.reshape(n * c, h * w)
    return (f @ f.t() / (n * c * h * w))[None]


def tutorial_style_loss(features: dict[str, torch.Tensor], grams: dict[str, torch.Tensor]) -> torch.Tensor:
    """`losses.style_loss` with the tutorial's Gram matrix."""
    total = sum((tutorial_gram(features[name]) - g).pow(2).mean() for name, g in grams.items())
    return total / len(grams)  # type: ignore[return-value]


def naive_style_grams(vgg: VGGFeatures, style: torch.Tensor, size: tuple[int, int],
                      style_scale: float) -> dict[str, torch.Tensor]:
    """Gram targets of the style image scaled to the frame's height (as the engine scales it,
    so both are measured against the same style statistics)."""
    height = max(16, round(size[0] * style_scale))
    h, w = style.shape[-2:]
    with torch.no_grad():
        feats = vgg(resize(style, (height, max(16, round(w * height / h)))))
        return {name: losses.gram_matrix(feats[name]) for name in defaults.STYLE_LAYERS}


def naive_gatys(vgg: VGGFeatures, content: torch.Tensor, style_grams: dict[str, torch.Tensor],
                settings: Settings, evaluations: int) -> torch.Tensor:
    """Stylize one frame the tutorial way: start from the content, torch's default L-BFGS
    (lr 1, 20 iterations per step, no line search), clamp to [0, 1] before every
    evaluation, stop after `evaluations` closure calls. No temporal term, no warm start,
    no pyramid, no early stop. Same losses and weights as the engine (TV included)."""
    with torch.no_grad():
        feats = vgg(content)
        target = {name: feats[name].detach() for name in defaults.CONTENT_LAYERS}
    image = content.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
    optimizer = torch.optim.LBFGS([image])
    count = 0

    def closure() -> torch.Tensor:
        nonlocal count
        with torch.no_grad():
            image.clamp_(0, 1)
        optimizer.zero_grad()
        out = vgg(image)
        loss = (settings.content_weight * sum(losses.content_loss(out[n], target[n])
                                              for n in defaults.CONTENT_LAYERS)
                + settings.style_weight * settings.style_strength * tutorial_style_loss(out, style_grams)
                + settings.tv_weight * losses.total_variation(image))
        loss.backward()
        count += 1
        return loss

    while count < evaluations:
        # Without a line search a step of n iterations makes exactly n evaluations.
        optimizer.param_groups[0]["max_iter"] = min(20, evaluations - count)
        optimizer.step(closure)
    with torch.no_grad():
        return image.clamp_(0, 1).detach()


# ---------------------------------------------------------------------------------------
# Worker phases: each runs in its own subprocess and returns a JSON-ready dict
# ---------------------------------------------------------------------------------------

def phase_speed(render_dir: str, height: int, runs: int, warmup: int, iterations: int,
                device: str, rounds: int = 3) -> dict[str, Any]:
    """a (VGG floor) and b (the engine's seconds per evaluation and per iteration).

    On a machine whose speed drifts (turbo, neighbours) a floor measured once and an engine
    run measured later disagree by 15% either way, so the two are interleaved: `rounds`
    times the floor (`runs` passes) then the engine (`iterations` iterations), and the
    floor once more at the end. a is the median of all floor passes, b the engine's total
    seconds over its total iterations. Both in the engine's precision (`--precision auto`).
    """
    dev = resolve_device(device)
    image = read_display(render_dir, 0, height).to(dev)
    vgg = VGGFeatures(LAYERS).to(dev)
    settings = bench_settings(height, device, **EARLY_STOP_OFF)
    stylizer = Stylizer(settings, vgg, load_style_images(settings)[0], dev)
    baseline = current_rss()
    size = (image.shape[-2], image.shape[-1])
    vgg_floor(vgg, image, 0, warmup, stylizer.autocast)  # warm-up: oneDNN builds its kernels
    start = clock()
    stylizer.style_grams(size)  # computed once per run and size; timed for the record
    grams_seconds = clock() - start
    stylizer.stylize(image, image, [], 2, pyramid=False)  # warm-up (and L-BFGS's scale)
    floors, rounds_out = [], []
    seconds = iterations_done = evaluations = 0.0
    for _ in range(rounds):
        floors.append(vgg_floor(vgg, image, runs, 0, stylizer.autocast))
        _, stats = stylizer.stylize(image, image, [], iterations, pyramid=False)
        seconds += stats.seconds
        iterations_done += stats.iterations
        evaluations += stats.evaluations
        rounds_out.append({"floor": floors[-1], "per_iteration": stats.seconds / max(1, stats.iterations),
                           "evaluations": stats.evaluations, "iterations": stats.iterations})
    floors.append(vgg_floor(vgg, image, runs, 0, stylizer.autocast))
    floor_fp32 = (vgg_floor(vgg, image, max(1, runs // 2), 1) if stylizer.autocast else
                  statistics.median(floors))
    return {"size": [size[1], size[0]], "floor": statistics.median(floors),
            "floor_before": min(floors), "floor_after": max(floors), "floors": floors,
            "floor_fp32": floor_fp32, "autocast": str(stylizer.autocast or "float32"),
            "grams_seconds": grams_seconds, "rounds": rounds_out,
            "iterations": iterations_done, "evaluations": evaluations,
            "seconds": seconds, "per_iteration": seconds / max(1, iterations_done),
            "per_evaluation": seconds / max(1, evaluations),
            "memory": memory_report(baseline)}


def phase_convergence(render_dir: str, height: int, first_iterations: int | None,
                      iterations: int | None, warm_frames: int, device: str) -> dict[str, Any]:
    """c: iterations to the loss target T, cold (frame 1) and warm (frames 2..)."""
    settings = bench_settings(height, device, first_iterations=first_iterations,
                              iterations=iterations, **EARLY_STOP_OFF)
    if settings.optimizer != "lbfgs":
        raise BenchmarkError("the convergence measurement counts L-BFGS iterations; "
                             f"the default optimizer is now {settings.optimizer!r}")
    with tempfile.TemporaryDirectory(prefix="flowstyle_bench_c_") as out:
        run = SequenceRun(render_dir, out, settings, Progress("none"))
        s = run.settings
        numbers = run.sequence.numbers
        baseline = current_rss()

        # Cold start: frame 1 from its content, up the pyramid, full budget per level.
        first = numbers[0]
        content = resize(run.inputs(first).display, run.size)
        image, stats = run.stylizer.stylize(content, content, [], s.first_iterations or 0, pyramid=True)
        *coarse, (fh, fw, finest_iterations) = stats.levels
        coarse_iterations = sum(its for _, _, its in coarse)
        # The same work in iterations at the finest size (an iteration costs ~ its pixels).
        coarse_equivalent = sum(its * h * w / (fh * fw) for h, w, its in coarse)
        trajectory = gatys_trajectory(run.stylizer, stats)
        target = (1 + CONVERGENCE_TOLERANCE) * trajectory[-1]
        reached = first_at_or_below(trajectory, target)
        cold = {"frame": first, "levels": len(stats.levels), "coarse_iterations": coarse_iterations,
                "coarse_finest_equivalent": coarse_equivalent,
                "finest_budget": s.first_iterations, "finest_iterations": finest_iterations,
                "finest_to_target": reached,
                "to_target": None if reached is None else coarse_iterations + reached,
                "to_target_finest_equivalent": None if reached is None else coarse_equivalent + reached,
                "loss_start": trajectory[0], "loss_end": trajectory[-1], "trajectory": trajectory}
        run.results[first] = image

        # Warm starts: as SequenceRun starts them (warped previous, holes filled).
        warm = []
        for number in numbers[1:1 + warm_frames]:
            terms, backward_1 = run.temporal_terms(number)
            content = resize(run.inputs(number).display, run.size)
            init = run.initial_image(content, terms, backward_1)
            # The same warm start without the temporal term: the same objective as frame
            # 1's, so T means the same thing (with the term, L trades off against
            # stability and may settle above T). The learned step scale is put back so
            # the engine's own frames run as they would without this measurement.
            scales = dict(run.stylizer.scales)
            _, alone = run.stylizer.stylize(content, init, [], s.iterations or 0, pyramid=False)
            run.stylizer.scales = scales
            alone_trajectory = gatys_trajectory(run.stylizer, alone)
            image, stats = run.stylizer.stylize(content, init, terms, s.iterations or 0, pyramid=False)
            trajectory = gatys_trajectory(run.stylizer, stats)
            warm.append({"frame": number, "budget": s.iterations, "iterations": stats.iterations,
                         "evaluations": stats.evaluations,
                         "to_target": first_at_or_below(trajectory, target),
                         "loss_start": trajectory[0], "loss_end": trajectory[-1],
                         "trajectory": trajectory,
                         "objective": [stats.loss_start] + stats.losses,
                         "no_temporal_to_target": first_at_or_below(alone_trajectory, target),
                         "no_temporal_loss_end": alone_trajectory[-1],
                         "no_temporal_trajectory": alone_trajectory})
            run.results[number] = image
        memory = memory_report(baseline)
    return {"target": target, "tolerance": CONVERGENCE_TOLERANCE, "cold": cold, "warm": warm,
            "memory": memory}


def _evaluate_subset(render_dir: str, out_dir: str, numbers: list[int], height: int,
                     device: str) -> dict[str, Any]:
    """evaluate() on the first frames only (copied into a subfolder of out_dir)."""
    subset = os.path.join(out_dir, "subset")
    os.makedirs(subset, exist_ok=True)
    for n in numbers:
        shutil.copy(output_path(out_dir, n), output_path(subset, n))
    return evaluate(render_dir, subset, height=height, device=device,
                    styles=[StyleImage(defaults.DEFAULT_STYLE)])


def _quality(report: dict[str, Any]) -> dict[str, Any]:
    """The numbers of an evaluate() report that the benchmark prints."""
    return {"frames": report["frames"], "warping_error": report["warping_error"]["output"],
            "input_warping_error": report["warping_error"]["input"],
            "style_loss": report["style_loss"], "content_loss": report["content_loss"]}


def phase_sequence(render_dir: str, height: int, first_iterations: int | None,
                   iterations: int | None, compare_frames: int, device: str) -> dict[str, Any]:
    """d and e: the engine over the whole shot at the default preset, then its quality."""
    settings = bench_settings(height, device, first_iterations=first_iterations,
                              iterations=iterations)
    with tempfile.TemporaryDirectory(prefix="flowstyle_bench_d_") as out:
        progress = FrameTimes()
        run = SequenceRun(render_dir, out, settings, progress)
        baseline = current_rss()
        summary = run.run()
        memory = memory_report(baseline)  # before evaluate() loads its own VGG
        frames = [{k: v for k, v in f.items() if k != "done_at"} for f in progress.frames]
        quality = _quality(evaluate(render_dir, out, height=height, device=device,
                                    styles=[StyleImage(defaults.DEFAULT_STYLE)]))
        numbers = run.sequence.numbers
        subset = None
        if 2 <= compare_frames < len(numbers):
            subset = _quality(_evaluate_subset(render_dir, out, numbers[:compare_frames], height, device))
    return {"preset": settings.preset, "first_iterations": settings.first_iterations,
            "iterations": settings.iterations, "seconds": summary["seconds"],
            "frames": frames, "quality": quality, "quality_first_frames": subset, "memory": memory}


def phase_naive(render_dir: str, height: int, frames: int, evaluations: int, time_only: bool,
                device: str) -> dict[str, Any]:
    """f: independent per-frame Gatys on the first `frames` frames, then its quality."""
    dev = resolve_device(device)
    settings = bench_settings(height, device)
    vgg = VGGFeatures(LAYERS).to(dev)
    style = load_style_images(settings)[0][0][0].to(dev)
    sequence = open_sequence(render_dir)
    size = working_size(sequence.height, sequence.width, height)
    baseline = current_rss()
    if time_only:  # a few evaluations on frame 1, extrapolated to the full count
        content = read_display(render_dir, 0, height).to(dev)
        start = clock()
        grams = naive_style_grams(vgg, style, size, settings.style_scale)
        setup = clock() - start
        naive_gatys(vgg, content, grams, settings, 2)  # warm-up
        start = clock()
        naive_gatys(vgg, content, grams, settings, NAIVE_TIME_ONLY_EVALUATIONS)
        per_evaluation = (clock() - start) / NAIVE_TIME_ONLY_EVALUATIONS
        return {"time_only": True, "frames": 0, "evaluations": evaluations,
                "per_evaluation": per_evaluation,
                "seconds_per_frame": setup + per_evaluation * evaluations,
                "quality": None, "memory": memory_report(baseline)}
    times = []
    with tempfile.TemporaryDirectory(prefix="flowstyle_bench_f_") as out:
        for number in sequence.numbers[:frames]:
            start = clock()
            frame = sequence.read(number)
            display, alpha, excess = colour.to_display(frame.rgba)
            content = resize(torch.from_numpy(display).permute(2, 0, 1)[None].to(dev), size)
            grams = naive_style_grams(vgg, style, size, settings.style_scale)  # per frame, as a
            image = naive_gatys(vgg, content, grams, settings, evaluations)  # per-frame tool does
            full = resize(image, (sequence.height, sequence.width)).clamp(0, 1)
            rgba = colour.to_linear(full[0].permute(1, 2, 0).cpu().numpy(), alpha, excess)
            exr.write_rgba(output_path(out, number), rgba, {})
            times.append(clock() - start)
        memory = memory_report(baseline)
        quality = _quality(evaluate(render_dir, out, height=height, device=device,
                                    styles=[StyleImage(defaults.DEFAULT_STYLE)]))
    return {"time_only": False, "frames": len(times), "evaluations": evaluations,
            "seconds_per_frame": float(np.mean(times)), "frame_seconds": times,
            "quality": quality, "memory": memory}


def phase_probe(render_dir: str, height: int, iterations: int, device: str) -> dict[str, Any]:
    """Memory (and the floor) at a large working height, from a short 2-frame run."""
    dev = resolve_device(device)
    image = read_display(render_dir, 0, height).to(dev)
    settings = bench_settings(height, device, first_iterations=iterations, iterations=iterations,
                              **EARLY_STOP_OFF)
    vgg = VGGFeatures(LAYERS).to(dev)
    floor = vgg_floor(vgg, image, runs=1, warmup=1,
                      autocast=autocast_dtype(dev, settings.precision))
    del vgg
    progress = FrameTimes()
    with tempfile.TemporaryDirectory(prefix="flowstyle_bench_p_") as out:
        run = SequenceRun(render_dir, out, settings, progress)
        baseline = current_rss()
        run.run()
        memory = memory_report(baseline)
    # A long run fills the L-BFGS history (a step and a gradient change, two image-sized
    # float32 vectors, per remembered iteration); these few iterations did not. Add what
    # is missing.
    filled = min(iterations, LBFGS_HISTORY)
    missing = (LBFGS_HISTORY - filled) * 2 * 3 * run.size[0] * run.size[1] * 4
    last = progress.frames[-1] if progress.frames else {}
    per_iteration = (last.get("optimize_seconds", 0.0) / max(1, int(last.get("iterations", 1) or 1)))
    return {"size": [run.size[1], run.size[0]], "floor": floor, "iterations": iterations,
            "precision": settings.precision, "autocast": str(autocast_dtype(dev, settings.precision)),
            "per_iteration_rough": per_iteration, "memory": memory,
            "lbfgs_history_missing": missing}


# ---------------------------------------------------------------------------------------
# Levers: each known speed lever measured on its own, at one size
# ---------------------------------------------------------------------------------------

class RecomputingGramsStylizer(Stylizer):
    """The engine's Stylizer, except that the style Grams are recomputed at every
    evaluation (the cost a per-evaluation style pass would add)."""

    def losses(self, image: torch.Tensor, content_features: dict[str, torch.Tensor],
               grams: dict[str, torch.Tensor], temporal: list[TemporalTerm]) -> dict[str, torch.Tensor]:
        cache = getattr(self, "_grams", None)
        if not isinstance(cache, dict):
            raise BenchmarkError("Stylizer no longer caches Grams in `_grams`: update this lever")
        cache.clear()
        # The same targets the engine uses: the canvas's size and the frame's share of it.
        fresh = self.style_grams((image.shape[-2], image.shape[-1]), self._frame_fraction)
        return super().losses(image, content_features, fresh, temporal)


def phase_levers(render_dir: str, height: int, iterations: int, repeats: int,
                 device: str) -> dict[str, Any]:
    """Seconds per iteration with each lever flipped on its own, on frame 1 at `height`;
    then early stop on/off on a warm frame (it changes iterations, not their cost)."""
    dev = resolve_device(device)
    content = read_display(render_dir, 0, height).to(dev)
    size = (content.shape[-2], content.shape[-1])
    base = bench_settings(height, device, precision="fp32", **EARLY_STOP_OFF)
    styles = load_style_images(base)[0]
    vgg = VGGFeatures(LAYERS).to(dev)
    channels_last = copy.deepcopy(vgg).to(memory_format=torch.channels_last)
    full = VGGFeatures(LAYERS + ["pool5"]).to(dev)  # all 16 convs: nothing cut after relu5_1
    bf16 = dataclasses.replace(base, precision="bf16")
    variants: dict[str, Stylizer] = {
        "baseline: fp32, NCHW, Grams cached, VGG cut at relu5_1": Stylizer(base, vgg, styles, dev),
        "channels_last (VGG weights and activations)": Stylizer(base, channels_last, styles, dev),
        "bf16 autocast (precision='bf16')": Stylizer(bf16, vgg, styles, dev),
        "channels_last + bf16 autocast": Stylizer(bf16, channels_last, styles, dev),
        "style Grams recomputed every evaluation": RecomputingGramsStylizer(base, vgg, styles, dev),
        "VGG not cut (to pool5, all 16 convs)": Stylizer(base, full, styles, dev),
        # Inductor compiles once per input size (a pyramid has three): the warm-up below
        # pays it and `compile_seconds` reports it.
        "torch.compile (inductor) of the VGG": Stylizer(base, torch.compile(vgg), styles, dev),  # type: ignore[arg-type]
        "torch.compile + bf16 autocast": Stylizer(bf16, torch.compile(vgg), styles, dev),  # type: ignore[arg-type]
    }
    reference = next(iter(variants.values()))
    with torch.no_grad():
        content_features = {n: f for n, f in vgg(content).items() if n in defaults.CONTENT_LAYERS}
    grams_start = clock()
    reference_grams = reference.style_grams(size)
    grams_seconds = clock() - grams_start

    timings: dict[str, list[tuple[float, float, int]]] = {name: [] for name in variants}
    finals: dict[str, float] = {}
    warmup_seconds = {}
    for name, stylizer in variants.items():  # warm-up (the Grams of each variant; compiling)
        start = clock()
        stylizer.stylize(content, content, [], 2, pyramid=False)
        warmup_seconds[name] = clock() - start
    for _ in range(repeats):  # round robin, so a burst of load hits every variant alike
        for name, stylizer in variants.items():
            image, stats = stylizer.stylize(content, content, [], iterations, pyramid=False)
            timings[name].append((stats.seconds / max(1, stats.iterations),
                                  stats.seconds / max(1, stats.evaluations), stats.iterations))
            with torch.no_grad():  # every result scored by the same fp32 loss
                finals[name] = float(reference.weighted(
                    reference.losses(image, content_features, reference_grams, [])))
    rows = [{"lever": name, "warmup_seconds": warmup_seconds[name],
             "per_iteration": statistics.median(t[0] for t in times),
             "per_evaluation": statistics.median(t[1] for t in times),
             "fp32_loss_after": finals[name]} for name, times in timings.items()]

    floors = {"NCHW fp32": vgg_floor(vgg, content, 3, 1),
              "channels_last fp32": vgg_floor(channels_last, content, 3, 1)}
    with torch.autocast(dev.type, dtype=torch.bfloat16):
        floors["NCHW bf16"] = vgg_floor(vgg, content, 3, 1)

    # Early stop: on a warm frame, started as SequenceRun starts it.
    with tempfile.TemporaryDirectory(prefix="flowstyle_bench_l_") as out:
        run = SequenceRun(render_dir, out, bench_settings(height, device), Progress("none"))
        first, second = run.sequence.numbers[:2]
        run.results[first], cold = run.stylize_frame(first)
        terms, backward_1 = run.temporal_terms(second)
        warm_content = resize(run.inputs(second).display, run.size)
        init = run.initial_image(warm_content, terms, backward_1)
        early = []
        for label, changes in (("early stop on (default)", {}), ("early stop off", EARLY_STOP_OFF)):
            stylizer = Stylizer(dataclasses.replace(run.settings, **changes), run.vgg,
                                run.style_images, run.device)
            _, stats = stylizer.stylize(warm_content, init, terms, run.settings.iterations or 0,
                                        pyramid=False)
            early.append({"variant": label, "seconds": stats.seconds, "iterations": stats.iterations,
                          "loss_end": stats.loss_end})
    return {"size": [size[1], size[0]], "iterations": iterations, "repeats": repeats,
            "grams_seconds": grams_seconds, "levers": rows, "floors": floors,
            "early_stop": early, "cold_frame_seconds": cold.seconds}


PHASES: dict[str, Callable[..., dict[str, Any]]] = {
    "speed": phase_speed, "convergence": phase_convergence, "sequence": phase_sequence,
    "naive": phase_naive, "probe": phase_probe, "levers": phase_levers,
}


def worker_main(phase: str, args_json: str, out_path: str, threads: int | None) -> int:
    """Run one phase in this (fresh) process and write its result as JSON."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    result = PHASES[phase](**json.loads(args_json))
    result["torch_threads"] = torch.get_num_threads()
    with open(out_path, "w") as f:
        json.dump(result, f)
    return 0


# ---------------------------------------------------------------------------------------
# The parent: renders, workers, tables
# ---------------------------------------------------------------------------------------

def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("BLENDER_USER_RESOURCES",
                   os.path.join(tempfile.gettempdir(), "flowstyle_bench", "blender-user"))
    return env


def render(height: int, frames: int) -> str:
    """The demo shot at `height` px (4:3), rendered by Blender once and cached; its folder."""
    width = round(height * ASPECT)
    cache = os.path.join(tempfile.gettempdir(), "flowstyle_bench", "renders")
    out = os.path.join(cache, f"{width}x{height}_{frames}f_{RENDER_SAMPLES}spp")
    if all(os.path.isfile(os.path.join(out, f"render_{n:04d}.exr")) for n in range(1, frames + 1)):
        return out
    partial = out + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    cmd = [sys.executable, "-c", RENDER_CODE, partial, str(width), str(height), str(frames),
           str(RENDER_SAMPLES)]
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BenchmarkError(f"rendering {width}x{height} failed (exit {result.returncode}); is bpy "
                             f"installed in {sys.executable}?\n{result.stderr[-2000:]}")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(partial, out)
    return out


def run_worker(phase: str, args: dict[str, Any], threads: int | None = None,
               extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one phase in a fresh subprocess; its result, or {'error': ...} if it failed."""
    with tempfile.TemporaryDirectory(prefix="flowstyle_bench_w_") as tmp:
        result_path = os.path.join(tmp, "result.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", phase,
               "--worker-args", json.dumps(args), "--worker-out", result_path]
        if threads:
            cmd += ["--threads", str(threads)]
        started = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env={**_env(), **(extra_env or {})},
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not os.path.isfile(result_path):
            tail = proc.stderr.strip().splitlines()[-15:]
            return {"error": f"{phase} worker exited {proc.returncode}: " + "\n".join(tail)}
        with open(result_path) as f:
            result: dict[str, Any] = json.load(f)
    result["wall_seconds"] = time.perf_counter() - started
    return result


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "load_start": _load(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def say(text: str = "") -> None:
    print(text, flush=True)


def naive_schedule(plan: Plan, per_evaluation: float | None) -> tuple[int, bool]:
    """(frames, time_only) of the naive reference: `plan.naive_frames` frames, or its speed
    only when one frame would take more than `plan.naive_budget` seconds (estimated from
    the float32 floor: the tutorial's evaluation is one fp32 VGG forward+backward)."""
    frames = min(plan.frames, max(2, plan.naive_frames))
    if plan.quick or per_evaluation is None:
        return frames, False
    return (0, True) if plan.naive_evaluations * per_evaluation > plan.naive_budget else (frames, False)


def run_benchmark(plan: Plan, json_path: str | None) -> dict[str, Any]:
    """Every measurement of the plan, cheap ones first; results saved after each step."""
    results: dict[str, Any] = {"machine": machine_info(), "plan": dataclasses.asdict(plan),
                               "rows": {}, "probe": None}
    preset = bench_settings(0, plan.device, first_iterations=plan.first_iterations,
                            iterations=plan.iterations)
    results["preset"] = {"name": preset.preset, "first_iterations": preset.first_iterations,
                         "iterations": preset.iterations, "early_stop": preset.early_stop,
                         "early_stop_window": preset.early_stop_window,
                         "pyramid_levels": preset.pyramid_levels}

    def save() -> None:
        if json_path:
            with open(json_path, "w") as f:
                json.dump(results, f, indent=1)

    def step(label: str, phase: str, **args: Any) -> dict[str, Any]:
        say(f"... {label}")
        result = run_worker(phase, args, plan.threads)
        say(f"    {summarise(phase, result)}")
        return result

    print_header(results)
    renders: dict[int, str] = {}
    # 1. The cheap measurements first, for every height: a, b.
    for h in plan.heights:
        row: dict[str, Any] = results["rows"].setdefault(str(h), {})
        say(f"... rendering the shot at {round(h * ASPECT)}x{h}, {plan.frames} frames")
        renders[h] = render(h, plan.frames)
        runs, warmup = plan.floor_runs(h)
        row["speed"] = step(f"[{h}] a, b: VGG floor and engine iteration", "speed",
                            render_dir=renders[h], height=h, runs=runs, warmup=warmup,
                            iterations=plan.timed_iterations(h), device=plan.device)
        save()
    # 2. The memory probe at 1080 (a few iterations only).
    if plan.probe_height:
        h = plan.probe_height
        say(f"... rendering the shot at {round(h * ASPECT)}x{h}, 2 frames (memory probe)")
        probe_dir = render(h, 2)
        results["probe"] = step(f"[{h}] memory probe", "probe", render_dir=probe_dir, height=h,
                                iterations=plan.probe_iterations, device=plan.device)
        save()
    # 3. The long ones, height by height: d and e, c, f.
    for h in plan.heights:
        row = results["rows"][str(h)]
        naive_frames, time_only = naive_schedule(plan, row["speed"].get("floor_fp32"))
        row["sequence"] = step(f"[{h}] d, e: sequence at the default preset", "sequence",
                               render_dir=renders[h], height=h, first_iterations=plan.first_iterations,
                               iterations=plan.iterations, compare_frames=naive_frames,
                               device=plan.device)
        save()
        row["convergence"] = step(f"[{h}] c: iterations to the loss target", "convergence",
                                  render_dir=renders[h], height=h,
                                  first_iterations=plan.first_iterations, iterations=plan.iterations,
                                  warm_frames=plan.warm_frames, device=plan.device)
        save()
        what = "time only" if time_only else f"{naive_frames} frames"
        row["naive"] = step(f"[{h}] f: naive per-frame Gatys ({what})", "naive",
                            render_dir=renders[h], height=h, frames=naive_frames,
                            evaluations=plan.naive_evaluations, time_only=time_only,
                            device=plan.device)
        save()
    results["machine"]["load_end"] = _load()
    save()
    say()
    print_tables(results)
    return results


def run_levers(device: str, json_path: str | None, threads: int | None = None, height: int = 256,
               iterations: int = 10, repeats: int = 3) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine_info()}
    say(f"Flowstyle levers at {height} px: {results['machine']['cpu']}, "
        f"{threads or results['machine']['torch_threads']} torch threads, torch {torch.__version__}, "
        f"load {results['machine']['load_start']}")
    render_dir = render(height, 3)
    say(f"... levers: {iterations} iterations x {repeats} repeats per variant, then early stop")
    results["levers"] = run_worker("levers", {"render_dir": render_dir, "height": height,
                                              "iterations": iterations, "repeats": repeats,
                                              "device": device}, threads)
    say("... thread scheduling: OMP_WAIT_POLICY default vs PASSIVE, alone and next to a busy process")
    results["scheduling"] = scheduling_lever(render_dir, height, device, threads)
    results["machine"]["load_end"] = _load()
    if json_path:
        with open(json_path, "w") as f:
            json.dump(results, f, indent=1)
    print_levers(results)
    return results


# A process that keeps the CPU busy with torch's default thread count, as a render, a test
# run or a second engine on the same machine would.
COMPETITOR = "import torch\nx = torch.rand(768, 768)\nwhile True:\n    x @ x\n"


def scheduling_lever(render_dir: str, height: int, device: str,
                     threads: int | None) -> list[dict[str, Any]]:
    """a and b in fresh processes with OpenMP's default (spinning) wait policy and with
    OMP_WAIT_POLICY=PASSIVE, alone and while another process keeps the CPU busy.

    The policy is read when OpenMP starts, so it can only be set in the environment of a
    new process (as the add-on and a farm start the engine).
    """
    rows = []
    args = {"render_dir": render_dir, "height": height, "runs": 3, "warmup": 1,
            "iterations": 5, "device": device}
    for busy in (False, True):
        for policy in ("default", "PASSIVE"):
            env = {"OMP_WAIT_POLICY": "PASSIVE"} if policy == "PASSIVE" else {}
            competitor = (subprocess.Popen([sys.executable, "-c", COMPETITOR],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                          if busy else None)
            try:
                result = run_worker("speed", args, threads, env)
            finally:
                if competitor is not None:
                    competitor.terminate()
                    competitor.wait()
            rows.append({"policy": policy, "busy": busy, **{k: result.get(k) for k in
                         ("floor", "per_iteration", "per_evaluation", "error")}})
    return rows


# ---------------------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------------------

def _f(value: Any, spec: str = ".3f", none: str = "-") -> str:
    if value is None:
        return none
    return format(value, spec)


def _gb(value: float | None) -> str:
    return "-" if value is None else f"{value / GB:.2f} GB"


def summarise(phase: str, r: dict[str, Any]) -> str:
    """One line about a finished phase, printed as the run goes."""
    if "error" in r:
        return "ERROR " + r["error"]
    if phase == "speed":
        return (f"floor {r['floor']:.3f} s, engine {r['per_iteration']:.3f} s/iteration "
                f"({r['per_evaluation']:.3f} s/evaluation), b/a {r['per_iteration'] / r['floor']:.2f}")
    if phase == "probe":
        return (f"floor {r['floor']:.2f} s, peak {_gb(r['memory']['peak_rss'])} "
                f"(+{_gb(r['lbfgs_history_missing'])} L-BFGS history not yet filled)")
    if phase == "sequence":
        n = len(r["frames"])
        return (f"{r['seconds'] / max(1, n):.2f} s/frame over {n} frames, warping error "
                f"{_f(r['quality']['warping_error'], '.5f')}, style loss {r['quality']['style_loss']:.1f}, "
                f"peak {_gb(r['memory']['peak_rss'])}")
    if phase == "convergence":
        warm = [w["to_target"] for w in r["warm"]]
        return f"target {r['target']:.4g}: cold {r['cold']['to_target']} iterations, warm {warm}"
    if phase == "naive":
        if r["time_only"]:
            return f"~{r['seconds_per_frame']:.1f} s/frame (time only, extrapolated)"
        q = r["quality"]
        return (f"{r['seconds_per_frame']:.2f} s/frame over {r['frames']} frames, warping error "
                f"{_f(q['warping_error'], '.5f')}, style loss {q['style_loss']:.1f}")
    return json.dumps(r)[:200]


def print_header(results: dict[str, Any]) -> None:
    m, p, pre = results["machine"], results["plan"], results["preset"]
    threads = p.get("threads") or m["torch_threads"]
    say(f"Flowstyle benchmark: {m['cpu']}, {m['cores']} cores, {threads} torch threads, "
        f"torch {m['torch']}, device {p['device']}, load average {m['load_start']}")
    say(f"Shot: the demo scene rendered by Blender (Cycles, {RENDER_SAMPLES} spp, 4:3), "
        f"{p['frames']} frames; working height = the row's height (= the render's).")
    say(f"Preset '{pre['name']}': {pre['first_iterations']} iterations per pyramid level on frame 1, "
        f"{pre['iterations']} on later frames, early stop {pre['early_stop']} over "
        f"{pre['early_stop_window']} iterations.")
    if m.get("omp_wait_policy"):
        say(f"OMP_WAIT_POLICY={m['omp_wait_policy']} (set in the environment of every measurement).")
    if p["quick"]:
        say("QUICK MODE: budgets cut to prove the script runs; the numbers say nothing about targets.")
    say()


def _table(headers: list[str], rows: list[list[str]]) -> None:
    rows = [r + ["-"] * (len(headers) - len(r)) for r in rows]  # short rows: pending phases
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    def line(cells: list[str]) -> str:  # first column left-aligned, numbers right-aligned
        return "  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                for i, (c, w) in enumerate(zip(cells, widths)))
    say(line(headers))
    for r in rows:
        say(line(r))


def _ok(row: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = row.get(key)
    return value if isinstance(value, dict) and "error" not in value else None


def sequence_numbers(seq: dict[str, Any]) -> dict[str, float]:
    """Seconds per frame of a sequence result: measured, first, later, projected."""
    frames = seq["frames"]
    first = frames[0]["wall_seconds"]
    later = [f["wall_seconds"] for f in frames[1:]]
    mean_later = float(np.mean(later)) if later else first
    return {"per_frame": seq["seconds"] / len(frames), "first": first, "later": mean_later,
            "projected": (first + (SHOT_FRAMES - 1) * mean_later) / SHOT_FRAMES}


def _unsteady(speed: dict[str, Any]) -> str:
    """'!' when the floor passes interleaved with b differ by more than 20%."""
    before, after = speed.get("floor_before"), speed.get("floor_after")
    if not before or not after:
        return ""
    return "!" if max(before, after) > 1.2 * min(before, after) else ""


def warm_iteration_seconds(seq: dict[str, Any] | None) -> float | None:
    """Seconds per iteration over the warm frames of a sequence run (all but the first)."""
    if not seq or len(seq["frames"]) < 2:
        return None
    frames = seq["frames"][1:]
    iterations = sum(int(f.get("iterations") or 0) for f in frames)
    return sum(f["optimize_seconds"] for f in frames) / iterations if iterations else None


def warm_cold_ratios(c: dict[str, Any], key: str = "to_target") -> tuple[float | None, float | None]:
    """(slowest warm frame's iterations to T / cold's, same over cold's finest-equivalent).
    key: "no_temporal_to_target" for the warm starts measured without the temporal term."""
    warm = [w.get(key) for w in c["warm"]]
    if not warm or None in warm or not c["cold"]["to_target"]:
        return None, None
    return max(warm) / c["cold"]["to_target"], max(warm) / c["cold"]["to_target_finest_equivalent"]


def print_tables(results: dict[str, Any]) -> None:
    rows = results["rows"]
    pre = results["preset"]

    say("a, b: one VGG19 forward+backward to relu5_1 (a) vs one engine iteration (b)")
    table = []
    for h, row in rows.items():
        s = _ok(row, "speed")
        if not s:
            table.append([h, "error" if row.get("speed") else "-"] + ["-"] * 8)
            continue
        warm = warm_iteration_seconds(_ok(row, "sequence"))
        table.append([h, f"{s['size'][0]}x{s['size'][1]}", f"{s['floor']:.3f}{_unsteady(s)}",
                      f"{s['per_evaluation']:.3f}", f"{s['per_iteration']:.3f}",
                      f"{s['evaluations'] / max(1, s['iterations']):.2f}",
                      f"{s['per_evaluation'] / s['floor']:.2f}", f"{s['per_iteration'] / s['floor']:.2f}",
                      _f(warm, ".3f"), _f(None if warm is None else warm / s["floor"], ".2f")])
    probe = results.get("probe")
    if probe and "error" not in probe:
        table.append([f"{probe['size'][1]}*", f"{probe['size'][0]}x{probe['size'][1]}", f"{probe['floor']:.3f}",
                      "-", f"~{probe['per_iteration_rough']:.2f}", "-", "-",
                      f"~{probe['per_iteration_rough'] / probe['floor']:.2f}", "-", "-"])
    _table(["height", "size", "a: s", "s/eval", "b: s/iter", "evals/iter", "eval/a", "b/a",
            "b warm: s/iter", "b/a warm"], table)
    precisions = sorted({str(_ok(row, "speed").get("autocast", "?")) for row in rows.values()  # type: ignore[union-attr]
                         if _ok(row, "speed")})
    say(f"  b: 3 rounds of {results['plan']['speed_iterations']} iterations (10 at 512 px and up) on "
        "frame 1 from its content, incl. per-frame setup, each round after a floor measurement. "
        "a: median of all floor passes (interleaved with b, so drift of the machine's speed "
        f"hits both). VGG precision of both: {', '.join(precisions) or '-'} (--precision auto). "
        "b warm: the warm frames of the sequence run (d): their optimization seconds over their "
        "iterations. '!' marks floor passes that differ by more than 20% (other load: b/a "
        "unreliable).")
    if probe and "error" not in probe:
        say(f"  * memory probe: {probe['iterations']} iterations per frame, s/iteration includes "
            "per-frame setup (rough).")
    say()

    say(f"c: iterations to the loss target T. L = content + style + TV as the engine weighs "
        f"them (no temporal term), at the working size; T = {1 + CONVERGENCE_TOLERANCE:.2f} x the "
        f"L frame 1 reaches after its full cold budget ({pre['first_iterations']} per level, "
        f"early stop off). Warm: frames 2.. from the warped previous result, budget "
        f"{pre['iterations']}.")
    table = []
    for h, row in rows.items():
        c = _ok(row, "convergence")
        if not c:
            table.append([h] + ["error" if row.get("convergence") else "-"] + ["-"] * 9)
            continue
        cold = c["cold"]
        ratios = warm_cold_ratios(c)
        table.append([h, f"{c['target']:.4g}",
                      (f"{_f(cold['to_target'], 'd')} = {cold['coarse_iterations']} + "
                       f"{_f(cold['finest_to_target'], 'd')}"),
                      _f(cold["to_target_finest_equivalent"], ".0f"),
                      ", ".join("never" if w["to_target"] is None else str(w["to_target"])
                                for w in c["warm"]),
                      _f(ratios[0], ".2f"), _f(ratios[1], ".2f"),
                      ", ".join(f"{w['loss_start'] / c['target']:.2f}" for w in c["warm"]),
                      ", ".join(f"{w['loss_end'] / c['target']:.3f}" for w in c["warm"]),
                      ", ".join("-" if "no_temporal_loss_end" not in w else
                                ("never" if w["no_temporal_to_target"] is None else str(w["no_temporal_to_target"]))
                                for w in c["warm"]),
                      _f(warm_cold_ratios(c, "no_temporal_to_target")[0], ".2f")])
    _table(["height", "T", "cold its = coarse + finest", "cold, finest-equiv.", "warm its",
            "warm/cold", "warm/cold equiv.", "warm L start/T", "warm L end/T",
            "warm its, no temporal", "warm/cold, no temporal"], table)
    say("  finest-equiv.: coarse iterations weighted by their pixels (the work in finest-level "
        "iterations). warm/cold uses the slowest warm frame; 'never': not reached in its budget. "
        "No temporal: the same warm start with the temporal term off, i.e. the same objective "
        "as frame 1's (with the term, L trades off against stability and can settle above T).")
    say()

    say("d, e: the engine over the shot at the default preset (SequenceRun), evaluated; "
        "s/frame is wall time incl. reading, flow, masks, writing")
    table = []
    for h, row in rows.items():
        d = _ok(row, "sequence")
        if not d:
            table.append([h] + ["error" if row.get("sequence") else "-"] + ["-"] * 7)
            continue
        n = sequence_numbers(d)
        q = d["quality"]
        table.append([h, str(len(d["frames"])), f"{n['per_frame']:.2f}", f"{n['first']:.1f}",
                      f"{n['later']:.2f}", f"{n['projected']:.2f}", _f(q["warping_error"], ".5f"),
                      _f(q["input_warping_error"], ".5f"), f"{q['style_loss']:.1f}",
                      _gb(_peak(d["memory"]))])
    if probe and "error" not in probe:
        peak = _peak(probe["memory"])
        table.append([f"{probe['size'][1]}*", "2", "-", "-", "-", "-", "-", "-", "-",
                      f"{_gb(peak)} (+{probe['lbfgs_history_missing'] / GB:.2f})"])
    _table(["height", "frames", "s/frame", "first", "later", f"{SHOT_FRAMES}-frame proj.", "warp err",
            "input's", "style loss", "peak memory"], table)
    if probe and "error" not in probe:
        say("  * memory probe: peak of a 2-frame run with a few iterations; in brackets the L-BFGS "
            "history a long run adds (2 image-sized vectors x history size, estimated).")
    say()

    say(f"f: naive per-frame Gatys (content init, tutorial L-BFGS without line search, "
        f"{results['plan']['naive_evaluations']} evaluations, no temporal term / warm start / "
        "pyramid / early stop), vs the engine on the same frames")
    table = []
    for h, row in rows.items():
        f, d = _ok(row, "naive"), _ok(row, "sequence")
        if not f:
            table.append([h] + ["error" if row.get("naive") else "-"] + ["-"] * 8)
            continue
        engine_q = (d.get("quality_first_frames") or d["quality"]) if d else None
        speedup = sequence_numbers(d)["per_frame"] if d else None
        speedup = f["seconds_per_frame"] / speedup if speedup else None
        if f["time_only"]:
            table.append([h, "0 (time only)", f"~{f['seconds_per_frame']:.1f}", "-", "-", "-", "-",
                          _gb(_peak(f["memory"])), _f(speedup, ".1f")])
            continue
        q = f["quality"]
        table.append([h, str(f["frames"]), f"{f['seconds_per_frame']:.2f}", _f(q["warping_error"], ".5f"),
                      _f(engine_q["warping_error"], ".5f") if engine_q else "-", f"{q['style_loss']:.1f}",
                      f"{engine_q['style_loss']:.1f}" if engine_q else "-",
                      _gb(_peak(f["memory"])), _f(speedup, ".1f")])
    _table(["height", "naive frames", "naive s/frame", "naive warp", "engine warp", "naive style",
            "engine style", "naive peak", "speedup x"], table)
    say("  speedup: naive s/frame over the engine's measured s/frame (whole shot, first frame included).")
    say()
    print_targets(results)
    m = results["machine"]
    say(f"Load average at start {m.get('load_start')}, at end {m.get('load_end')} "
        f"({m['cores']} cores; a shared machine makes seconds noisy).")


def _verdict(value: float | None, limit: float, at_most: bool) -> str:
    """'PASS (...)' or 'MISS by ...' for value against limit."""
    if value is None:
        return "not measured"
    if at_most:
        ok = value <= limit
        margin = (limit - value) / limit if ok else (value - limit) / limit
    else:
        ok = value >= limit
        margin = (value - limit) / limit if ok else (limit - value) / limit
    return f"PASS ({margin:.0%} margin)" if ok else f"MISS by {margin:.0%}"


def print_targets(results: dict[str, Any]) -> None:
    say("Targets (issue 4)")
    table = []
    for h, row in results["rows"].items():
        s, c, d, f = (_ok(row, k) for k in ("speed", "convergence", "sequence", "naive"))
        if s:
            ratio = s["per_iteration"] / s["floor"]
            table.append([f"b/a at {h}", f"{ratio:.2f}", f"<= {TARGET_ITERATION_RATIO}",
                          _verdict(ratio, TARGET_ITERATION_RATIO, True)])
            warm = warm_iteration_seconds(d)
            if warm is not None:
                table.append(["  same, warm frames of the sequence run", f"{warm / s['floor']:.2f}",
                              f"<= {TARGET_ITERATION_RATIO}",
                              _verdict(warm / s["floor"], TARGET_ITERATION_RATIO, True)])
        if c:
            plain, equivalent = warm_cold_ratios(c)
            for label, value in ((f"warm/cold iterations at {h}", plain),
                                 ("  same, cold in finest-level equivalents", equivalent)):
                table.append([label, _f(value, ".2f", "not reached"), f"<= {TARGET_WARM_FRACTION:.2f}",
                              "MISS (target not reached)" if value is None
                              else _verdict(value, TARGET_WARM_FRACTION, True)])
            alone = warm_cold_ratios(c, "no_temporal_to_target")[0]
            if any("no_temporal_loss_end" in w for w in c["warm"]):
                table.append(["  same, warm start without the temporal term", _f(alone, ".2f", "not reached"),
                              f"<= {TARGET_WARM_FRACTION:.2f}",
                              "MISS (target not reached)" if alone is None
                              else _verdict(alone, TARGET_WARM_FRACTION, True)])
        if d and f:
            numbers = sequence_numbers(d)
            speedup = f["seconds_per_frame"] / numbers["per_frame"]
            table.append([f"speedup vs naive at {h}", f"{speedup:.1f}x", f">= {TARGET_SPEEDUP:.0f}x",
                          _verdict(speedup, TARGET_SPEEDUP, False)])
            projected = f["seconds_per_frame"] / numbers["projected"]
            table.append([f"  same, {SHOT_FRAMES}-frame shot projected", f"{projected:.1f}x",
                          f">= {TARGET_SPEEDUP:.0f}x", _verdict(projected, TARGET_SPEEDUP, False)])
            engine_q = d.get("quality_first_frames") or d["quality"]
            if f["quality"]:
                es, ns = engine_q["style_loss"], f["quality"]["style_loss"]
                table.append([f"style loss vs naive at {h}", f"{es:.1f} vs {ns:.1f}", "<= naive",
                              _verdict(es, ns, True)])
                ew, nw = engine_q["warping_error"], f["quality"]["warping_error"]
                if ew is not None and nw is not None:
                    table.append([f"warping error vs naive at {h}", f"{ew:.5f} vs {nw:.5f}", "< naive",
                                  _verdict(ew, nw, True)])
    probe = results.get("probe")
    memory_rows = []
    if probe and "error" not in probe and _peak(probe["memory"]):
        estimate = _peak(probe["memory"]) + probe["lbfgs_history_missing"]
        memory_rows.append((f"peak memory at {probe['size'][1]} (probe + history)", estimate))
    for h, row in results["rows"].items():
        d = _ok(row, "sequence")
        if d and int(h) == TARGET_MEMORY_HEIGHT and _peak(d["memory"]):
            memory_rows.append((f"peak memory at {h} (full run)", _peak(d["memory"])))
    for label, value in memory_rows:
        table.append([label, _gb(value), f"<= {TARGET_MEMORY_GB:.0f} GB",
                      _verdict(value / GB, TARGET_MEMORY_GB, True)])
    _table(["target", "measured", "need", "result"], table)
    say()


def print_levers(results: dict[str, Any]) -> None:
    r = results["levers"]
    if "error" in r:
        say("ERROR " + r["error"])
        return
    say()
    say(f"Levers at {r['size'][0]}x{r['size'][1]}: frame 1, {r['iterations']} iterations from the "
        f"content, early stop off, median of {r['repeats']} interleaved repeats")
    base = r["levers"][0]
    table = [[x["lever"], f"{x['per_iteration']:.3f}", f"{x['per_iteration'] / base['per_iteration']:.2f}",
              f"{x['per_evaluation']:.3f}", f"{x['fp32_loss_after'] / base['fp32_loss_after']:.3f}",
              _f(x.get("warmup_seconds"), ".1f")]
             for x in r["levers"]]
    _table(["lever", "s/iter", "vs baseline", "s/eval", "fp32 loss after / baseline's",
            "first 2 its, s"], table)
    say(f"  style Grams computed once: {r['grams_seconds']:.3f} s per size (once per run and size).")
    say("  VGG floor (forward+backward to relu5_1): "
        + ", ".join(f"{k} {v:.3f} s" for k, v in r["floors"].items()))
    say()
    say(f"Early stop on a warm frame (frame 2, budget from the preset; frame 1 took "
        f"{r['cold_frame_seconds']:.1f} s cold):")
    _table(["variant", "seconds", "iterations", "loss at end"],
           [[e["variant"], f"{e['seconds']:.2f}", str(e["iterations"]), f"{e['loss_end']:.5g}"]
            for e in r["early_stop"]])
    if results.get("scheduling"):
        say()
        say("Thread scheduling (fresh process each; 'busy': another torch process runs alongside)")
        _table(["OMP_WAIT_POLICY", "CPU", "a: floor s", "b: s/iter"],
               [[x["policy"], "busy" if x["busy"] else "alone", _f(x["floor"]), _f(x["per_iteration"])]
                for x in results["scheduling"]])
    m = results["machine"]
    say(f"Load average at start {m.get('load_start')}, at end {m.get('load_end')}.")


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/benchmark.py",
                                description="Flowstyle speed and memory benchmark (issue 4).")
    p.add_argument("--heights", help="working heights, comma-separated (default 128,256,512; "
                   "quick: 64)")
    p.add_argument("--frames", type=int, help="frames of the rendered shot (default 6; quick: 2)")
    p.add_argument("--quick", action="store_true", help="tiny budgets: proves the script runs")
    p.add_argument("--probe", default=str(TARGET_MEMORY_HEIGHT),
                   help="height of the memory probe, or 'none' (default 1080; off in --quick)")
    p.add_argument("--naive-frames", type=int, default=2,
                   help="frames of the naive reference (default 2: one warping-error pair)")
    p.add_argument("--naive-budget", type=float, default=400.0,
                   help="seconds per naive frame above which only its speed is measured "
                   "(default 400)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, ...")
    p.add_argument("--threads", type=int, help="torch threads per measurement (default: torch's)")
    p.add_argument("--json", help="write the results here (updated after every measurement)")
    p.add_argument("--levers", action="store_true",
                   help="measure each speed lever on its own (at 256 px, or the first --heights)")
    p.add_argument("--report", metavar="JSON", help="print the tables of a saved (partial) run")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--worker-args", help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        return worker_main(args.worker, args.worker_args, args.worker_out, args.threads)
    if args.report:
        with open(args.report) as f:
            saved = json.load(f)
        if "levers" in saved:
            print_levers(saved)
        else:
            print_header(saved)
            print_tables(saved)
        return 0
    if args.levers:
        height = int(args.heights.split(",")[0]) if args.heights else 256
        run_levers(args.device, args.json, args.threads, height=height)
        return 0
    heights = [int(h) for h in (args.heights or ("64" if args.quick else "128,256,512")).split(",")]
    frames = args.frames or (2 if args.quick else 6)
    if frames < 2:
        p.error("--frames must be at least 2 (warm starts and warping error need a pair)")
    if args.quick:
        plan = Plan.make_quick(heights, frames, args.device, args.threads)
    else:
        probe = None if args.probe.lower() == "none" else int(args.probe)
        plan = Plan(heights=heights, frames=frames, naive_frames=args.naive_frames,
                    naive_budget=args.naive_budget, probe_height=probe, device=args.device,
                    threads=args.threads)
    try:
        run_benchmark(plan, args.json)
    except BenchmarkError as exc:
        print(f"benchmark: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
