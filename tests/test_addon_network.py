"""The add-on's Network method end to end with the REAL engine and real Blender: a tiny
scene through `--command flowstyle stylize --method network`, which trains a network on
the render first, then stylizes; run again, the model and the frames are reused."""

from __future__ import annotations

import os
import pathlib
import sys

import pytest

from addon_helpers import HEIGHT, WIDTH, new_scene, style_image

import OpenEXR
from addon import batch

pytestmark = pytest.mark.slow


def test_network_method_trains_then_stylizes_and_reuses_the_model(
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    new_scene(frames=(1, 3))
    out = tmp_path / "out"
    argv = ["stylize", "--style", style_image(str(tmp_path)), "--out", str(out),
            "--method", "network", "--train-steps", "2", "--device", "cpu",
            "--python", sys.executable]
    code = batch.main(argv)
    printed = capsys.readouterr()
    assert code == 0, printed.err + (out / "flowstyle.log").read_text()
    assert "training step 2/2" in printed.out
    assert (out / "model.pt").is_file()
    for frame in (1, 2, 3):
        with OpenEXR.File(str(out / f"flowstyle_{frame:04d}.exr"), separate_channels=True) as exr:
            assert exr.parts[0].channels["R"].pixels.shape == (HEIGHT, WIDTH)
    model_time = os.path.getmtime(out / "model.pt")

    assert batch.main(argv) == 0
    again = capsys.readouterr().out
    assert "reusing the trained network" in again
    assert again.count("skipped (resumed)") == 3
    assert os.path.getmtime(out / "model.pt") == model_time
