"""One run per output folder: a lock file `<out>/.flowstyle/lock`.

Two runs writing into one folder interleave their frames (frames 1-2 in one style, 3-4 in
the other) and both exit 0. So a run creates the lock file atomically (O_CREAT | O_EXCL:
of two runs starting together exactly one succeeds) before it reads or writes a frame, and
removes it at its end, also on an error or Ctrl-C / SIGTERM (cli.py turns SIGTERM into an
interrupt). The file says who holds it (pid, host, start time, command), so the run that is
refused can name it.

A lock left by a run that died (a crash, a kill -9, a power cut) is recognised on the same
host: its pid no longer runs, or runs a process that started after the lock was taken (the
pid was reused, e.g. after a reboot). Such a lock is taken over with a warning. A lock from
another host (a shared network folder) cannot be checked from here: the message says how
to remove it by hand.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable

from .errors import FlowstyleError

LOCK_NAME = os.path.join(".flowstyle", "lock")


def lock_path(out_dir: str) -> str:
    return os.path.join(out_dir, LOCK_NAME)


def pid_alive(pid: int) -> bool:
    """True when a process with this pid runs on this machine (a zombie counts as gone)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        import ctypes
        kernel = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        kernel.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    try:  # Linux: a zombie (killed, not yet reaped by its parent) no longer runs
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


def process_start_time(pid: int) -> float | None:
    """When process `pid` started (Unix time), on Linux; None where it cannot be told."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            ticks = int(f.read().rpartition(")")[2].split()[19])  # field 22: starttime
        with open("/proc/stat", encoding="ascii") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, StopIteration):
        return None


def read_lock(out_dir: str) -> dict | None:
    """The holder of `out_dir`'s lock ({pid, host, started, command, token}), or None if free."""
    try:
        with open(lock_path(out_dir), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # being written this very moment, or damaged: held by someone unknown


def is_stale(holder: dict) -> bool:
    """True when the run that wrote `holder` certainly no longer runs (checked on its host)."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    if not pid_alive(holder["pid"]):
        return True
    started = process_start_time(holder["pid"])
    return started is not None and started > holder.get("started", 0) + 2  # pid reused


def describe(holder: dict) -> str:
    if not holder:
        return "another run (its lock file is unreadable)"
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(holder.get("started", 0)))
    return (f"pid {holder.get('pid')} on host {holder.get('host')} since {since} "
            f"(command: {holder.get('command', '?')})")


# Tokens of locks this process may write under although it does not hold them: a farm's
# workers write frames under the lock its client holds (farm.py grants them its token).
GRANTED: set[str] = set()


def refuse_if_held(out_dir: str) -> None:
    """Raise the refusal now if a live run holds `out_dir` (a cheap early check; the lock
    itself is taken by `OutputLock`)."""
    holder = read_lock(out_dir)
    if holder is not None and holder.get("token") not in GRANTED and not is_stale(holder):
        raise _refusal(out_dir, holder)


def _refusal(out_dir: str, holder: dict) -> FlowstyleError:
    here = holder.get("host") == socket.gethostname()
    fix = ("Wait for it to finish or stop it, or choose another output folder (--out)." if here else
           f"Wait for it to finish, or choose another output folder (--out). If you are sure that "
           f"run is over, delete {lock_path(out_dir)}.")
    return FlowstyleError(f"{out_dir}: another Flowstyle run is writing into this folder: "
                          f"{describe(holder)}. {fix}")


class OutputLock:
    """`with OutputLock(out_dir, warn):` holds the folder's lock for the block.

    warn: called with a message when a stale lock is taken over. Raises FlowstyleError
    (exit 2) naming the other run when a live one holds the folder.
    """

    def __init__(self, out_dir: str, warn: Callable[[str], None] = print):
        self.out_dir = out_dir
        self.path = lock_path(out_dir)
        self.warn = warn
        self.token = uuid.uuid4().hex
        self.held = False

    def acquire(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
              "command": " ".join(sys.argv), "token": self.token}
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = read_lock(self.out_dir)
                if holder is None:
                    continue  # released meanwhile: try again
                if not holder:
                    time.sleep(0.2)  # perhaps being written: read once more
                    holder = read_lock(self.out_dir)
                    if holder is None:
                        continue
                if not is_stale(holder):
                    raise _refusal(self.out_dir, holder) from None
                self._remove_stale(holder)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(me, f)
            self.held = True
            return
        raise FlowstyleError(f"{self.path}: could not take the output folder's lock (it keeps "
                             "changing hands). Run again, or choose another --out.")

    def _remove_stale(self, holder: dict) -> None:
        """Move the stale lock aside and delete it, unless another run replaced it meanwhile
        (two runs taking over one stale lock at once: only one of them may win)."""
        aside = f"{self.path}.stale.{self.token}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            with open(aside, encoding="utf-8") as f:
                moved = json.load(f)
        except (OSError, ValueError):
            moved = {}
        if moved.get("token") != holder.get("token"):  # a fresh lock: put it back
            os.rename(aside, self.path)
            return
        os.remove(aside)
        self.warn(f"{self.out_dir}: taking over the lock of a run that is no longer running "
                  f"({describe(holder)}); its finished frames are kept.")

    def release(self) -> None:
        """Remove the lock if it is still ours."""
        if not self.held:
            return
        self.held = False
        holder = read_lock(self.out_dir)
        if holder and holder.get("token") == self.token:
            os.remove(self.path)

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
