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

import torch

from . import lock
from .digests import source_digest
from .defaults import MIN_NETWORK_TILE, Settings, StyleImage
from .errors import FlowstyleError
from .frames import open_sequence
from .network import style_mix
from .progress import Progress
from .run import SequenceRun, check_writable, load_style_images
from .stylize import TemporalTerm, autocast_dtype, available_bytes, resize, resolve_device
from .tiling import receptive_radius, stylize_tiled
from .train import Model, load_model

# Peak memory of one inference per pixel of the frame (bytes, float32): at full size the
# last upsampling holds the doubled 64-channel map, the 32-channel conv output and the
# norm's float copy. Rounded up from the layer widths (1080p: ~1.3 GB).
NETWORK_BYTES_PER_PIXEL = 1024
MAX_BATCH = 8  # frames per network pass; more gains little and delays the first write

# Settings that only optimization reads: they do not change a network-stylized frame.
_OPTIMIZE_ONLY = ("preset", "height", "first_iterations", "iterations", "content_weight",
                  "style_weight", "style_strength", "tv_weight", "temporal_weight",
                  "range_weight", "temporal_strength", "long_term", "style_scale",
                  "pyramid_levels", "min_level_height", "optimizer", "adam_lr", "early_stop",
                  "early_stop_window", "flow", "use_depth", "weights", "train_seed", "train_steps",
                  "train_crop", "train_batch", "train_lr", "network_channels", "network_blocks",
                  "train_preview_every", "train_checkpoint_every", "device", "precision",
                  "frames", "styles",
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
        known = [st["digest"] for st in model.styles]
        weights = [0.0] * count
        for style, digest in zip(settings.styles, digests):
            if digest not in known:
                raise FlowstyleError(
                    f"{style.path}: {model_path} was trained for other styles ({names}). Train a "
                    f"model for this style (python -m engine train SHOT --style {style.path} "
                    "--out model.pt), or leave --style out to use the model's own.")
            weights[known.index(digest)] += style.weight
        return style_mix(weights, count).tolist()
    return style_mix([float(st["weight"]) for st in model.styles], count).tolist()


def recorded_styles(model: Model, mix: list[float]) -> list[StyleImage]:
    """The model's styles with the mix as weights (what the outputs record, so `evaluate`
    measures the style loss against the blend that was asked for)."""
    return [StyleImage(st["path"], w) for st, w in zip(model.styles, mix)]


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
        self.model = load_model(model_path, self.device)
        self.mix = resolve_mix(self.model, s, model_path)
        s.styles = recorded_styles(self.model, self.mix)
        s.style_mix = tuple(self.mix)
        self.fingerprint = network_fingerprint(s, self.model.digest)
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
        """The tile side in px (0: whole frames). --tile when given; else 0 when a frame
        fits in 90% of the free memory, else the largest tile (with its margins) that fits
        in half of it, as batch_size budgets a batch."""
        s = self.settings
        height, width = self.size
        if s.network_tile:
            tile = s.network_tile if s.network_tile < max(height, width) else 0
        else:
            free = available_bytes(self.device)
            if free is None or height * width * NETWORK_BYTES_PER_PIXEL <= 0.9 * free:
                return 0
            margin = receptive_radius(self.model.network.config)
            side = int((0.5 * free / NETWORK_BYTES_PER_PIXEL) ** 0.5) - 2 * margin
            tile = side - side % 4
            if tile < MIN_NETWORK_TILE:
                need = (MIN_NETWORK_TILE + 2 * margin) ** 2 * NETWORK_BYTES_PER_PIXEL
                raise FlowstyleError(f"the network needs about {need / 2**20:.0f} MB even in "
                                     f"tiles, but only {free / 2**20:.0f} MB is free on "
                                     f"{self.device}. Free memory, or use a machine with more.")
        if tile:
            self.progress.event("tiling", f"{width}x{height} frames: stylizing in tiles of "
                                f"{tile} px that share the whole frame's statistics", tile=tile)
        return tile

    def stylize_batch(self, images: torch.Tensor) -> torch.Tensor:
        """N×3×H×W display [0, 1] -> the network's output, clamped to [0, 1]."""
        context = (torch.autocast(self.device.type, dtype=self.autocast) if self.autocast
                   else contextlib.nullcontext())
        with torch.no_grad(), context:
            if self.tile:
                return stylize_tiled(self.model.network, images, torch.tensor(self.mix),
                                     self.tile).clamp(0, 1)
            return self.model.network(images, torch.tensor(self.mix)).float().clamp(0, 1)

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
            output = self.stylize_batch(images)
            seconds = (time.perf_counter() - began) / len(chunk)
            for i, number in enumerate(chunk):
                path = self.write(number, output[i:i + 1])
                self.progress.frame_done(number, seconds, path)
            self._inputs.clear()
        self.progress.finished(self.out_dir)
        return {"frames": len(numbers), "stylized": len(todo),
                "seconds": time.perf_counter() - started, "out": self.out_dir}


def network_fingerprint(settings: Settings, model_digest: str) -> str:
    """What changes a network-stylized frame: the model file, the mix, the engine, and
    any setting not known to be optimization-only (new output settings count by default)."""
    data = dataclasses.asdict(settings)
    for key in _OPTIMIZE_ONLY:
        data.pop(key, None)
    data.update(model=model_digest, engine=source_digest(), method="network")
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
        self._network: torch.Tensor | None = None

    def network_output(self, number: int) -> torch.Tensor:
        """The network's output for a frame, at the working size (1×3×h×w)."""
        context = (torch.autocast(self.device.type, dtype=self.autocast) if self.autocast
                   else contextlib.nullcontext())
        with torch.no_grad(), context:
            full = self.model.network(self.inputs(number).display, torch.tensor(self.mix))
        return resize(full.float().clamp(0, 1), self.size)

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
        content = resize(self.inputs(number).display, self.size)
        self._network = self.network_output(number)
        terms, backward_1 = ([], None) if s.temporal_strength == 0 else self.temporal_terms(number)
        if terms:
            init = self.initial_image(content, terms, backward_1)
            return self.stylizer.stylize(content, init, terms, s.iterations, pyramid=False)
        # Already stylized: no coarse-to-fine climb, a third of a cold start's budget.
        return self.stylizer.stylize(content, self._network, [], max(1, s.first_iterations // 3),
                                     pyramid=False)


def run_class(settings: Settings) -> type[SequenceRun]:
    """The run for settings.method."""
    classes = {"optimize": SequenceRun, "network": NetworkRun, "hybrid": HybridRun}
    if settings.method not in classes:
        raise FlowstyleError(f"unknown method {settings.method!r}: use optimize, network or hybrid.")
    return classes[settings.method]
