"""Check Engine runs in the background with a timeout: pressing it never blocks Blender.

The check imports torch in the engine's interpreter (seconds; a stuck GPU driver: forever).
The preferences button starts it as a process that a timer polls; these tests drive that poll
themselves (timers do not fire in background mode), against a fake engine whose check takes
as long as we say."""

from __future__ import annotations

import pathlib
import sys
import time

import pytest

from addon_helpers import ensure_registered, fake_engine

import bpy
from addon import engine_client, preferences


@pytest.fixture
def slow_check(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> str:
    ensure_registered()
    root = fake_engine(str(tmp_path / "fake"), check_delay=2.0)
    monkeypatch.setenv("FLOWSTYLE_PYTHON", sys.executable)
    monkeypatch.setenv("FLOWSTYLE_ENGINE_ROOT", root)
    return root


def test_check_engine_returns_at_once_and_reports_when_done(slow_check: str) -> None:
    started = time.monotonic()
    check = preferences.start_check()
    assert isinstance(check, engine_client.CheckProcess)
    assert preferences.poll_check() is None  # a timer tick returns at once
    assert time.monotonic() - started < 1.0  # the check itself takes 2 s
    assert not bpy.ops.flowstyle.check_engine.poll()  # no second check meanwhile
    while (result := preferences.poll_check()) is None:
        assert time.monotonic() - started < 30
        time.sleep(0.05)
    assert result.ok and "torch 2.0-fake" in result.summary()
    assert preferences.LAST_CHECK["result"] is result
    assert bpy.ops.flowstyle.check_engine.poll()


def test_a_check_that_hangs_is_stopped_after_the_timeout(slow_check: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    engine_client_check = engine_client.CheckProcess(sys.executable, slow_check, timeout=0.5)
    assert engine_client_check.poll() is None
    time.sleep(0.7)
    result = engine_client_check.poll()
    assert result is not None and not result.ok
    assert "did not answer within 0.5 s" in result.problems[0]
    assert engine_client_check._proc is not None and engine_client_check._proc.poll() is not None

    # The button in background mode (scripts, `blender -b`) waits, but only up to the timeout.
    monkeypatch.setattr(engine_client, "CHECK_TIMEOUT", 1.0)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="did not answer within 1 s"):
        bpy.ops.flowstyle.check_engine("INVOKE_DEFAULT")
    assert time.monotonic() - started < 1.9  # not the 2 s the check would take
    assert not preferences.LAST_CHECK["result"].ok
    assert not preferences.RUNNING_CHECK
