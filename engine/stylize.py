"""Stylizing one frame: optimize an image against content, style, smoothness and time.

`Stylizer` holds what stays fixed over a run (the VGG, the style Grams per working size)
and optimizes one frame at a time. The first frame starts from its content and climbs a
coarse-to-fine pyramid, so large frames converge and strokes keep their size relative to
the frame. Later frames start from the warped previous result, already at the finest
level, and need far fewer iterations.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from . import defaults, lbfgs, losses
from .defaults import Settings
from .vgg import VGGFeatures


@dataclass
class TemporalTerm:
    """A previous stylized frame warped into this one, where to trust it, and its weight.

    warped: 1×3×H×W display space; mask: 1×1×H×W in [0, 1]; weight: relative (Ruder's
    long-term terms share the temporal weight).
    """

    warped: torch.Tensor
    mask: torch.Tensor
    weight: float = 1.0


@dataclass
class FrameStats:
    """What one frame's optimization did (printed by the benchmark, sent as progress)."""

    iterations: int = 0  # optimizer iterations over all levels
    evaluations: int = 0  # VGG forward+backward passes (L-BFGS's line search adds some)
    seconds: float = 0.0
    loss_start: float = 0.0  # total loss at the start of the finest level
    loss_end: float = 0.0
    terms: dict[str, float] = field(default_factory=dict)  # unweighted losses at the end
    # Finest level: the total loss after each iteration, and the unweighted terms at the
    # start and after each iteration (what the benchmark's convergence measurement reads).
    losses: list[float] = field(default_factory=list)
    trajectory: list[dict[str, float]] = field(default_factory=list)
    levels: list[tuple[int, int, int]] = field(default_factory=list)  # (h, w, iterations)


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; anything else as torch understands it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX on x86)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN
        return False


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The dtype the VGG pass runs in, or None for plain float32.

    'auto' is bfloat16 on CUDA and on CPUs with native bf16, float32 elsewhere (emulated
    bf16 is slower than fp32). bf16 keeps fp32's range, so activations of 0-255 inputs do
    not overflow as they can in fp16. Measured on an AVX512-BF16 CPU (benchmark): 0.55x
    the time per iteration, 0.7x the peak memory at 1080p, the same loss after 20 iterations.
    Grams and losses stay float32 always (losses.py).
    """
    if precision == "fp32":
        return None
    if precision == "auto" and device.type == "cpu" and not cpu_has_native_bf16():
        return None
    if precision not in ("auto", "bf16"):
        raise ValueError(f"unknown precision {precision!r}: use 'auto', 'fp32' or 'bf16'")
    return torch.bfloat16


# Peak memory of one optimization step per pixel of the working size, by the bytes of one
# VGG activation (4: fp32, 2: bf16): activations to relu5_1 kept for the backward pass,
# their gradients, and the frame's inputs and flows. Measured on the CPU at 1440x1080
# (benchmark probe: 5.14 GB fp32, 3.61 GB bf16 peak RSS) and rounded up. Block 1 (64
# channels at full size) dominates, which is also why checkpointing VGG blocks did not
# lower the peak (measured: it rose, 2.8 -> 4.1 KB/px). bf16 is not half of fp32: the
# image, Grams, losses and the L-BFGS vectors stay fp32.
VGG_BYTES_PER_PIXEL = {4: 3100, 2: 2100}
LBFGS_HISTORY = 10  # L-BFGS keeps this many (step, gradient) pairs of the image (memory:
# 2 image-sized vectors each; 10 saves 0.37 GB at 1080p against 20)


BASE_BYTES = 600 * 2**20  # the network, torch itself and a few frames of input


def estimate_peak_bytes(height: int, width: int, precision_bytes: int = 4) -> int:
    """Rough peak memory (bytes) to optimize one frame of height×width on one device."""
    return BASE_BYTES + height * width * bytes_per_pixel(precision_bytes)


def bytes_per_pixel(precision_bytes: int = 4) -> int:
    """Memory per working pixel: VGG activations and gradients plus L-BFGS's history."""
    return VGG_BYTES_PER_PIXEL[precision_bytes] + 2 * LBFGS_HISTORY * 3 * 4


