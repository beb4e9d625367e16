"""Reading Blender's multilayer EXRs and writing Flowstyle's RGBA EXRs.

Blender 5.0 writes one EXR part per pass, channels named `<ViewLayer>.<Pass>.<Channel>`
(the view layer name is the user's). Passes are found by name, whatever the layer.
Arrays are numpy float32, (H, W), row 0 at the top of the image.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import OpenEXR

from .errors import FlowstyleError, write_failed

# Header attribute holding a digest of the pixels `write_rgba` wrote: a resumed run reads
# finished frames back and redoes one whose pixels no longer match (truncated or damaged
# behind the engine's back, header intact).
ATTR_PIXELS = "flowstyle.pixels_sha256"

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


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send file descriptor 1 to stderr while OpenEXR runs.

    OpenEXR's C++ side prints "Warning: ..." lines for damaged files on stdout, where
    `--progress jsonl` promises JSON lines only. Python's sys.stdout cannot catch them
    (they bypass it), so the OS-level descriptor is swapped, and the C library's buffer
    flushed before it is swapped back (on a pipe, C's stdout is block-buffered).
    """
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no stdout at all (a detached process): nothing to protect
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        _flush_c_stdio()
        os.dup2(saved, 1)
        os.close(saved)


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None)
    except OSError:  # no C library to ask (not on POSIX)
        return None


def _flush_c_stdio() -> None:
    libc = _libc()
    if libc is not None and hasattr(libc, "fflush"):
        libc.fflush(None)


def _channel_names(path: str) -> tuple[int, int, list[str]]:
    try:
        with stdout_to_stderr():
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
    return FlowstyleError(f"{path}: cannot be read as an EXR ({exc}). The file is truncated or "
                          "damaged (an interrupted render or copy?): render this frame again.")


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
        with stdout_to_stderr():
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
            # OpenEXR leaves out the channels whose pixel data it could not read.
            raise FlowstyleError(f"{path}: the file is truncated or damaged (the pixel data of "
                                 f"channel {exc} cannot be read; the header is intact): render "
                                 "this frame again, or copy it again if it was copied.") from exc
        if any(p.shape != (layout.height, layout.width) for p in planes):
            raise FlowstyleError(f"{path}: the file is damaged (a channel is not "
                                 f"{layout.width}x{layout.height} as the header says). Render "
                                 "this frame again.")
        if pass_name == "Combined" and len(planes) == 3:
            planes.append(np.ones_like(planes[0]))
        out[pass_name] = np.stack(planes, axis=-1)
    return out


def pixel_digest(rgba: np.ndarray) -> str:
    """A short content hash of an (H, W, 4) float32 image, as recorded by `write_rgba`."""
    return hashlib.sha256(np.ascontiguousarray(rgba, dtype=np.float32).tobytes()).hexdigest()[:32]


def new_temp_path(path: str, suffix: str = "") -> str:
    """Create an empty, uniquely named hidden file beside `path` (".partial_<random>") and
    return its name. Unlike mkstemp's 0o600, the file gets the mode the user's umask gives
    any new file, and keeps it when renamed into place."""
    directory = os.path.dirname(os.path.abspath(path))
    while True:
        tmp = os.path.join(directory, f".partial_{secrets.token_hex(4)}{suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
        except OSError as exc:
            raise write_failed(tmp, exc) from exc


def write_rgba(path: str, rgba: np.ndarray, attributes: dict[str, object]) -> None:
    """Write an (H, W, 4) float32 linear premultiplied image as a single-part RGBA EXR.

    Atomic: the file is written next to its destination and renamed into place, so a
    reader (or a resumed run) never sees half a frame. `attributes` become header
    attributes (the run's settings live there; colour.header_attributes overrides the
    default colorInteropID with the input's true working space), plus a digest of the
    pixels (ATTR_PIXELS).
    A failed write (a full disk) is a FlowstyleError naming the file; nothing is left over.
    """
    rgba = np.ascontiguousarray(rgba, dtype=np.float32)
    channels = {c: np.ascontiguousarray(rgba[..., i]) for i, c in enumerate("RGBA")}
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage,
              "colorInteropID": "lin_rec709_scene"}
    header.update(attributes)
    header[ATTR_PIXELS] = pixel_digest(rgba)
    tmp = new_temp_path(path, ".exr")
    try:
        try:
            OpenEXR.File(header, channels).write(tmp)
            os.replace(tmp, path)
        except Exception as exc:
            raise write_failed(path, exc) from exc
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_attributes(path: str) -> dict[str, str]:
    """String header attributes of an EXR written by `write_rgba` ({} if unreadable)."""
    try:
        with stdout_to_stderr():
            header = OpenEXR.File(path, header_only=True).parts[0].header
    except Exception:
        return {}
    return {k: v for k, v in header.items() if isinstance(v, str)}


def read_rgba(path: str, verify: bool = False) -> np.ndarray:
    """Read a single-part RGBA EXR (as written by `write_rgba`) as (H, W, 4) float32.

    verify: also check the pixels against the digest `write_rgba` recorded (a FlowstyleError
    when it does not match or is missing)."""
    layout = read_layout(path)
    if "Combined" not in layout.passes:
        raise FlowstyleError(f"{path}: no RGB(A) channels found.")
    rgba = read_passes(path, ExrLayout(layout.width, layout.height,
                                       {"Combined": layout.passes["Combined"]}))["Combined"]
    if verify:
        recorded = read_attributes(path).get(ATTR_PIXELS)
        if recorded is None:
            raise FlowstyleError(f"{path}: no pixel digest recorded (not written by this "
                                 "version of Flowstyle).")
        if pixel_digest(rgba) != recorded:
            raise FlowstyleError(f"{path}: the pixels do not match the digest recorded when "
                                 "the frame was written: the file was changed or damaged.")
    return rgba
