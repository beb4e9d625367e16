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


@dataclass(frozen=True)
class DeviceFacts:
    """What the machine offers, as far as device and precision choice go.

    Read from torch by `device_facts()`; a test passes made-up facts (CUDA cannot run here).
    cuda_capability: the CUDA device's compute capability (major, minor), (0, 0) if none.
    """

    cuda: bool = False
    mps: bool = False
    cuda_capability: tuple[int, int] = (0, 0)
    cpu_bf16: bool = False


def device_facts(cuda_index: int | None = None) -> DeviceFacts:
    """This machine's facts (for CUDA device `cuda_index`, or the current one)."""
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    capability = tuple(torch.cuda.get_device_capability(cuda_index)) if cuda else (0, 0)
    return DeviceFacts(cuda, mps, capability, cpu_has_native_bf16())  # type: ignore[arg-type]


def resolve_device(name: str, facts: DeviceFacts | None = None) -> torch.device:
    """--device value -> torch.device. 'auto' is CUDA if present, else Apple's MPS, else
    the CPU; other names as torch reads them ('cpu', 'cuda', 'cuda:1', 'mps').

    Raises ValueError for a name that is no device. Whether a named device exists here is
    checked where the run opens it (check.py), with a message saying what to do.
    """
    if name == "auto":
        facts = facts or device_facts()
        return torch.device("cuda" if facts.cuda else "mps" if facts.mps else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from exc
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {name!r} is not supported: use auto, cpu, cuda, cuda:N or mps")
    return device


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX on x86)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN
        return False


def autocast_dtype(device: torch.device, precision: str,
                   facts: DeviceFacts | None = None) -> torch.dtype | None:
    """The dtype the VGG pass runs in, or None for plain float32. The one place it is decided.

    'auto': bfloat16 where the hardware computes it natively (CUDA capability >= 8.0,
    i.e. Ampere and later; a CPU with AVX512-BF16/AMX), because bf16 keeps fp32's range;
    float16 on older CUDA GPUs and on Apple's MPS, where it is the fast half type, with
    loss scaling (Stylizer) so small gradients survive its narrow range; float32 on other
    CPUs (emulated half types are slower than fp32). Measured on an AVX512-BF16 CPU
    (benchmark): bf16 took 0.55x the time per iteration and 0.7x the peak memory at 1080p
    of fp32, for the same loss after 20 iterations. Grams and losses stay float32 (losses.py).
    'fp32', 'bf16', 'fp16' force that type.
    """
    if precision not in defaults.PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use {', '.join(defaults.PRECISIONS)}")
    if precision != "auto":
        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if facts is None:
        facts = device_facts(device.index) if device.type == "cuda" else DeviceFacts(
            cpu_bf16=device.type == "cpu" and cpu_has_native_bf16())
    if device.type == "cuda":
        return torch.bfloat16 if facts.cuda_capability >= (8, 0) else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.bfloat16 if facts.cpu_bf16 else None


# Peak memory of one optimization step per pixel of the working size, by the bytes of one
# VGG activation (4: fp32, 2: bf16 or fp16): activations to relu5_1 kept for the backward
# pass, their gradients, and the frame's inputs and flows. Measured on the CPU at 1440x1080
# (benchmark probe: 5.14 GB fp32, 3.61 GB bf16 peak RSS) and rounded up. Block 1 (64
# channels at full size) dominates, which is also why checkpointing VGG blocks did not
# lower the peak (measured: it rose, 2.8 -> 4.1 KB/px). Half types are not half of fp32:
# the image, Grams, losses and the L-BFGS vectors stay fp32.
#
# Per device: the tensors are the same size on every device, so the same figures are used
# for CUDA and MPS; what differs is around them. On CUDA the free memory is read after
# torch has set up its context (torch.cuda.mem_get_info), so the context is not counted
# twice, and `CUDA_MARGIN` covers cuDNN's convolution workspaces and the caching
# allocator's fragmentation, which the CPU does not have. Not measured here (no GPU):
# the benchmark prints torch.cuda.max_memory_allocated on a CUDA machine to check it.
# On MPS, memory is the system's (unified): the limit is what Metal recommends.
VGG_BYTES_PER_PIXEL = {4: 3100, 2: 2100}
LBFGS_HISTORY = 10  # L-BFGS keeps this many (step, gradient) pairs of the image (memory:
# 2 image-sized vectors each; 10 saves 0.37 GB at 1080p against 20)


