"""Reading Blender's multilayer EXRs and writing Flowstyle's RGBA EXRs.

Blender 5.0 writes one EXR part per pass, channels named `<ViewLayer>.<Pass>.<Channel>`
(the view layer name is the user's). Passes are found by name, whatever the layer.
Arrays are numpy float32, (H, W), row 0 at the top of the image.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np
import OpenEXR

from .errors import FlowstyleError

# Pass name -> channel suffixes, in the order we stack them.
PASS_CHANNELS = {
    "Combined": ("R", "G", "B", "A"),
    "Vector": ("X", "Y", "Z", "W"),
    "Depth": ("Z",),
    "Object Index": ("X",),  # per-object styles (Region); exact per pixel, not anti-aliased
}


@dataclass
class ExrLayout:
    """What one file holds: size, and the full channel names of each pass found."""

    width: int
    height: int
    passes: dict[str, list[str]]  # pass name ("Combined") -> full channel names, in order


def _channel_names(path: str) -> tuple[int, int, list[str]]:
    try:
        f = OpenEXR.File(path, header_only=True)
    except Exception as exc:  # OpenEXR raises plain RuntimeError/OSError for bad files
        raise _read_error(path, exc) from exc
    names: list[str] = []
    width = height = 0
    for part in f.parts:
        (x0, y0), (x1, y1) = part.header["dataWindow"]
        width, height = int(x1 - x0 + 1), int(y1 - y0 + 1)
        names.extend(c.name for c in part.header["channels"])
    return width, height, names


def _read_error(path: str, exc: BaseException) -> FlowstyleError:
    if not os.path.exists(path):
        return FlowstyleError(f"{path}: file not found. Render this frame again, or leave it "
                              "out with --frames.")
    return FlowstyleError(f"{path}: cannot be read as an EXR ({exc}). The file is damaged or "
                          "incomplete (an interrupted render?): render this frame again.")


def find_passes(channel_names: list[str]) -> dict[str, list[str]]:
    """Map pass names to their full channel names, whatever the view layer is called.

    A single-layer RGBA EXR (channels R, G, B, A) counts as a Combined pass, so plain
    EXR sequences from other tools work too.
    """
    found: dict[str, list[str]] = {}
    present = set(channel_names)
    for pass_name, suffixes in PASS_CHANNELS.items():
        required = suffixes[:3] if pass_name == "Combined" else suffixes  # alpha is optional
        for name in channel_names:
            layer, _, rest = name.rpartition(f".{pass_name}.")
            if not layer or rest != suffixes[0]:
                continue
            full = [f"{layer}.{pass_name}.{s}" for s in suffixes]
            if all(f"{layer}.{pass_name}.{s}" in present for s in required):
                found[pass_name] = [c for c in full if c in present]
                break
    if "Combined" not in found and all(c in channel_names for c in ("R", "G", "B")):
        found["Combined"] = [c for c in ("R", "G", "B", "A") if c in channel_names]
    return found


def read_layout(path: str) -> ExrLayout:
    """Read only the header: size and passes (cheap; used to check a sequence up front)."""
    width, height, names = _channel_names(path)
    return ExrLayout(width, height, find_passes(names))


def read_passes(path: str, layout: ExrLayout) -> dict[str, np.ndarray]:
    """Read the passes of `layout` from `path`: name -> (H, W, C) float32 array.

    Combined without an alpha channel gets alpha 1.
    """
    try:
        f = OpenEXR.File(path, separate_channels=True)
        channels = {}
        for part in f.parts:
            channels.update(part.channels)
    except Exception as exc:
        raise _read_error(path, exc) from exc
    out = {}
    for pass_name, names in layout.passes.items():
        try:
            planes = [np.asarray(channels[n].pixels, dtype=np.float32) for n in names]
        except KeyError as exc:
            raise FlowstyleError(f"{path}: channel {exc} is missing although the header lists it; "
                                 "the file is damaged: render this frame again.") from exc
        if pass_name == "Combined" and len(planes) == 3:
            planes.append(np.ones_like(planes[0]))
        out[pass_name] = np.stack(planes, axis=-1)
    return out


def write_rgba(path: str, rgba: np.ndarray, attributes: dict[str, object]) -> None:
    """Write an (H, W, 4) float32 linear premultiplied image as a single-part RGBA EXR.

    Atomic: the file is written next to its destination and renamed into place, so a
    reader (or a resumed run) never sees half a frame. `attributes` become header
    attributes (the run's settings live there; colour.header_attributes overrides the
    default colorInteropID with the input's true working space).
    """
    rgba = np.ascontiguousarray(rgba, dtype=np.float32)
    channels = {c: np.ascontiguousarray(rgba[..., i]) for i, c in enumerate("RGBA")}
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage,
              "colorInteropID": "lin_rec709_scene"}
    header.update(attributes)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".partial_", suffix=".exr", dir=directory)
    os.close(fd)
    try:
        OpenEXR.File(header, channels).write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_attributes(path: str) -> dict[str, str]:
    """String header attributes of an EXR written by `write_rgba` ({} if unreadable)."""
    try:
        header = OpenEXR.File(path, header_only=True).parts[0].header
    except Exception:
        return {}
    return {k: v for k, v in header.items() if isinstance(v, str)}


def read_rgba(path: str) -> np.ndarray:
    """Read a single-part RGBA EXR (as written by `write_rgba`) as (H, W, 4) float32."""
    layout = read_layout(path)
    if "Combined" not in layout.passes:
        raise FlowstyleError(f"{path}: no RGB(A) channels found.")
    return read_passes(path, ExrLayout(layout.width, layout.height,
                                       {"Combined": layout.passes["Combined"]}))["Combined"]
