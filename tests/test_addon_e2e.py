"""End to end with the REAL engine: a tiny scene (64x48, 3 frames, Cycles 1 sample) through
`--command flowstyle stylize` with tiny engine settings; then again, which must reuse the
render, skip every finished frame and add no compositor nodes."""

from __future__ import annotations

import pathlib
import sys

import pytest

from addon_helpers import HEIGHT, WIDTH, new_scene, render_settings_snapshot, style_image

import OpenEXR
from addon import batch, compositor

pytestmark = pytest.mark.slow

TINY = ["--iterations", "2", "--first-iterations", "3", "--height", str(HEIGHT),
        "--device", "cpu", "--python", sys.executable]


def test_real_engine_end_to_end_and_resume(tmp_path: pathlib.Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    scene = new_scene(frames=(1, 3))
    before = render_settings_snapshot(scene)
    out = tmp_path / "out"
    argv = ["stylize", "--style", style_image(str(tmp_path)), "--out", str(out), *TINY]

    code = batch.main(argv)
    printed = capsys.readouterr()
    assert code == 0, printed.err + (out / "flowstyle.log").read_text()

    for frame in (1, 2, 3):
        path = out / f"flowstyle_{frame:04d}.exr"
        with OpenEXR.File(str(path), separate_channels=True) as exr:
            channels = exr.parts[0].channels
            assert {"R", "G", "B", "A"} <= set(channels)
            assert channels["R"].pixels.shape == (HEIGHT, WIDTH)  # same size as the render
    assert render_settings_snapshot(scene) == before
    tree = compositor.compositor_tree(scene)
    assert tree is not None
    mix = tree.nodes["Flowstyle Mix"]
    output = next(n for n in tree.nodes if n.bl_idname == "NodeGroupOutput")
    assert output.inputs[0].links[0].from_node == mix
    nodes = sorted(n.name for n in tree.nodes)
    assert "frame 3 done (3/3)" in printed.out

    assert batch.main(argv) == 0
    again = capsys.readouterr().out
    assert "reusing 3 rendered frame(s)" in again
    assert again.count("skipped (resumed)") == 3
    assert " done (" not in again  # no frame stylized again
    assert sorted(n.name for n in tree.nodes) == nodes
