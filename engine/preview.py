"""Looking at a result: a side-by-side animation (input | stylized) and a contact sheet.

Both are display-space 8-bit images (the sRGB curve of colour.py), composited over a grey
checkerboard where alpha is below 1, so transparency shows.
"""

from __future__ import annotations

import os

import numpy as np

from . import colour, exr
from .frames import open_sequence
from .run import output_path


def _over_checker(display: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    h, w = display.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    checker = np.where(((yy // 8) + (xx // 8)) % 2 == 0, 0.6, 0.4)[..., None].astype(np.float32)
    return display * alpha + checker * (1 - alpha)


def _to_u8(rgba: np.ndarray) -> np.ndarray:
    display, alpha, _ = colour.to_display(rgba)
    return np.clip(_over_checker(display, np.clip(alpha, 0, 1)) * 255 + 0.5, 0, 255).astype(np.uint8)


def side_by_side_frames(input_path: str, out_dir: str) -> list[np.ndarray]:
    """[(H, 2W, 3) uint8]: input | stylized for each frame that has an output."""
    sequence = open_sequence(input_path)
    frames = []
    for number in sequence.numbers:
        path = output_path(out_dir, number)
        if not os.path.isfile(path):
            continue
        original = _to_u8(sequence.read(number).rgba)
        stylized = _to_u8(exr.read_rgba(path))
        frames.append(np.concatenate([original, stylized], axis=1))
    return frames


def write_previews(input_path: str, out_dir: str, gif: str | None = None,
                   sheet: str | None = None, fps: float = 8.0) -> list[str]:
    """Write the animation to `gif` and the contact sheet to `sheet` (either may be None).

    The sheet has one row per frame pair, up to 12 rows. Returns the paths written.
    """
    from PIL import Image
    frames = side_by_side_frames(input_path, out_dir)
    if not frames:
        raise SystemExit(f"no stylized frames in {out_dir}")
    written = []
    if gif:
        images = [Image.fromarray(f) for f in frames]
        tmp = gif + ".partial.gif"
        images[0].save(tmp, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
        os.replace(tmp, gif)
        written.append(gif)
    if sheet:
        rows = frames[:: max(1, len(frames) // 12)][:12]
        gap = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
        stacked = np.concatenate([x for r in rows for x in (r, gap)][:-1], axis=0)
        tmp = sheet + ".partial.png"
        Image.fromarray(stacked).save(tmp, format="PNG")
        os.replace(tmp, sheet)
        written.append(sheet)
    return written
