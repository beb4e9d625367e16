"""The one exception type a user should ever see from the engine."""

from __future__ import annotations


class FlowstyleError(Exception):
    """Bad input or environment: the message names the file or frame and what to do.

    The CLI prints it without a traceback and exits with status 2.
    """
