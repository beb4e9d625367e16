"""Measuring a result: temporal stability against the true motion, style and content loss.

Warping error (Lai et al. 2018): for each pair of consecutive frames,
    E = Σ M·(O_t − warp(O_{t−1}))² / Σ M     over pixels and channels,
in display space [0, 1] through the run's own view (its recorded colour settings: what
the artist sees, and what the style was fitted in), with M the reliability mask of the true motion (the Vector
pass) times "has alpha". The same number for the input render is its noise floor
(sampling noise, shading changes): a stable stylization comes close to it. The "steady"
pair of numbers leaves out pixels whose look changed on a followed surface (a moved
shadow: flow.appearance_mask), where the output should change too: flicker alone.

Two defects the warping error cannot see are measured directly:
* ghost ratio: after the best global colour map from input to output, how far the output
  is from the mapped input on pixels the motion uncovered (mask-rejected), relative to
  the same on reliable pixels. A dark trail of the occluder's colours behind a moving
  object scores well above 1; uncovered pixels painted like the rest score about 1.
  Uncovered pixels lie on the object's outline, where any stylization departs from the
  colour map more; the edge-matched ratio compares them with reliable pixels as full of
  edges instead (ghost_ratio_matched), so a method that paints outlines boldly is not
  mistaken for one that leaves trails.
* edge score: how much the outer rows and columns differ from their inner neighbours,
  relative to the same statistic inside the frame. A bright rim scores well above 1.
* shading follow: on pixels whose surface the vectors follow but whose look changed (a
  shadow or highlight moved over it: flow.appearance_mask), the output's change over the
  input's. Near 0: the output kept the old look there (a shadow trail); a stylization of
  each frame on its own scores about 0.3 on the crossing shot.
* edge band: the same question for tone a few pixels deep: how far the mean of the outer
  8 rows (columns) is from the mean of the next 8, relative to neighbouring 8-px bands
  inside. A dark or bright band along an edge, wider than the rim the edge score sees,
  scores well above 1.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable

import numpy as np
import torch

from . import colour, defaults, exr, flow as flowlib, losses
from .defaults import Settings, StyleImage
from .errors import FlowstyleError
from .check import open_device
from .estimated_flow import estimate_flow
from .frames import Sequence, open_sequence
from .pairs import matched_frames
from .run import ATTR_SETTINGS, colour_view, load_style_images, output_path, working_size
from .stylize import Stylizer, resize
from .vgg import VGGFeatures


def _display(rgba: np.ndarray, view: colour.View = colour.DEFAULT_VIEW) -> tuple[torch.Tensor, torch.Tensor]:
    display, alpha, _ = colour.to_display(rgba, view)
    return (torch.from_numpy(display).permute(2, 0, 1)[None],
            torch.from_numpy((alpha > 0).astype(np.float32)).permute(2, 0, 1)[None])


GHOST_MIN_PIXELS = 0.002  # a pair counts for the ghost ratio when at least this fraction
# of the frame (and 16 pixels) was uncovered: fewer pixels make a noisy ratio
GHOST_MATCH_NEIGHBOURS = 64  # reliable pixels of nearest edginess per uncovered pixel
GHOST_EDGE_WINDOW = 9  # px: the neighbourhood edginess is measured over
EDGE_BAND = 3  # outer rows/columns the edge score looks at (zero padding spoils 1-3 px)
TONE_BAND = 8  # px: the bands edge_band compares (the network's edge band was 6-8 px deep)


def colour_map_residual(source: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-pixel residual of target after the least-squares affine colour map from source.

    source, target: 1×3×H×W display [0, 1]; weight: 1×1×H×W in {0, 1}, the pixels the map
    is fitted on. The map is 3×3 plus a bias (target ≈ A·source + b), fitted once for the
    whole frame, so a global colour change (a painting's palette) costs nothing and only
    local departures remain. Returns 1×1×H×W: the RMS over channels of target − map(source).
    """
    mapped = flowlib.colour_transfer(source, target, weight)
    return (target - mapped).pow(2).mean(1, keepdim=True).sqrt()


