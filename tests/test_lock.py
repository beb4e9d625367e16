"""One run per output folder: a second run is refused naming the first; a dead run's lock
is taken over; the lock goes away when a run ends, fails or is stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT, _env, png_frames
from engine import lock
from engine.cli import main
from engine.errors import FlowstyleError

TINY = ["--height", "32", "--first-iterations", "3", "--iterations", "2", "--progress", "lines"]


def dead_pid() -> int:
    """The pid of a process that has just exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_lock(out, **holder):
    (out / ".flowstyle").mkdir(parents=True, exist_ok=True)
    (out / ".flowstyle" / "lock").write_text(json.dumps(holder))


@pytest.mark.slow
def test_a_second_run_on_a_busy_folder_is_refused_and_a_stopped_run_releases_the_lock(tmp_path):
    frames = png_frames(tmp_path / "frames", 200)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "engine", "stylize", str(frames), "--out", str(out),
           "--height", "32", "--first-iterations", "20", "--iterations", "20", "--progress", "none"]
    first = subprocess.Popen(cmd, env=_env(), cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not (out / ".flowstyle" / "lock").exists():
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.1)
        second = subprocess.run(cmd[:-2] + ["--progress", "lines"], env=_env(), cwd=ROOT,
                                capture_output=True, text=True, timeout=300)
        assert first.poll() is None, "the first run must still be running for this test"
        assert second.returncode == 2, second.stderr
        assert "another Flowstyle run" in second.stderr
        assert f"pid {first.pid} on host {socket.gethostname()}" in second.stderr
        assert " UTC" in second.stderr  # since when
        first.send_signal(signal.SIGTERM)  # what the add-on's Cancel sends
        assert first.wait(timeout=60) == 130
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert not (out / ".flowstyle" / "lock").exists(), "a stopped run must release the lock"
    assert not list(out.glob(".partial*"))
    # The refused run wrote nothing: every frame there is the first run's.
    written = sorted(out.glob("flowstyle_*.exr"))
    assert len(written) < 200


def test_a_stale_lock_of_a_dead_run_is_taken_over_with_a_warning(tmp_path, capsys):
    frames = png_frames(tmp_path / "frames", 2)
    out = tmp_path / "out"
    pid = dead_pid()
    write_lock(out, pid=pid, host=socket.gethostname(), started=time.time() - 60,
               command="python -m engine stylize old", token="old")
    code = main(["stylize", str(frames), "--out", str(out), *TINY])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "taking over the lock" in err and f"pid {pid}" in err
    assert len(list(out.glob("flowstyle_*.exr"))) == 2
    assert not (out / ".flowstyle" / "lock").exists()
    assert not list((out / ".flowstyle").glob("lock*"))


def test_a_live_runs_lock_refuses_and_is_left_alone(tmp_path, capsys):
    frames = png_frames(tmp_path / "frames", 2)
    out = tmp_path / "out"
    holder = dict(pid=os.getppid(), host=socket.gethostname(), started=time.time(),
                  command="python -m engine stylize shot_a", token="a")
    write_lock(out, **holder)
    code = main(["stylize", str(frames), "--out", str(out), *TINY])
    err = capsys.readouterr().err
    assert code == 2
    assert f"pid {os.getppid()}" in err and "shot_a" in err
    assert json.loads((out / ".flowstyle" / "lock").read_text()) == holder
    assert not list(out.glob("flowstyle_*.exr"))


def test_lock_of_another_host_is_never_taken_over_and_the_message_says_how_to_clear_it(tmp_path):
    write_lock(tmp_path, pid=dead_pid(), host="render-node-7", started=time.time(), command="x")
    with pytest.raises(FlowstyleError, match="render-node-7.*delete .*lock"):
        lock.OutputLock(str(tmp_path)).acquire()


def test_the_lock_is_exclusive_and_released_on_an_error(tmp_path):
    first = lock.OutputLock(str(tmp_path))
    with pytest.raises(RuntimeError):
        with first:
            with pytest.raises(FlowstyleError, match=f"pid {os.getpid()}"):
                lock.OutputLock(str(tmp_path)).acquire()
            raise RuntimeError("a crash inside the run")
    assert lock.read_lock(str(tmp_path)) is None
    with lock.OutputLock(str(tmp_path)):  # free again
        pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process start times from /proc")
def test_a_reused_pid_does_not_keep_a_lock_alive(tmp_path):
    # After a crash and a reboot the dead run's pid may belong to an unrelated process,
    # which started after the lock was written.
    holder = dict(pid=os.getpid(), host=socket.gethostname(), started=1000.0, command="old")
    assert lock.is_stale(holder)
    assert not lock.is_stale({**holder, "started": time.time()})
