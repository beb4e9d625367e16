"""build.py makes a zip that Blender's extension tool validates and Blender installs and
enables; the installed copy finds its own bundled engine and can run it."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

# Runs in a fresh Python with its own BLENDER_USER_RESOURCES: installing an extension
# writes into Blender's user folders and registers the add-on for the whole process.
INSTALL_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import bpy, addon_utils

    zip_path = sys.argv[1]
    result = bpy.ops.extensions.package_install_files(
        filepath=zip_path, repo="user_default", enable_on_install=True)
    module = "bl_ext.user_default.flowstyle"
    report = {"result": sorted(result), "enabled": module in bpy.context.preferences.addons}
    operators = ["stylize", "cancel", "setup_passes", "restore_passes", "wire_compositor",
                 "check_engine", "style_add", "style_remove"]
    report["operators"] = []
    for name in operators:
        try:
            getattr(bpy.ops.flowstyle, name).get_rna_type()
            report["operators"].append(name)
        except KeyError:
            pass
    report["panels"] = [n for n in ("FLOWSTYLE_PT_compositor", "FLOWSTYLE_PT_output")
                        if hasattr(bpy.types, n)]
    report["scene_settings"] = hasattr(bpy.types.Scene, "flowstyle")
    prefs = bpy.context.preferences.addons[module].preferences
    report["prefs"] = [prefs.python_path, prefs.device, prefs.weights]
    client = sys.modules[module + ".engine_client"]
    root = client.default_engine_root()
    report["engine_root"] = root
    report["addon_dir"] = os.path.dirname(sys.modules[module].__file__)
    check = client.run_check(sys.executable, root)
    report["check_ok"], report["check"] = check.ok, check.summary()
    addon_utils.disable(module)
    report["after_disable"] = hasattr(bpy.types.Scene, "flowstyle")
    print("REPORT:" + json.dumps(report))
""")


def test_build_validate_install_enable(tmp_path: pathlib.Path) -> None:
    built = subprocess.run([sys.executable, str(REPO / "build.py"), "--output-dir",
                            str(tmp_path / "dist")], capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr
    zip_path = built.stdout.strip().splitlines()[-1]
    assert zip_path.endswith("flowstyle-0.2.0.zip") and os.path.isfile(zip_path)

    names = zipfile.ZipFile(zip_path).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names  # add-on at the root
    assert "engine/__main__.py" in names and "engine/cli.py" in names  # engine inside
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]
    # Only what users run: no benchmark and no test code (a developer's tools stay in the
    # source tree; the benchmark alone was 1.3k lines).
    assert not [n for n in names if "bench" in n.lower() or "test" in os.path.basename(n)], names
    # The style shelf's paintings ship; the build-time tool that made some of them does not.
    shelf = sorted(p.name for p in (REPO / "addon" / "styles").glob("*.jpg"))
    assert len(shelf) >= 6 and all(f"styles/{name}" in names for name in shelf), names
    assert not [n for n in names if n.startswith("docs/") or "extract_gcompris" in n], names

    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender_user"))
    env.pop("FLOWSTYLE_PYTHON", None)
    env.pop("FLOWSTYLE_ENGINE_ROOT", None)
    proc = subprocess.run([sys.executable, "-c", INSTALL_SCRIPT, zip_path], env=env,
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT:")]
    assert proc.returncode == 0 and lines, proc.stdout + proc.stderr
    report = json.loads(lines[-1][len("REPORT:"):])

    assert report["result"] == ["FINISHED"] and report["enabled"]
    assert len(report["operators"]) == 8, report["operators"]
    assert len(report["panels"]) == 2 and report["scene_settings"]
    assert report["prefs"] == ["", "auto", "caffe"]
    # The installed add-on runs the engine it carries, not the source tree's.
    assert report["engine_root"] == report["addon_dir"]
    assert str(tmp_path / "blender_user") in report["engine_root"]
    assert report["check_ok"], report["check"]
    assert report["after_disable"] is False


def test_manifest_is_honest_and_valid() -> None:
    import tomllib
    manifest = tomllib.loads((REPO / "blender_manifest.toml").read_text())
    assert manifest["id"] == "flowstyle" and manifest["schema_version"] == "1.0.0"
    assert manifest["license"] == ["SPDX:GPL-3.0-or-later"]
    assert manifest["blender_version_min"] == "4.2.0"
    assert set(manifest["permissions"]) == {"files", "network"}
    # The add-on never imports torch: that is the engine's business, in another process.
    for path in (REPO / "addon").glob("*.py"):
        text = path.read_text()
        assert "import torch" not in text, path
