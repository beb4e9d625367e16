"""Shared set-up for the add-on tests: real Blender (the bpy module), no mocks of bpy.

Importing this module makes Blender hermetic (BLENDER_USER_RESOURCES in a temp folder, set
BEFORE bpy is imported), puts the repository root on sys.path so `import addon` works, and
registers the add-on once per test process. Each test builds its own small scene with
`new_scene()` and makes it the window's scene, so tests do not see each other's settings.

`fake_engine()` writes a stand-in `engine` package that speaks the engine's command-line
contract (check --json; stylize --job --progress jsonl) with scripted behaviour (ok, slow,
crash, bad input). It tests the add-on's process plumbing quickly and deterministically; the
end-to-end test uses the real engine.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import textwrap
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if "BLENDER_USER_RESOURCES" not in os.environ:
    os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="flowstyle_blender_user_")
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import bpy  # noqa: E402  (after BLENDER_USER_RESOURCES)
import numpy as np  # noqa: E402
import OpenEXR  # noqa: E402

import addon  # noqa: E402
from addon import settings  # noqa: E402

WIDTH, HEIGHT = 64, 48


def ensure_registered() -> None:
    """Register the add-on from the source tree (once per process)."""
    if not hasattr(bpy.types.Scene, "flowstyle"):
        addon.register()


_counter = [0]


def new_scene(name: str = "Shot", frames: tuple[int, int] = (1, 3), camera: bool = True,
              engine: str = "CYCLES") -> bpy.types.Scene:
    """A tiny animated scene (64x48, Cycles CPU, 1 sample), made the window's scene.

    A textured-free cube slides to the right in front of a plane, so the Vector pass is not
    zero; the output format is PNG and motion blur is on, as in a user's everyday scene.
    """
    ensure_registered()
    _counter[0] += 1
    scene = bpy.data.scenes.new(f"{name}{_counter[0]}")
    scene.render.engine = engine
    if engine == "CYCLES":
        scene.cycles.device = "CPU"
        scene.cycles.samples = 1
        scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y = WIDTH, HEIGHT
    scene.render.resolution_percentage = 100
    scene.frame_start, scene.frame_end = frames
    scene.render.image_settings.file_format = "PNG"
    scene.render.use_motion_blur = True
    scene.render.filepath = "//user_output/frame_"

    mesh = bpy.data.meshes.new("CubeMesh")
    h = 0.5
    verts = [(x, y, z) for x in (-h, h) for y in (-h, h) for z in (-h, h)]
    faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    mesh.from_pydata(verts, [], faces)
    cube = bpy.data.objects.new("Cube", mesh)
    scene.collection.objects.link(cube)
    cube.location = (-1.0, 0.0, 0.0)
    cube.keyframe_insert("location", frame=frames[0])
    cube.location = (1.0, 0.0, 0.0)
    cube.keyframe_insert("location", frame=max(frames[1], frames[0] + 1))

    light = bpy.data.objects.new("Light", bpy.data.lights.new("Light", "SUN"))
    scene.collection.objects.link(light)
    if camera:
        cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
        scene.collection.objects.link(cam)
        cam.location = (0.0, -6.0, 0.0)
        cam.rotation_euler = (1.5708, 0.0, 0.0)
        scene.camera = cam
    window = bpy.context.window
    assert window is not None
    window.scene = scene
    return scene


def forget_saved_file() -> None:
    """Back to a never-saved file (empty), for tests that saved or opened a .blend: later
    tests in this process may rely on an unsaved file."""
    bpy.ops.wm.read_homefile(use_empty=True)


def render_settings_snapshot(scene: bpy.types.Scene) -> dict[str, Any]:
    """Every setting Flowstyle might touch, to prove it was put back."""
    r = scene.render
    im = r.image_settings
    snap: dict[str, Any] = {
        "filepath": r.filepath, "use_motion_blur": r.use_motion_blur,
        "use_compositing": r.use_compositing, "use_sequencer": r.use_sequencer,
        "use_file_extension": r.use_file_extension, "frame_current": scene.frame_current,
        "media_type": im.media_type, "file_format": im.file_format, "color_mode": im.color_mode,
        "color_depth": im.color_depth, "exr_codec": im.exr_codec,
    }
    for layer in scene.view_layers:
        snap[f"{layer.name}.vector"] = layer.use_pass_vector
        snap[f"{layer.name}.z"] = layer.use_pass_z
    return snap


def set_styles(scene: bpy.types.Scene, paths: list[str]) -> None:
    props = settings.settings_of(scene)
    props.styles.clear()
    for path in paths:
        item = props.styles.add()
        item.path = path


def style_image(folder: str) -> str:
    """A small noisy RGB image to use as a style (PNG, written with Blender itself)."""
    path = os.path.join(folder, "style.png")
    if not os.path.exists(path):
        image = bpy.data.images.new("style_src", 32, 32)
        rng = np.random.default_rng(0)
        pixels = rng.random((32, 32, 4), dtype=np.float32)
        pixels[..., 3] = 1.0
        image.pixels.foreach_set(pixels.ravel())
        image.filepath_raw = path
        image.file_format = "PNG"
        image.save()
        bpy.data.images.remove(image)
    return path


def write_rgba_exr(path: str, value: float, width: int = WIDTH, height: int = HEIGHT) -> None:
    """A flat single-part RGBA EXR, like the engine's output."""
    pixels = np.full((height, width, 4), value, np.float32)
    pixels[..., 3] = 1.0
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    OpenEXR.File(header, {"RGBA": pixels}).write(path)


