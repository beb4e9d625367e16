"""Stylizing a sequence with a trained network (--method network) or from it (hybrid).

Both keep optimize's output contract by reusing SequenceRun's reading, writing and resume
checks (run.py): one RGBA EXR per frame at the input's size, alpha passed through, the
colour rules of colour.py, atomic writes, and a fingerprint that here includes the model
file's digest (a retrained model redoes the frames).

network: every frame on its own, at its full resolution (the network is fully
convolutional: no working height, no upsampling), several frames per batch, any order.
hybrid: optimize's loop, started from the network's output on the first frame and in the
pixels the reliability mask rejects (what a moving object uncovers), where optimize can
only guess from the neighbours.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
from typing import Callable

import torch

from . import lock, regions as regionlib
from .digests import source_digest
from .defaults import MIN_NETWORK_TILE, Settings, StyleImage
from .errors import FlowstyleError
from .frames import open_sequence
from .network import NetworkConfig, StyleNetwork, run_with_margin, style_mix
from .progress import Progress
from .run import SequenceRun, check_writable, load_region_styles, load_style_images
from .stylize import FrameStats, TemporalTerm, autocast_dtype, available_bytes, resize, resolve_device
from .tiling import receptive_radius, stylize_tiled
from .train import Model, load_model, trained_strength

# Peak memory of one inference per pixel of the frame (bytes, float32): at full size the
# last upsampling holds the doubled 64-channel map and the 32-channel conv output. Rounded
# up from the layer widths, so it also covers a float32 run and GPUs (whose norm takes a
# float32 copy); measured peak at 1080p in bf16 on the CPU: 1.4 GB, under this 2.1 GB.
NETWORK_BYTES_PER_PIXEL = 1024
MAX_BATCH = 8  # frames per network pass; more gains little and delays the first write
# Host memory per pixel of the frame that exact tiling keeps beside a tile's own (bytes):
# the tiles' activations between the residual blocks' layers, the frame in and out.
# Measured 95 (bench/tiling.py); without that much free it reruns the tiles instead.
TILED_BYTES_PER_PIXEL = 128

# Settings that only optimization reads: they do not change a network-stylized frame.
_OPTIMIZE_ONLY = ("preset", "height", "first_iterations", "iterations", "content_weight",
                  "style_weight", "style_strength", "tv_weight", "temporal_weight",
                  "range_weight", "temporal_strength", "long_term", "style_scale",
                  "pyramid_levels", "min_level_height", "optimizer", "adam_lr", "early_stop",
                  "early_stop_window", "flow", "use_depth", "appearance_tolerance", "weights", "train_seed", "train_steps",
                  "train_crop", "train_batch", "train_lr", "train_lr_decay", "network_channels", "network_blocks",
                  "train_preview_every", "train_checkpoint_every", "device", "precision",
                  "frames", "styles", "style_strengths",
                  "network_tile")  # tiled frames equal whole ones (tiling.py), like device


def need_model(settings: Settings) -> str:
    if not settings.model:
        raise FlowstyleError(f"--method {settings.method} needs a trained model: pass --model "
                             "model.pt (train one with: python -m engine train SHOT --style "
                             "painting.jpg --out model.pt).")
    return settings.model


def resolve_mix(model: Model, settings: Settings, model_path: str) -> list[float]:
    """The style weights for the model's styles, in its order (summing to 1).

    From --style-mix if given; else from --style images, each of which must be one the
    model was trained for (found by content digest); else the weights given at training.
    """
    names = ", ".join(os.path.basename(st["path"]) for st in model.styles)
    count = len(model.styles)
    if settings.style_mix is not None:
        if len(settings.style_mix) != count:
            raise FlowstyleError(f"--style-mix gives {len(settings.style_mix)} weights but "
                                 f"{model_path} holds {count} style(s) ({names}): give one "
                                 "weight per style, in that order.")
        try:
            return style_mix(list(settings.style_mix), count).tolist()
        except ValueError as exc:
            raise FlowstyleError(f"--style-mix {','.join(map(str, settings.style_mix))}: {exc}.") from None
    if settings.styles:
        _, digests = load_style_images(settings)
        return mix_of(model, settings.styles, digests, model_path,
                      "or leave --style out to use the model's own")
    return style_mix([float(st["weight"]) for st in model.styles], count).tolist()


def mix_of(model: Model, styles: list[StyleImage], digests: list[str], model_path: str,
           alternative: str) -> list[float]:
    """Style images (and their content digests) -> weights over the model's styles.
    FlowstyleError naming the first image the model was not trained for."""
    names = ", ".join(os.path.basename(st["path"]) for st in model.styles)
    known = [st["digest"] for st in model.styles]
    weights = [0.0] * len(known)
    for style, digest in zip(styles, digests):
        if digest not in known:
            raise FlowstyleError(
                f"{style.path}: {model_path} was trained for other styles ({names}). Train a "
                f"model for this style (python -m engine train SHOT --style {style.path} "
                f"--out model.pt), {alternative}.")
        weights[known.index(digest)] += style.weight
    return style_mix(weights, len(known)).tolist()


def resolve_region_mixes(model: Model, settings: Settings, model_path: str) -> list[list[float] | None]:
    """Each region's weights over the model's styles (None: "keep original").

    Every style a region uses must be one the model holds: train with all of them (the
    panel's styles and the regions'; `train` adds the regions' styles by itself)."""
    _, digests = load_region_styles(settings)
    mixes: list[list[float] | None] = []
    for region, region_digests in zip(settings.regions, digests):
        if not region.styles:
            mixes.append(None)
            continue
        mixes.append(mix_of(model, region.styles, region_digests, model_path,
                            f"giving it every style the regions use (region {region.index} uses "
                            f"this one; train --region {region.index}=STYLE adds it)"))
    return mixes


def regional_output(network: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], images: torch.Tensor, mix: list[float],
                    region_mixes: list[list[float] | None],
                    masks: torch.Tensor | None) -> torch.Tensor:
    """The network's output with each region in its own style.

    network(images, mix): one pass (the model, or its tiled pass); images: N×3×H×W
    display [0, 1]; masks: N×(1+R)×H×W one-hot region masks at that size
    (regions.region_masks; channel 0: no region, styled with `mix`), or None (no regions).
    One pass per distinct mix in use, composited by the masks: every region is exactly the
    network's output for its style, as if the whole frame had that style (the same frame,
    the same instance-norm statistics), so no region bleeds into its neighbours. "Keep
    original" regions are the input itself. Returns N×3×H×W (unclamped).
    """
    if masks is None or not region_mixes:
        return network(images, torch.tensor(mix))
    mixes = [mix, *region_mixes]
    output = torch.zeros_like(images)
    done: dict[tuple[float, ...] | None, torch.Tensor] = {}
    for channel, weights in enumerate(mixes):
        mask = masks[:, channel:channel + 1].to(images.dtype)
        if not bool(mask.any()):
            continue
        key = None if weights is None else tuple(weights)
        if key not in done:
            done[key] = images if weights is None else network(images, torch.tensor(weights))
        output = output + mask * done[key]
    return output


