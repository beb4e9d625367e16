"""Optical flow as torch tensors: from Blender's Vector pass, warping, reliability masks.

Convention (used everywhere in the engine): a flow is N×2×H×W in pixels at the image's
resolution, channel 0 = dx (to the right), channel 1 = dy (DOWN, rows of a top-down
image). `backward_flow` of frame t sends each pixel of t to where it was in t-1;
`forward_flow` of frame t sends it to where it will be in t+1. Pixel centres are at
integer coordinates; `warp` samples with bilinear interpolation.

Blender's Vector pass (docs/vector-pass.md, verified on real renders; +Y points up there):
X, Y = position at t-1 minus position at t; Z, W = position at t minus position at t+1.
So backward = (X, -Y) and forward = (-Z, W) in our convention.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from . import defaults


def flows_from_vector_pass(vector: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Blender's Vector pass (H, W, 4) -> (backward_flow, forward_flow), each 1×2×H×W."""
    v = torch.from_numpy(np.ascontiguousarray(vector, dtype=np.float32))
    backward = torch.stack([v[..., 0], -v[..., 1]])[None]
    forward = torch.stack([-v[..., 2], v[..., 3]])[None]
    return backward, forward


def _sampling_grid(flow: torch.Tensor) -> torch.Tensor:
    """Flow N×2×H×W (pixels) -> grid_sample grid N×H×W×2 in [-1, 1] (align_corners=True)."""
    n, _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=flow.device, dtype=flow.dtype),
                            torch.arange(w, device=flow.device, dtype=flow.dtype), indexing="ij")
    x = xs + flow[:, 0]
    y = ys + flow[:, 1]
    # align_corners=True maps -1 and 1 to the CENTRES of the first and last pixels, which is
    # exactly our integer-centre convention.
    return torch.stack([2 * x / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1], dim=-1)


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward-warp: out(p) = image(p + flow(p)), bilinear; outside the frame, the border.

    image: N×C×H×W (any values); flow: N×2×H×W in pixels. To predict frame t from frame
    t-1, pass frame t-1 and frame t's backward flow.
    """
    grid = _sampling_grid(flow)
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode="border",
                         align_corners=True)


def inside_frame(flow: torch.Tensor) -> torch.Tensor:
    """N×1×H×W: 1 where p + flow(p) lands inside the frame, else 0."""
    grid = _sampling_grid(flow)
    inside = (grid.abs() <= 1.0 + 1e-6).all(dim=-1)
    return inside[:, None].to(flow.dtype)


def compose(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Chain two flows: first (a→b, on a's grid) then second (b→c, on b's grid) -> a→c."""
    return first + warp(second, first)


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resample a flow to (H, W) and rescale its vectors to the new pixel units."""
    _, _, h, w = flow.shape
    if (h, w) == tuple(size):
        return flow
    out = F.interpolate(flow, size=size, mode="bilinear", align_corners=True)
    scale = torch.tensor([(size[1] - 1) / max(w - 1, 1), (size[0] - 1) / max(h - 1, 1)],
                         device=flow.device, dtype=flow.dtype)
    return out * scale.view(1, 2, 1, 1)


def consistency_mask(backward: torch.Tensor, forward_prev: torch.Tensor) -> torch.Tensor:
    """Ruder et al. eq. (7): 1 where frame t's backward flow and frame t-1's forward flow agree.

    backward: t→t-1 on t's grid (ŵ); forward_prev: t-1→t on t-1's grid (w). Where a pixel
    of t was hidden in t-1 (disocclusion), going back and forth does not return to it.
    Returns N×1×H×W in {0, 1}.
    """
    w_tilde = warp(forward_prev, backward)
    mismatch = (w_tilde + backward).pow(2).sum(1, keepdim=True)
    scale = w_tilde.pow(2).sum(1, keepdim=True) + backward.pow(2).sum(1, keepdim=True)
    bad = mismatch > defaults.CONSISTENCY_RELATIVE * scale + defaults.CONSISTENCY_ABSOLUTE
    return (~bad).to(backward.dtype)


def motion_boundary_mask(backward: torch.Tensor) -> torch.Tensor:
    """Ruder et al. eq. (8): 0 on motion boundaries (where the flow changes sharply), else 1."""
    dx = F.pad(backward[..., :, 1:] - backward[..., :, :-1], (0, 1, 0, 0))
    dy = F.pad(backward[..., 1:, :] - backward[..., :-1, :], (0, 0, 0, 1))
    gradient = dx.pow(2).sum(1, keepdim=True) + dy.pow(2).sum(1, keepdim=True)
    magnitude = backward.pow(2).sum(1, keepdim=True)
    bad = gradient > defaults.BOUNDARY_RELATIVE * magnitude + defaults.BOUNDARY_ABSOLUTE
    return (~bad).to(backward.dtype)


def depth_mask(backward: torch.Tensor, depth: torch.Tensor, depth_prev: torch.Tensor) -> torch.Tensor:
    """0 where frame t sees a different surface than the one the flow points to in t-1.

    depth, depth_prev: N×1×H×W camera distances of frames t and t-1. A pixel whose
    warped previous depth differs by more than DEPTH_RELATIVE_TOLERANCE was occluded in
    t-1 (or sits on a silhouette, where bilinear sampling mixes two surfaces).
    """
    warped = warp(depth_prev, backward)
    bad = (warped - depth).abs() > defaults.DEPTH_RELATIVE_TOLERANCE * depth.abs()
    return (~bad).to(backward.dtype)


def appearance_mask(image: torch.Tensor, warped_previous: torch.Tensor,
                    tolerance: float) -> torch.Tensor:
    """0 where a surface the flow follows changed its look between the two frames.

    image: frame t, warped_previous: frame t-1 warped by t's backward flow, both N×3×H×W
    display [0, 1]; tolerance: display units. A render's vectors move with the surface, not
    with its shading: a shadow or highlight sliding over a still floor, or a light that
    changes, leaves the flow at zero while the colour changes. Holding such a pixel to the
    previous stylized result would keep the old shadow painted there (a trail). The
    channels' mean absolute difference is averaged over 3×3 first, so render noise alone
    does not trip it. Returns N×1×H×W in {0, 1}.
    """
    difference = (image - warped_previous).abs().mean(1, keepdim=True)
    difference = F.avg_pool2d(F.pad(difference, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return (difference <= tolerance).to(image.dtype)


def reliability_mask(backward: torch.Tensor, forward_prev: torch.Tensor,
                     depth: torch.Tensor | None = None,
                     depth_prev: torch.Tensor | None = None) -> torch.Tensor:
    """Where frame t can trust the previous frame warped by `backward`: N×1×H×W in {0, 1}.

    The product of forward–backward consistency, no motion boundary, landing inside the
    frame, and (when depths are given) the depth test.
    """
    mask = (consistency_mask(backward, forward_prev) * motion_boundary_mask(backward)
            * inside_frame(backward))
    if depth is not None and depth_prev is not None:
        mask = mask * depth_mask(backward, depth, depth_prev)
    return mask


def fit_colour_map(source: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor | None:
    """The least-squares affine colour map that best turns `source` into `target`.

    source, target: N×3×H×W (display [0, 1]); weight: N×1×H×W in [0, 1], how much each
    pixel counts in the fit. Returns N×4×3 (rows: the 3×3 matrix A, then the bias b),
    fitted in float64 (a tiny ridge keeps it defined on flat images), or None when no
    pixel has weight.
    """
    n, c, h, w = source.shape
    x = source.reshape(n, c, h * w).transpose(1, 2).double()  # N×P×3
    y = target.reshape(n, c, h * w).transpose(1, 2).double()
    sw = weight.reshape(n, h * w, 1).double()
    if float(sw.sum()) <= 0:
        return None
    design = torch.cat([x, torch.ones_like(x[..., :1])], dim=2)  # N×P×4
    normal = design.transpose(1, 2) @ (sw * design)  # N×4×4
    ridge = 1e-6 * torch.eye(c + 1, dtype=normal.dtype, device=normal.device) * sw.sum(1, keepdim=True)
    return torch.linalg.solve(normal + ridge, design.transpose(1, 2) @ (sw * y))


def apply_colour_map(image: torch.Tensor, solution: torch.Tensor, bias: bool = True) -> torch.Tensor:
    """A·image + b for a `fit_colour_map` solution (N×4×3); bias=False: A·image alone, the
    map of a colour difference."""
    n, c, h, w = image.shape
    x = image.reshape(n, c, h * w).transpose(1, 2).double()
    mapped = x @ solution[:, :c] + (solution[:, c:] if bias else 0)
    return mapped.transpose(1, 2).reshape(n, c, h, w).to(image.dtype)


def colour_transfer(source: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """`source` recoloured by the affine colour map that best turns it into `target`
    (`fit_colour_map`; weight: N×1×H×W, how much each pixel counts). Returns N×3×H×W:
    A·source + b; with no weight at all, source unchanged."""
    solution = fit_colour_map(source, target, weight)
    return source if solution is None else apply_colour_map(source, solution)


def carry_look_change(warped_result: torch.Tensor, content: torch.Tensor,
                      warped_content: torch.Tensor, changed: torch.Tensor,
                      steady: torch.Tensor) -> torch.Tensor:
    """The warped previous result, with the render's change of look carried into it where
    `changed`: warped_result + A·(content − warped_content) there.

    All images N×3×H×W display [0, 1]: warped_result, the previous stylized frame warped
    into this one; content, this frame; warped_content, the previous frame warped the same
    way. changed, steady: N×1×H×W in [0, 1], pixels on a followed surface whose look
    changed (a shadow moved over them: `appearance_mask`), and the reliable pixels whose
    look did not. A is the linear part of the affine colour map from the frame to the
    result fitted on `steady`: the painting's response to a change of colour. Why not
    repaint such pixels from scratch: the strokes would change under a moving shadow
    (popping); carried, they stay and only darken or brighten as the render does.
    """
    solution = fit_colour_map(content, warped_result, steady)
    if solution is None:
        return warped_result
    change = apply_colour_map(content - warped_content, solution, bias=False)
    return (warped_result + changed * change).clamp(0, 1)


def fill_from_content(image: torch.Tensor, reliable: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Replace the unreliable pixels of `image` by `content` in image's colours.

    image: N×3×H×W, e.g. the warped previous stylized frame; reliable: N×1×H×W in [0, 1];
    content: N×3×H×W, the current frame (display [0, 1]). The content is recoloured by
    the affine colour map fitted from content to image on the reliable pixels
    (`colour_transfer`), clipped to [0, 1], and blended in by 1 − reliable: a pixel an
    object just uncovered gets the background's own shapes and the result's palette,
    never the occluder's colours that the warp dragged there.
    """
    fresh = colour_transfer(content, image, reliable).clamp(0, 1)
    return reliable * image + (1 - reliable) * fresh


