"""The default output folder: one per .blend file and scene, shown in the panel.

A shared default folder made a second shot delete the first shot's renders and overwrite its
stylized frames; each shot now gets `//flowstyle/<blend name>/<scene name>/` (an unsaved
file: a temporary folder of this Blender session, which the panel says)."""

from __future__ import annotations

import os
import pathlib
import tempfile
from collections.abc import Iterator

import pytest

from addon_helpers import forget_saved_file, new_scene

import bpy
from addon import settings, ui


def test_names_are_made_safe_for_every_filesystem() -> None:
    assert settings.safe_name("Shot 010") == "Shot 010"
    assert settings.safe_name("a/b\\c:d*e?f\"g<h>i|j") == "a_b_c_d_e_f_g_h_i_j"
    assert settings.safe_name("../..") == "_"  # never climbs out of the folder
    assert settings.safe_name(" .hidden. ") == "hidden"
    assert settings.safe_name("") == "_"
    assert settings.safe_name("CON") == "_CON" and settings.safe_name("nul.txt") == "_nul.txt"
    assert settings.safe_name("Szene ü 夜") == "Szene ü 夜"  # letters of any script stay
    assert len(settings.safe_name("x" * 300)) == 100


@pytest.fixture
def unsaved() -> Iterator[None]:
    forget_saved_file()
    yield
    forget_saved_file()


def test_unsaved_file_uses_a_temporary_folder_per_scene_and_says_so(unsaved: None) -> None:
    scene = new_scene("Shot")
    other = new_scene("Shot")
    out = settings.spec_from_scene(scene).out_dir
    assert out == os.path.join(tempfile.gettempdir(), "flowstyle", f"unsaved-{os.getpid()}",
                               scene.name)
    assert settings.spec_from_scene(other).out_dir != out
    lines = ui.output_dir_lines(scene)
    assert lines[0] == out and "not saved" in lines[1]


def test_saved_file_gets_one_folder_per_blend_and_scene(tmp_path: pathlib.Path,
                                                       unsaved: None) -> None:
    scene = new_scene("Shot")
    scene.name = "Shot: 1/2"
    other = new_scene("Shot")
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "seq010.blend"))
    out = settings.spec_from_scene(scene).out_dir
    assert out == str(tmp_path / "flowstyle" / "seq010" / "Shot_ 1_2")
    assert settings.spec_from_scene(other).out_dir == str(
        tmp_path / "flowstyle" / "seq010" / other.name)
    assert ui.output_dir_lines(scene) == [out]  # the panel shows the folder really used

    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "seq020.blend"))
    assert settings.spec_from_scene(scene).out_dir == str(
        tmp_path / "flowstyle" / "seq020" / "Shot_ 1_2")

    # A folder the user chose is used as it is ('//' = next to the .blend).
    settings.settings_of(scene).output_dir = "//renders/mine/"
    assert settings.spec_from_scene(scene).out_dir == str(tmp_path / "renders" / "mine")
    assert ui.output_dir_lines(scene) == [str(tmp_path / "renders" / "mine")]