def ghost_ratio(source: torch.Tensor, target: torch.Tensor, reliable: torch.Tensor,
                valid: torch.Tensor) -> float | None:
    """Colour residual on uncovered pixels divided by the residual on reliable ones.

    source: the input frame t, target: the output frame t (1×3×H×W display [0, 1]);
    reliable: 1×1×H×W, the reliability mask of the true motion t→t−1 (0 where the
    previous frame did not see the pixel); valid: 1×1×H×W, pixels that count (alpha > 0).
    Returns None when fewer than GHOST_MIN_PIXELS of the frame were uncovered.
    """
    sets = _uncovered_and_kept(reliable, valid)
    if sets is None:
        return None
    uncovered, kept = sets
    residual = colour_map_residual(source, target, valid)
    return float(residual[uncovered].mean() / residual[kept].mean().clamp_min(1e-8))


def shading_follow(source: torch.Tensor, target: torch.Tensor, warped_source: torch.Tensor,
                   warped_target: torch.Tensor, reliable: torch.Tensor,
                   valid: torch.Tensor) -> tuple[float, float] | None:
    """How much the output changes where the input's look changed on a followed surface.

    source, target: input and output frame t; warped_source, warped_target: frames t−1
    warped by t's backward flow (all 1×3×H×W display [0, 1]); reliable, valid: as in
    `ghost_ratio`. Pixels: reliable, valid, and failing flow.appearance_mask at the
    default tolerance. Returns (Σ output change / Σ input change over them, their share of
    the frame), or None when fewer than GHOST_MIN_PIXELS of the frame changed so.
    """
    changed = ((flowlib.appearance_mask(source, warped_source, Settings.appearance_tolerance) < 0.5)
               & (reliable >= 0.5) & (valid > 0.5))
    if int(changed.sum()) < max(16, GHOST_MIN_PIXELS * valid.numel()):
        return None
    source_change = (source - warped_source).abs().mean(1, keepdim=True)[changed].sum()
    target_change = (target - warped_target).abs().mean(1, keepdim=True)[changed].sum()
    return float(target_change / source_change.clamp_min(1e-8)), float(changed.float().mean())