def strength_amount(settings: Settings, frame: int, trained: float) -> float:
    """How far frame `frame` goes from its render towards the network's output, 0 to 1.

    In optimize mode the style strength multiplies the style loss's weight: 0 gives the
    render itself, the training's strength gives what the network learned to give (it was
    trained on exactly that balance of losses). A network cannot re-balance its losses per
    frame, so the frame is interpolated between the two it can give: strength / trained
    strength of the way from the render to the network's output. Above the trained
    strength it stays at the network's output (it cannot paint more than it learned;
    train with a higher --style-strength for that).
    """
    if trained <= 0:
        return 1.0
    return min(1.0, max(0.0, settings.strength_at(frame) / trained))


def blend_strength(content: torch.Tensor, stylized: torch.Tensor, amount: float) -> torch.Tensor:
    """content + amount·(stylized − content): what a frame's style strength means for a
    network (see `strength_amounts`). Tensors N×3×H×W display; amount in [0, 1]."""
    if amount >= 1:
        return stylized
    return content + amount * (stylized - content)


def recorded_styles(model: Model, mix: list[float]) -> list[StyleImage]:
    """The model's styles with the mix as weights (what the outputs record, so `evaluate`
    measures the style loss against the blend that was asked for)."""
    return [StyleImage(st["path"], w) for st, w in zip(model.styles, mix)]


