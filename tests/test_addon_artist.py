"""The artist's add-on features on real Blender (bpy), with the fake engine for speed:
per-object styles (regions -> Object Index pass + job) and keyframed strength/mix."""

from __future__ import annotations

import os
import pathlib
import sys

import OpenEXR
import pytest

from addon_helpers import batch_args, fake_calls, fake_engine, new_scene, style_image

import bpy
from addon import batch, compositor, per_object, settings


@pytest.fixture
def engine_root(tmp_path: pathlib.Path) -> str:
    return fake_engine(str(tmp_path / "fake"))


def _args(tmp_path: pathlib.Path, engine_root: str, *extra: str) -> list[str]:
    return batch_args(str(tmp_path), engine_root, *extra)


def test_a_region_from_the_selection_renders_object_index_and_reaches_the_job(
        tmp_path: pathlib.Path, engine_root: str) -> None:
    scene = new_scene()
    cube = next(o for o in scene.objects if o.type == "MESH")
    for obj in scene.objects:
        obj.select_set(obj == cube)
    bpy.context.view_layer.objects.active = cube
    assert bpy.ops.flowstyle.region_add(source="SELECTED") == {"FINISHED"}
    props = settings.settings_of(scene)
    (region,) = props.regions
    assert cube.pass_index == region.index >= 1 and region.name == cube.name
    region.path = style_image(str(tmp_path))
    # A second region from another selection gets another index; "keep original" has no style.
    light = next(o for o in scene.objects if o.type == "LIGHT")
    second = per_object.add_region(scene, [light], "Light")
    second.keep_original = True
    assert second.index != region.index
    layer = scene.view_layers[0]
    assert not layer.use_pass_object_index

    assert batch.main(_args(tmp_path, engine_root)) == 0

    job = fake_calls(engine_root)[0]["job"]
    assert job["regions"] == [
        {"index": region.index, "styles": [{"path": style_image(str(tmp_path)), "weight": 1.0}]},
        {"index": second.index, "styles": []}]
    render = tmp_path / "out" / "render" / "render_0001.exr"
    with OpenEXR.File(str(render), header_only=True) as f:
        names = [c.name for p in f.parts for c in p.header["channels"]]
    assert any(n.endswith(".Object Index.X") for n in names), names
    assert not layer.use_pass_object_index  # the user's pass settings were put back


def test_no_regions_no_object_index_and_no_new_job_keys(tmp_path: pathlib.Path, engine_root: str) -> None:
    new_scene()
    assert batch.main(_args(tmp_path, engine_root)) == 0
    job = fake_calls(engine_root)[0]["job"]
    assert "regions" not in job and "style_strengths" not in job


def test_keyframed_strength_is_sampled_per_frame_and_mix_drives_the_compositor(
        tmp_path: pathlib.Path, engine_root: str) -> None:
    scene = new_scene(frames=(1, 3))
    props = settings.settings_of(scene)
    props.style_strength = 0.0
    scene.keyframe_insert('flowstyle.style_strength', frame=1)
    props.style_strength = 1.0
    scene.keyframe_insert('flowstyle.style_strength', frame=3)
    props.mix = 0.0
    scene.keyframe_insert('flowstyle.mix', frame=1)
    props.mix = 1.0
    scene.keyframe_insert('flowstyle.mix', frame=3)

    assert batch.main(_args(tmp_path, engine_root)) == 0

    strengths = fake_calls(engine_root)[0]["job"]["style_strengths"]
    assert strengths["1"] == pytest.approx(0.0) and strengths["3"] == pytest.approx(1.0)
    assert 0.0 < strengths["2"] < 1.0
    factor = compositor._mix_sockets(scene.compositing_node_group.nodes["Flowstyle Mix"])[0]
    scene.frame_set(1)
    assert factor.default_value == pytest.approx(0.0)
    scene.frame_set(3)
    assert factor.default_value == pytest.approx(1.0)


def test_style_shelf_thumbnails_and_one_click_add() -> None:
    from addon import shelf
    scene = new_scene()
    total = 0
    readme = (pathlib.Path(shelf.SHELF_DIR) / "README.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in readme.splitlines()
            if line.startswith("| ") and line.count("|") >= 6}
    for painting in shelf.PAINTINGS:
        size = pathlib.Path(painting.path).stat().st_size
        assert size < 400_000, painting.path  # a few hundred KB at most
        total += size
        # Provenance: a README row of its own naming the licence and where the copy came from.
        row = rows.get(painting.key + ".jpg", "")
        assert "public domain" in row and row.split("|")[5].strip(), painting.key
        assert painting.key in shelf._previews["shelf"]  # loaded as a thumbnail
        image = bpy.data.images.load(painting.path)  # a real image Blender can read
        try:  # reading the size decodes the file: (0, 0) if it cannot
            assert 0 < min(image.size) and max(image.size) <= 512, (painting.key, image.size[:])
        finally:
            bpy.data.images.remove(image)
    assert total < 1_000_000  # the whole shelf keeps the extension zip small
    # Every painting shipped is on the shelf (and so has a README row): no stray files.
    shipped = {p.stem for p in pathlib.Path(shelf.SHELF_DIR).glob("*.jpg")}
    assert shipped == {p.key for p in shelf.PAINTINGS}
    assert len(shelf.PAINTINGS) >= 6

    assert bpy.ops.flowstyle.shelf_add(key="scream") == {"FINISHED"}
    assert bpy.ops.flowstyle.shelf_add(key="scream") == {"FINISHED"}  # not added twice
    props = settings.settings_of(scene)
    assert [s.path for s in props.styles] == [shelf.painting("scream").path]
    assert props.styles[0].weight == 1.0


