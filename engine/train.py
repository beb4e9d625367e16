"""Training the style network (network.py) on the shot it will stylize.

    python -m engine train SHOT --style a.jpg[:w] [--style b.jpg ...] --out model.pt

Each step takes random pairs of consecutive frames of the shot (display space, colour.py),
crops them at a random scale (0.8-1.25x the frame's own size, so strokes come out the
size they were trained at) with a random horizontal flip, and runs both frames of each
pair through the network with one style (the styles take turns). The loss is the engine's
own (losses.py, weights from Settings, as optimize uses them): content and Gram style on
the embedded VGG19 against that style's Grams, total variation, the range penalty, and
an output-level temporal term (Huang et al. 2017, ReCoNet): the output of frame t against
the output of frame t-1 warped by the exact motion (the Vector pass, or estimated flow)
where the reliability mask trusts it — the same mask the optimizer uses (flow.py).
Adam's rate is constant, then falls along a half cosine over the last `train_lr_decay` of
the steps (`learning_rate`).

The shot's last frame is held out (when it has 4 or more): a preview of it, input |
output, is written beside the model every `train_preview_every` steps with its loss, so
over-fitting shows. A checkpoint (network, Adam, step, random state) is written atomically
every `train_checkpoint_every` steps; running the same command again resumes from it and
ends bit-identical to an unbroken run. Asking for more steps later goes on from the
finished run's checkpoint: the rate rises again and falls over the new last fraction (a
warm restart, Loshchilov & Hutter 2017). The final model holds no code (loadable with
torch.load(weights_only=True)) and records its styles' digests, settings and engine version.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from . import __version__, colour, defaults, flow as flowlib, losses
from .defaults import Settings, StyleImage
from .errors import FlowstyleError
from .estimated_flow import estimate_flow
from .frames import Sequence, open_sequence
from .network import NetworkConfig, StyleNetwork, one_hot
from .progress import Progress
from .run import colour_view, load_style_images
from .stylize import Stylizer, autocast_dtype, resize, resolve_device
from .vgg import VGGFeatures

MODEL_FORMAT = "flowstyle-network"
# Bump when a model written by an older engine can no longer be read correctly (layout of
# the network or of the file); the loader refuses other versions with the fix.
MODEL_FORMAT_VERSION = 2  # 2: sigmoid output (1 added a residual to the input)
SCALE_RANGE = (0.8, 1.25)  # random scale of a training crop, relative to the frame's size
CACHE_BYTES = 1 << 30  # frames and flows kept in memory between steps (beyond: re-read)
# Settings that do not change what a training run computes, step for step (train_steps
# only moves where the rate falls, so a longer run may go on from a shorter one's
# checkpoint).
_NOT_TRAINING = ("device", "precision", "network_tile", "chunk_frames", "chunk_overlap",
                 "train_steps", "train_preview_every",
                 "train_checkpoint_every", "method", "model", "style_mix", "preset", "height",
                 "first_iterations", "iterations", "optimizer", "adam_lr", "early_stop",
                 "early_stop_window", "pyramid_levels", "min_level_height", "long_term",
                 "appearance_tolerance")


def checkpoint_path(model_path: str) -> str:
    return os.path.splitext(model_path)[0] + ".checkpoint.pt"


def preview_path(model_path: str) -> str:
    return os.path.splitext(model_path)[0] + ".preview.png"


def file_digest(path: str) -> str:
    """sha256 of a file, 16 hex digits."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def save_atomic(obj: dict, path: str) -> None:
    """torch.save to a temporary file beside `path`, then rename: never half a file."""
    tmp = path + ".partial"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def training_strength(settings: Settings) -> float:
    """The style strength a network is trained with: the largest keyframed one when the
    strength is animated (frames with less are blended towards the render when stylizing,
    network_run.strength_amount), so moving a key below it does not train again."""
    if settings.style_strengths:
        return max(max(settings.style_strengths.values()), 0.0) or 1.0
    return settings.style_strength


def trained_strength(model: "Model") -> float:
    """The style strength `model` was trained with."""
    return float(model.settings.get("style_strength", 1.0))