def network_tile(settings: Settings, size: tuple[int, int], device: torch.device,
                 config: NetworkConfig, progress: Progress) -> int:
    """The tile side in px for the network's pass over (height, width) frames (0: whole
    frames). --tile when given; else 0 when a frame fits in 90% of the free memory, else
    the largest tile (with its margins) that fits in half of it, as batch_size budgets a
    batch. Tiled frames equal whole ones (tiling.py), so this changes memory, not pixels."""
    height, width = size
    if settings.network_tile:
        tile = settings.network_tile if settings.network_tile < max(height, width) else 0
    else:
        free = available_bytes(device)
        if free is None or height * width * NETWORK_BYTES_PER_PIXEL <= 0.9 * free:
            return 0
        margin = receptive_radius(config)
        side = int((0.5 * free / NETWORK_BYTES_PER_PIXEL) ** 0.5) - 2 * margin
        tile = side - side % 4
        if tile < MIN_NETWORK_TILE:
            need = (MIN_NETWORK_TILE + 2 * margin) ** 2 * NETWORK_BYTES_PER_PIXEL
            raise FlowstyleError(f"the network needs about {need / 2**20:.0f} MB even in "
                                 f"tiles, but only {free / 2**20:.0f} MB is free on "
                                 f"{device}. Free memory, or use a machine with more.")
    if tile:
        progress.event("tiling", f"{width}x{height} frames: the network runs in tiles of "
                       f"{tile} px that share the whole frame's statistics", tile=tile)
    return tile


def network_pass(network: StyleNetwork, images: torch.Tensor, mix: torch.Tensor,
                 tile: int) -> torch.Tensor:
    """One pass of the network over N×3×H×W images with one mix: with the mirrored margin
    that keeps the frame's edges clean (network.run_with_margin), in tiles of `tile` px
    when tile > 0 (tiling.py; the same pixels)."""
    if not tile:
        return run_with_margin(network, images, mix)
    statistics = tile_statistics(images.shape[-2:])
    return run_with_margin(lambda x, m: stylize_tiled(network, x, m, tile, statistics), images, mix)


def tile_statistics(size: tuple[int, int]) -> str:
    """How tiling.stylize_tiled gathers the whole frame's statistics for (height, width)
    frames: "exact", keeping the tiles' activations in host memory (TILED_BYTES_PER_PIXEL,
    ~1/4 of the time), when 40% of the free host memory holds them; else "exact-rerun"
    (the same statistics, rerunning the tiles from the input for each layer: memory of
    one tile only)."""
    free = available_bytes(torch.device("cpu"))
    need = size[0] * size[1] * TILED_BYTES_PER_PIXEL
    return "exact" if free is None or need <= 0.4 * free else "exact-rerun"


