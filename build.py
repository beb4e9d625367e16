#!/usr/bin/env python3
"""Build the installable Flowstyle extension zip and validate it with Blender's own tool.

    python build.py [--output-dir DIST]      # prints the zip's path

The zip holds the add-on (the contents of addon/) at its root, the engine package inside it
(`engine/`, which the add-on runs as `python -m engine` with PYTHONPATH = the add-on folder),
and blender_manifest.toml. Everything is staged in a temporary folder first, so the source
tree keeps its shape (addon/ and engine/ side by side) and nothing stray gets packed.

Blender's extension tool ("blender --command extension build") also ships inside the bpy
wheel as a plain script, so this works with just `pip install bpy`, without a Blender binary;
a `blender` on PATH is the fallback.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib

ROOT = os.path.dirname(os.path.abspath(__file__))
MANIFEST = "blender_manifest.toml"
# Never packed: caches, tests, the build output itself. Only what users run goes in: the
# benchmark lives in bench/ and the tests in tests/, beside the packages, not inside them.
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", "tests", "test_*", "bench*", ".*")


class BuildError(RuntimeError):
    pass


def extension_tool() -> list[str]:
    """Command prefix that runs Blender's extension tool (`... build`, `... validate`)."""
    override = os.environ.get("FLOWSTYLE_BLENDER_EXT")
    if override:
        return [sys.executable, override]
    spec = importlib.util.find_spec("bpy")
    for location in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(glob.glob(os.path.join(
            location, "*", "scripts", "addons_core", "bl_pkg", "cli", "blender_ext.py")))
        if found:
            return [sys.executable, found[-1]]
    blender = shutil.which("blender")
    if blender:
        return [blender, "--factory-startup", "--command", "extension"]
    raise BuildError("Blender's extension tool was not found: install the bpy wheel "
                     "(pip install bpy) or put a `blender` executable on PATH.")


def stage(dest: str) -> None:
    """Lay out the extension as it will be installed: add-on at the root, engine inside."""
    shutil.copytree(os.path.join(ROOT, "addon"), dest, ignore=IGNORE, dirs_exist_ok=True)
    engine = os.path.join(ROOT, "engine")
    if not os.path.isdir(engine):
        raise BuildError(f"{engine} is missing: the extension must ship the engine.")
    shutil.copytree(engine, os.path.join(dest, "engine"), ignore=IGNORE)
    shutil.copy2(os.path.join(ROOT, MANIFEST), os.path.join(dest, MANIFEST))


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")


def build(output_dir: str) -> str:
    """Build and validate the zip in `output_dir`; return its path."""
    with open(os.path.join(ROOT, MANIFEST), "rb") as fh:
        manifest = tomllib.load(fh)
    os.makedirs(output_dir, exist_ok=True)
    zip_path = os.path.join(os.path.abspath(output_dir),
                            f"{manifest['id']}-{manifest['version']}.zip")
    tool = extension_tool()
    with tempfile.TemporaryDirectory(prefix="flowstyle_stage_") as tmp:
        source = os.path.join(tmp, manifest["id"])
        stage(source)
        _run(tool + ["validate", source])
        if os.path.exists(zip_path):
            os.remove(zip_path)
        _run(tool + ["build", "--source-dir", source, "--output-filepath", zip_path])
    _run(tool + ["validate", zip_path])
    return zip_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default=os.path.join(ROOT, "dist"),
                        help="where the zip goes (default: dist/)")
    args = parser.parse_args(argv)
    try:
        print(build(args.output_dir))
    except BuildError as exc:
        print(f"build.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
