"""The losses of Gatys et al. 2016 and Ruder et al. 2016, as pure functions.

Images are display-space RGB in [0, 1], N×3×H×W; features N×C×h×w. Every loss is a mean,
so its size does not depend on the resolution (the same weights work at any size).
"""

from __future__ import annotations

import torch


class _Gram(torch.autograd.Function):
    """Gram matrix with a hand-written backward.

    autograd's backward of F·Fᵀ is two batched matmuls of the full feature map plus a
    strided add, and on the CPU it cost 4-8x the forward (28% of an evaluation in bf16).
    Because G is symmetric, dL/dF = (dL/dG + dL/dGᵀ)·F is one matmul, run in the
    features' own precision (the VGG backward that consumes it runs in it anyway).
    """

    @staticmethod
    def forward(ctx, features: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        n, c, h, w = features.shape
        ctx.save_for_backward(features)  # the activation itself: no float32 copy is kept
        with torch.autocast(features.device.type, enabled=False):
            if _pixels_by_channels(features):  # F as N×HW×C: G = FᵀF
                f = features.permute(0, 2, 3, 1).reshape(n, h * w, c).float()
                return f.transpose(1, 2) @ f / (c * h * w)
            f = features.reshape(n, c, h * w).float()
            return f @ f.transpose(1, 2) / (c * h * w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (features,) = ctx.saved_tensors
        n, c, h, w = features.shape
        symmetric = ((grad + grad.transpose(1, 2)) / (c * h * w)).to(features.dtype)
        with torch.autocast(features.device.type, enabled=False):
            if _pixels_by_channels(features):
                f = features.permute(0, 2, 3, 1).reshape(n, h * w, c)
                return (f @ symmetric).reshape(n, h, w, c).permute(0, 3, 1, 2)
            return (symmetric @ features.reshape(n, c, h * w)).reshape(n, c, h, w)


def _pixels_by_channels(features: torch.Tensor) -> bool:
    """True when N×C×H×W `features` are channels_last in memory (the VGG's, vgg.py): read
    as N×HW×C they need no copy, where N×C×HW would."""
    return not features.is_contiguous() and features.is_contiguous(memory_format=torch.channels_last)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """N×C×H×W -> N×C×C: channel correlations F·Fᵀ / (C·H·W), accumulated in float32."""
    return _Gram.apply(features)  # type: ignore[no-any-return]


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of feature maps (Gatys eq. 1, as a mean)."""
    return (features.float() - target.float()).pow(2).mean()


def style_loss(features: dict[str, torch.Tensor], target_grams: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean over style layers of the mean squared Gram difference (Gatys eq. 5, equal weights).

    A blend of several style images is a weighted sum of their Grams in `target_grams`:
    for squared errors that has the same gradient as a weighted sum of losses.
    """
    total = sum((gram_matrix(features[name]) - g).pow(2).mean() for name, g in target_grams.items())
    return total / len(target_grams)  # type: ignore[return-value]


def masked_gram(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Gram matrix of one region (Gatys et al. 2017, spatial control).

    features N×C×h×w; mask N×1×h×w in [0, 1] at the features' size (1 inside the region).
    Returns N×C×C: (F·m)(F·m)ᵀ / (C·Σm), the region's channel correlations per pixel of the
    region, so it compares with a whole style image's `gram_matrix` whatever the region's
    size. An all-ones mask gives exactly `gram_matrix(features)`.
    """
    h, w = features.shape[-2:]
    area = mask.float().sum(dim=(1, 2, 3)).clamp_min(1e-6)  # N, in pixels of this layer
    return gram_matrix(features * mask.to(features.dtype)) * (h * w / area)[:, None, None]


def regional_style_loss(features: dict[str, torch.Tensor], targets: list[dict[str, torch.Tensor] | None],
                        masks: torch.Tensor) -> torch.Tensor:
    """Style loss with one target per region (Gatys et al. 2017, eq. 8-9, as means).

    masks: N×K×H×W soft region masks at the image's size, summing to 1 over K; each is
    area-averaged down to each layer's size. targets: K blended target Grams (as for
    `style_loss`), None for a region that keeps the original (no style loss there).
    Each region's Gram loss is weighted by the fraction of the frame it covers, so the
    style pulls on every pixel as hard as the single-style loss does; with one all-ones
    mask this equals `style_loss`.
    """
    layers = next(t for t in targets if t is not None).keys()
    total = torch.zeros((), device=masks.device)
    for name in layers:
        f = features[name]
        m = masks if tuple(masks.shape[-2:]) == tuple(f.shape[-2:]) else \
            torch.nn.functional.interpolate(masks, size=f.shape[-2:], mode="area")
        for k, target in enumerate(targets):
            region = m[:, k:k + 1]
            fraction = region.mean()
            if target is None or float(fraction) < 1e-4:  # an empty region has no statistics
                continue
            total = total + fraction * (masked_gram(f, region) - target[name]).pow(2).mean()
    return total / len(layers)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring pixels: suppresses high-frequency noise."""
    dx = image[..., :, 1:] - image[..., :, :-1]
    dy = image[..., 1:, :] - image[..., :-1, :]
    return dx.pow(2).mean() + dy.pow(2).mean()


def out_of_range(image: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of the pixels from [0, 1] (0 inside): keeps the optimum
    displayable, so the final clamp changes nothing the losses measured."""
    return (image - image.clamp(0, 1)).pow(2).mean()


def temporal_loss(image: torch.Tensor, warped_previous: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Ruder eq. (6): mean over pixels and channels of mask·(image - warped previous)².

    mask N×1×H×W in [0, 1] (reliability); the other two N×3×H×W.
    """
    return (mask * (image - warped_previous).pow(2)).mean()


def warping_error(frame: torch.Tensor, warped_previous: torch.Tensor, mask: torch.Tensor) -> float:
    """Lai et al. 2018: Σ mask·(frame - warped previous)² over pixels and channels / Σ mask.

    The stability measure of `evaluate`; display space [0, 1]. 0.0 if the mask is empty.
    """
    weight = mask.expand_as(frame).sum()
    if float(weight) == 0.0:
        return 0.0
    return float((mask * (frame - warped_previous).pow(2)).sum() / weight)
