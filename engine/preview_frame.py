"""One frame, fast: the look-development preview behind the add-on's "Preview Frame".

Stylizes a single frame of a sequence at a small working size (no temporal term: there is
no previous frame) into a scratch folder, and writes one EXR with the original on the left
and the stylized frame on the right, so an image viewer (Blender's Image Editor) shows both
side by side. The shot's own output folder is never touched.

With a trained network (--method network or hybrid and --model) the frame goes through the
network instead, at the frame's full size, in a fraction of a second: what `stylize
--method network` would write for it. Given the shot's job (--shot-job, as the add-on
does), the shot's kept model is used only while it is current (what `train --job` would
reuse); otherwise the preview optimizes and says why.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time

import numpy as np

from . import exr
from .defaults import PREVIEW_FRAME, Settings
from .errors import FlowstyleError
from .progress import Progress


def preview_settings(settings: Settings, frame: int) -> Settings:
    """The run's settings for a one-frame preview: that frame only, independent of others,
    at the preview's working height and iterations unless the user set them."""
    return dataclasses.replace(
        settings, frames=(frame, frame), temporal_strength=0.0,
        height=settings.height if settings.height is not None else PREVIEW_FRAME["height"],
        first_iterations=(settings.first_iterations if settings.first_iterations is not None
                          else PREVIEW_FRAME["first_iterations"]))


def side_by_side(original: np.ndarray, stylized: np.ndarray) -> np.ndarray:
    """(H, W, 4) and (H, W, 4) linear premultiplied -> (H, 2W, 4): original | stylized."""
    return np.concatenate([original, stylized], axis=1)


def preview_model(settings: Settings, shot: tuple[str, Settings] | None,
                  progress: Progress) -> str | None:
    """The model the preview runs, or None to optimize.

    None for the optimize method or without a model. shot: (the shot's input, its settings)
    from its job: its kept model, only if current for the shot (train.why_train_again)."""
    if settings.method == "optimize":
        return None
    if shot is None:
        return settings.model
    from .train import why_train_again
    shot_input, shot_settings = shot
    if not shot_settings.model:
        return None
    reason = why_train_again(shot_settings.model, shot_input, shot_settings)
    if reason:
        progress.warning(f"not using the shot's network for this preview: {reason}. The "
                         "preview optimizes instead; Stylize trains the network again.")
        return None
    return shot_settings.model


def preview_frame(input_path: str, frame: int | None, out_file: str, settings: Settings,
                  progress: Progress | None = None, allow_download: bool = False,
                  shot: tuple[str, Settings] | None = None) -> dict:
    """Stylize one frame and write `out_file` (original | stylized, RGBA EXR, atomic).

    frame None: the first frame of the sequence. shot: the shot's (input, settings), whose
    kept model a network/hybrid preview uses while it is current (`preview_model`).
    Returns timings, the working size and the method used ("network" or "optimize").
    """
    from .frames import open_sequence
    from .network_run import NetworkRun
    from .run import SequenceRun, output_path
    progress = progress or Progress("none")
    if not out_file.lower().endswith(".exr"):
        raise FlowstyleError(f"{out_file}: the preview is written as an EXR; give a .exr path.")
    folder = os.path.dirname(os.path.abspath(out_file))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise FlowstyleError(f"{folder}: cannot create the preview's folder ({exc.strerror}).") from exc
    if frame is None:
        frame = open_sequence(input_path, settings.frames).numbers[0]
    started = time.perf_counter()
    scratch = tempfile.mkdtemp(prefix="flowstyle_preview_")
    try:
        model = preview_model(settings, shot, progress)
        run: SequenceRun
        if model:  # instant: the network at the frame's own size, as stylize --method network
            run = NetworkRun(input_path, scratch, dataclasses.replace(
                settings, frames=(frame, frame), method="network", model=model), progress)
        else:
            run = SequenceRun(input_path, scratch, preview_settings(settings, frame), progress)
        if frame not in run.sequence.numbers:
            raise FlowstyleError(f"{input_path}: there is no frame {frame} (frames "
                                 f"{run.sequence.numbers[0]}-{run.sequence.numbers[-1]}).")
        run.run()
        stylized = exr.read_rgba(output_path(scratch, frame))
        original = run.sequence.read(frame).rgba
        exr.write_rgba(out_file, side_by_side(original, stylized),
                       {"flowstyle.preview": f"frame {frame}: original | stylized"})
        return {"frame": frame, "out": out_file, "working_size": list(run.size),
                "method": "network" if model else "optimize", "model": model,
                "seconds": round(time.perf_counter() - started, 2)}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
