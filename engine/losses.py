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
            f = features.reshape(n, c, h * w).float()
            return f @ f.transpose(1, 2) / (c * h * w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (features,) = ctx.saved_tensors
        n, c, h, w = features.shape
        symmetric = ((grad + grad.transpose(1, 2)) / (c * h * w)).to(features.dtype)
        with torch.autocast(features.device.type, enabled=False):
            return (symmetric @ features.reshape(n, c, h * w)).reshape(n, c, h, w)


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
