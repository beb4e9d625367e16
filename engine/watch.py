"""Stop when the parent process is gone (`--watch-parent`; the add-on always passes it).

If Blender crashes or is killed, an engine it started would otherwise keep the GPU busy
for hours with nobody to read its results. A daemon thread looks at the parent every half
second and, once it is gone, interrupts the main thread exactly as Ctrl-C would: the frame
being optimized is dropped, files are only ever renamed into place whole (exr.py, run.py),
and the output folder's lock is released on the way out.

Why a poll rather than Linux's prctl(PR_SET_PDEATHSIG): that signal fires when the parent
*thread* that started us ends, not the parent process, so an add-on starting the engine
from a worker thread would see it killed at random; and it does not exist on macOS or
Windows. A poll works everywhere and costs nothing.

It is an option, not always on, because a user may start a long run from a terminal with
`nohup ... &` and close the terminal on purpose.
"""

from __future__ import annotations

import _thread
import os
import signal
import threading
import time
from collections.abc import Callable

from .lock import pid_alive

POLL_SECONDS = 0.5


def parent_gone(parent: int) -> bool:
    """True when `parent` (our parent's pid at start-up) no longer runs. On POSIX an orphan
    is adopted by another process, so getppid() changes; Windows keeps the old number."""
    return os.getppid() != parent or not pid_alive(parent)


def watch_parent(on_gone: Callable[[], None] = _thread.interrupt_main,
                 interval: float = POLL_SECONDS) -> threading.Thread:
    """Start a daemon thread that calls `on_gone` once, when the parent process ends.

    Call it from the main thread. interrupt_main does nothing while SIGINT is ignored, and
    a process inherits an ignored SIGINT from a parent started in the background (`nohup`,
    `cmd &` in a script): Python then keeps it ignored. Watching the parent is asking to be
    interrupted, so SIGINT gets Python's own handler back (Ctrl-C works again too).
    """
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
        signal.signal(signal.SIGINT, signal.default_int_handler)
    parent = os.getppid()

    def loop() -> None:
        while not parent_gone(parent):
            time.sleep(interval)
        on_gone()

    thread = threading.Thread(target=loop, name="flowstyle-watch-parent", daemon=True)
    thread.start()
    return thread