def training_settings(settings: Settings) -> tuple[Settings, list[tuple[torch.Tensor, float]], list[str]]:
    """What a network is trained for, from a run's settings: every style the run needs in
    one network (the main styles, then each per-object region's not already among them,
    by content, with weight 0 in the default mix) at `training_strength`.

    Returns (settings, style images, their digests) with settings.styles the union, the
    regions and the per-frame strengths folded in (a region's index or a key moved below
    the largest does not change the network)."""
    s = settings.resolved()
    images, digests = load_style_images(s)
    styles = list(s.styles)
    for region in s.regions:
        if not region.styles:
            continue
        region_images, region_digests = load_style_images(dataclasses.replace(s, styles=region.styles))
        for style, image, digest in zip(region.styles, region_images, region_digests):
            if digest not in digests:
                styles.append(StyleImage(style.path, 0.0))
                images.append((image[0], 0.0))
                digests.append(digest)
    s = dataclasses.replace(s, styles=styles, regions=[], style_strengths={},
                            style_strength=training_strength(s))
    return s, images, digests


def write_json_atomic(path: str, data: dict) -> None:
    """JSON to a temporary file beside `path`, then rename: never half a file."""
    tmp = path + ".partial"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def record_path(model_path: str) -> str:
    """model.json beside model.pt: what the model was trained for, as plain JSON."""
    return os.path.splitext(model_path)[0] + ".json"


def recorded_settings(settings: Settings) -> dict:
    """The settings that change what a training run computes (JSON-ready; the styles and
    frames are added apart, by content)."""
    data = json.loads(json.dumps(dataclasses.asdict(settings.resolved()), default=list))
    for key in _NOT_TRAINING + ("styles", "frames"):
        data.pop(key, None)
    return data


def training_record(trainer: "Trainer", model_digest: str) -> dict:
    """model.json: what the model beside it was trained for, read without torch by the
    add-on (addon/model_state.py) to say whether and why it will be trained again.
    model_digest ties the record to the model file (a replaced or damaged file differs)."""
    s = trainer.settings
    return {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION,
            "engine_version": __version__, "fingerprint": trainer.fingerprint,
            "model_digest": model_digest, "steps": s.train_steps,
            "default_steps": Settings.train_steps,  # what a job that leaves steps out gets
            "styles": trainer.style_meta(),
            "frames": {str(n): trainer.sequence.identity(n) for n in trainer.sequence.numbers},
            "settings": recorded_settings(s)}


def learning_rate(step: int, steps: int, base: float, decay: float) -> float:
    """Adam's rate at 0-based `step` of `steps`: `base` until the last `decay` fraction of
    the steps, then a half cosine from `base` down to defaults.TRAIN_LR_FLOOR × base at the last step.

    A function of the step alone, so a resumed run takes the very steps of an unbroken one.
    Why: a constant rate leaves the network circling its minimum with the noise of one
    random crop per step; lowering it at the end lets it settle (docs/tuning.md).
    """
    start = round(steps * (1 - decay))
    if step < start:
        return base
    fraction = 0.5 * (1 + math.cos(math.pi * min(1.0, (step - start) / max(1, steps - 1 - start))))
    return base * (defaults.TRAIN_LR_FLOOR + (1 - defaults.TRAIN_LR_FLOOR) * fraction)


def training_fingerprint(settings: Settings, style_digests: list[str], sequence: Sequence) -> str:
    """What makes two training runs compute the same steps: settings, style images'
    contents, and the frames' identities (a re-rendered shot trains again)."""
    data = dataclasses.asdict(settings.resolved())
    for key in _NOT_TRAINING:
        data.pop(key, None)
    data["styles"] = [(d, st.weight) for d, st in zip(style_digests, settings.styles)]
    data["frames"] = [(n, sequence.identity(n)) for n in sequence.numbers]
    blob = json.dumps(data, sort_keys=True, default=list).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# -- the model file ----------------------------------------------------------------------