class NetworkRun(SequenceRun):
    """`stylize --method network`: each frame through the trained network, in batches."""

    def __init__(self, input_path: str, out_dir: str, settings: Settings,
                 progress: Progress | None = None, allow_download: bool = False):
        # SequenceRun's own __init__ prepares an optimization (VGG, style Grams, memory
        # for it); only its frame reading, writing and resume checks are shared.
        s = self.settings = settings.validate().resolved()
        self.progress = progress or Progress("none")
        self.out_dir = os.path.abspath(out_dir)
        model_path = need_model(s)
        self.sequence = open_sequence(input_path, s.frames)
        self.view = self.colour_view()  # the scene's colour management (colour.py)
        self.use_vectors = False  # no motion is read: frames are independent
        self.device = resolve_device(s.device)
        if s.regions and not self.sequence.has_index:
            raise FlowstyleError(f"{self.sequence.source(self.sequence.numbers[0])}: per-object "
                                 "styles need the Object Index pass, and this render has none. "
                                 "Enable View Layer Properties > Passes > Data > Object Index "
                                 "and render again (the add-on does this when regions are set).")
        self.model = load_model(model_path, self.device)
        self.mix = resolve_mix(self.model, s, model_path)
        self.region_mixes = resolve_region_mixes(self.model, s, model_path)
        self.trained_strength = trained_strength(self.model)
        s.styles = recorded_styles(self.model, self.mix)
        s.style_mix = tuple(self.mix)
        self.fingerprint = network_fingerprint(s, self.model.digest, self.region_mixes)
        self.warn_strength_above_training()
        check_writable(self.out_dir)
        lock.refuse_if_held(self.out_dir)
        self.autocast = autocast_dtype(self.device, s.precision)
        self.size = (self.sequence.height, self.sequence.width)
        self.tile = self.tile_size()
        self.batch = 1 if self.tile else self.batch_size()
        self._inputs = {}
        self._backward, self._forward, self.results = {}, {}, {}

    def batch_size(self) -> int:
        """Frames per pass that fit in half the free memory (at least 1; tile_size has
        checked that one fits)."""
        need = self.size[0] * self.size[1] * NETWORK_BYTES_PER_PIXEL
        free = available_bytes(self.device)
        if free is None:
            return 1
        return max(1, min(MAX_BATCH, int(0.5 * free // need)))

    def tile_size(self) -> int:
        """The tile side in px (0: whole frames): network_tile()."""
        return network_tile(self.settings, self.size, self.device, self.model.network.config,
                            self.progress)

    def warn_strength_above_training(self) -> None:
        numbers = self.sequence.numbers
        above = [n for n in numbers if self.settings.strength_at(n) > self.trained_strength]
        if above:
            self.progress.warning(
                f"style strength above the {self.trained_strength:g} the model was trained "
                f"with at {len(above)} frame(s) (first: {above[0]}): a network paints at most "
                "what it learned, so those frames get its full output. Train with a higher "
                "--style-strength, or use --method optimize, for more.")

    def amount(self, number: int) -> float:
        """Frame `number`'s way from the render to the network's output (strength_amount)."""
        return strength_amount(self.settings, number, self.trained_strength)

    def frame_fingerprint(self, number: int) -> str:
        """The run's fingerprint, plus the frame's strength amount when it is not the full
        output: a changed key redoes exactly the frames whose amount it changes."""
        amount = self.amount(number)
        if amount == 1.0:
            return self.fingerprint
        return hashlib.sha256(f"{self.fingerprint}:{amount!r}".encode()).hexdigest()[:16]

    def network_pass(self, images: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        """One pass of the network over N×3×H×W images with one mix, with the mirrored
        margin that keeps the frame's edges clean (network.run_with_margin): in tiles if
        needed."""
        return network_pass(self.model.network, images, mix, self.tile)

    def stylize_batch(self, images: torch.Tensor, masks: torch.Tensor | None = None,
                      amounts: list[float] | None = None) -> torch.Tensor:
        """N×3×H×W display [0, 1] -> the network's output, clamped to [0, 1].

        masks: N×(1+R)×H×W region masks (regional_output) or None; amounts: each frame's
        strength amount (strength_amount), None for the full output."""
        context = (torch.autocast(self.device.type, dtype=self.autocast) if self.autocast
                   else contextlib.nullcontext())
        with torch.no_grad(), context:
            output = regional_output(self.network_pass, images, self.mix, self.region_mixes,
                                     masks).float().clamp(0, 1)
        if amounts is not None:
            output = torch.cat([blend_strength(images[i:i + 1], output[i:i + 1], a)
                                for i, a in enumerate(amounts)])
        return output

    def _run(self) -> dict:  # run() holds the output folder's lock around it
        numbers = self.sequence.numbers
        todo = [n for n in numbers if not self.finished(n)]
        self.progress.start(len(numbers), len(todo), self.out_dir)
        for number in numbers:
            if number not in todo:
                self.progress.frame_skipped(number, "resumed")
        started = time.perf_counter()
        for first in range(0, len(todo), self.batch):
            chunk = todo[first:first + self.batch]
            began = time.perf_counter()
            images = torch.cat([self.inputs(n).display for n in chunk])
            masks = self.masks(chunk)
            output = self.stylize_batch(images, masks, [self.amount(n) for n in chunk])
            seconds = (time.perf_counter() - began) / len(chunk)
            for i, number in enumerate(chunk):
                path = self.write(number, output[i:i + 1])
                self.progress.frame_done(number, seconds, path)
            self._inputs.clear()
        self.progress.finished(self.out_dir)
        return {"frames": len(numbers), "stylized": len(todo),
                "seconds": time.perf_counter() - started, "out": self.out_dir}

    def masks(self, chunk: list[int]) -> torch.Tensor | None:
        """The chunk's region masks, N×(1+R)×H×W, or None without regions."""
        if not self.settings.regions:
            return None
        masks = [self.inputs(n).regions for n in chunk]
        missing = [n for n, m in zip(chunk, masks) if m is None]
        if missing:
            raise FlowstyleError(f"{self.sequence.source(missing[0])}: no Object Index pass in "
                                 "this frame, which per-object styles need. Render the shot again "
                                 "with the Object Index pass on.")
        return torch.cat(masks)  # type: ignore[arg-type]


def network_fingerprint(settings: Settings, model_digest: str,
                        region_mixes: list[list[float] | None] | None = None) -> str:
    """What changes a network-stylized frame: the model file, the mix, the engine, and
    any setting not known to be optimization-only (new output settings count by default).
    The style strength enters each frame's own fingerprint (NetworkRun.frame_fingerprint)."""
    data = dataclasses.asdict(settings)
    for key in _OPTIMIZE_ONLY:
        data.pop(key, None)
    data.update(model=model_digest, engine=source_digest(), method="network")
    if settings.regions:  # what each region resolved to over the model's styles
        data["region_mixes"] = region_mixes
    blob = json.dumps(data, sort_keys=True, default=list).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class HybridRun(SequenceRun):
    """`stylize --method hybrid`: optimize, starting from the network where there is no
    history (the first frame, and pixels the reliability mask rejects)."""

    def __init__(self, input_path: str, out_dir: str, settings: Settings,
                 progress: Progress | None = None, allow_download: bool = False):
        s = settings.resolved()
        model_path = need_model(s)
        device = resolve_device(s.device)
        self.model = load_model(model_path, device)
        self.mix = resolve_mix(self.model, s, model_path)
        self.region_mixes = resolve_region_mixes(self.model, s, model_path)
        self.trained_strength = trained_strength(self.model)
        s.styles = recorded_styles(self.model, self.mix)
        s.style_mix = tuple(self.mix)
        missing = [st.path for st in s.styles if not os.path.isfile(st.path)]
        if missing:
            raise FlowstyleError(f"{missing[0]}: the style image {model_path} was trained with "
                                 "is gone; hybrid optimizes against it. Pass it with --style.")
        super().__init__(input_path, out_dir, s, progress, allow_download)
        self.fingerprint = hashlib.sha256(
            f"{self.fingerprint}:{self.model.digest}".encode()).hexdigest()[:16]
        self.autocast = autocast_dtype(self.device, self.settings.precision)
        self.tile = network_tile(self.settings, (self.sequence.height, self.sequence.width),
                                 self.device, self.model.network.config, self.progress)
        self._network: torch.Tensor | None = None

    def network_output(self, number: int) -> torch.Tensor:
        """The network's output for a frame, at the working size (1×3×h×w): each region in
        its own style, and as far from the render as the frame's strength says (as
        `stylize --method network` gives it)."""
        context = (torch.autocast(self.device.type, dtype=self.autocast) if self.autocast
                   else contextlib.nullcontext())
        cur = self.inputs(number)
        with torch.no_grad(), context:
            def network(images: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
                return network_pass(self.model.network, images, mix, self.tile)
            full = regional_output(network, cur.display, self.mix, self.region_mixes,
                                   cur.regions if self.settings.regions else None)
        amount = strength_amount(self.settings, number, self.trained_strength)
        full = blend_strength(cur.display, full.float().clamp(0, 1), amount)
        return resize(full, self.size)

    def initial_image(self, content: torch.Tensor, terms: list[TemporalTerm],
                      backward_1: torch.Tensor | None) -> torch.Tensor:
        """The warped previous results where reliable, the network's output elsewhere."""
        assert self._network is not None
        if not terms:
            return self._network
        known = sum(t.mask for t in terms)
        image = sum(t.mask * t.warped for t in terms) / known.clamp_min(1e-6)
        trust = known.clamp(0, 1)
        return trust * image + (1 - trust) * self._network

    def stylize_frame(self, number: int):
        s = self.settings
        cur = self.inputs(number)
        content = resize(cur.display, self.size)
        if s.strength_at(number) == 0:
            return content, FrameStats()  # no style: the render itself, as optimize
        self._network = self.network_output(number)
        terms, backward_1 = ([], None) if s.temporal_strength == 0 else self.temporal_terms(number)
        self.stylizer.style_strength = s.strength_at(number)
        masks = None if cur.regions is None else resize(cur.regions, self.size)
        if terms:
            init = self.initial_image(content, terms, backward_1)
            return self.stylizer.stylize(content, init, terms, s.iterations, pyramid=False,
                                         masks=masks)
        # Already stylized: no coarse-to-fine climb, and a third of what optimize's cold start
        # spends over all its levels. At the preview preset's 256 px that ends 4% below
        # optimize's final loss, reached after 0.22-0.23 of its iterations (1-3% above it
        # at 128 px and at the final preset: bench/network.py, docs/tuning.md); the first
        # frame seeds every later one.
        budget = self.stylizer.cold_start_iterations(self.size, s.first_iterations) // 3
        return self.stylizer.stylize(content, self._network, [], max(1, budget),
                                     pyramid=False, masks=masks)


def run_class(settings: Settings) -> type[SequenceRun]:
    """The run for settings.method."""
    classes = {"optimize": SequenceRun, "network": NetworkRun, "hybrid": HybridRun}
    if settings.method not in classes:
        raise FlowstyleError(f"unknown method {settings.method!r}: use optimize, network or hybrid.")
    return classes[settings.method]
