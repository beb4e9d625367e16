"""The add-on's Network method end to end with the REAL engine and real Blender: a tiny
scene through `--command flowstyle stylize --method network`, which trains a network on
the render first, then stylizes; run again, the model and the frames are reused."""

from __future__ import annotations

import os
import pathlib
import sys

import pytest

from addon_helpers import HEIGHT, WIDTH, new_scene, style_image

import bpy
import OpenEXR
from addon import batch, settings, ui

pytestmark = pytest.mark.slow


def test_network_method_trains_then_stylizes_and_reuses_the_model(
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    new_scene(frames=(1, 3))
    out = tmp_path / "out"
    style = style_image(str(tmp_path))
    argv = ["stylize", "--style", style, "--out", str(out),
            "--method", "network", "--train-steps", "2", "--device", "cpu",
            "--python", sys.executable]
    code = batch.main(argv)
    printed = capsys.readouterr()
    assert code == 0, printed.err + (out / "flowstyle.log").read_text()
    assert "training step 2/2" in printed.out
    assert "training the network: no trained network yet" in printed.out  # the reason, first
    assert (out / "model.pt").is_file()
    for frame in (1, 2, 3):
        with OpenEXR.File(str(out / f"flowstyle_{frame:04d}.exr"), separate_channels=True) as exr:
            assert exr.parts[0].channels["R"].pixels.shape == (HEIGHT, WIDTH)
    model_time = os.path.getmtime(out / "model.pt")

    assert batch.main(argv) == 0
    again = capsys.readouterr().out
    assert "reusing the trained network" in again
    assert "the trained network is reused (2 steps): styles, frames and settings unchanged" in again
    assert again.count("skipped (resumed)") == 3
    assert os.path.getmtime(out / "model.pt") == model_time

    # The panel, for the same scene and folder, says the network would train again, and
    # why: it has no steps setting, so the engine's default applies.
    props = settings.settings_of(bpy.context.scene)
    props.method = "network"
    props.output_dir = str(out)
    props.styles.clear()
    entry = props.styles.add()
    entry.path, entry.weight = style, 1.0
    assert ui.model_state_of(bpy.context, bpy.context.scene) == (
        True, "settings changed: train_steps 2 -> 800")


def test_preview_frame_uses_the_shots_current_network_and_leaves_the_shot_alone(
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    """After a Network stylize, Preview Frame runs the kept model on the frame (the same
    pixels stylize wrote for it) instead of optimizing; a stale model is not used."""
    import numpy as np
    from addon import preview_frame
    from addon_helpers import REPO
    from engine import exr
    scene = new_scene(frames=(1, 3))
    shot = tmp_path / "shot"
    scene.flowstyle.output_dir = str(shot)
    scene.flowstyle.method = "network"
    style = style_image(str(tmp_path))
    common = ["--style", style, "--method", "network", "--device", "cpu",
              "--python", sys.executable, "--engine-root", REPO]
    assert batch.main(["stylize", *common, "--train-steps", "2"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    before = {p.name: p.stat().st_mtime_ns for p in shot.rglob("*")}

    out = tmp_path / "preview.exr"
    assert batch.main(["preview", "--frame", "2", "--out", str(out), *common,
                       "--train-steps", "2"]) == 0
    printed = capsys.readouterr().out
    assert "with the shot's network" in printed, printed
    side = exr.read_rgba(str(out))
    stylized = exr.read_rgba(str(shot / "flowstyle_0002.exr"))
    assert side.shape == (48, 128, 4)  # the frame's full size, render | stylized
    np.testing.assert_allclose(side[:, 64:], stylized, atol=1e-3)
    assert {p.name: p.stat().st_mtime_ns for p in shot.rglob("*")} == before
    assert not (shot / preview_frame.SHOT_JOB_FILE).exists()

    # Other training steps than the kept model's: Stylize would train again, so the preview
    # optimizes, and says why as the panel does.
    assert batch.main(["preview", "--frame", "2", "--out", str(out), "--first-iterations", "2",
                       *common, "--train-steps", "3"]) == 0
    printed = capsys.readouterr().out
    assert "the shot's network will train again: settings changed: train_steps 2 -> 3" in printed, printed
    assert {p.name: p.stat().st_mtime_ns for p in shot.rglob("*")} == before


def test_network_method_with_a_region_and_keyframed_strength(
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The panel's regions and animated strength reach the network: it is trained with the
    region's painting too, the keep-original object is the render, and the frame keyed at
    strength 0 is the render."""
    import json
    import numpy as np
    from addon import per_object, settings
    from addon_helpers import REPO
    from engine import exr
    import bpy
    scene = new_scene(frames=(1, 3))
    cube = next(o for o in scene.objects if o.type == "MESH")
    region = per_object.add_region(scene, [cube], "Cube")
    region.keep_original = True
    mesh = bpy.data.meshes.new("WallMesh")  # a wall behind the cube, in The Scream
    mesh.from_pydata([(-4, 2, -3), (4, 2, -3), (4, 2, 3), (-4, 2, 3)], [], [(0, 1, 2, 3)])
    plane = bpy.data.objects.new("Wall", mesh)
    scene.collection.objects.link(plane)
    painted = per_object.add_region(scene, [plane], "Wall")
    painted.path = os.path.join(REPO, "addon", "styles", "scream.jpg")
    props = settings.settings_of(scene)
    props.style_strength = 0.0
    scene.keyframe_insert('flowstyle.style_strength', frame=1)
    props.style_strength = 1.0
    scene.keyframe_insert('flowstyle.style_strength', frame=3)
    out = tmp_path / "out"
    code = batch.main(["stylize", "--style", style_image(str(tmp_path)), "--out", str(out),
                       "--method", "network", "--train-steps", "2", "--device", "cpu",
                       "--python", sys.executable, "--engine-root", REPO])
    assert code == 0, capsys.readouterr().err + (out / "flowstyle.log").read_text()
    record = json.loads((out / "model.json").read_text())
    assert [os.path.basename(st["path"]) for st in record["styles"]][1:] == ["scream.jpg"]

    def frame(folder: str, name: str) -> dict:
        path = str(out / folder / name) if folder else str(out / name)
        return exr.read_passes(path, exr.read_layout(path))

    for n in (1, 3):
        render = frame("render", f"render_{n:04d}.exr")
        result = exr.read_rgba(str(out / f"flowstyle_{n:04d}.exr"))
        kept = np.rint(render["Object Index"][..., 0]) == cube.pass_index
        assert kept.sum() > 20
        np.testing.assert_array_equal(result[kept], render["Combined"][kept])
        change = float(np.abs(result[..., :3] - render["Combined"][..., :3]).mean())
        assert (change < 2e-3) if n == 1 else (change > 1e-2), (n, change)
