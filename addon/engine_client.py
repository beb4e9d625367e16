"""Talking to the engine process: where it is, how to start it, reading its progress.

No bpy here. The engine runs in another Python (the user's, with torch), never inside
Blender: CUDA torch does not fit in Blender's Python, and a separate process can be killed at
once on cancel, freeing GPU memory. This module knows the engine's command-line contract:

* `python -m engine check --json` prints one JSON object and exits 0 when usable;
* `python -m engine stylize --job job.json --progress jsonl` prints one JSON event per line
  on stdout, logs on stderr, exits 0 / 2 (bad input) / 1 (crash), and can be stopped with
  SIGTERM (finished frames stay; a rerun resumes).

Progress is read by a small thread that only moves lines from the pipe into a queue, because
pipes cannot be read without blocking on every platform, and the Blender side must never
wait on the engine. The thread touches no Blender data (bpy is not thread-safe).
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from typing import IO, Any

ENGINE_PACKAGE = "engine"
_LOG_TAIL_BYTES = 4000
# The check imports torch (seconds; a first CUDA initialisation can take a minute); a check
# that has not answered after this long is stuck (a hung driver, a network home folder).
CHECK_TIMEOUT = 180.0


class EngineError(RuntimeError):
    """The engine could not be found, started or run; the message says what to do."""


def find_engine_root(addon_dir: str) -> str | None:
    """The folder that CONTAINS the `engine` package, or None.

    In the built extension the engine is copied inside the add-on folder; in the source tree
    it sits next to `addon/`. Symlinks are resolved so a linked development copy still finds
    the tree it came from.
    """
    addon_dir = os.path.realpath(addon_dir)
    for root in (addon_dir, os.path.dirname(addon_dir)):
        if os.path.isfile(os.path.join(root, ENGINE_PACKAGE, "__init__.py")) or \
                os.path.isdir(os.path.join(root, ENGINE_PACKAGE)):
            return root
    return None


def default_engine_root() -> str | None:
    """Engine root for this copy of the add-on ($FLOWSTYLE_ENGINE_ROOT overrides it)."""
    override = os.environ.get("FLOWSTYLE_ENGINE_ROOT")
    if override:
        return override
    return find_engine_root(os.path.dirname(os.path.abspath(__file__)))


def guess_python() -> str:
    """A sensible default engine interpreter: the first `python3` (or `python`) on PATH.

    Blender's own Python (sys.executable inside Blender) has no torch, so it is not a good
    default; when nothing is on PATH we still return it so the check can say what is missing.
    $FLOWSTYLE_PYTHON, when set, wins: a farm or CI can point every Blender at one venv.
    """
    override = os.environ.get("FLOWSTYLE_PYTHON")
    if override:
        return override
    for name in ("python3", "python"):
        found = shutil.which(name)
        if found:
            return found
    return sys.executable


def engine_env(engine_root: str) -> dict[str, str]:
    """Environment for the engine: our engine first on PYTHONPATH, unbuffered output.

    PYTHONHOME is dropped: Blender may set it for its bundled Python, and it would break any
    other interpreter.
    """
    env = dict(os.environ)
    env.pop("PYTHONHOME", None)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = engine_root + (os.pathsep + old if old else "")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def engine_command(python: str, *args: str) -> list[str]:
    """The engine's command line. Run it with cwd=engine_root: `python -m` puts the working
    directory first on sys.path, so another folder called `engine` there would win."""
    return [python, "-m", ENGINE_PACKAGE, *args]


def _popen_flags() -> int:
    # No console window flashing up for each engine start on Windows.
    return getattr(subprocess, "CREATE_NO_WINDOW", 0) if os.name == "nt" else 0


def check_interpreter(python: str) -> str | None:
    """A problem with the interpreter path itself (before starting anything), or None."""
    if not python:
        return "No Python interpreter is set for the engine: set one in the Flowstyle preferences."
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        return (f"The engine interpreter {python!r} does not exist or cannot be run: set the "
                "path of a Python with torch installed in the Flowstyle preferences "
                "(or --python in batch).")
    return None


@dataclasses.dataclass
class CheckResult:
    """The engine's self-check (`engine check --json`), or why it could not run."""

    ok: bool
    info: dict[str, Any]
    problems: list[str]
    fixes: list[str]

    def summary(self) -> str:
        """One line for a status bar or report."""
        if not self.info:
            return "; ".join(self.problems) or "engine check failed"
        torch_v = self.info.get("torch") or "no torch"
        device = self.info.get("device", "?")
        weights = self.info.get("weights") or {}
        found = ", ".join(k for k, v in weights.items() if v) or "none"
        text = f"Python {self.info.get('python', '?')}, torch {torch_v}, device {device}, weights: {found}"
        if not self.ok and self.problems:
            text += " | " + "; ".join(self.problems)
        return text