def read_rgba_mean(path: str) -> float:
    """Mean of R in an EXR Blender wrote (single layer)."""
    with OpenEXR.File(path, separate_channels=True) as exr:
        return float(exr.parts[0].channels["R"].pixels.mean())


_FAKE_MAIN = textwrap.dedent('''
    """Stand-in engine for the add-on tests; behaviour from fake_config.json next to it."""
    import json, os, sys, time
    import numpy as np, OpenEXR

    HERE = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(HERE, "fake_config.json")) as fh:
        CONFIG = json.load(fh)

    def emit(**event):
        print(json.dumps(event), flush=True)

    def main(argv):
        if argv[:1] == ["check"]:
            time.sleep(CONFIG.get("check_delay", 0.0))
            ok = CONFIG.get("torch", True)
            print(json.dumps({"ok": ok, "python": sys.version.split()[0],
                              "torch": "2.0-fake" if ok else None, "cuda": False,
                              "device": "cpu", "weights": {"caffe": ok},
                              "problems": [] if ok else ["torch is not installed in this Python"],
                              "fixes": [] if ok else ["pip install torch"]}))
            return 0 if ok else 1
        job = json.load(open(argv[argv.index("--job") + 1]))
        with open(os.path.join(HERE, "calls.jsonl"), "a") as fh:
            fh.write(json.dumps({"argv": argv, "job": job}) + "\\n")
        mode = CONFIG.get("mode", "ok")
        print("fake engine log line", file=sys.stderr, flush=True)
        if mode == "crash":
            print("Traceback (most recent call last):\\nRuntimeError: CUDA out of memory (fake)",
                  file=sys.stderr, flush=True)
            return 1
        if mode == "bad":
            emit(event="error", message="frame 2: the Vector pass is missing (fake)")
            return 2
        start, end = job["frames"]
        frames = list(range(start, end + 1))
        out = job["out"]
        done = [f for f in frames if os.path.exists(os.path.join(out, f"flowstyle_{f:04d}.exr"))]
        emit(event="start", total=len(frames), todo=len(frames) - len(done), out=out)
        for f in done:
            emit(event="frame_skipped", frame=f, reason="resumed")
        count = len(done)
        for i, f in enumerate(x for x in frames if x not in done):
            if not os.path.exists(os.path.join(job["input"], f"render_{f:04d}.exr")):
                emit(event="error", message=f"frame {f}: no input render")
                return 2
            if i > 0:
                time.sleep(CONFIG.get("delay", 0.0))
            path = os.path.join(out, f"flowstyle_{f:04d}.exr")
            px = np.full((48, 64, 4), f / 10.0, np.float32)
            px[..., 3] = 1.0
            OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION,
                          "type": OpenEXR.scanlineimage}, {"RGBA": px}).write(path + ".tmp.exr")
            os.replace(path + ".tmp.exr", path)
            count += 1
            emit(event="frame_done", frame=f, done=count, total=len(frames), seconds=0.01,
                 eta=0.01 * (len(frames) - count), path=path)
        emit(event="finished", total=len(frames), seconds=0.1, out=out)
        return 0

    sys.exit(main(sys.argv[1:]))
''')


def fake_engine(root: str, **config: Any) -> str:
    """Write a fake `engine` package under `root` (returned: the folder to put on PYTHONPATH).

    config: mode = "ok" | "crash" | "bad"; delay = seconds before each frame after the
    first; torch = False makes `check` report a Python without torch; check_delay = seconds
    the check takes.
    """
    package = os.path.join(root, "engine")
    os.makedirs(package, exist_ok=True)
    with open(os.path.join(package, "__init__.py"), "w") as fh:
        fh.write("")
    with open(os.path.join(package, "__main__.py"), "w") as fh:
        fh.write(_FAKE_MAIN)
    set_fake_config(root, **config)
    return root


def batch_args(folder: str, engine_root: str, *extra: str) -> list[str]:
    """A `flowstyle stylize` batch command line: a style image made in `folder`, output
    in folder/out, this Python and the (fake) engine at `engine_root`."""
    return ["stylize", "--style", style_image(folder), "--out", os.path.join(folder, "out"),
            "--python", sys.executable, "--engine-root", engine_root, *extra]


def set_fake_config(root: str, **config: Any) -> None:
    with open(os.path.join(root, "engine", "fake_config.json"), "w") as fh:
        json.dump(config, fh)


def fake_calls(root: str) -> list[dict[str, Any]]:
    path = os.path.join(root, "engine", "calls.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]
