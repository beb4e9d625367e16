"""End to end with the REAL engine: a tiny scene (64x48, 3 frames, Cycles 1 sample) through
`--command flowstyle stylize` with tiny engine settings; then again, which must reuse the
render, skip every finished frame and add no compositor nodes."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import sys
import time
from collections.abc import Iterator

import pytest

from addon_helpers import (HEIGHT, WIDTH, forget_saved_file, new_scene,
                           render_settings_snapshot, set_styles, style_image)

import bpy
import OpenEXR
from addon import batch, compositor, job

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


@pytest.fixture
def fresh_files() -> Iterator[None]:
    forget_saved_file()
    yield
    forget_saved_file()


def test_two_scenes_and_two_blend_files_in_one_folder_keep_their_own_shots(
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], fresh_files: None) -> None:
    """Done-when of issue 8: shots run one after the other from batch mode, with default
    output folders, keep all their renders and results, and each compositor shows its own."""
    shots = tmp_path / "shots"
    shots.mkdir()
    style = style_image(str(tmp_path))
    blends = {"seq010": ["Shot", "Alt"], "seq020": ["Shot"]}  # "Shot" twice: same scene name
    for blend, names in blends.items():
        forget_saved_file()
        for name in names:
            scene = new_scene(frames=(1, 2))
            scene.name = name
            set_styles(scene, [style])
        bpy.ops.wm.save_as_mainfile(filepath=str(shots / f"{blend}.blend"))

    made: dict[pathlib.Path, dict[str, int]] = {}
    for blend, names in blends.items():
        for name in names:
            # What `blender -b shots/seq010.blend --command flowstyle stylize ...` does.
            bpy.ops.wm.open_mainfile(filepath=str(shots / f"{blend}.blend"))
            code = batch.main(["stylize", "--scene", name, "--save", *TINY])
            printed = capsys.readouterr()
            folder = shots / "flowstyle" / blend / name
            assert code == 0, printed.err + (folder / "flowstyle.log").read_text()
            made[folder] = {str(p): p.stat().st_mtime_ns for p in folder.rglob("*_000?.exr")}
            assert len(made[folder]) == 4  # 2 renders + 2 stylized frames

    for folder, files in made.items():  # nothing of an earlier shot was deleted or rewritten
        assert {p: pathlib.Path(p).stat().st_mtime_ns for p in files} == files
        stamp = json.loads((folder / "render" / "flowstyle_render.json").read_text())["key"]
        blend, scene = folder.parent.name, folder.name  # the renders are this shot's own
        assert (stamp["blend"], stamp["scene"]) == (str(shots / f"{blend}.blend"), scene)

    for blend, names in blends.items():
        bpy.ops.wm.open_mainfile(filepath=str(shots / f"{blend}.blend"))
        for name in names:
            tree = compositor.compositor_tree(bpy.data.scenes[name])
            assert tree is not None
            image = tree.nodes["Flowstyle Result"].image  # type: ignore[attr-defined]
            shown = pathlib.Path(bpy.path.abspath(image.filepath))
            assert shown == shots / "flowstyle" / blend / name / "flowstyle_0001.exr"
            mix = tree.nodes["Flowstyle Mix"]
            assert mix.outputs["Result"].links[0].to_node.bl_idname == "NodeGroupOutput"


def test_the_engines_refusal_of_a_busy_folder_is_shown_clearly(
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The add-on checks the lock before rendering; if another run takes the folder after
    that check (a race), the real engine refuses and the add-on says so."""
    new_scene(frames=(1, 1))
    out = tmp_path / "out"
    lock = out / ".flowstyle" / "lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                "started": time.time(), "command": "blender -b other.blend",
                                "token": "x"}))
    monkeypatch.setattr(job, "busy_folder_problem", lambda out_dir: None)  # lost the race
    code = batch.main(["stylize", "--style", style_image(str(tmp_path)), "--out", str(out),
                       *TINY])
    err = capsys.readouterr().err
    assert code == 1
    assert "found the output folder busy" in err and "another Flowstyle run" in err
    assert f"pid {os.getpid()}" in err and "other.blend" in err
    assert not list(out.glob("flowstyle_*.exr"))
