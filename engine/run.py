"""Stylizing a whole sequence: the loop that ties frames, flow, masks and the optimizer.

For each frame in order: read it, turn it to display space, get its motion to the
previous frames (Vector pass or estimated), build reliability masks, start from the warped
previous result (unreliable pixels filled from the background), optimize, and write one
RGBA EXR atomically. Every output records the run's fingerprint; a small state file per
frame (the stylized image at working size) lets an interrupted run resume bit-exactly.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import time
import dataclasses
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from . import colour, defaults, digests, exr, flow as flowlib, lock, regions as regionlib
from .defaults import Settings
from .errors import FlowstyleError, write_failed
from .check import open_device
from .estimated_flow import estimate_flow
from .frames import ExrSequence, Sequence, open_sequence
from .progress import Progress
from .stylize import (BASE_BYTES, CUDA_MARGIN, FrameStats, Stylizer, TemporalTerm,
                      autocast_dtype, available_bytes, bytes_per_pixel, estimate_peak_bytes,
                      resize)
from .vgg import VGGFeatures, weights_file as vgg_weights_file

OUTPUT_PATTERN = "flowstyle_{:04d}.exr"
STATE_DIR = ".flowstyle"  # inside the output folder: per-frame state for exact resume
ATTR_FINGERPRINT = "flowstyle.fingerprint"
ATTR_SETTINGS = "flowstyle.settings"
ATTR_INPUT = "flowstyle.input"  # identity of the input frame (frames.Sequence.identity)


def output_path(out_dir: str, number: int) -> str:
    return os.path.join(out_dir, OUTPUT_PATTERN.format(number))


def state_path(out_dir: str, number: int) -> str:
    return os.path.join(out_dir, STATE_DIR, f"state_{number:06d}.pt")


def load_style_images(settings: Settings) -> tuple[list[tuple[torch.Tensor, float]], list[str]]:
    """Read the style images: ([(1×3×H×W display [0, 1], weight)], content digests)."""
    from PIL import Image
    if not settings.styles:
        raise FlowstyleError("no style image given: pass --style painting.jpg (or several, "
                             "with weights: --style a.jpg:0.7 --style b.jpg:0.3).")
    images, digests = [], []
    for style in settings.styles:
        try:
            with open(style.path, "rb") as f:
                data = f.read()
            with Image.open(style.path) as im:
                rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        except FileNotFoundError:
            raise FlowstyleError(f"{style.path}: style image not found.") from None
        except Exception as exc:
            raise FlowstyleError(f"{style.path}: cannot be read as an image ({exc}). Use a "
                                 "PNG or JPG painting.") from exc
        if min(rgb.shape[:2]) < defaults.MIN_STYLE_SIDE:
            raise FlowstyleError(f"{style.path}: the style image is {rgb.shape[1]}x{rgb.shape[0]} px; "
                                 f"use one at least {defaults.MIN_STYLE_SIDE} px on each side (a "
                                 "smaller painting has no brush strokes left to transfer).")
        images.append((torch.from_numpy(rgb).permute(2, 0, 1)[None].contiguous(), style.weight))
        digests.append(hashlib.sha256(data).hexdigest()[:16])
    if sum(w for _, w in images) <= 0:
        raise FlowstyleError("the style weights add up to 0: give at least one a positive weight.")
    return images, digests


def load_region_styles(settings: Settings) -> tuple[list[list[tuple[torch.Tensor, float]]], list[list[str]]]:
    """Each region's style images and digests, as `load_style_images` ([] for "keep original")."""
    images: list[list[tuple[torch.Tensor, float]]] = []
    digests: list[list[str]] = []
    for region in settings.regions:
        if region.styles:
            group, group_digests = load_style_images(dataclasses.replace(settings, styles=region.styles))
        else:
            group, group_digests = [], []
        images.append(group)
        digests.append(group_digests)
    return images, digests


def check_writable(out_dir: str) -> list[str]:
    """Create `out_dir` and prove a file can be written there, before any work starts.

    Returns the folders it created (deepest last), so a run that fails before writing
    anything can remove them again (`remove_if_empty`)."""
    created = []
    head = os.path.join(out_dir, STATE_DIR)
    while head and not os.path.exists(head):
        created.append(head)
        head = os.path.dirname(head)
    created.reverse()
    try:
        os.makedirs(os.path.join(out_dir, STATE_DIR), exist_ok=True)
        os.remove(exr.new_temp_path(os.path.join(out_dir, "probe")))
    except (OSError, FlowstyleError) as exc:
        remove_if_empty(created)
        reason = getattr(exc, "strerror", None) or exc
        raise FlowstyleError(f"{out_dir}: cannot write the output folder ({reason}). "
                             "Choose another folder with --out, or fix its permissions.") from exc
    return created


