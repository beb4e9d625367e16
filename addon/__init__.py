"""Flowstyle for Blender: flicker-free neural style transfer of rendered animation.

The add-on renders the frames (with the Vector pass: exact motion), hands them to the
Flowstyle engine running in a separate Python with torch, shows its progress without freezing
Blender, and wires the stylized frames back into the compositor. It never imports torch.

Modules, in the order a newcomer might read them:
    job.py            what a run asks of the engine (plain data, no bpy)
    engine_client.py  starting the engine process and reading its progress (no bpy)
    passes.py         render settings we need, recorded so they can be put back
    render.py         rendering the frames, reusing an earlier matching render
    compositor.py     Image + Mix nodes feeding the compositor's output
    pipeline.py       one run as a state machine, shared by the panel and batch mode
    settings.py       per-scene settings;  preferences.py: per-machine settings
    operators.py, ui.py  the Blender UI;  batch.py: `blender -b ... --command flowstyle`
    per_object.py     per-object styles (Pass Index regions);  animation.py: keyframed values
    shelf.py          the style shelf (public-domain paintings in styles/)
    preview_frame.py  Preview Frame: one frame, fast, side by side with the render
    installer.py      Install Engine's work (no bpy);  install_ui.py: its button
"""

from __future__ import annotations

from . import (batch, install_ui, operators, per_object, preferences, preview_frame, settings,
               shelf, ui)

_MODULES = (preferences, install_ui, settings, operators, per_object, shelf, preview_frame, ui,
            batch)


def register() -> None:
    for module in _MODULES:
        module.register()


def unregister() -> None:
    for module in reversed(_MODULES):
        module.unregister()
