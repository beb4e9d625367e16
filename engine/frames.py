"""Finding and reading an input sequence: Blender EXRs, image sequences, or a video file.

`open_sequence` checks everything that can be checked cheaply before any work starts
(files exist, one size, no gaps, passes present), so a long run does not fail on frame 200
for a reason visible at frame 1. Pixel problems (NaN, damaged data) are found when a frame
is read, with an error naming it; frames already written stay written.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass

import numpy as np

from . import colour, exr
from .errors import FlowstyleError

EXR_EXTENSIONS = (".exr",)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
_TRAILING_NUMBER = re.compile(r"(\d+)(?=\D*$)")


@dataclass
class Frame:
    """One input frame. rgba: (H, W, 4) float32 scene-linear premultiplied.

    vectors: Blender Vector pass (H, W, 4) or None; depth: (H, W) or None;
    index: the Object Index pass (H, W), whole numbers as float32, or None.
    """

    number: int
    source: str
    rgba: np.ndarray
    vectors: np.ndarray | None = None
    depth: np.ndarray | None = None
    index: np.ndarray | None = None


class Sequence:
    """An ordered run of consecutive frames of one size. Subclasses read the pixels."""

    def __init__(self, numbers: list[int], width: int, height: int, description: str):
        self.numbers = numbers
        self.width = width
        self.height = height
        self.description = description
        self.has_vectors = False
        self.has_depth = False
        self.has_index = False  # an Object Index pass on every frame (per-object styles)

    def __len__(self) -> int:
        return len(self.numbers)

    def source(self, number: int) -> str:
        """Human-readable origin of a frame, for messages."""
        return f"{self.description} frame {number}"

    def read(self, number: int) -> Frame:
        raise NotImplementedError

    def identity(self, number: int) -> str:
        """What the frame's pixels are, cheaply: size and modification time of its file.

        Recorded in each output so that a resumed run redoes frames whose input was
        rendered again (a changed camera or resolution), not only changed settings.
        """
        return _file_identity(self.source(number))


def _check_finite(array: np.ndarray, what: str, where: str) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        raise FlowstyleError(f"{where}: {int(bad.any(axis=-1).sum())} pixels of the {what} pass are "
                             "NaN or infinite (a shader, light or compositor node produced invalid "
                             "values). Fix the scene and render this frame again.")


class ExrSequence(Sequence):
    """Blender multilayer EXRs (or plain RGBA EXRs), one file per frame."""

    def __init__(self, files: dict[int, str], numbers: list[int]):
        self.files = files
        first = files[numbers[0]]
        layout = exr.read_layout(first)
        super().__init__(numbers, layout.width, layout.height, os.path.dirname(first) or ".")
        self.layouts: dict[int, exr.ExrLayout] = {}
        for n in numbers:
            path = files[n]
            lay = layout if n == numbers[0] else exr.read_layout(path)
            if (lay.width, lay.height) != (self.width, self.height):
                raise FlowstyleError(
                    f"{path}: frame {n} is {lay.width}x{lay.height} but frame {numbers[0]} "
                    f"({os.path.basename(first)}) is {self.width}x{self.height}. All frames must "
                    "have one size: render them again with the same resolution.")
            if "Combined" not in lay.passes:
                raise FlowstyleError(
                    f"{path}: frame {n} has no Combined pass (found: "
                    f"{', '.join(lay.passes) or 'no known passes'}). Enable the Combined pass in "
                    "View Layer Properties > Passes and render again.")
            self.layouts[n] = lay
        with_vectors = [n for n in numbers if "Vector" in self.layouts[n].passes]
        self.has_vectors = len(with_vectors) == len(numbers)
        if with_vectors and not self.has_vectors:
            missing = [n for n in numbers if n not in with_vectors]
            raise FlowstyleError(f"{files[missing[0]]}: frame {missing[0]} has no Vector pass while "
                                 f"frame {with_vectors[0]} has one. Render the whole range with the "
                                 "same passes.")
        self.has_depth = all("Depth" in self.layouts[n].passes for n in numbers)
        self.has_index = all("Object Index" in self.layouts[n].passes for n in numbers)

    def source(self, number: int) -> str:
        return self.files[number]

    def read(self, number: int) -> Frame:
        path = self.files[number]
        passes = exr.read_passes(path, self.layouts[number])
        where = f"{path} (frame {number})"
        _check_finite(passes["Combined"], "Combined", where)
        vectors = passes.get("Vector")
        if vectors is not None:
            _check_finite(vectors, "Vector", where)
        depth = passes.get("Depth")
        if depth is not None:
            # Background depth is huge (1e10) or inf in some renderers: clamp, don't reject.
            depth = np.nan_to_num(depth[..., 0], nan=1e10, posinf=1e10).astype(np.float32)
        index = passes.get("Object Index")
        if index is not None:
            index = np.nan_to_num(index[..., 0]).astype(np.float32)
        return Frame(number, path, passes["Combined"], vectors, depth, index)


class ImageSequence(Sequence):
    """8-bit or 16-bit PNG/JPG/TIFF frames, taken as sRGB display colour."""

    def __init__(self, files: dict[int, str], numbers: list[int]):
        from PIL import Image
        self.files = files
        sizes = {}
        for n in numbers:
            try:
                with Image.open(files[n]) as im:
                    sizes[n] = im.size
            except Exception as exc:
                raise FlowstyleError(f"{files[n]}: frame {n} cannot be read as an image ({exc}).") from exc
        width, height = sizes[numbers[0]]
        for n in numbers:
            if sizes[n] != (width, height):
                raise FlowstyleError(f"{files[n]}: frame {n} is {sizes[n][0]}x{sizes[n][1]} but frame "
                                     f"{numbers[0]} is {width}x{height}. All frames must have one size.")
        super().__init__(numbers, width, height, os.path.dirname(files[numbers[0]]) or ".")

    def source(self, number: int) -> str:
        return self.files[number]

    def read(self, number: int) -> Frame:
        path = self.files[number]
        try:
            rgba = read_image(path)
        except Exception as exc:
            raise FlowstyleError(f"{path}: frame {number} cannot be read ({exc}).") from exc
        return Frame(number, path, display_to_rgba(rgba[..., :3], rgba[..., 3:]))


def read_image(path: str) -> np.ndarray:
    """An 8-bit, 16-bit or float PNG/JPG/TIFF/... file at its full depth: (H, W, 4) float32
    display RGBA in [0, 1] (grey is repeated to RGB; no alpha reads as opaque).

    OpenCV with IMREAD_UNCHANGED keeps 16 bits per channel, which PIL's RGBA conversion
    cuts to 8. The bytes are decoded from memory: cv2.imread cannot open non-ASCII paths
    on Windows.
    """
    import cv2
    image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError("not an image OpenCV can decode")
    if image.dtype.kind in "ui":
        scaled = image.astype(np.float32) / np.iinfo(image.dtype).max
    else:
        scaled = np.clip(image.astype(np.float32), 0.0, 1.0)
    if scaled.ndim == 2:
        scaled = scaled[..., None]
    channels = scaled.shape[-1]
    if channels in (1, 2):  # grey, grey + alpha
        rgb, alpha = np.repeat(scaled[..., :1], 3, axis=2), scaled[..., 1:]
    else:  # OpenCV's order is BGR(A)
        rgb, alpha = scaled[..., 2::-1], scaled[..., 3:4]
    if alpha.shape[-1] == 0:
        alpha = np.ones_like(rgb[..., :1])
    return np.ascontiguousarray(np.concatenate([rgb, alpha], axis=2))


class VideoSequence(Sequence):
    """A video file read with OpenCV; frames are numbered from 1."""

    def __init__(self, path: str, frame_range: tuple[int, int] | None):
        import cv2
        self.path = path
        capture = cv2.VideoCapture(path)
        if not capture.isOpened():
            raise FlowstyleError(f"{path}: cannot be opened as a video (unknown format or damaged).")
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        capture.release()
        if count <= 0:
            raise FlowstyleError(f"{path}: the video has no frames.")
        numbers = list(range(1, count + 1))
        if frame_range is not None:
            numbers = [n for n in numbers if frame_range[0] <= n <= frame_range[1]]
        super().__init__(numbers, width, height, path)
        self._capture = None
        self._next = 0  # 1-based number of the frame the capture will decode next

    def source(self, number: int) -> str:
        return f"{self.path} frame {number}"

    def identity(self, number: int) -> str:
        return f"{_file_identity(self.path)}:{number}"

    def read(self, number: int) -> Frame:
        import cv2
        if self._capture is None or number != self._next:
            if self._capture is not None:
                self._capture.release()
            self._capture = cv2.VideoCapture(self.path)
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, number - 1)
        ok, bgr = self._capture.read()
        if not ok:
            raise FlowstyleError(f"{self.path}: frame {number} cannot be decoded (truncated video?). "
                                 "Limit the range with --frames.")
        self._next = number + 1
        rgb = bgr[..., ::-1].astype(np.float32) / 255.0
        return Frame(number, self.source(number), display_to_rgba(rgb, np.ones_like(rgb[..., :1])))


def _file_identity(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def display_to_rgba(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """sRGB display colour + straight alpha -> premultiplied linear RGBA (H, W, 4)."""
    return colour.to_linear(rgb, alpha, np.zeros_like(rgb))


def _numbered(paths: list[str]) -> dict[int, str]:
    files: dict[int, str] = {}
    for path in paths:
        match = _TRAILING_NUMBER.search(os.path.basename(path))
        if match is None:
            raise FlowstyleError(f"{path}: no frame number in the file name. Name frames like "
                                 "render_0001.exr.")
        number = int(match.group(1))
        if number in files:
            raise FlowstyleError(f"{path} and {files[number]} both claim frame {number}. Keep one "
                                 "sequence per folder, or pass a pattern like 'dir/render_####.exr'.")
        files[number] = path
    return files


def _expand(input_path: str) -> list[str]:
    """A folder, a pattern with # (frame digits) or * (glob), or one file -> file list."""
    if os.path.isdir(input_path):
        entries = sorted(os.path.join(input_path, f) for f in os.listdir(input_path)
                         if not f.startswith("."))
        exrs = [p for p in entries if p.lower().endswith(EXR_EXTENSIONS)]
        if exrs:
            return exrs
        return [p for p in entries if p.lower().endswith(IMAGE_EXTENSIONS)]
    if "#" in input_path:
        # Each # is one digit of the frame number (Blender's convention).
        pattern = re.sub(r"#+", lambda m: "[0-9]" * len(m.group(0)), glob.escape(input_path))
        return sorted(glob.glob(pattern))
    if any(ch in input_path for ch in "*?["):
        return sorted(glob.glob(input_path))
    return [input_path] if os.path.exists(input_path) else []


