"""Scene-linear (what Blender renders) to display space (what VGG was trained on) and back.

The network sees the sRGB curve applied to un-premultiplied colour, clipped to [0, 1].
The rule for values outside [0, 1] (highlights above 1, the odd negative from a filter):
the clipped-off amount, `excess = colour - clip(colour, 0, 1)`, is kept aside and added
back to the stylized colour on the way out. Highlights keep their energy in the linear
output (a compositor's glare still finds them) while the network only paints [0, 1].
Inside [0, 1] the round trip `to_linear(to_display(x))` is exact up to float rounding.

Alpha is never stylized: it passes through unchanged and the output is premultiplied by
it again. Pixels with (almost) no alpha have no straight colour to paint: their
premultiplied colour (usually 0; emission or "additive" pixels otherwise) is kept aside
as their excess and passed through unchanged, so nothing painted leaks into transparency.

Arrays are numpy float32 with channels last: rgba (H, W, 4), rgb (H, W, 3).
"""

from __future__ import annotations

import numpy as np

ALPHA_EPSILON = 1e-6  # below this alpha a pixel is treated as empty (no un-premultiply)


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """The sRGB transfer curve (IEC 61966-2-1): linear [0, 1] -> display [0, 1]."""
    linear = np.asarray(linear, dtype=np.float32)
    return np.where(linear <= 0.0031308, 12.92 * linear,
                    1.055 * np.power(np.maximum(linear, 0.0031308), 1 / 2.4) - 0.055).astype(np.float32)


def srgb_decode(display: np.ndarray) -> np.ndarray:
    """Inverse of `srgb_encode`: display [0, 1] -> linear [0, 1]."""
    display = np.asarray(display, dtype=np.float32)
    return np.where(display <= 0.04045, display / 12.92,
                    np.power((np.maximum(display, 0.04045) + 0.055) / 1.055, 2.4)).astype(np.float32)


def to_display(rgba: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Premultiplied scene-linear RGBA -> (display RGB in [0, 1], alpha, excess).

    rgba: (H, W, 4) float32, premultiplied. Returns display (H, W, 3) in [0, 1],
    alpha (H, W, 1) as given, and excess (H, W, 3): the linear amount clipped off (for
    pixels without alpha: their whole premultiplied colour, passed through).
    """
    rgb, alpha = rgba[..., :3], rgba[..., 3:4]
    has_alpha = alpha > ALPHA_EPSILON
    straight = np.where(has_alpha, rgb / np.where(has_alpha, alpha, 1.0), rgb)
    clipped = np.clip(straight, 0.0, 1.0)
    excess = np.where(has_alpha, straight - clipped, rgb)
    return srgb_encode(clipped), alpha.astype(np.float32), excess.astype(np.float32)


def to_linear(display: np.ndarray, alpha: np.ndarray, excess: np.ndarray) -> np.ndarray:
    """Inverse of `to_display`: (display RGB, alpha, excess) -> premultiplied linear RGBA.

    display (H, W, 3) is clipped to [0, 1] first (an optimizer may overshoot a little).
    """
    straight = srgb_decode(np.clip(display, 0.0, 1.0)) + excess
    has_alpha = alpha > ALPHA_EPSILON
    rgb = np.where(has_alpha, straight * alpha, excess)
    return np.concatenate([rgb, alpha], axis=-1).astype(np.float32)