def parse_check_output(returncode: int, stdout: str, stderr: str) -> CheckResult:
    """Turn the check process's output into a CheckResult, whatever went wrong."""
    info: dict[str, Any] | None = None
    for line in reversed(stdout.strip().splitlines()):
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            info = parsed
            break
    if info is None:
        tail = _last_lines(stderr, 3) or f"exit code {returncode}"
        return CheckResult(False, {}, [f"The engine check did not run: {tail}"],
                           ["Make sure the interpreter is Python 3.10+ with the engine's "
                            "requirements (torch, numpy, OpenEXR) installed."])
    ok = bool(info.get("ok")) and returncode == 0
    problems = [str(p) for p in info.get("problems") or []]
    fixes = [str(f) for f in info.get("fixes") or []]
    if not info.get("torch"):
        if not any("torch" in p.lower() for p in problems):
            problems.insert(0, "torch is not installed in the engine interpreter.")
        ok = False
    return CheckResult(ok, info, problems, fixes)


def check_command(python: str, weights: str, device: str) -> list[str]:
    """`engine check` for the weights and device the user chose: only those can fail it."""
    return engine_command(python, "check", "--json", "--weights", weights, "--device", device)


def _timed_out(python: str, timeout: float) -> CheckResult:
    return CheckResult(False, {}, [f"The engine check in {python!r} did not answer within "
                                   f"{timeout:g} s and was stopped"],
                       ["Run `python -m engine check` in that interpreter from a terminal to "
                        "see where it hangs (torch import, GPU driver)."])


def run_check(python: str, engine_root: str, weights: str = "caffe", device: str = "auto",
              timeout: float = CHECK_TIMEOUT) -> CheckResult:
    """Run `engine check --json` and wait for it (batch mode and scripts; the UI polls a
    `CheckProcess` instead, so Blender never waits on it)."""
    problem = check_interpreter(python)
    if problem:
        return CheckResult(False, {}, [problem], [])
    try:
        proc = subprocess.run(check_command(python, weights, device),
                              env=engine_env(engine_root), cwd=engine_root,
                              capture_output=True, text=True, timeout=timeout,
                              creationflags=_popen_flags())
    except subprocess.TimeoutExpired:
        return _timed_out(python, timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        return CheckResult(False, {}, [f"Could not run {python!r}: {exc}"], [])
    return parse_check_output(proc.returncode, proc.stdout, proc.stderr)


class CheckProcess:
    """`engine check --json` started in the background and polled (the UI's runs and its
    Check Engine button): starting and `poll()` return at once; after `timeout` seconds
    without an answer the check is killed and `poll()` says so."""

    def __init__(self, python: str, engine_root: str, weights: str = "caffe",
                 device: str = "auto", timeout: float = CHECK_TIMEOUT) -> None:
        self._python = python
        self._proc: subprocess.Popen[str] | None = None
        self._result: CheckResult | None = None
        self.timeout = timeout
        self._deadline = time.monotonic() + timeout
        problem = check_interpreter(python)
        if problem:
            self._result = CheckResult(False, {}, [problem], [])
            return
        try:
            self._proc = subprocess.Popen(
                check_command(python, weights, device), env=engine_env(engine_root),
                cwd=engine_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                creationflags=_popen_flags())
        except OSError as exc:
            self._result = CheckResult(False, {}, [f"Could not run {python!r}: {exc}"], [])

    def poll(self) -> CheckResult | None:
        """The result once the check has exited (or timed out), else None (never blocks for
        long)."""
        if self._result is None and self._proc is not None:
            if self._proc.poll() is not None:
                # The check prints a few hundred bytes: the pipes cannot have filled and blocked.
                out, err = self._proc.communicate()
                self._result = parse_check_output(self._proc.returncode, out, err)
            elif time.monotonic() > self._deadline:
                self.terminate()
                self._result = _timed_out(self._python, self.timeout)
        return self._result

    def terminate(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


def _last_lines(text: str, n: int) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:])


