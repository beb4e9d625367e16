"""`blender -b shot.blend --command flowstyle ...`: the pipeline TD's entry point.

    blender -b shot.blend --command flowstyle stylize --style starry.jpg --frames 1:48 --save
    blender -b shot.blend --command flowstyle check --python /opt/venv/bin/python
    blender -b --command flowstyle install --wheels /studio/flowstyle-wheels

`stylize` runs render -> engine -> compositor wiring synchronously (timers do not fire in
background mode), printing one progress line per event, and returns 0 on success, 1 with the
reason on stderr otherwise (2 for bad command-line usage). Options left out come from the
scene's Flowstyle settings (as saved from the panel), then the add-on preferences, then the
engine's defaults.

`main(argv)` is what Blender calls (registered with bpy.utils.register_cli_command); tests
call it directly with argument lists.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import Any

import bpy

from . import engine_client, job, preferences, settings
from .job import JobError, JobSpec
from .pipeline import Phase, StylizeError, StylizeRun

COMMAND_ID = "flowstyle"


def _print(text: str) -> None:
    print(f"flowstyle: {text}", flush=True)


def _error(text: str) -> None:
    print(f"flowstyle: error: {text}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blender -b FILE.blend --command flowstyle",
        description="Stylize a rendered animation with Flowstyle, headless.")
    sub = parser.add_subparsers(dest="command", required=True)

    st = sub.add_parser("stylize", help="render, stylize and wire the compositor")
    st.add_argument("--scene", help="scene name (default: the file's active scene)")
    st.add_argument("--view-layer", help="view layer to render (default: the active one)")
    st.add_argument("--style", action="append", metavar="PATH[:WEIGHT]",
                    help="style image, repeatable (default: the scene's style images)")
    st.add_argument("--out", help="output folder (default: the scene's Output Folder, else "
                    "//flowstyle/<blend name>/<scene name>/)")
    st.add_argument("--frames", metavar="START:END", help="inclusive frame range")
    st.add_argument("--preset", choices=job.PRESETS)
    st.add_argument("--method", choices=job.METHODS,
                    help="optimize (default), network (train on the shot, then one pass per "
                    "frame) or hybrid")
    st.add_argument("--train-steps", type=int, help="network training steps (network, hybrid)")
    st.add_argument("--style-strength", type=float)
    st.add_argument("--temporal-strength", type=float)
    st.add_argument("--flow", choices=job.FLOW_SOURCES)
    depth = st.add_mutually_exclusive_group()
    depth.add_argument("--no-depth", dest="use_depth", action="store_false", default=None)
    depth.add_argument("--depth", dest="use_depth", action="store_true")
    st.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    st.add_argument("--weights", help="caffe, torchvision or a weights file")
    st.add_argument("--iterations", type=int, help="optimizer iterations per later frame")
    st.add_argument("--first-iterations", type=int, help="optimizer iterations, first frame")
    st.add_argument("--height", type=int, help="working height in pixels")
    st.add_argument("--mix", type=float, help="compositor mix factor, 0..1")
    st.add_argument("--preserve-colour", action="store_true", default=None,
                    help="keep the render's colours, take only the painting's luminance pattern")
    st.add_argument("--cluster", help="stylize on this Dask scheduler (tcp://host:8786) or "
                    "local:N; rendering stays here")
    st.add_argument("--chunk-frames", type=int, help="farm: frames per chunk task")
    st.add_argument("--python", help="interpreter that runs the engine (needs torch)")
    st.add_argument("--engine-root", help="folder containing the engine package (advanced)")
    st.add_argument("--rerender", action="store_true", default=None,
                    help="render again, replacing the renders in the output folder (needed "
                         "when they belong to another shot, range or resolution)")
    st.add_argument("--save", action="store_true",
                    help="save the .blend afterwards (keeps the compositor wiring)")

    pv = sub.add_parser("preview", help="stylize one frame fast: an EXR of render | stylized")
    pv.add_argument("--frame", type=int, help="the frame (default: the scene's current frame)")
    pv.add_argument("--out", required=True, help="the side-by-side EXR to write")
    pv.add_argument("--scene", help="scene name (default: the file's active scene)")
    pv.add_argument("--view-layer", help="view layer to render (default: the active one)")
    pv.add_argument("--style", action="append", metavar="PATH[:WEIGHT]")
    pv.add_argument("--style-strength", type=float)
    pv.add_argument("--method", choices=job.METHODS,
                    help="network or hybrid: run the shot's trained network on the frame when it "
                    "is current (as stylize would reuse it), instead of optimizing")
    pv.add_argument("--train-steps", type=int, help="as given to stylize (the model's steps)")
    pv.add_argument("--height", type=int, help="working height (default: the engine's preview size)")
    pv.add_argument("--first-iterations", type=int, help="optimizer iterations")
    pv.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    pv.add_argument("--weights", help="caffe, torchvision or a weights file")
    pv.add_argument("--python", help="interpreter that runs the engine (needs torch)")
    pv.add_argument("--engine-root", help="folder containing the engine package (advanced)")
    pv.add_argument("--rerender", action="store_true", default=None,
                    help="render the frame again even if an earlier preview render matches")

    ck = sub.add_parser("check", help="check the engine interpreter (torch, device, weights)")
    ck.add_argument("--python", help="interpreter that runs the engine")
    ck.add_argument("--engine-root", help="folder containing the engine package (advanced)")
    ck.add_argument("--weights", help="the weights source to check for (default: preferences)")
    ck.add_argument("--device", help="the device to check for (default: preferences)")

    ins = sub.add_parser("install", help="Install Engine: make Flowstyle's own environment "
                         "with the engine's packages, point Engine Python at it, check it, "
                         "and save the preferences")
    ins.add_argument("--wheels", help="install from this folder of wheels only, offline "
                     "(default: the preferences' Wheel Folder; without one, downloading needs "
                     "--online-mode)")
    ins.add_argument("--base-python", help="the Python 3.11+ to make the environment from "
                     "(default: the preferences', else Blender's own)")
    ins.add_argument("--index-url", help="an extra package index for torch's build")
    return parser


def spec_from_args(scene: bpy.types.Scene, args: argparse.Namespace) -> JobSpec:
    """The scene's settings, overridden by whatever the command line gives."""
    spec = settings.spec_from_scene(scene)
    if args.style:
        spec.styles = [job.parse_style_arg(s) for s in args.style]
        for style in spec.styles:
            style.path = _abspath(style.path)
    if args.out:
        spec.out_dir = _abspath(args.out)
    if args.frames:
        spec.frame_start, spec.frame_end = job.parse_frames(args.frames)
    for name in ("preset", "style_strength", "temporal_strength", "flow", "use_depth",
                 "device", "iterations", "first_iterations", "height", "mix",
                 "python", "rerender", "method", "train_steps", "cluster", "chunk_frames",
                 "preserve_colour"):
        value = getattr(args, name)
        if value is not None:
            setattr(spec, name, value)
    if args.weights:
        spec.weights = args.weights if args.weights in job.WEIGHT_SOURCES else _abspath(args.weights)
    if args.engine_root:
        spec.engine_root = _abspath(args.engine_root)
    if spec.python and os.sep not in spec.python:  # a bare name: look it up on PATH
        spec.python = shutil.which(spec.python) or spec.python
    elif spec.python:
        spec.python = _abspath(spec.python)
    return spec


