"""The one exception type a user should ever see from the engine, and the messages for
failures of the machine rather than of the input (a full disk)."""

from __future__ import annotations

import os
import shutil


class FlowstyleError(Exception):
    """Bad input or environment: the message names the file or frame and what to do.

    The CLI prints it without a traceback and exits with status 2.
    """


def write_failed(path: str, exc: BaseException) -> FlowstyleError:
    """The error for a file that could not be written: a full disk above all.

    Writers do not say it the same way (OSError ENOSPC from Python, "unexpected pos 832 vs
    726" from torch.save, a bare RuntimeError from OpenEXR), so the message always names
    the file, the free space left, and what to do.
    """
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    try:
        free = f"{shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free / 2**20:.0f} MB free"
    except OSError:
        free = "free space unknown"
    return FlowstyleError(f"{path}: cannot be written ({reason}; {free} on that disk). Free "
                          "space on the disk (or choose another --out folder) and check that the "
                          "folder is writable, then run the same command again: finished frames "
                          "are kept.")