def remove_if_empty(folders: list[str]) -> None:
    """Remove the folders a failed start created, deepest first, if nothing but the
    engine's own bookkeeping (the weights digest cache) is in them."""
    for folder in reversed(folders):
        try:
            for name in (digests.CACHE_NAME, digests.CACHE_NAME + ".partial"):
                if os.path.isfile(os.path.join(folder, name)):
                    os.remove(os.path.join(folder, name))
            os.rmdir(folder)
        except OSError:  # not empty, or already gone: leave it
            pass


def remove_leftovers(out_dir: str) -> None:
    """Delete the half-written files of an earlier run that was killed (SIGKILL, power
    loss): `.partial_*` beside the outputs and `*.partial` states. Only the engine writes
    these names, and only one run works in a folder at a time."""
    state_dir = os.path.join(out_dir, STATE_DIR)
    for folder, test in ((out_dir, lambda n: n.startswith(".partial_")),
                         (state_dir, lambda n: n.endswith(".partial") or n.startswith(".partial_"))):
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if test(name):
                try:
                    os.remove(os.path.join(folder, name))
                except OSError:
                    pass


def check_not_input(sequence: Sequence, input_path: str, out_dir: str) -> None:
    """Refuse an output folder whose outputs would be taken for input frames.

    With --out equal to the input folder, the first run works, then the next one finds
    render_0001.exr and flowstyle_0001.exr both claiming frame 1. Refused whenever an
    input frame lives in the output folder and the input (a folder, or a pattern that
    matches flowstyle_####.exr) would pick up the outputs, or an output would overwrite
    an input frame."""
    files = getattr(sequence, "files", None)
    if not files:
        return  # a video: one file, never named like an output
    real_out = os.path.realpath(out_dir)
    for number, path in files.items():
        folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
        if folder != real_out:
            continue
        output_name = OUTPUT_PATTERN.format(number)
        # A folder picks up every EXR in it; a pattern ('#' is one digit) what it matches.
        pattern = re.sub(r"#+", lambda m: "?" * len(m.group(0)), os.path.basename(input_path))
        picked_up = os.path.isdir(input_path) or fnmatch.fnmatch(output_name, pattern)
        if picked_up or os.path.basename(path) == output_name:
            raise FlowstyleError(f"{out_dir}: the output folder is the folder of the input frames "
                                 f"({os.path.basename(path)}): the stylized frames would be read "
                                 "as input on the next run. Choose another folder with --out, "
                                 "e.g. a 'stylized' folder beside the renders.")


def check_memory(size: tuple[int, int], device: torch.device, precision: str) -> None:
    """Refuse, with the fix, a working size whose optimization would not fit in memory.

    Large frames are fine: they are stylized at the working height and upsampled. Only a
    working height set near a 4K frame's own (--height 0 or --height 2160) can need more
    memory than the machine has; without this check the process would be killed mid-run.
    """
    free = available_bytes(device)
    precision_bytes = 2 if autocast_dtype(device, precision) else 4
    need = estimate_peak_bytes(*size, precision_bytes=precision_bytes, device_type=device.type)
    if free is None or need <= 0.9 * free:
        return
    usable = 0.9 * free / (1 + CUDA_MARGIN if device.type == "cuda" else 1)
    pixels = (usable - BASE_BYTES) / bytes_per_pixel(precision_bytes)
    fits = int((max(pixels, 0) * size[0] / size[1]) ** 0.5) // 8 * 8
    advice = (f"Lower the working height (--height {fits} fits; frames are upsampled to their "
              "own size afterwards), or free memory." if fits >= 32 else
              "Free memory or use a machine with more.")
    raise FlowstyleError(f"a working size of {size[1]}x{size[0]} needs about {need / 2**30:.1f} GB "
                         f"to optimize, but only {free / 2**30:.1f} GB is free on {device}. "
                         + advice)