def _abspath(path: str) -> str:
    """'//' is relative to the .blend (Blender's convention); anything else to the cwd."""
    if path.startswith("//"):
        return os.path.normpath(bpy.path.abspath(path))
    return os.path.abspath(path)


def cmd_stylize(args: argparse.Namespace) -> int:
    scene = bpy.data.scenes.get(args.scene) if args.scene else bpy.context.scene
    if scene is None:
        _error(f"no scene called {args.scene!r} (scenes: {', '.join(bpy.data.scenes.keys())})")
        return 1
    try:
        spec = spec_from_args(scene, args)
    except JobError as exc:
        _error(str(exc))
        return 1
    if args.save and not bpy.data.filepath:
        _error("--save needs a saved .blend file (this one has never been saved)")
        return 1
    layer = args.view_layer or (bpy.context.view_layer.name if bpy.context.scene == scene
                                and bpy.context.view_layer else scene.view_layers[0].name)
    run = StylizeRun(scene, layer, spec, on_message=_print)
    try:
        run.start()
    except StylizeError as exc:
        for line in str(exc).splitlines():
            _error(line)
        return 1
    try:
        run.run_to_completion()
    except KeyboardInterrupt:
        _error("interrupted: " + run.message)
        return 130
    for warning in run.warnings:
        _print("warning: " + warning)
    if run.phase is not Phase.DONE:
        _error(run.message)
        return 1
    if args.save:
        bpy.ops.wm.save_mainfile()
        _print(f"saved {bpy.data.filepath}")
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    """`preview`: render frame N if needed, stylize it alone, write render | stylized."""
    from . import preview_frame
    scene = bpy.data.scenes.get(args.scene) if args.scene else bpy.context.scene
    if scene is None:
        _error(f"no scene called {args.scene!r} (scenes: {', '.join(bpy.data.scenes.keys())})")
        return 1
    frame = scene.frame_current if args.frame is None else args.frame
    # The stylize options the preview does not take keep their defaults (the scene's
    # settings); the preview's own --out is a file, not the output folder.
    defaults = build_parser().parse_args(["stylize"])
    options = argparse.Namespace(**{**vars(defaults), **vars(args), "out": None,
                                    "command": "stylize"})
    try:
        spec = spec_from_args(scene, options)
    except JobError as exc:
        _error(str(exc))
        return 1
    preview = preview_frame.preview_spec(scene, frame)
    spec.out_dir, spec.frame_start, spec.frame_end = preview.out_dir, frame, frame
    if args.style_strength is None:
        spec.style_strengths = preview.style_strengths
    else:
        spec.style_strengths = {}
    layer = args.view_layer or (bpy.context.view_layer.name if bpy.context.scene == scene
                                and bpy.context.view_layer else scene.view_layers[0].name)
    try:
        run = preview_frame.run_batch(scene, layer, spec, _abspath(args.out), _print)
    except StylizeError as exc:
        for line in str(exc).splitlines():
            _error(line)
        return 1
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    if run.phase is not Phase.DONE:
        _error(run.message)
        return 1
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    root = _abspath(args.engine_root) if args.engine_root else engine_client.default_engine_root()
    if root is None:
        _error("the engine was not found next to the add-on: reinstall the extension")
        return 1
    prefs = preferences.engine_prefs()
    result = engine_client.run_check(args.python or prefs.python, root,
                                     args.weights or prefs.weights, args.device or prefs.device)
    _print(result.summary())
    for fix in result.fixes:
        _print("fix: " + fix)
    if not result.ok:
        for problem in result.problems:
            _error(problem)
    return 0 if result.ok else 1


