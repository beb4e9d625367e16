"""The add-on sends the scene's colour management in the job (real Blender, real OCIO)."""

from __future__ import annotations

import os

import pytest

from addon_helpers import new_scene

import bpy
from addon import settings
from engine import colour


@pytest.fixture
def working_space():
    """Set the .blend's working space (Blender 5.0) for one test, then put it back."""
    before = bpy.data.colorspace.working_space
    yield lambda name: bpy.ops.wm.set_working_color_space(working_space=name, convert_colors=False)
    bpy.ops.wm.set_working_color_space(working_space=before, convert_colors=False)


def test_job_carries_the_scenes_view_look_exposure_gamma_and_working_space(working_space):
    scene = new_scene()
    scene.view_settings.view_transform = "AgX"
    scene.view_settings.look = "AgX - Punchy"
    scene.view_settings.exposure = 0.5
    scene.view_settings.gamma = 1.25
    working_space("Linear Rec.2020")
    settings.settings_of(scene).preserve_colour = True
    spec = settings.spec_from_scene(scene)
    assert (spec.working_space, spec.display, spec.view, spec.look) == (
        "Linear Rec.2020", "sRGB", "AgX", "AgX - Punchy")
    assert (spec.exposure, spec.gamma, spec.preserve_colour) == (0.5, 1.25, True)
    assert os.path.isfile(spec.ocio_config) and spec.ocio_config.endswith("config.ocio")
    job = spec.to_job_dict()
    # The engine builds exactly this chain from the job's names (no unknown names).
    view = colour.ocio_view(job["ocio_config"], job["working_space"], job["display"], job["view"],
                            job["look"], job["exposure"], job["gamma"])
    assert view.interop_id == "lin_rec2020_scene"


def test_a_new_scene_sends_agx_and_no_look():
    spec = settings.spec_from_scene(new_scene())
    assert spec.view == "AgX" and spec.look == "None" and spec.working_space == "Linear Rec.709"