def fill_same_surface(image: torch.Tensor, reliable: torch.Tensor, flow: torch.Tensor,
                      steps: int = defaults.FILL_SAME_SURFACE_PX) -> tuple[torch.Tensor, torch.Tensor]:
    """Grow reliable pixels into unreliable ones by up to `steps` px, from neighbours that move alike.

    image: N×C×H×W (e.g. the warped previous stylized frame); reliable: N×1×H×W in [0, 1];
    flow: N×2×H×W, the frame's own motion in px. Why the motion: a neighbour that moves
    like the pixel is the same surface (the rim of a ball the mask rejected as a motion
    boundary takes the ball's paint, uncovered background takes the background's), while
    the occluder next to it moves differently and gives nothing (weight e^-d² for d px of
    motion difference). Why only a few px: grown further, the fill smears one colour
    across whole uncovered bands. Returns (image with grown pixels filled, N×1×H×W mask
    of the pixels now known: reliable > 0.5 or grown, in {0, 1}).
    """
    n, c, h, w = image.shape
    known = (reliable > 0.5).to(image.dtype)
    value = image * known

    def neighbours(t: torch.Tensor) -> torch.Tensor:
        return F.unfold(t, 3, padding=1).view(n, t.shape[1], 9, h, w)

    similar = torch.exp(-(neighbours(flow) - flow[:, :, None]).pow(2).sum(1, keepdim=True))
    for _ in range(steps):
        weight = neighbours(known) * similar
        total = weight.sum(2)
        grow = (known == 0) & (total > 0.05)
        if not bool(grow.any()):
            break
        filled = (neighbours(value) * weight).sum(2) / total.clamp_min(1e-8)
        value = torch.where(grow, filled, value)
        known = torch.where(grow, torch.ones_like(known), known)
    return torch.where(known > 0, value, image), known
