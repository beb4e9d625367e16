"""Every default the engine uses, in one place, each with its unit.

`Settings` is what a run is made of: the CLI, a job file from the add-on and the tests all
build one. Settings that change the pixels go into `Settings.fingerprint()`, which every
output frame records, so a resumed run knows which finished frames it may keep.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import os
import re
import typing
from dataclasses import dataclass, field
from typing import Any

from .errors import FlowstyleError

# VGG19 layers (torchvision `features` indices of the ReLU after each named conv).
# Gatys et al. 2016: content from conv4_2, style from the first ReLU of each block.
CONTENT_LAYERS: tuple[str, ...] = ("relu4_2",)
STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

# Frame edges: how VGG's convolutions pad ("reflect", or "zeros" as trained; vgg.py), and
# the px of mirrored frame optimized around each frame and cropped off (stylize.py, at
# the working size). Zero padding alone paints a bright rim on every frame (edge score
# 2.2); reflect alone 1.10-1.22; with the 16 px canvas 0.88 (docs/tuning.md).
VGG_PADDING = "reflect"
CANVAS_MARGIN = 16
# The trained network's frame edges: it runs on the frame mirrored this many px past each
# edge and the margin is cropped off (network.run_with_margin). Without it the outer
# 6-8 px came out as a dark band (bottom rows at 0.20-0.33 against 0.43 inside, demo
# shot); reflection padding inside every layer does not stop it. 16 px: evaluate's edge
# band 1.65 -> 0.93 (optimize's 0.94), for 3% more pixels at 1080p (docs/tuning.md).
NETWORK_MARGIN = 16

# Ruder et al. 2016, eq. (7) and (8): thresholds of the reliability mask, in pixels².
CONSISTENCY_RELATIVE = 0.01  # |w̃ + ŵ|² > 0.01 (|w̃|² + |ŵ|²) + 0.5 marks a disocclusion
CONSISTENCY_ABSOLUTE = 0.5
BOUNDARY_RELATIVE = 0.01  # |∇u|² + |∇v|² > 0.01 |ŵ|² + 0.002 marks a motion boundary
BOUNDARY_ABSOLUTE = 0.002
# Depth test: a pixel whose depth differs from the warped previous depth by more than this
# fraction is a different surface (an occluder moved away), so it is not reliable.
DEPTH_RELATIVE_TOLERANCE = 0.05
# Warm start of pixels the mask rejects (run.initial_image): the warped previous result
# grows into them from neighbours that move alike by at most this many px (working size);
# the rest starts from the current frame in the result's colours.
FILL_SAME_SURFACE_PX = 3

# The painting used when no style is given: The Starry Night (van Gogh, 1889, public domain).
DEFAULT_STYLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "styles", "starry_night.jpg")

# Iterations per preset: (first frame, later frames), per pyramid level's finest step.
PRESETS: dict[str, dict[str, int]] = {
    # Working height in px (frames larger than this are stylized at this height and
    # upsampled), iterations for the first frame (cold start) and later frames (warm start).
    "preview": {"height": 256, "first_iterations": 120, "iterations": 40},
    "final": {"height": 512, "first_iterations": 300, "iterations": 120},
}

# `python -m engine preview-frame` (the add-on's Preview Frame): one frame, no temporal
# term, a small working height and a short cold start, for look development in seconds.
PREVIEW_FRAME: dict[str, int] = {"height": 192, "first_iterations": 60}


METHODS = ("optimize", "network", "hybrid")
# Settings only the network and its training read (left out of optimize's fingerprint).
NETWORK_FIELDS = ("method", "model", "style_mix", "train_steps", "train_crop", "train_batch",
                  "train_lr", "train_lr_decay", "network_channels", "network_blocks", "train_preview_every",
                  "train_checkpoint_every", "train_seed")
# Where training's learning rate ends (train_lr_decay), as a fraction of train_lr: low
# enough to settle into the minimum the constant rate circles, not so low that the last
# steps are wasted.
TRAIN_LR_FLOOR = 0.05
# Smallest tile side for network tiling, in px: each tile also runs a margin of the
# network's receptive radius (60 px for the default network) on every side, so smaller
# tiles spend most of their time on margins.
MIN_NETWORK_TILE = 32
# Smallest working height, in px: VGG19 halves the image four times before relu5_1, the
# deepest style layer, so below 16 px that layer has no pixels left.
MIN_WORKING_HEIGHT = 16
# Largest working height accepted, in px (16K). Larger is a typo: it would need hundreds
# of GB of memory (stylize.estimate_peak_bytes).
MAX_WORKING_HEIGHT = 16384
# Largest iteration budget accepted per frame: a typo guard (the presets use 40-300).
MAX_ITERATIONS = 100_000
# Smallest style image side, in px. The style is scaled to the working height before its
# Grams are taken (Stylizer.style_grams), so any size runs; but below 32 px a painting is
# blown up 8x or more even at the preview height and has no brush strokes left to transfer.
MIN_STYLE_SIDE = 32
FLOW_SOURCES = ("auto", "vectors", "estimated")
OPTIMIZERS = ("lbfgs", "adam")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# Device names the engine understands; whether the device exists is checked when the
# run opens it (check.open_device).
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class SettingError(FlowstyleError):
    """A setting with a wrong type or value.

    key: the Settings field (which is also the job-file key); shown: the value as given;
    advice: what to give instead. `str()` reads "iterations is 0: give ..."; the CLI says
    where the value came from instead (`describe`).
    """

    def __init__(self, key: str, shown: str, advice: str):
        self.key, self.shown, self.advice = key, shown, advice
        super().__init__(self.describe(key))

    def describe(self, where: str) -> str:
        """The message with `where` naming the setting ("--iterations", 'job key "iterations"')."""
        return f"{where} is {self.shown}: {self.advice}."


def nearest(key: str, valid: typing.Iterable[str]) -> str | None:
    """The valid name closest to a misspelt one (None when nothing is close)."""
    match = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    return match[0] if match else None


@dataclass
class StyleImage:
    """A style image and its blend weight (weights are normalised to sum to 1)."""

    path: str
    weight: float = 1.0


@dataclass
class Region:
    """Per-object styling (Gatys et al. 2017, spatial control): the pixels whose Object Index
    pass equals `index` (Blender's Object or Collection "Pass Index") get these styles.

    An empty `styles` list keeps the original render there (no style loss, and the output
    pixels of the region are the input's). Pixels in no region get `Settings.styles`.
    """

    index: int
    styles: list[StyleImage] = field(default_factory=list)


@dataclass
class Settings:
    """One run's settings. Units are in the comments; `None` means "from the preset"."""

    styles: list[StyleImage] = field(default_factory=list)
    preset: str = "preview"
    height: int | None = None  # working height in px; 0 = the frames' own height
    first_iterations: int | None = None  # optimizer iterations for the first frame
    iterations: int | None = None  # optimizer iterations for every later frame
    # Loss weights. Each loss is a mean (losses.py), so the balance holds at any
    # resolution. Inputs to VGG are Caffe-style 0-255, so content (feature MSE) is ~1e5
    # and style (Gram MSE) ~1e3-1e4 at convergence. Style 50 was chosen on several
    # paintings and shots (docs/tuning.md): the painting is recognized at first sight and
    # the shot stays readable; the classic Gatys balance (neural-style's 5 : 100, summed
    # over 5 layers) is 100 here; the former default 5 left style losses 5-11x the classic's.
    content_weight: float = 1.0
    style_weight: float = 50.0
    # Multiplies style_weight (the panel's "style strength"). 0 means the render itself:
    # no optimization at all (TV and range terms would otherwise still smooth it).
    style_strength: float = 1.0
    tv_weight: float = 1.0e6  # per mean squared neighbour difference, display units [0, 1]
    temporal_weight: float = 3.0e7  # per mean masked squared difference, display units
    # Per mean squared distance outside [0, 1], display units. The result is clamped to
    # [0, 1] on output; unconstrained, the optimum leaves that range, and the clamp then
    # raised the style loss by 27% at 256 px (11543 -> 14681); with this, by 1%.
    range_weight: float = 1.0e8
    temporal_strength: float = 1.0  # multiplies temporal_weight; 0 = independent frames
    long_term: tuple[int, ...] = (1, 2, 4)  # earlier frames the temporal loss looks back to
    style_scale: float = 1.0  # style image height as a fraction of the working height
    pyramid_levels: int = 3  # coarse-to-fine levels (each half the size of the next)
    min_level_height: int = 64  # px: coarser levels than this are skipped
    optimizer: str = "lbfgs"  # "lbfgs" (strong-Wolfe line search) or "adam"
    adam_lr: float = 0.02  # display units per step
    early_stop: float = 1e-3  # stop a level when the loss falls by less than this fraction
    # over `early_stop_window` iterations
    early_stop_window: int = 10
    flow: str = "auto"  # "auto": Vector pass if present, else estimated; "vectors"; "estimated"
    use_depth: bool = True  # use the Depth pass in the reliability mask when present
    # The reliability mask's appearance test (flow.appearance_mask): a pixel whose display
    # colour differs from the previous frame's warped colour by more than this (3x3 mean
    # of the channels' mean absolute difference) changed its look where the vectors follow
    # its surface: a shadow or highlight moved over it, a light changed. Its stylization
    # must follow, not be held. 0.08 is past 16-spp render noise (docs/tuning.md); 1 = off.
    appearance_tolerance: float = 0.08
    weights: str = "caffe"  # "caffe" (embedded), "torchvision" (download, asks first), or a path
    device: str = "auto"  # "auto" (CUDA, else Apple's MPS, else CPU), "cpu", "cuda", "cuda:1", "mps"
    # VGG pass: "auto" (bf16 where native, fp16 with loss scaling on older CUDA GPUs and
    # MPS, else fp32: stylize.autocast_dtype), "fp32", "bf16", "fp16"
    precision: str = "auto"
    frames: tuple[int, int] | None = None  # inclusive frame range; None = every frame
    # How frames are stylized: "optimize" (each frame optimized, Ruder et al.), "network"
    # (a network trained on the shot, `python -m engine train`, one pass per frame) or
    # "hybrid" (optimized, starting from the network's output where there is no history).
    method: str = "optimize"
    model: str | None = None  # network/hybrid: the trained model file (.pt)
    # network/hybrid: weight of each of the model's styles (normalised); None = the
    # weights the styles were given at training (or by --style at stylize time).
    style_mix: tuple[float, ...] | None = None
    # Training (`python -m engine train`); the loss weights above are shared with optimize.
    train_steps: int = 800  # Adam steps; 0.63 CPU-s each at 256 px on one thread (bench/network.py)
    train_crop: int = 256  # px: side of the square crops trained on (the frame's own if smaller)
    train_batch: int = 1  # consecutive frame pairs per step (2 images each)
    train_lr: float = 1e-3  # Adam learning rate (Johnson et al. 2016)
    # The last fraction of the steps lowers the rate along a half cosine to TRAIN_LR_FLOOR
    # of train_lr (0 = constant). Same steps, lower losses: on the demo shot, seeds 0-2,
    # style loss 1.52x optimize's at a constant rate, 1.31x with this (docs/tuning.md).
    train_lr_decay: float = 0.3
    # Widths of the network's 3 stages. Half Johnson et al.'s (32, 64, 128): on the demo
    # shot, 800 steps at a constant rate, seeds 0-2, style loss 1.52x optimize's against
    # 1.70x, warping error 1.09-1.14x the floor against 1.20x, at a quarter of the FLOPs
    # (docs/tuning.md).
    network_channels: tuple[int, int, int] = (16, 32, 64)
    network_blocks: int = 5  # residual blocks
    train_preview_every: int = 100  # steps between previews of a held-out frame (0 = none)
    train_checkpoint_every: int = 25  # steps between resumable checkpoints
    train_seed: int = 0  # the network's initial weights and the crops drawn
    # Training multiplies the style weight by this. The optimizer starts from the frame and
    # stops near it, which keeps small objects readable at the default balance; a network
    # learns the balance itself and, trained for minutes, paints over them there (the demo
    # shot's cube vanished at 1.0 and is kept at 0.4: docs/tuning.md).
    network_style_scale: float = 0.4
    # network: side in px of the tiles a frame too large for memory is stylized in (each
    # grown by the network's receptive radius, sharing the whole frame's statistics:
    # engine/tiling.py). 0 = auto: whole frames when they fit in the free memory, else the
    # largest tiles that do. The output is the same either way (up to float rounding).
    network_tile: int = 0
    # Farm (--cluster) only: the shot is optimized in chunks of `chunk_frames` frames, each
    # starting `chunk_overlap` frames early; the overlap frames are blended (engine/farm.py).
    # frames per chunk (one task). bench/farm.py projects, on 1,000 frames: 32 keeps 8 workers 86%
    # and 32 workers 82% busy (24: 74% and 54%); longer chunks also mean fewer, gentler seams.
    chunk_frames: int = 32
    chunk_overlap: int = 2  # frames shared with the previous chunk (>= 1: the anchor), < chunk_frames
    # Colour management (engine/colour.py, README "Colour"): VGG sees the input through the
    # scene's view chain; the output stays in the input's working space. Names are those of
    # the OCIO config (Blender's own by default); EXR input only (PNG/video are sRGB display).
    working_space: str = "Linear Rec.709"  # OCIO colour space of the input EXRs' pixels
    display: str = "sRGB"  # OCIO display device
    view: str = "Standard"  # OCIO view transform on that display (a new Blender scene: "AgX")
    look: str = "None"  # OCIO look ("None": none), e.g. "AgX - Punchy"
    exposure: float = 0.0  # stops: the working-space colour is scaled by 2**exposure first
    gamma: float = 1.0  # display-space power 1/gamma after the view (Blender's Gamma); > 0
    ocio_config: str = ""  # config.ocio path; "" = $OCIO, else an installed bpy's, else sRGB curve
    # Keep the render's colours and take only the style's luminance pattern (Gatys et al.
    # 2016 luminance-only transfer, in YIQ of the display image; colour.keep_chroma).
    preserve_colour: bool = False
    # Per-object styles, by Object Index (see Region); empty = one style everywhere.
    regions: list[Region] = field(default_factory=list)
    # Keyframed style strength: frame number -> strength for that frame (the add-on samples
    # the animated panel value per frame). Frames not listed use `style_strength`.
    style_strengths: dict[int, float] = field(default_factory=dict)

    def strength_at(self, frame: int) -> float:
        """The style strength of `frame` (its keyframed value, else the constant one)."""
        return float(self.style_strengths.get(frame, self.style_strength))

    def validate(self) -> "Settings":
        """Check every setting's type and range; raise SettingError naming the first bad one
        and what to give instead. Returns self, so `Settings(...).validate()` chains.

        The one place settings are checked: the command line, job files and programs that
        build a Settings all pass through here (SequenceRun calls it). Types come from the
        field annotations, so a new field is type-checked without code here; its range
        check goes below, next to the others.
        """
        hints = typing.get_type_hints(Settings)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not _has_type(value, hints[f.name]):
                raise SettingError(f.name, _show(value), f"give {_describe(hints[f.name])}")

        def need(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise SettingError(key, _show(getattr(self, key)), what)

        need(self.preset in PRESETS, "preset", f"choose one of {', '.join(PRESETS)}")
        need(self.height is None or self.height == 0
             or MIN_WORKING_HEIGHT <= self.height <= MAX_WORKING_HEIGHT, "height",
             f"give 0 (the frames' own height) or a working height from {MIN_WORKING_HEIGHT} "
             f"to {MAX_WORKING_HEIGHT} px (the presets use 256 and 512)")
        for key in ("first_iterations", "iterations"):
            value = getattr(self, key)
            need(value is None or 1 <= value <= MAX_ITERATIONS, key,
                 f"give a whole number of iterations from 1 to {MAX_ITERATIONS} (the presets "
                 "use 40-300)")
        for key in ("content_weight", "style_weight", "style_strength", "tv_weight",
                    "temporal_weight", "range_weight", "temporal_strength"):
            value = getattr(self, key)
            need(math.isfinite(value) and value >= 0, key, "give a number of 0 or more")
        need(all(k >= 1 for k in self.long_term), "long_term",
             "give frame distances of 1 or more, e.g. [1, 2, 4]")
        need(math.isfinite(self.style_scale) and 0 < self.style_scale <= 8, "style_scale",
             "give a fraction of the working height above 0 and at most 8 (1 = the same height)")
        need(1 <= self.pyramid_levels <= 8, "pyramid_levels", "give 1 to 8 levels")
        need(self.min_level_height >= MIN_WORKING_HEIGHT, "min_level_height",
             f"give at least {MIN_WORKING_HEIGHT} px")
        need(self.optimizer in OPTIMIZERS, "optimizer", f"choose {' or '.join(OPTIMIZERS)}")
        need(math.isfinite(self.adam_lr) and self.adam_lr > 0, "adam_lr", "give a step above 0")
        need(math.isfinite(self.early_stop), "early_stop",
             "give a finite fraction (0 or less turns early stopping off)")
        need(self.early_stop_window >= 1, "early_stop_window", "give at least 1 iteration")
        need(self.flow in FLOW_SOURCES, "flow", f"choose one of {', '.join(FLOW_SOURCES)}")
        need(self.weights.strip() != "", "weights",
             "give caffe (embedded), torchvision, or the path of a VGG19 weights file")
        need(bool(DEVICE_PATTERN.match(self.device)), "device",
             "choose auto, cpu, cuda, cuda:N (N = the GPU's number) or mps")
        need(self.precision in PRECISIONS, "precision", f"choose one of {', '.join(PRECISIONS)}")
        need(self.frames is None or self.frames[0] <= self.frames[1], "frames",
             "give START:END with START at most END, e.g. 1:48")
        for style in self.styles:
            if not style.path:
                raise SettingError("styles", "a style with an empty path",
                                   "give the path of a painting (PNG or JPG)")
            if not (math.isfinite(style.weight) and style.weight >= 0):
                raise SettingError("styles", f"{style.path} with weight {style.weight}",
                                   "give a weight of 0 or more (weights are relative, e.g. "
                                   "--style a.jpg:0.7 --style b.jpg:0.3)")
        if self.styles and sum(st.weight for st in self.styles) <= 0:
            raise SettingError("styles", "weights adding up to 0",
                               "give at least one style a positive weight")
        # Network method and training (engine/network.py, engine/train.py).
        need(self.method in METHODS, "method", f"choose one of {', '.join(METHODS)}")
        need(self.style_mix is None or all(math.isfinite(w) and w >= 0 for w in self.style_mix),
             "style_mix", "give weights of 0 or more, e.g. 0.7,0.3")
        for key in ("train_steps", "train_crop", "train_batch", "train_checkpoint_every"):
            need(getattr(self, key) >= 1, key, "give a whole number of 1 or more")
        need(self.train_crop >= MIN_WORKING_HEIGHT, "train_crop",
             f"give at least {MIN_WORKING_HEIGHT} px")
        need(math.isfinite(self.train_lr) and self.train_lr > 0, "train_lr", "give a rate above 0")
        need(math.isfinite(self.appearance_tolerance) and 0 < self.appearance_tolerance <= 1,
             "appearance_tolerance", "give a display difference above 0, up to 1 (1 = off)")
        need(math.isfinite(self.train_lr_decay) and 0 <= self.train_lr_decay <= 1, "train_lr_decay",
             "give a fraction of the steps from 0 (constant rate) to 1")
        need(all(c >= 1 for c in self.network_channels), "network_channels",
             "give 3 widths of 1 or more, e.g. 16,32,64")
        need(self.network_blocks >= 0, "network_blocks", "give 0 or more blocks")
        need(math.isfinite(self.network_style_scale) and self.network_style_scale > 0,
             "network_style_scale", "give a factor above 0 (1 = the optimizer's balance)")
        need(self.train_preview_every >= 0, "train_preview_every", "give 0 (none) or more steps")
        need(self.network_tile == 0 or self.network_tile >= MIN_NETWORK_TILE, "network_tile",
             f"give 0 (automatic: tiles only when a frame does not fit in memory) or a tile "
             f"side of at least {MIN_NETWORK_TILE} px")
        # Farm (engine/farm.py).
        need(self.chunk_frames >= 1, "chunk_frames", "give 1 or more frames per chunk")
        # An optimized shot's chunks share at least their anchor frame; network chunks
        # share nothing, so there the overlap is not used.
        need(self.method == "network" or 1 <= self.chunk_overlap < self.chunk_frames,
             "chunk_overlap", "give 1 or more frames (the anchor neighbouring chunks share), "
             "fewer than chunk_frames")
        # Colour (engine/colour.py).
        need(math.isfinite(self.exposure) and abs(self.exposure) <= 64, "exposure",
             "give stops between -64 and 64")
        need(math.isfinite(self.gamma) and self.gamma > 0, "gamma", "give a number above 0")
        return self

    def resolved(self) -> "Settings":
        """A copy with preset values filled in and style weights normalised."""
        preset = PRESETS.get(self.preset)
        if preset is None:
            raise ValueError(f"unknown preset {self.preset!r}: choose one of {', '.join(PRESETS)}")
        s = dataclasses.replace(self)
        s.height = preset["height"] if s.height is None else s.height
        s.first_iterations = preset["first_iterations"] if s.first_iterations is None else s.first_iterations
        s.iterations = preset["iterations"] if s.iterations is None else s.iterations
        total = sum(st.weight for st in s.styles)
        if s.styles and total > 0:
            s.styles = [StyleImage(st.path, st.weight / total) for st in s.styles]
        regions = []
        for region in s.regions:
            total = sum(st.weight for st in region.styles)
            styles = [StyleImage(st.path, st.weight / total) for st in region.styles] if total > 0 \
                else list(region.styles)
            regions.append(Region(int(region.index), styles))
        s.regions = regions
        s.style_strengths = {int(k): float(v) for k, v in s.style_strengths.items()}
        return s

    def fingerprint(self, style_digests: list[str], weights_digest: str,
                    region_digests: list[list[str]] | None = None) -> str:
        """A short hash of everything that changes the output pixels.

        style_digests: content hashes of the style images, weights_digest: of the weights
        file (a changed file must count even when its path did not change; the same file
        elsewhere changes nothing); region_digests: of each region's style images. The
        engine's version and source digest count too, so frames made by other code are
        redone (digests.py). Device and precision are left out on purpose: a frame finished
        on the GPU is kept when the run resumes on the CPU. Per-frame strengths are not in
        it: they enter each frame's own fingerprint (`frame_fingerprint`), so changing the
        strength of frame 30 redoes frames from 30 on, not the whole shot.
        """
        from .digests import source_digest
        s = self.resolved()
        data = dataclasses.asdict(s)
        for key in ("device", "precision", "frames", "chunk_frames", "chunk_overlap",
                    "style_strengths", "network_tile"):  # tiles: the same pixels (tiling.py)
            data.pop(key)  # chunking counts only in a farm run's own fingerprint (farm.py);
            # per-frame strengths in each frame's own (frame_fingerprint)
        if s.method == "optimize":  # the network's settings do not touch optimized pixels
            for key in NETWORK_FIELDS:
                data.pop(key)
        data["styles"] = [(d, st.weight) for d, st in zip(style_digests, s.styles)]
        data["weights"] = weights_digest
        data["engine"] = source_digest()  # includes __version__
        if s.regions:
            digests = region_digests or [[] for _ in s.regions]
            data["regions"] = [(r.index, [(d, st.weight) for d, st in zip(ds, r.styles)])
                               for r, ds in zip(s.regions, digests)]
        else:
            data.pop("regions")  # runs without regions keep the fingerprints they had
        blob = json.dumps(data, sort_keys=True, default=list).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def frame_fingerprint(self, run_fingerprint: str, frame: int) -> str:
        """The fingerprint recorded in `frame`'s output: the run's, plus the frame's own
        style strength when the strength is keyframed."""
        if not self.style_strengths:
            return run_fingerprint
        blob = f"{run_fingerprint}:{self.strength_at(frame)!r}".encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# Farm (engine/farm.py): how long to try reaching a Dask scheduler before saying so, and how
# often Dask may rerun a task that raised (a task whose worker died is rerun by the
# scheduler itself, up to its `distributed.scheduler.allowed-failures`).
FARM_CONNECT_TIMEOUT = 5.0  # seconds
FARM_RETRIES = 2
def _show(value: Any) -> str:
    return json.dumps(value, default=repr) if not isinstance(value, StyleImage) else repr(value)


def _has_type(value: Any, hint: Any) -> bool:
    """Is `value` of the annotated type? Understands X | None, tuple[int, ...],
    tuple[int, int], list[StyleImage] and plain classes; ints count as floats, bools do
    not count as numbers (JSON true is no iteration count)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_has_type(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_has_type(v, args[0]) for v in value)
        return len(value) == len(args) and all(_has_type(v, a) for v, a in zip(value, args))
    if origin is list:
        return isinstance(value, list) and all(_has_type(v, args[0]) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # an annotation this check does not know: leave it to the range checks


def _describe(hint: Any) -> str:
    """Words for a type annotation, for messages."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        words = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(words) + (" (or null for the default)" if type(None) in args else "")
    if origin is tuple:
        kind = "numbers" if args[0] is float else "whole numbers"
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {kind}, e.g. [1, 2, 4]"
        return f"a list of {len(args)} {kind}, e.g. [{', '.join(['1'] * len(args))}]"
    if origin is list and args and args[0] is StyleImage:
        return 'a list of styles, e.g. [{"path": "painting.jpg", "weight": 1.0}]'
    return {int: "a whole number (without quotes)", float: "a number (without quotes)",
            str: "a text in quotes", bool: "true or false"}.get(hint, getattr(hint, "__name__", str(hint)))
