"""An engine whose parent (Blender) dies stops within seconds, leaving whole files only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import ROOT, _env, png_frames
from engine.lock import pid_alive

PARENT = textwrap.dedent("""
    import signal, subprocess, sys, time
    ignore_sigint, pid_file, log, cmd = sys.argv[1] == "1", sys.argv[2], sys.argv[3], sys.argv[4:]
    if ignore_sigint:  # as a shell does for a job started in the background (nohup, &)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    engine = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    open(pid_file, "w").write(str(engine.pid))
    time.sleep(3600)
""")


@pytest.mark.slow
@pytest.mark.parametrize("ignore_sigint", [False, True], ids=["sigint-default", "sigint-ignored"])
def test_killing_the_parent_stops_the_engine_within_seconds(tmp_path, ignore_sigint):
    # With SIGINT ignored (inherited from a background start) the engine used to run on.
    frames = png_frames(tmp_path / "frames", 200)
    out = tmp_path / "out"
    pid_file, log = tmp_path / "engine.pid", tmp_path / "engine.log"
    engine_cmd = [sys.executable, "-m", "engine", "stylize", str(frames), "--out", str(out),
                  "--height", "32", "--first-iterations", "20", "--iterations", "20",
                  "--progress", "lines", "--watch-parent"]
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(int(ignore_sigint)), str(pid_file),
                               str(log), *engine_cmd], env=_env(), cwd=ROOT)
    engine_pid = None
    try:
        deadline = time.monotonic() + 180
        while not list(out.glob("flowstyle_*.exr")):  # busy: a frame is written
            assert parent.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        engine_pid = int(pid_file.read_text())
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        killed = time.monotonic()
        while pid_alive(engine_pid) and time.monotonic() - killed < 30:
            time.sleep(0.05)
        stopped_after = time.monotonic() - killed
        print(f"engine stopped {stopped_after:.2f} s after its parent was killed")
        assert not pid_alive(engine_pid), "the engine outlived its parent by 30 s"
        assert stopped_after < 10, f"the engine took {stopped_after:.1f} s to stop"
    finally:
        if parent.poll() is None:
            parent.kill()
        if engine_pid and pid_alive(engine_pid):
            os.kill(engine_pid, signal.SIGKILL)
    assert "interrupted" in log.read_text()
    leftovers = [p.name for p in out.rglob("*") if "partial" in p.name or p.name.startswith("lock")]
    assert leftovers == [], "no half-written file and no lock may be left behind"
    written = sorted(out.glob("flowstyle_*.exr"))
    assert 0 < len(written) < 200