def _uncovered_and_kept(reliable: torch.Tensor, valid: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Boolean 1×1×H×W masks of the uncovered and the reliable valid pixels; None when
    too few pixels were uncovered (GHOST_MIN_PIXELS) or none is reliable."""
    uncovered = (reliable < 0.5) & (valid > 0.5)
    kept = (reliable >= 0.5) & (valid > 0.5)
    if int(uncovered.sum()) < max(16, GHOST_MIN_PIXELS * valid.numel()) or not bool(kept.any()):
        return None
    return uncovered, kept


def edginess(image: torch.Tensor, window: int = GHOST_EDGE_WINDOW) -> torch.Tensor:
    """How much edge surrounds each pixel: N×C×H×W → N×1×H×W, the mean over a window×window
    neighbourhood of the absolute differences to the right and lower neighbours (averaged
    over channels; 0 on flat areas). A neighbourhood, not the pixel alone, because a
    stylization changes the pixels near an edge too (strokes, halos).
    """
    dx = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(1, keepdim=True)
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(1, keepdim=True)
    local = torch.nn.functional.pad(dx, (0, 1)) + torch.nn.functional.pad(dy, (0, 0, 0, 1))
    return torch.nn.functional.avg_pool2d(local, window, 1, window // 2, count_include_pad=False)


def ghost_ratio_matched(source: torch.Tensor, target: torch.Tensor, reliable: torch.Tensor,
                        valid: torch.Tensor, neighbours: int = GHOST_MATCH_NEIGHBOURS) -> float | None:
    """ghost_ratio against reliable pixels as full of edges as the uncovered ones.

    Pixels a moving object uncovers lie along its outline, so they hold far more edges
    than the frame as a whole (2-3x on the demo shot), and any stylization departs from a
    global colour map more on edges than on flat areas. That alone lifts ghost_ratio above
    1 with no trail at all: a per-frame network, which never sees the previous frame,
    scores 1.2 on the demo shot. Here each uncovered pixel is compared with the mean
    residual of the `neighbours` reliable pixels nearest to it in edginess (the input's
    local contrast), so what is left is what the outline cannot explain: a trail still
    scores well above 1. Same arguments and None as ghost_ratio.
    """
    sets = _uncovered_and_kept(reliable, valid)
    if sets is None:
        return None
    uncovered, kept = sets
    residual = colour_map_residual(source, target, valid)
    edges = edginess(source)
    kept_edges, order = edges[kept].double().sort()
    sums = torch.cat([torch.zeros(1, dtype=torch.float64), residual[kept].double()[order].cumsum(0)])
    k = min(neighbours, kept_edges.numel())
    nearest = torch.searchsorted(kept_edges, edges[uncovered].double())
    low = (nearest - k // 2).clamp(0, kept_edges.numel() - k)
    expected = ((sums[low + k] - sums[low]) / k).mean()
    return float(residual[uncovered].double().mean() / expected.clamp_min(1e-8))


def edge_score(image: torch.Tensor, band: int = EDGE_BAND) -> float:
    """How unlike the interior the frame's outer rows and columns are (≤ 1: clean edges).

    image: N×C×H×W (any units). The statistic is the mean absolute difference between
    a row (column) and its inner neighbour. Border: rows 0..band−1 against rows 1..band
    at the top, likewise at the bottom, left and right. Interior: every neighbouring pair
    at least `band` pixels from the edge. Returns border / interior.
    """
    h, w = image.shape[-2:]
    b = band
    if h < 2 * b + 4 or w < 2 * b + 4:
        raise ValueError(f"image {w}x{h} is too small for an edge band of {b} px")
    rows = (image[..., 1:, :] - image[..., :-1, :]).abs()  # pair (i, i+1) at index i
    cols = (image[..., :, 1:] - image[..., :, :-1]).abs()
    border = torch.cat([rows[..., :b, b:w - b].flatten(), rows[..., h - 1 - b:, b:w - b].flatten(),
                        cols[..., b:h - b, :b].flatten(), cols[..., b:h - b, w - 1 - b:].flatten()])
    interior = torch.cat([rows[..., b:h - 1 - b, b:w - b].flatten(),
                          cols[..., b:h - b, b:w - 1 - b].flatten()])
    return float(border.mean() / interior.mean().clamp_min(1e-8))
def edge_band(image: torch.Tensor, band: int = TONE_BAND) -> float:
    """How unlike its inner neighbour the frame's outer band is in tone (about 1: clean).

    image: N×C×H×W (any units). Rows are averaged across the frame (columns down it) into
    a profile; for each side, the mean of the outer `band` rows (columns) is compared with
    the mean of the next `band`: the absolute difference, per channel. Interior: the same
    difference for every pair of neighbouring bands not touching the outer one. Returns
    border / interior.
    """
    h, w = image.shape[-2:]
    if min(h, w) < 4 * band:
        raise ValueError(f"image {w}x{h} is too small for tone bands of {band} px")
    border, interior = [], []
    for profile in (image.mean(dim=-1), image.mean(dim=-2)):  # N×C×H rows, N×C×W columns
        means = torch.nn.functional.avg_pool1d(profile.double(), band, stride=1)
        diff = (means[..., :-band] - means[..., band:]).abs()  # bands [i, i+b) vs [i+b, i+2b)
        border += [diff[..., 0].flatten(), diff[..., -1].flatten()]
        interior.append(diff[..., band:diff.shape[-1] - band].flatten())
    return float(torch.cat(border).mean() / torch.cat(interior).mean().clamp_min(1e-8))


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def recorded_settings(path: str) -> Settings:
    """The settings a Flowstyle output frame was made with (defaults if not recorded)."""
    raw = exr.read_attributes(path).get(ATTR_SETTINGS)
    s = Settings()
    if raw:
        data = json.loads(raw)
        for key, value in data.items():
            if key == "styles":
                s.styles = [StyleImage(**st) for st in value]
            elif hasattr(s, key) and key not in ("frames",):
                setattr(s, key, tuple(value) if isinstance(value, list) else value)
    return s


def evaluate(input_path: str, out_dir: str, height: int | None = None, device: str = "auto",
             styles: list[StyleImage] | None = None, perceptual: bool = True,
             allow_mismatch: bool = False, warn: Callable[[str], None] = _warn) -> dict:
    """Compare an output folder with its input sequence; returns a JSON-ready dict.

    height: working height for the VGG losses (default: the run's own). styles: the
    style images for the style loss (default: those recorded in the output frames).
    perceptual=False: warping errors only, without the VGG losses (the farm's seam score).
    A pair that is not one (another scene's output, other sizes) is refused, a partial
    one warned about (pairs.matched_frames); allow_mismatch accepts moved renders.
    """
    sequence = open_sequence(input_path)
    numbers = matched_frames(sequence, input_path, out_dir, warn, allow_mismatch)
    settings = recorded_settings(output_path(out_dir, numbers[0]))
    if styles:
        settings.styles = styles
    settings = settings.resolved()
    use_vectors = sequence.has_vectors
    dev = open_device(device)
    view = measuring_view(sequence, settings, warn)

    size = working_size(sequence.height, sequence.width,
                        settings.height if height is None else height)
    per_pair, input_pair, ghosts, edges, input_edges = [], [], [], [], []
    bands: list[float] = []
    input_bands: list[float] = []
    ghosts_matched: list = []
    follows: list[tuple[float, float]] = []
    steady_pair: list[float] = []
    steady_input_pair: list[float] = []
    small_pairs = []  # (input, output) at the working size, for the VGG losses below
    prev = None
    for n in numbers:
        frame = sequence.read(n)
        out_rgba = exr.read_rgba(output_path(out_dir, n))
        if out_rgba.shape[:2] != frame.rgba.shape[:2]:
            raise FlowstyleError(f"{output_path(out_dir, n)}: output is {out_rgba.shape[1]}x"
                                 f"{out_rgba.shape[0]}, input frame {n} is {frame.rgba.shape[1]}x"
                                 f"{frame.rgba.shape[0]}: not the output of this input.")
        in_display, has_alpha = _display(frame.rgba, view)
        out_display, _ = _display(out_rgba, view)
        small_pairs.append((resize(in_display, size), resize(out_display, size)))
        edges.append(edge_score(out_display))
        input_edges.append(edge_score(in_display))
        if min(in_display.shape[-2:]) >= 4 * TONE_BAND:
            bands.append(edge_band(out_display))
            input_bands.append(edge_band(in_display))
        current = (n, frame, in_display, out_display, has_alpha)
        if prev is not None and prev[0] == n - 1:
            _, pframe, pin, pout, _ = prev
            if use_vectors:
                backward = flowlib.flows_from_vector_pass(frame.vectors)[0]
                forward = flowlib.flows_from_vector_pass(pframe.vectors)[1]
            else:
                a, b = in_display[0].permute(1, 2, 0).numpy(), pin[0].permute(1, 2, 0).numpy()
                backward, forward = estimate_flow(a, b), estimate_flow(b, a)
            depth = prev_depth = None
            if frame.depth is not None and pframe.depth is not None:
                depth = torch.from_numpy(frame.depth)[None, None]
                prev_depth = torch.from_numpy(pframe.depth)[None, None]
            mask = flowlib.reliability_mask(backward, forward, depth, prev_depth) * has_alpha
            warped_in, warped_out = flowlib.warp(pin, backward), flowlib.warp(pout, backward)
            per_pair.append(losses.warping_error(out_display, warped_out, mask))
            input_pair.append(losses.warping_error(in_display, warped_in, mask))
            # On surfaces whose look did not change either (no shadow moved over them):
            # flicker alone, where a moved shadow's change is not counted.
            steady = mask * flowlib.appearance_mask(in_display, warped_in, Settings.appearance_tolerance)
            steady_pair.append(losses.warping_error(out_display, warped_out, steady))
            steady_input_pair.append(losses.warping_error(in_display, warped_in, steady))
            shading = shading_follow(in_display, out_display, warped_in, warped_out, mask, has_alpha)
            if shading is not None:
                follows.append(shading)
            ghost = ghost_ratio(in_display, out_display, mask, has_alpha)
            if ghost is not None:
                ghosts.append(ghost)
                ghosts_matched.append(ghost_ratio_matched(in_display, out_display, mask, has_alpha))
        prev = current

    report: dict = {
        "input": input_path, "output": os.path.abspath(out_dir), "frames": len(numbers),
        "pairs": len(per_pair), "flow": "vectors" if use_vectors else "estimated",
        "view": view.description,  # what every measure below sees the frames through
        "warping_error": {
            "output": float(np.mean(per_pair)) if per_pair else None,
            "input": float(np.mean(input_pair)) if input_pair else None,
            "output_per_pair": [round(x, 6) for x in per_pair],
            # The same on reliable pixels whose look did not change (flow.appearance_mask):
            # a moved shadow that the output rightly follows is not counted as flicker.
            "output_steady": float(np.mean(steady_pair)) if steady_pair else None,
            "input_steady": float(np.mean(steady_input_pair)) if steady_input_pair else None,
        },
        # Uncovered vs reliable pixels' colour residual (about 1: no ghost trails); None
        # when no pair uncovered enough pixels to tell.
        "ghost_ratio": {
            "output": float(np.mean(ghosts)) if ghosts else None,
            "pairs": len(ghosts),
            "output_per_pair": [round(x, 3) for x in ghosts],
            # The same against reliable pixels as full of edges as the uncovered ones
            # (ghost_ratio_matched): what is left is a trail, not the outline's edges.
            "edge_matched": float(np.mean(ghosts_matched)) if ghosts_matched else None,
            "edge_matched_per_pair": [round(x, 3) for x in ghosts_matched],
        },
        # Output change over input change where a followed surface changed its look
        # (shading_follow; near 0: a shadow trail); None when no pair had such pixels.
        "shading_follow": {
            "output": float(np.mean([f for f, _ in follows])) if follows else None,
            "pairs": len(follows),
            "pixels": float(np.mean([c for _, c in follows])) if follows else None,
        },
        # Outer rows/columns vs the interior (≤ 1: clean frame edges).
        "edge_score": {"output": float(np.mean(edges)), "input": float(np.mean(input_edges))},
        # Outer 8-px bands' tone vs neighbouring bands inside (about the input's: no dark
        # or bright band along the edges); None for frames under 32 px.
        "edge_band": {"output": float(np.mean(bands)) if bands else None,
                      "input": float(np.mean(input_bands)) if input_bands else None},
    }
    if perceptual:
        report.update(perceptual_losses(small_pairs, settings, dev))
    return report


def measuring_view(sequence: Sequence, settings: Settings, warn: Callable[[str], None]) -> colour.View:
    """The view the run stylized through (its recorded colour settings): the pictures the
    artist judges, and the ones the style was fitted in. The sRGB curve, said via `warn`,
    when that view cannot be rebuilt here (a config on another machine)."""
    try:
        return colour_view(sequence, settings, warn)
    except FlowstyleError as exc:
        warn(f"{exc} Measuring through the sRGB curve instead.")
        return colour.srgb_view(settings.exposure, settings.gamma)


def perceptual_losses(pairs: list[tuple[torch.Tensor, torch.Tensor]], settings: Settings,
                      device: torch.device) -> dict:
    """Mean unweighted style and content loss of the outputs.

    pairs: (input, output) display images, 1×3×H×W at the working size (each frame is
    read once, by `evaluate`)."""
    vgg = VGGFeatures(list(defaults.CONTENT_LAYERS + defaults.STYLE_LAYERS), settings.weights)
    images, _ = load_style_images(settings)
    stylizer = Stylizer(settings, vgg, images, device)
    size = tuple(pairs[0][0].shape[-2:])
    style, content = [], []
    with torch.no_grad():
        for inp, out in pairs:
            inp, out = inp.to(device), out.to(device)
            content_features = {k: v for k, v in stylizer.features(inp).items()
                                if k in defaults.CONTENT_LAYERS}
            terms = stylizer.losses(out, content_features, stylizer.style_grams(size), [])
            style.append(float(terms["style"]))
            content.append(float(terms["content"]))
    return {"style_loss": float(np.mean(style)), "content_loss": float(np.mean(content)),
            "loss_height": size[0], "styles": [st.path for st in settings.styles]}