INITIAL_LOSS_SCALE = 2.0**10  # fp16: measured largest VGG activation gradient ~32 x 1024 < 65504
LOSS_SCALE_GROWTH = 100  # finite fp16 evaluations in a row before the loss scale doubles

BASE_BYTES = 600 * 2**20  # the network, torch itself and a few frames of input
CUDA_MARGIN = 0.15  # fraction of the estimate added on CUDA (workspaces, fragmentation)


def estimate_peak_bytes(height: int, width: int, precision_bytes: int = 4,
                        device_type: str = "cpu") -> int:
    """Rough peak memory (bytes) to optimize one frame of height×width on one device."""
    need = BASE_BYTES + height * width * bytes_per_pixel(precision_bytes)
    return int(need * (1 + CUDA_MARGIN)) if device_type == "cuda" else need


def bytes_per_pixel(precision_bytes: int = 4) -> int:
    """Memory per working pixel: VGG activations and gradients plus L-BFGS's history."""
    return VGG_BYTES_PER_PIXEL[precision_bytes] + 2 * LBFGS_HISTORY * 3 * 4


def available_bytes(device: torch.device) -> int | None:
    """Free memory on `device` (bytes), or None when it cannot be told."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "mps":
        try:
            return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
        except (AttributeError, RuntimeError):
            return None
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


def mirror_pad(image: torch.Tensor, margin: int) -> torch.Tensor:
    """N×C×H×W -> N×C×(H+2m)×(W+2m): the image mirrored `margin` px past each edge."""
    return F.pad(image, (margin, margin, margin, margin), mode="reflect")


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
                 device: torch.device, regions: list[list[tuple[torch.Tensor, float]]] | None = None):
        """styles: (image 1×3×H×W display [0, 1], blend weight) pairs; weights sum to 1.

        regions: per-object styles, one list of such pairs per `settings.regions` entry
        (an empty list keeps the original there); the frame's masks come with `stylize`.
        """
        self.settings = settings.resolved()
        self.vgg = vgg.to(device)
        self.styles = [(img.to(device), w) for img, w in styles]
        self.regions = [[(img.to(device), w) for img, w in group] for group in regions or []]
        self.device = device
        self.autocast = autocast_dtype(device, self.settings.precision)
        # fp16 (older CUDA GPUs, MPS): the gradients of the deep VGG layers fall below
        # fp16's smallest normal number (measured at 64x96 px: 11-15% of those of relu5_x),
        # so the loss is multiplied by `loss_scale` before the backward pass and the image's
        # gradient divided by it after. GradScaler's rule keeps the scale as large as fits:
        # halve it and evaluate again when the gradient overflows, double it after
        # LOSS_SCALE_GROWTH finite evaluations in a row. bf16 and fp32 need none.
        self.loss_scale = INITIAL_LOSS_SCALE if self.autocast is torch.float16 else None
        self._finite_in_a_row = 0
        self._grams: dict[tuple[tuple[int, int], float], dict[str, torch.Tensor]] = {}
        self._frame_fraction = 1.0  # frame height / canvas height (stylize's mirrored margin)
        self._region_grams: dict[tuple[tuple[int, int], float], list[dict[str, torch.Tensor] | None]] = {}
        self.style_strength = self.settings.style_strength  # this frame's (keyframeable)
        # L-BFGS's last inverse-curvature estimate per working size: a new frame's first
        # step starts from it instead of from a tiny probe (lbfgs.py). Part of a run's
        # state: a resumed run restores it, or its frames would differ from an unbroken run.
        self.scales: dict[tuple[int, int], float] = {}

    def features(self, image: torch.Tensor, layers: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        """VGG activations of a display-space image, in the run's precision (autocast).
        layers: only these (the pass stops at the deepest); default: all the losses use."""
        context = (torch.autocast(self.device.type, dtype=self.autocast) if self.autocast
                   else contextlib.nullcontext())
        with context:
            return self.vgg(image, layers)

    def style_grams(self, size: tuple[int, int], frame_fraction: float = 1.0) -> dict[str, torch.Tensor]:
        """Blended target Grams for images of `size` (cached per size).

        frame_fraction: the frame's height / `size`'s height (below 1 when `size` is a
        canvas with a mirrored margin, `stylize`): the frame's height sets the scale.
        """
        key = (size, frame_fraction)
        if key not in self._grams:
            self._grams[key] = self._blend(self.styles, size, frame_fraction)
        return self._grams[key]

    def group_grams(self, size: tuple[int, int], frame_fraction: float = 1.0) -> list[dict[str, torch.Tensor] | None]:
        """Targets of `losses.regional_style_loss`: the main styles' Grams for the pixels in
        no region (mask channel 0), then each region's (None: keep the original)."""
        key = (size, frame_fraction)
        if key not in self._region_grams:
            self._region_grams[key] = [self.style_grams(size, frame_fraction)] + [
                self._blend(group, size, frame_fraction) if group else None for group in self.regions]
        return self._region_grams[key]

    def _blend(self, styles: list[tuple[torch.Tensor, float]], size: tuple[int, int],
               frame_fraction: float) -> dict[str, torch.Tensor]:
        """Weighted sum of the style images' Grams, each image scaled to the working size.

        The frame's height sets the scale, not the mirrored canvas's (`stylize`): strokes
        keep their size relative to the frame whatever the margin.
        """
        frame_height = size[0] * frame_fraction
        target_height = max(16, round(frame_height * self.settings.style_scale))
        blended: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for image, weight in styles:
                h, w = image.shape[-2:]
                scaled = resize(image, (target_height, max(16, round(w * target_height / h))))
                feats = self.features(scaled)
                for name in defaults.STYLE_LAYERS:
                    g = losses.gram_matrix(feats[name]) * weight
                    blended[name] = blended[name] + g if name in blended else g
        return blended

    def cold_start_iterations(self, size: tuple[int, int], iterations: int) -> int:
        """What a cold start (`stylize` with pyramid=True) of a (height, width) frame
        spends at most: `iterations` on every pyramid level of its canvas."""
        margin = min(defaults.CANVAS_MARGIN, size[0] - 1, size[1] - 1)
        canvas = (size[0] + 2 * margin, size[1] + 2 * margin)
        s = self.settings
        return iterations * len(pyramid_sizes(canvas, s.pyramid_levels, s.min_level_height))

    def stylize(self, content: torch.Tensor, init: torch.Tensor, temporal: list[TemporalTerm],
                iterations: int, pyramid: bool,
                masks: torch.Tensor | None = None) -> tuple[torch.Tensor, FrameStats]:
        """Optimize one frame. All images 1×3×H×W display space at the working size.

        content: the frame; init: the starting image (the content itself for a first
        frame, the warped previous result otherwise); temporal: terms for the finest level;
        iterations: budget per level; pyramid: climb coarse-to-fine (cold start) or not;
        masks: 1×(1+R)×H×W soft region masks (channel 0: no region; then one per region)
        when per-object styles are on. Returns the stylized image, clamped to [0, 1], and
        statistics.

        The optimized canvas is the frame plus a mirrored margin (defaults.CANVAS_MARGIN),
        cropped off at the end: the frame's outer pixels are then interior pixels to VGG
        and the optimizer, and come out like the rest (no bright rim at the edges).
        """
        margin = min(defaults.CANVAS_MARGIN, content.shape[-2] - 1, content.shape[-1] - 1)
        self._frame_fraction = content.shape[-2] / (content.shape[-2] + 2 * margin)
        if margin > 0:
            content, init = mirror_pad(content, margin), mirror_pad(init, margin)
            temporal = [TemporalTerm(mirror_pad(t.warped, margin), mirror_pad(t.mask, margin), t.weight)
                        for t in temporal]
            masks = mirror_pad(masks, margin) if masks is not None else None
        self._masks = masks
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
        if margin > 0:
            image = image[..., margin:-margin, margin:-margin]
        return image.clamp(0, 1), stats

    def losses(self, image: torch.Tensor, content_features: dict[str, torch.Tensor],
               grams: dict[str, torch.Tensor], temporal: list[TemporalTerm]) -> dict[str, torch.Tensor]:
        """Unweighted loss terms of `image` (display 1×3×H×W)."""
        feats = self.features(image)
        terms = {
            "content": sum(losses.content_loss(feats[n], content_features[n])
                           for n in defaults.CONTENT_LAYERS),
            "style": self._style_loss(feats, grams, tuple(image.shape[-2:])),
            "tv": losses.total_variation(image),
            "range": losses.out_of_range(image),
        }
        if temporal:
            terms["temporal"] = sum(t.weight * losses.temporal_loss(image, t.warped, t.mask)
                                    for t in temporal)
        return terms  # type: ignore[return-value]

    _masks: torch.Tensor | None = None  # the frame's region masks (see stylize)

    def _style_loss(self, feats: dict[str, torch.Tensor], grams: dict[str, torch.Tensor],
                    size: tuple[int, ...]) -> torch.Tensor:
        """One style everywhere, or each region's own (masks resized to this level)."""
        if self._masks is None or not self.regions:
            return losses.style_loss(feats, grams)
        level = (int(size[0]), int(size[1]))
        return losses.regional_style_loss(feats, self.group_grams(level, self._frame_fraction),
                                          resize(self._masks, level))

    def weighted(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        s = self.settings
        total = (s.content_weight * terms["content"]
                 + s.style_weight * self.style_strength * terms["style"]
                 + s.tv_weight * terms["tv"]
                 + s.range_weight * terms["range"])
        if "temporal" in terms:
            total = total + s.temporal_weight * s.temporal_strength * terms["temporal"]
        return total

    def _optimize(self, content: torch.Tensor, init: torch.Tensor, temporal: list[TemporalTerm],
                  iterations: int) -> tuple[torch.Tensor, FrameStats]:
        s = self.settings
        with torch.no_grad():
            feats = self.features(content, defaults.CONTENT_LAYERS)
            content_features = {n: feats[n].detach() for n in defaults.CONTENT_LAYERS}
        size = (int(content.shape[-2]), int(content.shape[-1]))
        grams = self.style_grams(size, self._frame_fraction)
        stats = FrameStats()
        seen: dict[float, dict[str, float]] = {}  # loss -> its unweighted terms (this step)

        def evaluate(image: torch.Tensor) -> tuple[float, torch.Tensor]:
            terms, loss, grad = self._loss_and_gradient(image, content_features, grams, temporal)
            value = float(loss.detach())
            seen[value] = {k: float(v.detach()) for k, v in terms.items()}
            if stats.evaluations == 0:
                stats.loss_start = value
                stats.trajectory.append(seen[value])
            stats.evaluations += 1
            return value, grad

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

    def _loss_and_gradient(self, image: torch.Tensor, *args: object
                           ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """(unweighted terms, total loss, its gradient w.r.t. `image`), with fp16 loss
        scaling when it is on. args: content features, Grams, temporal terms (`losses`)."""
        while True:
            leaf = image.detach().requires_grad_(True)
            terms = self.losses(leaf, *args)  # type: ignore[arg-type]
            loss = self.weighted(terms)
            scale = self.loss_scale
            (loss if scale is None else loss * scale).backward()
            assert leaf.grad is not None
            if scale is None:
                return terms, loss, leaf.grad
            grad = leaf.grad / scale
            if bool(torch.isfinite(grad).all()) or not math.isfinite(float(loss.detach())):
                self._finite_in_a_row += 1
                if self._finite_in_a_row == LOSS_SCALE_GROWTH:
                    self.loss_scale, self._finite_in_a_row = scale * 2, 0
                return terms, loss, grad
            self.loss_scale, self._finite_in_a_row = scale / 2, 0  # overflowed: again, smaller
            if self.loss_scale < 2 ** -10:
                return terms, loss, grad  # not the scale's fault; L-BFGS stops on it

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
