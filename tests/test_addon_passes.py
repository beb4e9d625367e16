"""Set up passes on a real scene: exactly the expected changes, and all of them undone."""

from __future__ import annotations

import pytest

from addon_helpers import new_scene, render_settings_snapshot

import bpy
from addon import passes, pipeline, settings
from addon.job import JobSpec, StyleRef


def _as_tuples(changes: list[passes.Change]) -> set[tuple[str, str, object, object]]:
    return {(c.owner, c.attr, c.old, c.new) for c in changes}


def test_enable_reports_exactly_what_changed_and_restore_puts_it_back() -> None:
    scene = new_scene()
    layer = scene.view_layers[0]
    before = render_settings_snapshot(scene)

    changes = passes.enable_stylize_passes(scene, layer, use_depth=True)

    owner = f'view_layers["{layer.name}"]'
    assert _as_tuples(changes) == {
        (owner, "use_pass_vector", False, True),
        (owner, "use_pass_z", False, True),
        ("render", "use_motion_blur", True, False),
        ("render.image_settings", "media_type", "IMAGE", "MULTI_LAYER_IMAGE"),
        ("render.image_settings", "file_format", "PNG", "OPEN_EXR_MULTILAYER"),
        ("render.image_settings", "color_depth", "8", "32"),
    }
    assert layer.use_pass_vector and layer.use_pass_z and not scene.render.use_motion_blur
    assert scene.render.image_settings.file_format == "OPEN_EXR_MULTILAYER"
    # Readable by a person.
    assert "Vector pass" in str(changes[0]) and "off -> on" in str(changes[0])

    assert passes.restore_changes(changes) == []
    assert render_settings_snapshot(scene) == before


def test_second_setup_changes_nothing_and_depth_is_optional() -> None:
    scene = new_scene()
    layer = scene.view_layers[0]
    changes = passes.enable_stylize_passes(scene, layer, use_depth=False)
    assert not layer.use_pass_z
    assert "use_pass_z" not in {c.attr for c in changes}
    assert passes.enable_stylize_passes(scene, layer, use_depth=False) == []
    assert "already" in passes.describe([])


@pytest.mark.parametrize("fmt", [
    {"file_format": "JPEG"},
    {"file_format": "OPEN_EXR", "color_depth": "16", "exr_codec": "DWAA"},
    {"media_type": "VIDEO", "file_format": "FFMPEG"},
])
def test_restore_other_output_formats_exactly(fmt: dict[str, str]) -> None:
    scene = new_scene()
    settings_ = scene.render.image_settings
    if "media_type" in fmt:
        settings_.media_type = fmt["media_type"]
    for key, value in fmt.items():
        if key != "media_type":
            setattr(settings_, key, value)
    before = render_settings_snapshot(scene)
    changes = passes.enable_stylize_passes(scene, scene.view_layers[0], use_depth=True)
    if fmt.get("exr_codec") == "DWAA":  # lossy codecs would degrade the Vector pass
        assert settings_.exr_codec == "ZIP"
    assert passes.restore_changes(changes) == []
    assert render_settings_snapshot(scene) == before


def test_changes_survive_json_and_restore_after_reload() -> None:
    scene = new_scene()
    before = render_settings_snapshot(scene)
    changes = passes.enable_stylize_passes(scene, scene.view_layers[0], use_depth=True)
    again = [passes.Change.from_dict(c.to_dict()) for c in changes]
    passes.restore_changes(again)
    assert render_settings_snapshot(scene) == before


def test_failure_half_way_restores_what_was_already_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    scene = new_scene()
    before = render_settings_snapshot(scene)

    def refuse(scene: bpy.types.Scene, changes: list[passes.Change]) -> None:
        raise passes.PassesError("multilayer EXR refused (test)")

    monkeypatch.setattr(passes, "set_multilayer_exr", refuse)
    with pytest.raises(passes.PassesError, match="refused"):
        passes.enable_stylize_passes(scene, scene.view_layers[0], use_depth=True)
    assert render_settings_snapshot(scene) == before  # vector/depth/motion blur put back


def test_setup_and_undo_operators_round_trip() -> None:
    scene = new_scene()
    before = render_settings_snapshot(scene)
    assert bpy.ops.flowstyle.setup_passes() == {"FINISHED"}
    assert scene.view_layers[0].use_pass_vector
    assert settings.settings_of(scene).passes_backup  # kept in the .blend for the undo button
    scene.render.use_motion_blur = True  # the user turns it back on; a second set-up merges
    assert bpy.ops.flowstyle.setup_passes() == {"FINISHED"}
    assert bpy.ops.flowstyle.restore_passes() == {"FINISHED"}
    assert render_settings_snapshot(scene) == before
    assert settings.settings_of(scene).passes_backup == ""


def test_workbench_cannot_give_render_vectors(tmp_path: object) -> None:
    scene = new_scene(engine="BLENDER_WORKBENCH")
    assert passes.vector_pass_problem(scene) is not None
    spec = JobSpec(styles=[StyleRef(__file__)], out_dir=str(tmp_path), frame_start=1,
                   frame_end=3, python="/nonexistent/python", flow="vectors")
    problems = pipeline.validate(scene, scene.view_layers[0].name, spec)
    assert any("Vector pass" in p for p in problems)
    spec.flow = "auto"  # auto falls back to estimated flow: not a problem for the pass
    assert not any("Vector pass" in p for p in pipeline.validate(scene, "ViewLayer", spec))
