"""Flowstyle's engine: temporally stable neural style transfer for rendered animation.

Imports torch, never bpy. Entry point: `python -m engine` (see cli.py).
"""

__version__ = "0.2.0"