@dataclass
class Model:
    """A trained network and what it was trained for."""

    network: StyleNetwork
    styles: list[dict]  # [{"path", "weight", "digest"}] in the network's style order
    settings: dict  # the training settings (JSON-ready)
    steps: int
    fingerprint: str  # training_fingerprint of the run that made it
    digest: str  # of the file: part of a stylized frame's fingerprint
    engine_version: str


def model_file(network: StyleNetwork, styles: list[dict], settings: Settings, steps: int,
               fingerprint: str) -> dict:
    """The final model as plain tensors, numbers and strings (weights_only-loadable)."""
    return {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION,
            "engine_version": __version__, "config": network.config.to_dict(),
            "network": {k: v.detach().cpu() for k, v in network.state_dict().items()},
            "styles": styles, "settings": json.dumps(dataclasses.asdict(settings), default=list),
            "steps": steps, "fingerprint": fingerprint}


def load_model(path: str, device: torch.device | str = "cpu") -> Model:
    """Read a model written by `train`. FlowstyleError (naming the file and the fix) when
    it is missing, damaged, not a Flowstyle model, or from an incompatible engine."""
    retrain = "Train it again: python -m engine train SHOT --style ... --out MODEL.pt"
    if not os.path.isfile(path):
        raise FlowstyleError(f"{path}: model file not found. {retrain}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FlowstyleError(f"{path}: cannot be read as a Flowstyle model, the file is damaged "
                             f"({str(exc).splitlines()[0][:200]}). {retrain}") from None
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise FlowstyleError(f"{path}: not a Flowstyle network model. {retrain}")
    if data.get("format_version") != MODEL_FORMAT_VERSION:
        raise FlowstyleError(
            f"{path}: written by Flowstyle engine {data.get('engine_version', '?')} (model format "
            f"{data.get('format_version')}); this engine ({__version__}) reads model format "
            f"{MODEL_FORMAT_VERSION} only. {retrain}")
    try:
        network = StyleNetwork(NetworkConfig.from_dict(data["config"]))
        network.load_state_dict(data["network"])
        styles = [dict(st) for st in data["styles"]]
        settings = json.loads(data["settings"])
    except Exception as exc:
        raise FlowstyleError(f"{path}: the model is damaged ({exc}). {retrain}") from None
    return Model(network.to(device).eval().requires_grad_(False), styles, settings,
                 int(data["steps"]), str(data["fingerprint"]), file_digest(path),
                 str(data["engine_version"]))


def model_is(path: str, fingerprint: str, steps: int) -> bool:
    """Is the model file at `path` the finished result of the training `fingerprint`, by
    this engine version, and does its record (model.json) say so too? The add-on decides
    from the record alone (addon/model_state.py), so a model without one trains again."""
    if not os.path.isfile(path):
        return False
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        with open(record_path(path), encoding="utf-8") as f:
            record = json.load(f)
        return (data.get("fingerprint") == fingerprint and data.get("steps") == steps
                and data.get("format_version") == MODEL_FORMAT_VERSION
                and data.get("engine_version") == __version__
                and record.get("fingerprint") == fingerprint
                and record.get("model_digest") == file_digest(path))
    except Exception:
        return False


def why_train_again(model_path: str, input_path: str, settings: Settings) -> str | None:
    """Why `train` with these settings on this shot would not reuse the model at
    `model_path` (None: it is current, `train` would do nothing). The same test as
    Trainer.up_to_date, without loading VGG: for Preview Frame's use of a kept model."""
    if not os.path.isfile(model_path):
        return f"{model_path}: no trained model yet"
    try:
        s, _, digests = training_settings(settings)
        sequence = open_sequence(input_path, s.frames)
    except FlowstyleError as exc:
        return f"the shot's frames or styles cannot be read ({exc})"
    if not model_is(model_path, training_fingerprint(s, digests, sequence), s.train_steps):
        return (f"{model_path} was trained for other styles, settings or frames (or its "
                "training did not finish)")
    return None


# -- data ----------------------------------------------------------------------------------
@dataclass
class Pair:
    """Two consecutive frames at full resolution (CPU): display 1×3×H×W [0, 1] each,
    the backward flow of `current` (1×2×H×W px) and where it is reliable (1×1×H×W)."""

    previous: torch.Tensor
    current: torch.Tensor
    flow: torch.Tensor
    mask: torch.Tensor