def available_bytes(device: torch.device) -> int | None:
    """Free memory on `device` (bytes), or None when it cannot be told."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize N×C×H×W to (H, W): area average when shrinking, bicubic when growing."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    if size[0] <= image.shape[-2]:
        return F.interpolate(image, size=size, mode="area")
    return F.interpolate(image, size=size, mode="bicubic", align_corners=False)


def pyramid_sizes(size: tuple[int, int], levels: int, min_height: int) -> list[tuple[int, int]]:
    """Working sizes from coarsest to finest: each level half the next, none below min_height."""
    h, w = size
    sizes = [(h, w)]
    for k in range(1, levels):
        lh = round(h / 2 ** k)
        if lh < min_height:
            break
        sizes.append((lh, max(1, round(w / 2 ** k))))
    return sizes[::-1]


class Stylizer:
    """Optimizes frames toward a style. Style Grams are computed once per working size."""

    def __init__(self, settings: Settings, vgg: VGGFeatures, styles: list[tuple[torch.Tensor, float]],
                 device: torch.device):
        """styles: (image 1×3×H×W display [0, 1], blend weight) pairs; weights sum to 1."""
        self.settings = settings.resolved()
        self.vgg = vgg.to(device)
        self.styles = [(img.to(device), w) for img, w in styles]
        self.device = device
        self.autocast = autocast_dtype(device, self.settings.precision)
        self._grams: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
        # L-BFGS's last inverse-curvature estimate per working size: a new frame's first
        # step starts from it instead of from a tiny probe (lbfgs.py). Part of a run's
        # state: a resumed run restores it, or its frames would differ from an unbroken run.
        self.scales: dict[tuple[int, int], float] = {}

    def features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """VGG activations of a display-space image, in the run's precision (autocast)."""
        context = (torch.autocast(self.device.type, dtype=self.autocast) if self.autocast
                   else contextlib.nullcontext())
        with context:
            return self.vgg(image)

    def style_grams(self, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Blended target Grams for frames of `size` (cached: computed once per size)."""
        if size not in self._grams:
            target_height = max(16, round(size[0] * self.settings.style_scale))
            blended: dict[str, torch.Tensor] = {}
            with torch.no_grad():
                for image, weight in self.styles:
                    h, w = image.shape[-2:]
                    scaled = resize(image, (target_height, max(16, round(w * target_height / h))))
                    feats = self.features(scaled)
                    for name in defaults.STYLE_LAYERS:
                        g = losses.gram_matrix(feats[name]) * weight
                        blended[name] = blended[name] + g if name in blended else g
            self._grams[size] = blended
        return self._grams[size]

    def stylize(self, content: torch.Tensor, init: torch.Tensor, temporal: list[TemporalTerm],
                iterations: int, pyramid: bool) -> tuple[torch.Tensor, FrameStats]:
        """Optimize one frame. All images 1×3×H×W display space at the working size.

        content: the frame; init: the starting image (the content itself for a first
        frame, the warped previous result otherwise); temporal: terms for the finest level;
        iterations: budget per level; pyramid: climb coarse-to-fine (cold start) or not.
        Returns the stylized image, clamped to [0, 1], and statistics.
        """
        s = self.settings
        stats = FrameStats()
        start = time.perf_counter()
        size = tuple(content.shape[-2:])
        sizes = pyramid_sizes(size, s.pyramid_levels, s.min_level_height) if pyramid else [size]
        image = resize(init, sizes[0])
        for level, level_size in enumerate(sizes):
            finest = level == len(sizes) - 1
            image = resize(image, level_size)
            image, level_stats = self._optimize(resize(content, level_size), image,
                                                temporal if finest else [], iterations)
            stats.iterations += level_stats.iterations
            stats.evaluations += level_stats.evaluations
            stats.levels.append((level_size[0], level_size[1], level_stats.iterations))
            if finest:
                stats.loss_start, stats.loss_end, stats.terms = (
                    level_stats.loss_start, level_stats.loss_end, level_stats.terms)
                stats.losses, stats.trajectory = level_stats.losses, level_stats.trajectory
        stats.seconds = time.perf_counter() - start
        return image.clamp(0, 1), stats

    def losses(self, image: torch.Tensor, content_features: dict[str, torch.Tensor],
               grams: dict[str, torch.Tensor], temporal: list[TemporalTerm]) -> dict[str, torch.Tensor]:
        """Unweighted loss terms of `image` (display 1×3×H×W)."""
        feats = self.features(image)
        terms = {
            "content": sum(losses.content_loss(feats[n], content_features[n])
                           for n in defaults.CONTENT_LAYERS),
            "style": losses.style_loss(feats, grams),
            "tv": losses.total_variation(image),
            "range": losses.out_of_range(image),
        }
        if temporal:
            terms["temporal"] = sum(t.weight * losses.temporal_loss(image, t.warped, t.mask)
                                    for t in temporal)
        return terms  # type: ignore[return-value]

    def weighted(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        s = self.settings
        total = (s.content_weight * terms["content"]
                 + s.style_weight * s.style_strength * terms["style"]
                 + s.tv_weight * terms["tv"]
                 + s.range_weight * terms["range"])
        if "temporal" in terms:
            total = total + s.temporal_weight * s.temporal_strength * terms["temporal"]
        return total

    def _optimize(self, content: torch.Tensor, init: torch.Tensor, temporal: list[TemporalTerm],
                  iterations: int) -> tuple[torch.Tensor, FrameStats]:
        s = self.settings
        with torch.no_grad():
            feats = self.features(content)
            content_features = {n: feats[n].detach() for n in defaults.CONTENT_LAYERS}
        size = (int(content.shape[-2]), int(content.shape[-1]))
        grams = self.style_grams(size)
        stats = FrameStats()
        seen: dict[float, dict[str, float]] = {}  # loss -> its unweighted terms (this step)

        def evaluate(image: torch.Tensor) -> tuple[float, torch.Tensor]:
            image = image.detach().requires_grad_(True)
            terms = self.losses(image, content_features, grams, temporal)
            loss = self.weighted(terms)
            loss.backward()
            value = float(loss.detach())
            seen[value] = {k: float(v.detach()) for k, v in terms.items()}
            if stats.evaluations == 0:
                stats.loss_start = value
                stats.trajectory.append(seen[value])
            stats.evaluations += 1
            assert image.grad is not None
            return value, image.grad

        def plateau(done: int, loss: float) -> bool:
            """After each iteration: record it; stop when the loss fell by less than
            `early_stop` of itself over the last `early_stop_window` iterations."""
            stats.losses.append(loss)
            stats.trajectory.append(seen.get(loss, {}))
            seen.clear()
            window = s.early_stop_window
            if s.early_stop <= 0 or len(stats.losses) <= window:
                return False
            before = stats.losses[-1 - window]
            return before - loss < s.early_stop * abs(before)

        start = init.detach().clone().contiguous()
        if s.optimizer == "lbfgs":
            # The line search only accepts steps that lower the loss, so the result is
            # never worse than the start and never NaN when the start was finite.
            result = lbfgs.minimize(evaluate, start, iterations, LBFGS_HISTORY,
                                    self.scales.get(size), plateau)
            if result.scale is not None:
                self.scales[size] = result.scale  # the next frame of this size starts here
            image, stats.iterations = result.x, result.iterations
        elif s.optimizer == "adam":
            image, stats.iterations = self._adam(evaluate, start, iterations, plateau)
        else:
            raise ValueError(f"unknown optimizer {s.optimizer!r}: use 'lbfgs' or 'adam'")
        stats.loss_end = stats.losses[-1] if stats.losses else stats.loss_start
        stats.terms = stats.trajectory[-1]
        return image.detach(), stats

    def _adam(self, evaluate: lbfgs.Evaluate, start: torch.Tensor, iterations: int,
              stop: lbfgs.Stop) -> tuple[torch.Tensor, int]:
        """Adam for `iterations` steps (fewer if `stop` says so); returns the best image
        it saw (Adam's loss can rise, and a diverged step must never reach the user)."""
        image = start.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([image], lr=self.settings.adam_lr)
        best, best_loss, done = start, math.inf, 0
        while done < iterations:
            loss, grad = evaluate(image)
            if not math.isfinite(loss):
                break
            if loss < best_loss:
                best, best_loss = image.detach().clone(), loss
            image.grad = grad
            optimizer.step()
            done += 1
            if stop(done, loss):
                break
        return best, done