def cmd_install(args: argparse.Namespace) -> int:
    """`install`: what the preferences' Install Engine button does, run through (the options
    given are stored in the preferences first, as if typed there), then saved."""
    from . import install_ui
    prefs = install_ui._prefs()
    if prefs is None:
        _error("Flowstyle's preferences are not available: install and enable the extension "
               "first (Preferences > Get Extensions)")
        return 1
    for name, value in (("install_wheels", args.wheels), ("install_python", args.base_python),
                        ("install_index_url", args.index_url)):
        if value is not None:
            setattr(prefs, name, _abspath(value) if value and name != "install_index_url" else value)
    ops: Any = getattr(bpy.ops, "flowstyle")  # our own operators (not in the bpy stubs)
    try:
        result = ops.install_engine()  # background mode: runs to the end, then Check Engine
    except RuntimeError as exc:  # the operator reported an error
        _error(str(exc).strip().removeprefix("Error: "))
        code = 1
    else:
        code = 0 if result == {"FINISHED"} else 1
    if "status" in install_ui.LAST:
        _print(install_ui.LAST["status"])
    check = preferences.LAST_CHECK.get("result")
    if check is not None:
        _print(("engine ok: " if check.ok else "engine check failed: ") + check.summary())
    if prefs.python_path:
        bpy.ops.wm.save_userpref()  # later sessions (batch or not) use the new environment
    return code


def main(argv: list[str]) -> int:
    """Entry point of `--command flowstyle`; returns the process exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on bad usage
        return int(exc.code) if isinstance(exc.code, int) else 2
    if args.command == "preview":
        return cmd_preview(args)
    if args.command == "stylize":
        return cmd_stylize(args)
    if args.command == "install":
        return cmd_install(args)
    return cmd_check(args)


_handle: object = None


def register() -> None:
    global _handle
    register_cli = getattr(bpy.utils, "register_cli_command", None)
    if register_cli is not None:  # Blender 4.2+
        _handle = register_cli(COMMAND_ID, main)


def unregister() -> None:
    global _handle
    if _handle is not None:
        bpy.utils.unregister_cli_command(_handle)
        _handle = None