@dataclasses.dataclass
class Progress:
    """What the engine has reported so far (fed by its JSON events)."""

    total: int = 0
    todo: int = 0
    done: int = 0
    skipped: list[int] = dataclasses.field(default_factory=list)
    last_frame: int | None = None
    eta: float | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)
    finished: bool = False
    training: bool = False  # the engine is training the network (counts are steps)

    def apply(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "start":
            self.total = int(event.get("total", 0))
            self.todo = int(event.get("todo", self.total))
        elif kind == "frame_done":
            self.done = int(event.get("done", self.done + 1))
            self.total = int(event.get("total", self.total))
            self.last_frame = event.get("frame")
            eta = event.get("eta")
            self.eta = float(eta) if isinstance(eta, (int, float)) else None
        elif kind == "train_start":
            self.training = True
            self.total = int(event.get("total", 0))
            self.done = self.total - int(event.get("todo", self.total))
        elif kind == "step_done":
            self.done = int(event.get("step", self.done + 1))
            eta = event.get("eta")
            self.eta = float(eta) if isinstance(eta, (int, float)) else None
        elif kind == "frame_skipped":
            frame = event.get("frame")
            if isinstance(frame, int):
                self.skipped.append(frame)
        elif kind == "warning":
            self.warnings.append(str(event.get("message", "")))
        elif kind == "error":
            self.errors.append(str(event.get("message", "")))
        elif kind == "finished":
            self.finished = True
            self.eta = 0.0

    @property
    def fraction(self) -> float:
        return (self.done / self.total) if self.total else 0.0

    def text(self) -> str:
        """e.g. 'Stylizing frame 3/10, ETA 1m20s'."""
        if not self.total:
            return "Starting the engine"
        text = f"{'Training step' if self.training else 'Stylizing'} {self.done}/{self.total}"
        if self.eta is not None and self.done < self.total:
            text += f", ETA {format_seconds(self.eta)}"
        return text


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def describe_event(event: dict[str, Any]) -> str:
    """One human line for an engine event (printed by batch, shown as last message in UI)."""
    kind = event.get("event")
    if kind == "start":
        return (f"engine started: {event.get('total')} frames, {event.get('todo')} to do, "
                f"output {event.get('out')}")
    if kind == "frame_done":
        line = f"frame {event.get('frame')} done ({event.get('done')}/{event.get('total')})"
        if isinstance(event.get("seconds"), (int, float)):
            line += f" in {event['seconds']:.1f}s"
        if isinstance(event.get("eta"), (int, float)):
            line += f", ETA {format_seconds(event['eta'])}"
        return line
    if kind == "train_start":
        return (f"training the network: {event.get('todo')} of {event.get('total')} steps "
                f"to do, model {event.get('out')}")
    if kind == "step_done":
        line = f"training step {event.get('step')}/{event.get('total')}"
        if isinstance(event.get("eta"), (int, float)):
            line += f", ETA {format_seconds(event['eta'])}"
        return line
    if kind == "up_to_date":
        return f"reusing the trained network {event.get('path')} (styles and frames unchanged)"
    if kind in ("preview", "checkpoint"):
        return f"training: {kind} at step {event.get('step')}: {event.get('path')}"
    if kind == "train_finished":
        return f"network trained ({event.get('steps')} steps): {event.get('out')}"
    if kind == "tiling":
        return (f"frames too large for memory at once: the network runs in tiles of "
                f"{event.get('tile')} px (the same pixels as whole frames)")
    if kind == "frame_skipped":
        return f"frame {event.get('frame')} skipped ({event.get('reason', 'resumed')})"
    if kind == "warning":
        return f"warning: {event.get('message')}"
    if kind == "error":
        return f"error: {event.get('message')}"
    if kind == "finished":
        seconds = event.get("seconds")
        took = f" in {format_seconds(seconds)}" if isinstance(seconds, (int, float)) else ""
        return f"finished {event.get('total')} frames{took}: {event.get('out')}"
    return str(event.get("message", event))


class EngineProcess:
    """A running `engine stylize`, read without blocking.

    `poll()` drains whatever progress lines have arrived; `exit_code` is None while running.
    stderr goes straight to the log file, so a chatty or crashing engine can never fill a pipe
    and stall.
    """

    def __init__(self, python: str, engine_root: str, args: list[str], log_path: str) -> None:
        self.log_path = log_path
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._log: IO[str] = open(log_path, "a", encoding="utf-8")
        self._log.write(f"\n===== Flowstyle engine run {time.strftime('%Y-%m-%d %H:%M:%S')} =====\n")
        self._log.flush()
        self._log_start = self._log.tell()
        self.terminated = False
        self._eof = False
        try:
            self._proc = subprocess.Popen(
                engine_command(python, *args), env=engine_env(engine_root), cwd=engine_root,
                stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL,
                text=True, encoding="utf-8", errors="replace", bufsize=1,
                creationflags=_popen_flags())
        except OSError as exc:
            self._log.close()
            raise EngineError(f"Could not start the engine with {python!r}: {exc}") from exc
        self._reader = threading.Thread(target=self._read, name="flowstyle-engine-reader",
                                        daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._queue.put(line)
        self._queue.put(None)  # end of output

    @property
    def pid(self) -> int:
        return self._proc.pid

    def poll(self) -> list[dict[str, Any]]:
        """Events that arrived since the last call. Lines that are not JSON become 'output'."""
        events: list[dict[str, Any]] = []
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self._eof = True
                continue
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if not isinstance(event, dict):
                event = {"event": "output", "message": line}
            events.append(event)
        return events

    @property
    def exit_code(self) -> int | None:
        """The exit code once the process has exited AND all its output has been read."""
        code = self._proc.poll()
        if code is None or not self._eof:
            return None
        self._close_log()
        return code

    def terminate(self, grace: float = 5.0) -> None:
        """Stop the engine now (SIGTERM; SIGKILL if it has not exited after `grace` s)."""
        self.terminated = True
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._reader.join(timeout=grace)
        self._eof = True
        self._close_log()

    def _close_log(self) -> None:
        if not self._log.closed:
            self._log.close()

    def log_tail(self, lines: int = 3) -> str:
        """Last lines this run wrote to the log (the reason of a crash, usually)."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                fh.seek(max(self._log_start, os.path.getsize(self.log_path) - _LOG_TAIL_BYTES))
                return _last_lines(fh.read(), lines)
        except OSError:
            return ""
