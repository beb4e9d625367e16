"""addon/ type-checks against fake-bpy-module-5-0 (bpy's stubs): a misspelt RNA property, an
enum value Blender does not have, or a forgotten None check fails here, not in a user's UI."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_addon_passes_mypy() -> None:
    pytest.importorskip("mypy")
    cache = os.path.join(tempfile.gettempdir(), "flowstyle_mypy_cache")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(REPO / "mypy.ini"),
         "--cache-dir", cache, "addon"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success" in proc.stdout


def test_the_stubs_are_really_used() -> None:
    """Without the bpy stubs mypy would fail on `import bpy`, not pass silently: prove it by
    checking a snippet with a wrong bpy attribute type."""
    snippet = "import bpy\n\ndef f(s: bpy.types.Scene) -> None:\n    s.frame_start = 'one'\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "snippet.py")
        with open(path, "w") as fh:
            fh.write(snippet)
        proc = subprocess.run(
            [sys.executable, "-m", "mypy", "--config-file", str(REPO / "mypy.ini"),
             "--cache-dir", os.path.join(tempfile.gettempdir(), "flowstyle_mypy_cache"), path],
            cwd=tmp, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "incompatible types in assignment" in proc.stdout.lower(), proc.stdout