class ShotFrames:
    """The shot's frames in display space and their motion, read once and kept while
    they fit in CACHE_BYTES (the rest are read again when drawn)."""

    def __init__(self, sequence: Sequence, use_vectors: bool, use_depth: bool,
                 view: colour.View = colour.DEFAULT_VIEW):
        self.sequence = sequence
        self.view = view  # the scene's view chain, as `stylize` sees the frames (colour.py)
        self.use_vectors = use_vectors
        self.use_depth = use_depth
        self._frames: dict[int, tuple] = {}
        self._pairs: dict[int, Pair] = {}
        self._bytes = 0

    def _keep(self, cache: dict, key: int, value, nbytes: int) -> None:
        if self._bytes + nbytes <= CACHE_BYTES:
            cache[key] = value
            self._bytes += nbytes

    def frame(self, number: int) -> tuple[torch.Tensor, np.ndarray | None, torch.Tensor | None, np.ndarray]:
        """(display 1×3×H×W, Vector pass or None, depth 1×1×H×W or None, alpha (H, W, 1))."""
        if number in self._frames:
            return self._frames[number]
        frame = self.sequence.read(number)
        display, alpha, _ = colour.to_display(frame.rgba, self.view)
        image = torch.from_numpy(display).permute(2, 0, 1)[None].contiguous()
        depth = (torch.from_numpy(frame.depth)[None, None]
                 if frame.depth is not None and self.use_depth and self.use_vectors else None)
        value = (image, frame.vectors if self.use_vectors else None, depth, alpha)
        self._keep(self._frames, number, value, image.numel() * 4 * (2 if depth is None else 3))
        return value

    def pair(self, number: int) -> Pair:
        """Frames number-1 and number. For a one-frame shot, the frame with itself."""
        if number in self._pairs:
            return self._pairs[number]
        current, vectors, depth, alpha = self.frame(number)
        if number - 1 not in self.sequence.numbers:
            zero = torch.zeros_like(current[:, :2])
            return Pair(current, current, zero, torch.ones_like(current[:, :1]))
        previous, prev_vectors, prev_depth, _ = self.frame(number - 1)
        if self.use_vectors:
            backward = flowlib.flows_from_vector_pass(vectors)[0]
            forward = flowlib.flows_from_vector_pass(prev_vectors)[1]
        else:
            a = current[0].permute(1, 2, 0).numpy()
            b = previous[0].permute(1, 2, 0).numpy()
            backward, forward = estimate_flow(a, b), estimate_flow(b, a)
        # Geometry only, no appearance test (flow.appearance_mask): a network has no memory
        # to leave a shadow trail with, and released there it painted moved shadows boldly
        # but with a ghost ratio of 1.26 against 1.06, for no less flicker (docs/tuning.md).
        mask = flowlib.reliability_mask(backward, forward, depth, prev_depth)
        # As `evaluate` measures: transparent pixels have no colour to hold steady.
        mask = mask * torch.from_numpy((alpha > 0).astype(np.float32)).permute(2, 0, 1)[None]
        value = Pair(previous, current, backward, mask)
        self._keep(self._pairs, number, value, current.numel() * 4)
        return value


def random_crop(pair: Pair, crop: int, generator: torch.Generator) -> Pair:
    """One training sample: `pair` scaled by a random factor in SCALE_RANGE (never below
    the crop), cut to crop×crop at a random place, flipped left-right half the time.
    The flow is scaled with the image and its x component flipped with it."""
    h, w = pair.current.shape[-2:]
    low = max(SCALE_RANGE[0], crop / min(h, w))
    high = max(SCALE_RANGE[1], low)
    scale = low + (high - low) * float(torch.rand((), generator=generator))
    size = (max(crop, round(h * scale)), max(crop, round(w * scale)))
    top = int(torch.randint(size[0] - crop + 1, (), generator=generator))
    left = int(torch.randint(size[1] - crop + 1, (), generator=generator))
    flip = bool(torch.rand((), generator=generator) < 0.5)

    def cut(t: torch.Tensor) -> torch.Tensor:
        t = t[..., top:top + crop, left:left + crop]
        return t.flip(-1) if flip else t

    flow = cut(flowlib.resize_flow(pair.flow, size))
    if flip:
        flow = flow * torch.tensor([-1.0, 1.0]).view(1, 2, 1, 1)
    return Pair(cut(resize(pair.previous, size)), cut(resize(pair.current, size)), flow,
                cut(resize(pair.mask, size)))


