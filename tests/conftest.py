"""Shared fixtures: real Blender renders (made once per test session) and engine helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STYLE = ROOT / "engine" / "styles" / "starry_night.jpg"
sys.path.insert(0, str(ROOT))
# Blender writes per-user files on import; keep them out of ~/.config (docs/architecture.md).
os.environ.setdefault("BLENDER_USER_RESOURCES", str(ROOT / ".venv" / "blender-user"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: runs Blender or the optimizer for several seconds")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def render_shot(out: Path, *args: str) -> Path:
    """Render the demo shot into `out` with real Blender, in a subprocess."""
    cmd = [sys.executable, str(ROOT / "tests" / "render_shot.py"), str(out), *args]
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"render failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return out


@pytest.fixture(scope="session")
def shot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 frames, 96x72, Cycles 16 samples: Combined, Vector, Depth, Object Index."""
    return render_shot(tmp_path_factory.mktemp("shot"), "--frames", "6")


@pytest.fixture(scope="session")
def transparent_shot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 frames with a transparent sky (alpha 0 above the floor)."""
    return render_shot(tmp_path_factory.mktemp("transparent"), "--frames", "3", "--transparent",
                       "--samples", "4")


def run_engine(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """`python -m engine ARGS` in a subprocess, as the add-on and users run it."""
    result = subprocess.run([sys.executable, "-m", "engine", *args], env=_env(), cwd=ROOT,
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"engine exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def jsonl_events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


# Tiny but real settings: enough iterations to stylize visibly at 96x72 on 2 CPU cores.
FAST = ["--height", "72", "--first-iterations", "30", "--iterations", "15"]


def write_multilayer(path: Path, passes: dict, layer: str = "ViewLayer") -> None:
    """Write an EXR laid out as Blender 5.0 writes it: one part per pass, float32.

    passes: pass name ("Combined", "Vector", "Depth") -> (H, W, C) float32 array.
    """
    import numpy as np
    import OpenEXR

    names = {"Combined": "RGBA", "Vector": "XYZW", "Depth": "Z", "Object Index": "X"}
    parts = []
    for pass_name, array in passes.items():
        channels = {f"{layer}.{pass_name}.{c}": np.ascontiguousarray(array[..., i], np.float32)
                    for i, c in enumerate(names[pass_name][: array.shape[-1]])}
        header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
        parts.append(OpenEXR.Part(header, channels, f"{layer}.{pass_name}"))
    OpenEXR.File(parts).write(str(path))


def read_frame(path: Path) -> dict:
    from engine import exr
    return exr.read_passes(str(path), exr.read_layout(str(path)))


def png_frames(folder, count: int, size=(48, 32)):
    """`count` small PNG frames of a gradient drifting right by one pixel per frame."""
    import numpy as np
    from PIL import Image

    folder.mkdir()
    x = np.arange(size[0])[None, :, None]
    y = np.arange(size[1])[:, None, None]
    for n in range(1, count + 1):
        rgb = np.concatenate([(x + n) * 5 % 256 + 0 * y, y * 8 + 0 * x, (x * y) % 256], axis=2)
        Image.fromarray(rgb.astype(np.uint8)).save(folder / f"frame_{n:04d}.png")
    return folder