def colour_view(sequence: Sequence, s: Settings, warn: Callable[[str], None]) -> colour.View:
    """The view chain VGG sees a sequence through (colour.py). EXRs are scene-linear in the
    scene's working space; PNG/JPG/video frames are sRGB display pictures already, so for
    them the sRGB curve gives back exactly what is in the file. warn: says what is not
    used or replaced (Progress.warning)."""
    if not isinstance(sequence, ExrSequence):
        if (s.working_space, s.display, s.view, s.look) != ("Linear Rec.709", "sRGB",
                                                             "Standard", "None"):
            warn(f"{sequence.description}: images and video are display pictures "
                             "already; the colour settings for scene-linear EXRs (working "
                             "space, view, look) are not used.")
        return colour.srgb_view(s.exposure, s.gamma)
    try:
        return colour.make_view(s.working_space, s.display, s.view, s.look, s.exposure,
                                s.gamma, s.ocio_config, warn)
    except ValueError as exc:
        raise FlowstyleError(f"colour management: {exc}.") from exc


@dataclass
class _Inputs:
    """One frame, ready for the loop. Tensors are full resolution on the run's device."""

    number: int
    display: torch.Tensor  # 1×3×H×W display RGB [0, 1]
    alpha: np.ndarray  # (H, W, 1)
    excess: np.ndarray  # (H, W, 3) linear amount outside [0, 1] (colour.py)
    vectors: np.ndarray | None
    depth: torch.Tensor | None  # 1×1×H×W
    regions: torch.Tensor | None = None  # 1×(1+R)×H×W region masks (regions.py), or None


def working_size(height: int, width: int, working_height: int) -> tuple[int, int]:
    """The size frames are stylized at: the frame's own if working_height is 0 or larger."""
    if working_height <= 0 or working_height >= height:
        return height, width
    return working_height, max(1, round(width * working_height / height))