# -- training ------------------------------------------------------------------------------
class Trainer:
    """One training run. `run()` trains (or resumes) and writes the model."""

    def __init__(self, input_path: str, model_path: str, settings: Settings,
                 progress: Progress | None = None, allow_download: bool = False):
        s = self.settings = settings.resolved()  # the union of styles: training_settings below
        self.progress = progress or Progress("none")
        self.model_path = os.path.abspath(model_path)
        if s.flow not in ("auto", "vectors", "estimated"):
            raise FlowstyleError(f"unknown flow source {s.flow!r}: use auto, vectors or estimated.")
        for name in ("train_steps", "train_crop", "train_batch", "network_blocks"):
            if getattr(s, name) < (16 if name == "train_crop" else 1):
                raise FlowstyleError(f"{name.replace('_', '-')} is {getattr(s, name)}: too small.")
        self.sequence = open_sequence(input_path, s.frames)
        self.use_vectors = s.flow != "estimated" and self.sequence.has_vectors
        if s.flow == "vectors" and not self.sequence.has_vectors:
            raise FlowstyleError(f"{self.sequence.source(self.sequence.numbers[0])}: no Vector "
                                 "pass, but --flow vectors was asked for. Render with the Vector "
                                 "pass, or use --flow auto to estimate the motion.")
        s, self.style_images, self.digests = training_settings(s)
        self.settings = s
        self.fingerprint = training_fingerprint(s, self.digests, self.sequence)
        folder = os.path.dirname(self.model_path)
        try:
            os.makedirs(folder, exist_ok=True)
            probe = os.path.join(folder, f".probe_{os.getpid()}")
            open(probe, "wb").close()
            os.remove(probe)
        except OSError as exc:
            raise FlowstyleError(f"{folder}: cannot write the model there ({exc.strerror or exc}). "
                                 "Choose another --out.") from exc
        self.device = resolve_device(s.device)
        self.autocast = autocast_dtype(self.device, s.precision)
        self.vgg = VGGFeatures(list(defaults.CONTENT_LAYERS + defaults.STYLE_LAYERS), s.weights,
                               allow_download).to(self.device)
        # One Stylizer per style: the engine's own losses and Gram targets, and its weights
        # but for the style's, scaled for a network (defaults.network_style_scale).
        loss_settings = dataclasses.replace(s, style_weight=s.style_weight * s.network_style_scale)
        self.stylizers = [Stylizer(loss_settings, self.vgg, [(image, 1.0)], self.device)
                          for image, _ in self.style_images]
        self.frames = ShotFrames(self.sequence, self.use_vectors, s.use_depth,
                                 colour_view(self.sequence, s, self.progress.warning))
        numbers = self.sequence.numbers
        self.held_out = numbers[-1] if len(numbers) >= 4 else None
        trained = [n for n in numbers if n != self.held_out]
        self.pair_numbers = trained[1:] if len(trained) > 1 else trained
        self.crop = min(s.train_crop, self.sequence.height, self.sequence.width)
        self.config = NetworkConfig(len(self.style_images), tuple(s.network_channels),  # type: ignore[arg-type]
                                    s.network_blocks)

    def _autocast(self):
        return (torch.autocast(self.device.type, dtype=self.autocast) if self.autocast
                else contextlib.nullcontext())

    def style_meta(self) -> list[dict]:
        return [{"path": os.path.abspath(st.path), "weight": st.weight, "digest": d}
                for st, d in zip(self.settings.styles, self.digests)]

    def grams(self, style: int) -> dict[str, torch.Tensor]:
        """Style `style`'s Gram targets, the style image scaled to the frames' height."""
        return self.stylizers[style].style_grams((self.sequence.height, self.sequence.width))

    def loss_terms(self, network: StyleNetwork, previous: torch.Tensor, current: torch.Tensor,
                   flow: torch.Tensor | None, mask: torch.Tensor | None,
                   style: int) -> tuple[torch.Tensor, dict[str, float]]:
        """The weighted loss of one batch: previous, current B×3×h×w display [0, 1],
        flow B×2×h×w (current's backward flow), mask B×1×h×w; None: no temporal term."""
        stylizer = self.stylizers[style]
        images = torch.cat([previous, current]) if flow is not None else current
        mix = one_hot(style, self.config.styles).to(self.device)
        with self._autocast():
            output = network(images, mix).float()
        with torch.no_grad():
            target = stylizer.features(images, defaults.CONTENT_LAYERS)
        feats = stylizer.features(output)
        terms = {
            "content": sum(losses.content_loss(feats[n], target[n]) for n in defaults.CONTENT_LAYERS),
            "style": losses.style_loss(feats, self.grams(style)),
            "tv": losses.total_variation(output),
            "range": losses.out_of_range(output),
        }
        if flow is not None and mask is not None:
            n = previous.shape[0]
            warped = flowlib.warp(output[:n], flow)
            terms["temporal"] = losses.temporal_loss(output[n:], warped, mask)
        total = stylizer.weighted(terms)  # type: ignore[arg-type]
        return total, {k: float(v.detach()) for k, v in terms.items()}

    def batch(self, generator: torch.Generator) -> Pair:
        samples = []
        for _ in range(self.settings.train_batch):
            index = int(torch.randint(len(self.pair_numbers), (), generator=generator))
            samples.append(random_crop(self.frames.pair(self.pair_numbers[index]), self.crop, generator))
        return Pair(*(torch.cat([getattr(p, f.name) for p in samples]).to(self.device)
                      for f in dataclasses.fields(Pair)))

    def new_state(self) -> tuple[StyleNetwork, torch.optim.Optimizer, torch.Generator]:
        torch.manual_seed(self.settings.train_seed)
        network = StyleNetwork(self.config).to(self.device)
        optimizer = torch.optim.Adam(network.parameters(), lr=self.settings.train_lr)
        generator = torch.Generator().manual_seed(self.settings.train_seed)
        return network, optimizer, generator

    def resume(self, network: StyleNetwork, optimizer: torch.optim.Optimizer,
               generator: torch.Generator) -> int:
        """Load the checkpoint of this very run if there is one; returns the steps done."""
        path = checkpoint_path(self.model_path)
        if not os.path.isfile(path):
            return 0
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if state.get("fingerprint") != self.fingerprint:
                self.progress.warning(f"{path}: a checkpoint of other settings, styles or frames; "
                                      "training from the start (it will be replaced).")
                return 0
            network.load_state_dict(state["network"])
            optimizer.load_state_dict(state["optimizer"])
            generator.set_state(state["generator"])
            return int(state["step"])
        except Exception as exc:  # damaged by a kill mid-write cannot happen (atomic), but a
            # hand-copied or truncated file can: start over rather than fail
            self.progress.warning(f"{path}: checkpoint unreadable ({exc}); training from the start.")
            return 0

    def checkpoint(self, network: StyleNetwork, optimizer: torch.optim.Optimizer,
                   generator: torch.Generator, step: int) -> None:
        save_atomic({"format": MODEL_FORMAT + "-checkpoint", "fingerprint": self.fingerprint,
                     "step": step, "network": network.state_dict(),
                     "optimizer": optimizer.state_dict(), "generator": generator.get_state()},
                     checkpoint_path(self.model_path))
        self.progress.event("checkpoint", step=step, path=checkpoint_path(self.model_path))

    def preview(self, network: StyleNetwork, step: int) -> None:
        """Write input | output of the held-out frame (or the last) and report its loss."""
        from PIL import Image
        number = self.held_out if self.held_out is not None else self.sequence.numbers[-1]
        image = self.frames.frame(number)[0].to(self.device)
        network.eval()
        with torch.no_grad():
            with self._autocast():
                output = network(image, one_hot(0, self.config.styles).to(self.device)).float()
            output = output.clamp(0, 1)
            # The held-out loss on a crop of the training size (what the steps optimize).
            c = self.crop
            top, left = (image.shape[-2] - c) // 2, (image.shape[-1] - c) // 2
            _, terms = self.loss_terms(network, image[..., top:top + c, left:left + c],
                                       image[..., top:top + c, left:left + c], None, None, 0)
        network.train()
        side = torch.cat([image, output], dim=-1)[0].permute(1, 2, 0).cpu().numpy()
        path = preview_path(self.model_path)
        tmp = path + ".partial.png"
        Image.fromarray(np.clip(side * 255 + 0.5, 0, 255).astype(np.uint8)).save(tmp)
        os.replace(tmp, path)
        loss = sum(w * terms[k] for k, w in (("content", self.settings.content_weight),
                                              ("style", self.settings.style_weight
                                               * self.settings.network_style_scale
                                               * self.settings.style_strength)))
        self.progress.event("preview", f"step {step}: preview of frame {number} -> {path} "
                            f"(held-out content+style loss {loss:.4g})", step=step,
                            frame=number, path=path, held_out=self.held_out is not None,
                            loss=round(loss, 2))

    def up_to_date(self) -> bool:
        """True when the model file is this run's, finished: nothing to do."""
        return model_is(self.model_path, self.fingerprint, self.settings.train_steps)

    def run(self) -> dict:
        s = self.settings
        if self.up_to_date():
            self.progress.event("up_to_date", f"{self.model_path}: already trained for these "
                                "styles, settings and frames.", path=self.model_path)
            return {"steps": s.train_steps, "trained": 0, "seconds": 0.0, "out": self.model_path}
        network, optimizer, generator = self.new_state()
        start = min(self.resume(network, optimizer, generator), s.train_steps)
        temporal = s.temporal_strength != 0 and len(self.sequence.numbers) > 1
        if not self.use_vectors and temporal:
            why = "no Vector pass" if not self.sequence.has_vectors else "--flow estimated"
            self.progress.warning(f"{self.sequence.description}: {why}; estimating optical flow "
                                  "with OpenCV for the temporal loss (less exact than a render's "
                                  "Vector pass).")
        self.progress.train_start(s.train_steps, s.train_steps - start, self.model_path)
        network.train()
        started = time.perf_counter()
        history: list[dict[str, float]] = []
        for step in range(start, s.train_steps):
            began = time.perf_counter()
            style = step % self.config.styles  # the styles take turns
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, s.train_steps, s.train_lr, s.train_lr_decay)
            batch = self.batch(generator)
            loss, terms = self.loss_terms(network, batch.previous, batch.current,
                                          batch.flow if temporal else None,
                                          batch.mask if temporal else None, style)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history.append({"loss": float(loss.detach()), **terms})
            done = step + 1
            self.progress.step_done(done, time.perf_counter() - began, float(loss.detach()))
            if done % max(s.train_checkpoint_every, 1) == 0 and done < s.train_steps:
                self.checkpoint(network, optimizer, generator, done)
            if s.train_preview_every and (done % s.train_preview_every == 0 or done == s.train_steps):
                self.preview(network, done)
        self.checkpoint(network, optimizer, generator, s.train_steps)  # to train on later
        save_atomic(model_file(network, self.style_meta(), s, s.train_steps, self.fingerprint),
                    self.model_path)
        write_json_atomic(record_path(self.model_path),
                          training_record(self, file_digest(self.model_path)))
        self.progress.event("train_finished", f"flowstyle: model written: {self.model_path}",
                            steps=s.train_steps, seconds=round(time.perf_counter() - started, 2),
                            out=self.model_path)
        return {"steps": s.train_steps, "trained": s.train_steps - start,
                "seconds": time.perf_counter() - started, "out": self.model_path,
                "history": history}
