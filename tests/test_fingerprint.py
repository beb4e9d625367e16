"""Resume keeps a finished frame only if it would come out the same now: a changed setting,
engine source file or weights file redoes frames; an unchanged rerun redoes nothing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, jsonl_events, png_frames
from engine import __version__, digests
from engine.cli import main
from engine.vgg import load_state

TINY = ["--height", "32", "--first-iterations", "2", "--iterations", "1", "--progress", "jsonl"]


def todo(events: list[dict]) -> int:
    (start,) = [e for e in events if e["event"] == "start"]
    return start["todo"]


def stylize(capsys, *args) -> int:
    """Run `engine stylize` in this process; how many frames it (re)stylized."""
    code = main(["stylize", *args, *TINY])
    out, err = capsys.readouterr()
    assert code == 0, err
    return todo(jsonl_events(out))


def test_the_engine_version_matches_the_extension_manifest():
    manifest = (ROOT / "blender_manifest.toml").read_text()
    assert re.search(r'^version = "([^"]+)"', manifest, re.M).group(1) == __version__


def test_a_changed_setting_redoes_frames_and_an_unchanged_rerun_nothing(tmp_path, capsys):
    frames = png_frames(tmp_path / "frames", 2)
    out = str(tmp_path / "out")
    assert stylize(capsys, str(frames), "--out", out) == 2
    assert stylize(capsys, str(frames), "--out", out) == 0
    assert stylize(capsys, str(frames), "--out", out, "--style-strength", "2") == 2
    assert stylize(capsys, str(frames), "--out", out, "--style-strength", "2") == 0


@pytest.mark.slow
def test_a_changed_weights_file_redoes_frames_and_a_touched_one_does_not(tmp_path, capsys):
    frames = png_frames(tmp_path / "frames", 2)
    out = str(tmp_path / "out")
    state, _ = load_state("caffe")
    state = {k: v for k, v in state.items() if int(k.split(".")[0]) <= 29}  # up to relu5_1
    weights = tmp_path / "vgg19.pth"
    torch.save(state, weights)
    run = (str(frames), "--out", out, "--weights", str(weights))
    assert stylize(capsys, *run) == 2
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # same content, newer
    assert stylize(capsys, *run) == 0
    state["0.bias"] = state["0.bias"] + 0.5  # retrained, saved at the same path
    torch.save(state, weights)
    assert stylize(capsys, *run) == 2
    moved = tmp_path / "elsewhere.pth"
    shutil.copy(weights, moved)  # the same weights at another path: the same pixels
    assert stylize(capsys, str(frames), "--out", out, "--weights", str(moved)) == 0


def test_the_weights_digest_is_cached_by_path_size_and_mtime(tmp_path):
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"a" * 1000)
    first = digests.weights_digest(str(weights), str(tmp_path))
    assert (tmp_path / digests.CACHE_NAME).exists()
    assert digests.weights_digest(str(weights), str(tmp_path)) == first
    stat = weights.stat()
    weights.write_bytes(b"b" * 1000)  # same size; put the old mtime back: the cache answers
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert digests.weights_digest(str(weights), str(tmp_path)) == first
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # any change: hash again
    assert digests.weights_digest(str(weights), str(tmp_path)) != first


@pytest.mark.slow
def test_a_changed_engine_source_file_redoes_frames(tmp_path):
    # The engine as another version would be: a copy of the package with one file changed.
    copy = tmp_path / "install"
    shutil.copytree(ROOT / "engine", copy / "engine", ignore=shutil.ignore_patterns("__pycache__"))
    frames = png_frames(tmp_path / "frames", 2)
    env = {**os.environ, "PYTHONPATH": str(copy)}

    def run() -> int:
        result = subprocess.run([sys.executable, "-m", "engine", "stylize", str(frames), "--out",
                                 str(tmp_path / "out"), *TINY], cwd=copy, env=env,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        return todo(jsonl_events(result.stdout))

    assert run() == 2
    assert run() == 0
    with open(copy / "engine" / "losses.py", "a", encoding="utf-8") as f:
        f.write("\n# a bug fix in a later version\n")
    assert run() == 2
    assert run() == 0
