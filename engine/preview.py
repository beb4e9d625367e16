"""Looking at a result: a side-by-side animation (input | stylized) and a contact sheet.

Both are display-space 8-bit images, composited over a grey checkerboard where alpha is
below 1, so transparency shows. The display is the view the run used (its working space,
view, look, exposure and gamma, recorded in each output's settings), so the preview shows
what the artist sees in Blender; the sRGB curve for outputs that record none.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable

import numpy as np

from . import colour, exr
from .errors import FlowstyleError, write_failed
from .frames import open_sequence
from .pairs import matched_frames
from .run import ATTR_SETTINGS, output_path


def _over_checker(display: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    h, w = display.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    checker = np.where(((yy // 8) + (xx // 8)) % 2 == 0, 0.6, 0.4)[..., None].astype(np.float32)
    return display * alpha + checker * (1 - alpha)


def _to_u8(rgba: np.ndarray, view: colour.View = colour.DEFAULT_VIEW) -> np.ndarray:
    display, alpha, _ = colour.to_display(rgba, view)
    return np.clip(_over_checker(display, np.clip(alpha, 0, 1)) * 255 + 0.5, 0, 255).astype(np.uint8)


def recorded_view(output: str) -> colour.View:
    """The view a run's output was made with (its recorded settings), else the sRGB curve."""
    try:
        recorded = json.loads(exr.read_attributes(output).get(ATTR_SETTINGS, "{}"))
        names = ("working_space", "display", "view", "look", "exposure", "gamma", "ocio_config")
        if not recorded.get("view") or not recorded["input"].lower().endswith(".exr"):
            return colour.DEFAULT_VIEW
        return colour.make_view(**{k: recorded[k] for k in names}, warn=lambda _: None)
    except (ValueError, KeyError, TypeError, AttributeError):
        return colour.DEFAULT_VIEW  # an older output, or a config no longer there


def side_by_side_frames(input_path: str, out_dir: str, allow_mismatch: bool = False,
                        warn: Callable[[str], None] | None = None) -> list[np.ndarray]:
    """[(H, 2W, 3) uint8]: input | stylized for each frame that has an output (a pair
    that is not one is refused, a partial one warned about: pairs.matched_frames)."""
    sequence = open_sequence(input_path)
    frames = []
    view = None
    say = warn or (lambda message: print(f"warning: {message}", file=sys.stderr))
    for number in matched_frames(sequence, input_path, out_dir, say, allow_mismatch):
        path = output_path(out_dir, number)
        view = view or recorded_view(path)
        original = _to_u8(sequence.read(number).rgba, view)
        stylized = _to_u8(exr.read_rgba(path), view)
        frames.append(np.concatenate([original, stylized], axis=1))
    return frames


def _save_atomic(path: str, save: Callable[[str], None]) -> None:
    """Write via a temporary file beside `path` and rename; a failure (no such folder, a
    full disk) is a FlowstyleError naming the file, and leaves nothing behind."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FlowstyleError(f"{path}: the folder {folder} does not exist (or is a file). "
                             "Give a path in an existing folder.")
    tmp = exr.new_temp_path(path, os.path.splitext(path)[1])
    try:
        try:
            save(tmp)
            os.replace(tmp, path)
        except (OSError, ValueError) as exc:
            raise write_failed(path, exc) from exc
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_previews(input_path: str, out_dir: str, gif: str | None = None,
                   sheet: str | None = None, fps: float = 8.0,
                   allow_mismatch: bool = False) -> list[str]:
    """Write the animation to `gif` and the contact sheet to `sheet` (either may be None).

    The sheet has one row per frame pair, up to 12 rows. Returns the paths written.
    """
    from PIL import Image
    if not gif and not sheet:
        raise FlowstyleError("nothing to write: give --gif PATH.gif and/or --sheet PATH.png.")
    frames = side_by_side_frames(input_path, out_dir, allow_mismatch)
    written = []
    if gif:
        images = [Image.fromarray(f) for f in frames]
        _save_atomic(gif, lambda tmp: images[0].save(tmp, format="GIF", save_all=True,
                                                     append_images=images[1:],
                                                     duration=int(1000 / fps), loop=0))
        written.append(gif)
    if sheet:
        rows = frames[:: max(1, len(frames) // 12)][:12]
        gap = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
        stacked = np.concatenate([x for r in rows for x in (r, gap)][:-1], axis=0)
        _save_atomic(sheet, lambda tmp: Image.fromarray(stacked).save(tmp, format="PNG"))
        written.append(sheet)
    return written
