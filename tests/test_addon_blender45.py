"""The add-on on Blender 4.5 LTS: registration, pass set-up, 4.x compositor wiring.

bpy 4.5 and bpy 5.0 cannot share a process, so tests/blender45/check_addon_45.py runs under
its own interpreter (the venv dev.sh makes from requirements-blender45.txt).
"""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow
PYTHON = os.environ.get("FLOWSTYLE_BLENDER45_PYTHON", str(ROOT / ".venv-blender45" / "bin" / "python"))


def test_addon_on_blender_45():
    assert os.path.isfile(PYTHON), (
        f"{PYTHON} not found: run ./dev.sh test (it installs Blender 4.5 LTS beside 5.0), or "
        "set FLOWSTYLE_BLENDER45_PYTHON")
    result = subprocess.run([PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             str(ROOT / "tests" / "blender45" / "check_addon_45.py")],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