class SequenceRun:
    """One run over a sequence. `run()` does the whole thing; the parts are methods so the
    benchmark and tests can look inside."""

    def __init__(self, input_path: str, out_dir: str, settings: Settings,
                 progress: Progress | None = None, allow_download: bool = False,
                 load_model: bool = True):
        # load_model=False: a run that only reads frames and writes results (the farm's
        # blend and resume checks), without the VGG weights and the memory check.
        self.settings = settings.validate().resolved()
        s = self.settings
        self.progress = progress or Progress("none")
        self.out_dir = os.path.abspath(out_dir)
        self.sequence: Sequence = open_sequence(input_path, s.frames)
        self.view = self.colour_view()
        if self.view.source != colour.SRGB_CURVE:
            s.ocio_config = self.view.source  # the config used counts, however it was found
        self.use_vectors = s.flow != "estimated" and self.sequence.has_vectors
        if s.flow == "vectors" and not self.sequence.has_vectors:
            raise FlowstyleError(f"{self.sequence.source(self.sequence.numbers[0])}: no Vector pass, "
                                 "but --flow vectors was asked for. Enable the Vector pass (View "
                                 "Layer Properties > Passes, motion blur off) and render again, "
                                 "or use --flow auto to estimate the motion.")
        check_not_input(self.sequence, input_path, self.out_dir)
        self.style_images, style_digests = load_style_images(s)
        self.region_images, region_digests = load_region_styles(s)
        if s.regions and not self.sequence.has_index:
            raise FlowstyleError(f"{self.sequence.source(self.sequence.numbers[0])}: per-object "
                                 "styles need the Object Index pass, and this render has none. "
                                 "Enable View Layer Properties > Passes > Data > Object Index "
                                 "and render again (the add-on does this when regions are set).")
        self.device = open_device(s.device)
        self._created = check_writable(self.out_dir)
        try:
            lock.refuse_if_held(self.out_dir)  # before the network loads: a quick refusal
            h, w = self.sequence.height, self.sequence.width
            self.size = working_size(h, w, s.height or 0)
            if load_model:  # first: it says what is wrong with a missing or foreign weights file
                self.vgg = VGGFeatures(list(defaults.CONTENT_LAYERS + defaults.STYLE_LAYERS),
                                       s.weights, allow_download)
                self.stylizer = Stylizer(s, self.vgg, self.style_images, self.device,
                                         self.region_images)
            self.fingerprint = s.fingerprint(style_digests, digests.weights_digest(
                vgg_weights_file(s.weights), os.path.join(self.out_dir, STATE_DIR)), region_digests)
            if load_model:
                check_memory(self.size, self.device, s.precision)
        except BaseException:
            remove_if_empty(self._created)  # a failed start leaves no empty folders behind
            raise
        self._inputs: dict[int, _Inputs] = {}
        self._backward: dict[int, torch.Tensor] = {}  # frame t -> flow t→t-1 (full res)
        self._forward: dict[int, torch.Tensor] = {}  # frame t -> flow t-1→t (full res)
        self.results: dict[int, torch.Tensor] = {}  # frame -> stylized, working size

    # -- reading -----------------------------------------------------------------------
    def colour_view(self) -> colour.View:
        """The view chain VGG sees this run's frames through (`colour_view`)."""
        return colour_view(self.sequence, self.settings, self.progress.warning)

    def inputs(self, number: int) -> _Inputs:
        if number not in self._inputs:
            frame = self.sequence.read(number)
            display, alpha, excess = colour.to_display(frame.rgba, self.view)
            depth = None
            if frame.depth is not None and self.settings.use_depth and self.use_vectors:
                depth = torch.from_numpy(frame.depth)[None, None].to(self.device)
            masks = None
            if self.settings.regions and frame.index is not None:
                masks = regionlib.region_masks(frame.index, self.settings.regions).to(self.device)
            self._inputs[number] = _Inputs(
                number, torch.from_numpy(display).permute(2, 0, 1)[None].contiguous().to(self.device),
                alpha, excess, frame.vectors, depth, masks)
            keep = max(self.settings.long_term, default=1) + 1
            for old in [n for n in self._inputs if n < number - keep]:
                del self._inputs[old]
        return self._inputs[number]

    def flows(self, number: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(backward flow of `number`, forward flow of number-1 toward it), full res."""
        if number not in self._backward:
            cur, prev = self.inputs(number), self.inputs(number - 1)
            if self.use_vectors:
                self._backward[number] = flowlib.flows_from_vector_pass(cur.vectors)[0].to(self.device)
                self._forward[number] = flowlib.flows_from_vector_pass(prev.vectors)[1].to(self.device)
            else:
                a = cur.display[0].permute(1, 2, 0).cpu().numpy()
                b = prev.display[0].permute(1, 2, 0).cpu().numpy()
                self._backward[number] = estimate_flow(a, b).to(self.device)
                self._forward[number] = estimate_flow(b, a).to(self.device)
            keep = max(self.settings.long_term, default=1) + 1
            for old in [n for n in self._backward if n < number - keep]:
                del self._backward[old], self._forward[old]
        return self._backward[number], self._forward[number]

    # -- motion --------------------------------------------------------------------------
    def temporal_terms(self, number: int) -> tuple[list[TemporalTerm], torch.Tensor | None]:
        """Temporal terms of frame `number` and the flow to its previous frame (working size).

        For each look-back j (Ruder's long-term J): the flow t→t-j composed from one-frame
        flows, its reliability mask (with the forward flow composed the other way), and
        the previous stylized result warped by it. Each pixel is held to the nearest
        earlier frame that saw it: mask_j minus the masks of nearer frames, floored at 0.
        """
        first = self.sequence.numbers[0]
        look_back = set(self.settings.long_term)
        terms: list[TemporalTerm] = []
        covered = None
        backward_1 = None
        cur = self.inputs(number)
        backward = forward = None  # t→t-k on t's grid, t-k→t on t-k's grid, grown by one each k
        for k in range(1, max(look_back, default=0) + 1):
            if number - k < first or (number - k) not in self.results:
                break
            step_back, step_forward = self.flows(number - k + 1)  # t-k+1→t-k, t-k→t-k+1
            backward = step_back if backward is None else flowlib.compose(backward, step_back)
            forward = step_forward if forward is None else flowlib.compose(step_forward, forward)
            if k not in look_back:
                continue
            prev = self.inputs(number - k)
            mask = flowlib.reliability_mask(backward, forward, cur.depth, prev.depth)
            own = mask if covered is None else (mask - covered).clamp_min(0)
            covered = mask if covered is None else torch.maximum(covered, mask)
            small_flow = flowlib.resize_flow(backward, self.size)
            if k == 1:
                backward_1 = small_flow
            warped = flowlib.warp(self.results[number - k], small_flow)
            # Where a shadow or highlight moved over a followed surface, hold the pixel to
            # the previous result with the render's change of look carried in, not to the
            # old look (a shadow trail) nor to nothing (strokes repainted: popping).
            warped_content = flowlib.warp(prev.display, backward)
            look = flowlib.appearance_mask(cur.display, warped_content,
                                           self.settings.appearance_tolerance)
            if bool((look < 1).any()):
                warped = flowlib.carry_look_change(
                    warped, resize(cur.display, self.size), resize(warped_content, self.size),
                    resize(mask * (1 - look), self.size), resize(mask * look, self.size))
            terms.append(TemporalTerm(warped, resize(own, self.size)))
        return terms, backward_1

    def initial_image(self, content: torch.Tensor, terms: list[TemporalTerm],
                      backward_1: torch.Tensor | None) -> torch.Tensor:
        """Warm start: the warped previous results where reliable, the current frame elsewhere.

        Pixels no earlier frame saw (what a moving object uncovers, what enters the frame)
        must not start from the warped previous result: there it holds the occluder's
        colours, the temporal term is off, and a few iterations do not repaint them (a
        dark ghost trails the object). The reliable paint first grows a few px into them
        from neighbours of the same surface (flow.fill_same_surface: the rim of a moving
        ball keeps the ball's paint); the rest starts from the content recoloured by the
        global colour map that turns it into the warped result (flow.fill_from_content):
        the frame's own shapes in the painting's palette, for the optimizer to paint.
        """
        if not terms:
            return content
        known = sum(t.mask for t in terms)
        image = sum(t.mask * t.warped for t in terms) / known.clamp_min(1e-6)
        motion = backward_1 if backward_1 is not None else torch.zeros_like(content[:, :2])
        grown, grown_known = flowlib.fill_same_surface(image, known, motion)
        return flowlib.fill_from_content(grown, torch.maximum(known.clamp(0, 1), grown_known), content)

    # -- resume --------------------------------------------------------------------------
    def finished(self, number: int) -> bool:
        """Is the output of `number` there, made with these settings from this input, and
        intact? The pixels are read back and checked against the digest recorded when the
        frame was written: a frame truncated or damaged since is redone, with a warning."""
        path = output_path(self.out_dir, number)
        if not os.path.isfile(path):
            return False
        attributes = exr.read_attributes(path)
        if not (attributes.get(ATTR_FINGERPRINT) == self.frame_fingerprint(number)
                and attributes.get(ATTR_INPUT) == self.sequence.identity(number)):
            return False
        try:
            exr.read_rgba(path, verify=True)
        except FlowstyleError as exc:
            self.progress.warning(f"frame {number}: {exc} Stylizing it again.")
            return False
        return True

    def frame_fingerprint(self, number: int) -> str:
        """What frame `number`'s output records: the run's fingerprint and, when the style
        strength is keyframed, that frame's strength."""
        return self.settings.frame_fingerprint(self.fingerprint, number)

    def load_state(self, number: int) -> torch.Tensor:
        path = state_path(self.out_dir, number)
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
            if state["fingerprint"] == self.frame_fingerprint(number) and tuple(state["image"].shape[-2:]) == self.size:
                for key, scale in state.get("scales", {}).items():
                    h, w = (int(v) for v in key.split("x"))
                    self.stylizer.scales.setdefault((h, w), float(scale))
                return state["image"]
        except Exception:  # noqa: BLE001 - missing, truncated or foreign: rebuilt below
            pass
        # The state is gone (deleted by hand?): rebuild it, approximately, from the output.
        self.progress.warning(f"frame {number}: no resume state in {os.path.dirname(path)}; "
                              "continuing from the written frame (the next frames may differ "
                              "slightly from an uninterrupted run).")
        rgba = exr.read_rgba(output_path(self.out_dir, number))
        display = torch.from_numpy(colour.to_display(rgba, self.view)[0]).permute(2, 0, 1)[None]
        return resize(display.to(self.device), self.size)

    def save_state(self, number: int, image: torch.Tensor) -> None:
        path = state_path(self.out_dir, number)
        tmp = exr.new_temp_path(path, ".pt")  # the umask's mode, like the outputs
        scales = {f"{h}x{w}": v for (h, w), v in self.stylizer.scales.items()}
        try:
            try:
                torch.save({"fingerprint": self.frame_fingerprint(number), "image": image.cpu(),
                            "scales": scales}, tmp)
                os.replace(tmp, path)
            except Exception as exc:  # a full disk: torch says "unexpected pos 832 vs 726"
                raise write_failed(path, exc) from exc
        except BaseException:  # also an interrupt: leave no half-written state behind
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        keep = max(self.settings.long_term, default=1)
        for name in os.listdir(os.path.dirname(path)):
            if name.startswith("state_") and name.endswith(".pt") and int(name[6:12]) < number - keep:
                os.remove(os.path.join(os.path.dirname(path), name))

    # -- the loop ------------------------------------------------------------------------
    def write(self, number: int, image: torch.Tensor) -> str:
        cur = self.inputs(number)
        # The stylization is a change measured at the working size, upsampled and added to
        # the full-size frame: an unchanged pixel is the render itself at any working size.
        content = resize(cur.display, self.size)
        full = (cur.display + resize(image - content, tuple(cur.display.shape[-2:]))).clamp(0, 1)
        display = full[0].permute(1, 2, 0).cpu().numpy()
        render = cur.display[0].permute(1, 2, 0).cpu().numpy()
        if self.settings.preserve_colour:
            display = colour.keep_chroma(display, render)
        rgba = colour.to_linear(display, cur.alpha, cur.excess, self.view, render)
        if cur.regions is not None:
            keep = regionlib.keep_original_mask(cur.regions, self.settings.regions)
            if keep is not None:  # "keep original" objects: the render's own pixels, exactly
                original = self.sequence.read(number).rgba
                rgba = keep * original + (1 - keep) * rgba
        settings = asdict(self.settings)
        settings["input"] = self.sequence.source(number)
        path = output_path(self.out_dir, number)
        exr.write_rgba(path, rgba, {ATTR_FINGERPRINT: self.frame_fingerprint(number),
                                    ATTR_INPUT: self.sequence.identity(number),
                                    ATTR_SETTINGS: json.dumps(settings, default=list),
                                    **colour.header_attributes(self.view)})
        return path

    def stylize_frame(self, number: int):
        s = self.settings
        cur = self.inputs(number)
        content = resize(cur.display, self.size)
        if s.strength_at(number) == 0:
            return content, FrameStats()  # no style: the render itself (defaults.py)
        independent = s.temporal_strength == 0
        terms, backward_1 = ([], None) if independent else self.temporal_terms(number)
        self.stylizer.style_strength = s.strength_at(number)
        masks = None if cur.regions is None else resize(cur.regions, self.size)
        if terms:
            init = self.initial_image(content, terms, backward_1)
            return self.stylizer.stylize(content, init, terms, s.iterations, pyramid=False,
                                         masks=masks)
        return self.stylizer.stylize(content, content, [], s.first_iterations, pyramid=True,
                                     masks=masks)

    def run(self) -> dict:
        """Stylize every frame not finished yet, holding the output folder's lock."""
        try:
            with lock.OutputLock(self.out_dir, self.progress.warning):
                return self._run()
        except BaseException:
            remove_if_empty(self._created)  # failed before its first frame: no empty folders
            raise

    def _run(self) -> dict:
        remove_leftovers(self.out_dir)  # a killed run's half files (we hold the lock now)
        numbers = self.sequence.numbers
        resume = 0
        while resume < len(numbers) and self.finished(numbers[resume]):
            resume += 1
        if resume and resume < len(numbers) and self.settings.temporal_strength != 0:
            # Every result the remaining frames look back to, not only the next one's:
            # frame k+1 reaches k+1-4 when frame k needed only k-1, k-2 and k-4.
            # The newest state goes first: its L-BFGS scales are the ones an unbroken run
            # would have now (load_state keeps the first it sees).
            for back in range(1, max(self.settings.long_term, default=1) + 1):
                if resume - back >= 0:
                    number = numbers[resume - back]
                    self.results[number] = self.load_state(number)
        self.progress.start(len(numbers), len(numbers) - resume, self.out_dir)
        for number in numbers[:resume]:
            self.progress.frame_skipped(number, "resumed")
        if not self.use_vectors and len(numbers) > 1:
            why = "no Vector pass" if not self.sequence.has_vectors else "--flow estimated"
            self.progress.warning(f"{self.sequence.description}: {why}; estimating optical flow "
                                  "with OpenCV (slower and less exact than a render's Vector "
                                  "pass: render with the Vector pass on for exact motion).")
        started = time.perf_counter()
        for number in numbers[resume:]:
            image, stats = self.stylize_frame(number)
            self.results[number] = image
            keep = max(self.settings.long_term, default=1)
            for old in [n for n in self.results if n < number - keep]:
                del self.results[old]
            self.save_state(number, image)
            path = self.write(number, image)
            self.progress.frame_done(number, stats.seconds, path, iterations=stats.iterations,
                                     loss=round(stats.loss_end, 4))
        self.progress.finished(self.out_dir)
        return {"frames": len(numbers), "stylized": len(numbers) - resume,
                "seconds": time.perf_counter() - started, "out": self.out_dir}