def open_sequence(input_path: str, frame_range: tuple[int, int] | None = None) -> Sequence:
    """Open a folder, a pattern or a video as a Sequence, checking it up front.

    Raises FlowstyleError for: nothing found, mixed or unknown file types, duplicate or
    missing frame numbers, frames of different sizes, EXRs with no Combined pass.
    """
    if os.path.isfile(input_path) and input_path.lower().endswith(VIDEO_EXTENSIONS):
        return VideoSequence(input_path, frame_range)
    paths = _expand(input_path)
    if not paths:
        raise FlowstyleError(f"{input_path}: no frames found. Give a folder of EXR (or PNG/JPG) "
                             "frames, a pattern like 'render/render_####.exr', or a video file.")
    kinds = {os.path.splitext(p)[1].lower() in EXR_EXTENSIONS for p in paths}
    if len(kinds) > 1:
        raise FlowstyleError(f"{input_path}: mixes EXR and other images; give one kind of sequence.")
    unknown = [p for p in paths if not p.lower().endswith(EXR_EXTENSIONS + IMAGE_EXTENSIONS)]
    if unknown:
        raise FlowstyleError(f"{unknown[0]}: not an EXR, image or video file Flowstyle can read.")
    files = _numbered(paths)
    numbers = sorted(files)
    if frame_range is not None:
        start, end = frame_range
        numbers = [n for n in numbers if start <= n <= end]
        if not numbers:
            raise FlowstyleError(f"{input_path}: no frames in the range {start}-{end} (found "
                                 f"{min(files)}-{max(files)}).")
        expected = range(max(start, min(files)), min(end, max(files)) + 1)
    else:
        expected = range(numbers[0], numbers[-1] + 1)
    missing = [n for n in expected if n not in files]
    if missing:
        shown = ", ".join(str(n) for n in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise FlowstyleError(f"{input_path}: frame(s) {shown} missing from the sequence "
                             f"{numbers[0]}-{numbers[-1]}. Motion between frames is only known "
                             "for consecutive frames: render the missing frames, or stylize the "
                             "parts on either side separately with --frames.")
    if os.path.splitext(paths[0])[1].lower() in EXR_EXTENSIONS:
        for n in numbers:
            if not os.path.isfile(files[n]):
                raise FlowstyleError(f"{files[n]}: frame {n} is not a file.")
        return ExrSequence(files, numbers)
    return ImageSequence(files, numbers)