@pytest.mark.slow
def test_batch_preview_renders_the_frame_and_writes_render_beside_stylized(tmp_path: pathlib.Path) -> None:
    """The real engine, on one 64x48 frame: `--command flowstyle preview --frame N --out`."""
    import numpy as np
    from addon import preview_frame
    from addon_helpers import REPO
    from engine import exr
    scene = new_scene(frames=(1, 3))
    shot_out = settings.spec_from_scene(scene).out_dir
    out = tmp_path / "preview.exr"
    code = batch.main(["preview", "--frame", "2", "--out", str(out), "--style",
                       style_image(str(tmp_path)), "--first-iterations", "5",
                       "--python", sys.executable, "--engine-root", REPO])
    assert code == 0
    side = exr.read_rgba(str(out))
    assert side.shape == (48, 128, 4)
    render = preview_frame.scratch_dir(scene, 2) + "/render/render_0002.exr"
    original = exr.read_passes(render, exr.read_layout(render))["Combined"]
    np.testing.assert_array_equal(side[:, :64], original)  # left: the render itself
    assert np.abs(side[:, 64:, :3] - original[..., :3]).mean() > 1e-3  # right: stylized
    assert not pathlib.Path(shot_out).exists()  # the shot's output folder is not touched
    image = bpy.data.images[preview_frame.IMAGE_NAME]
    assert tuple(image.size) == (128, 48)
    # A new resolution: the scratch render of this frame is replaced without asking (it is
    # Flowstyle's own), and the image is reloaded.
    scene.render.resolution_x = 48
    assert batch.main(["preview", "--frame", "2", "--out", str(out), "--style",
                       style_image(str(tmp_path)), "--first-iterations", "2",
                       "--python", sys.executable, "--engine-root", REPO]) == 0
    assert exr.read_rgba(str(out)).shape == (48, 96, 4)
    assert tuple(bpy.data.images[preview_frame.IMAGE_NAME].size) == (96, 48)


def test_install_engine_operator_asks_for_online_access_then_installs_from_wheels(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The preferences' button, in background mode (no dialog, no timer): refused while
    online access is off and no wheel folder is given; from a wheel folder it makes the env
    and points Engine Python at it."""
    import types
    from addon import install_ui, installer
    from test_installer import standin_wheels
    new_scene()
    assert not bpy.app.online_access
    prefs = types.SimpleNamespace(install_python="", install_wheels="", install_index_url="",
                                  python_path="")
    monkeypatch.setattr(install_ui, "_prefs", lambda: prefs)
    monkeypatch.setattr(install_ui, "env_dir", lambda: str(tmp_path / "env"))
    with pytest.raises(RuntimeError, match="Online access is off"):
        bpy.ops.flowstyle.install_engine()
    assert not (tmp_path / "env").exists()

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    standin_wheels(wheels)
    prefs.install_wheels = str(wheels)
    # It ends with Check Engine on the new environment, which the stand-in wheels fail
    # (they are not a working torch): the failure must name that environment.
    with pytest.raises(RuntimeError, match="engine check failed in " + str(tmp_path / "env")):
        bpy.ops.flowstyle.install_engine()
    assert prefs.python_path == installer.venv_python(str(tmp_path / "env"))
    assert os.path.isfile(prefs.python_path)
    assert install_ui.LAST["status"].startswith("Installed in")
    assert "done after" in pathlib.Path(install_ui.LAST["log"]).read_text()


@pytest.mark.slow
def test_preview_frame_operator_shows_render_and_stylized_without_touching_the_shot(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The panel's button (run synchronously, as in background mode) with the real engine."""
    from addon import preview_frame
    from addon_helpers import REPO, set_styles
    monkeypatch.setenv("FLOWSTYLE_PYTHON", sys.executable)
    monkeypatch.setenv("FLOWSTYLE_ENGINE_ROOT", REPO)
    scene = new_scene(frames=(1, 3))
    set_styles(scene, [style_image(str(tmp_path))])
    scene.frame_set(2)
    shot_out = settings.spec_from_scene(scene).out_dir
    assert bpy.ops.flowstyle.preview_frame("INVOKE_DEFAULT") == {"FINISHED"}
    assert tuple(bpy.data.images[preview_frame.IMAGE_NAME].size) == (128, 48)  # render | stylized
    assert os.path.isfile(os.path.join(preview_frame.scratch_dir(scene, 2), "preview_0002.exr"))
    assert not pathlib.Path(shot_out).exists()


def test_removing_the_selected_style_or_region_keeps_a_valid_selection() -> None:
    scene = new_scene()
    props = settings.settings_of(scene)
    for _ in range(3):
        assert bpy.ops.flowstyle.style_add() == {"FINISHED"}
    props.styles[0].path, props.styles[2].path = "/a.jpg", "/c.jpg"
    props.active_style = 2  # the last one
    assert bpy.ops.flowstyle.style_remove() == {"FINISHED"}
    assert [s.path for s in props.styles][::2] == ["/a.jpg"] and len(props.styles) == 2
    assert props.active_style == 1  # moved onto the new last entry
    cube = next(o for o in scene.objects if o.type == "MESH")
    bpy.ops.object.select_all(action="DESELECT")
    cube.select_set(True)
    assert bpy.ops.flowstyle.region_add(source="SELECTED") == {"FINISHED"}
    props.active_region = 0
    assert bpy.ops.flowstyle.region_remove() == {"FINISHED"}
    assert len(props.regions) == 0 and props.active_region == 0
    assert not bpy.ops.flowstyle.region_remove.poll()  # nothing left to remove
