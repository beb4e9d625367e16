"""Install Engine: the preferences' button that sets the engine up without a terminal.

The work itself is in installer.py (no bpy, tested on its own); this module asks first,
respects Blender's "Allow Online Access", runs the installer in the background with a timer
(progress in the preferences, Esc or Cancel stops it), points "Engine Python" at the new
environment, and ends with Check Engine's report.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import bpy

from . import engine_client, installer, preferences
from .typing_bl import OperatorResult, window_manager

TIMER_INTERVAL = 0.25  # s
ENV_FOLDER = "engine-env"
RUNNING: dict[str, installer.Installer] = {}  # "install" -> the running installer
LAST: dict[str, str] = {}  # "status" -> how the last install ended, "log" -> its log


def env_dir() -> str:
    """The private environment's folder: in Blender's extension user folder for Flowstyle
    (kept across updates of the extension), or in the user config folder when the add-on
    runs from a source tree (not installed as an extension)."""
    try:
        base = bpy.utils.extension_path_user(preferences.ADDON_ID, create=True)
    except ValueError:  # not an extension (a legacy add-on or a test's source tree)
        base = bpy.utils.user_resource("CONFIG", path="flowstyle", create=True)
    return os.path.join(base, ENV_FOLDER)


def _prefs() -> Any:
    return preferences._addon_prefs()


def make_plan() -> installer.InstallPlan:
    """The install the preferences ask for; InstallError says what stops it."""
    prefs = _prefs()
    root = engine_client.default_engine_root()
    if root is None:
        raise installer.InstallError("The engine is missing from this add-on: reinstall Flowstyle.")
    base = bpy.path.abspath(prefs.install_python) if prefs and prefs.install_python else sys.executable
    wheels = bpy.path.abspath(prefs.install_wheels) if prefs and prefs.install_wheels else None
    index = prefs.install_index_url if prefs else ""
    return installer.make_plan(env_dir(), base, root, bool(bpy.app.online_access),
                               find_links=wheels, index_url=index or None)


def _finish(job: installer.Installer) -> str:
    """After an install: use the new environment if it succeeded; a line for the report."""
    RUNNING.pop("install", None)
    LAST["log"] = job.log_path
    if job.state == "done":
        prefs = _prefs()
        if prefs is not None:
            prefs.python_path = job.plan.python
        LAST["status"] = f"Installed in {job.seconds:.0f} s: {job.plan.python}"
    else:
        LAST["status"] = f"Install {job.state}: {job.error}"
    return LAST["status"]


class FLOWSTYLE_OT_install_engine(bpy.types.Operator):
    """Make Flowstyle's own Python environment and install the engine into it (torch and
the VGG19 weights: 1.2 GB with torch's CPU build, 6 GB with its CUDA build). Asks first;
Blender's own Python is not changed"""

    bl_idname = "flowstyle.install_engine"
    bl_label = "Install Engine"

    _timer: Any = None
    _plan_text = ""

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return "install" not in RUNNING

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> OperatorResult:
        try:
            self._plan_text = make_plan().describe()
        except installer.InstallError as exc:
            self.report({"ERROR"}, f"Flowstyle: {exc}")
            return {"CANCELLED"}
        return window_manager(context).invoke_props_dialog(self, width=560)

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        if layout is None:
            return
        col = layout.column(align=True)
        for line in _wrap(self._plan_text, 90):
            col.label(text=line)
        col.label(text="Downloads ~0.3 GB (CPU build; 1.2 GB on disk) to ~3 GB (CUDA build; "
                       "6 GB on disk); Blender stays usable.", icon="INFO")

    def execute(self, context: bpy.types.Context) -> OperatorResult:
        try:
            plan = make_plan()
        except installer.InstallError as exc:
            self.report({"ERROR"}, f"Flowstyle: {exc}")
            return {"CANCELLED"}
        job = installer.Installer(plan, os.path.join(os.path.dirname(plan.venv_dir), "install.log"))
        RUNNING["install"] = job
        if bpy.app.background or context.window is None:  # no timers: run it through
            job.run_to_completion(on_status=_say if bpy.app.background else None)
            return self._end(context, job)
        wm = window_manager(context)
        self._timer = wm.event_timer_add(TIMER_INTERVAL, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> OperatorResult:
        job = RUNNING.get("install")
        if job is None:
            return {"CANCELLED"}
        if event.type == "ESC" and event.value == "PRESS":
            job.cancel()
        elif event.type != "TIMER":
            return {"PASS_THROUGH"}
        if job.poll() == "running":
            preferences._redraw_preferences(context)
            return {"PASS_THROUGH"}
        window_manager(context).event_timer_remove(self._timer)
        return self._end(context, job)

    def cancel(self, context: bpy.types.Context) -> None:
        job = RUNNING.get("install")
        if job is not None:
            job.cancel()
            _finish(job)

    def _end(self, context: bpy.types.Context, job: installer.Installer) -> OperatorResult:
        text = _finish(job)
        preferences._redraw_preferences(context)
        if job.state != "done":
            self.report({"ERROR" if job.state == "failed" else "WARNING"}, f"Flowstyle: {text}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Flowstyle: {text}; checking the engine")
        # Check Engine's report closes the install, on the new environment.
        if bpy.app.background or context.window is None:
            return self._check_now(job.plan.python)
        ops: Any = getattr(bpy.ops, "flowstyle")  # our own operators (not in the bpy stubs)
        ops.check_engine("INVOKE_DEFAULT")  # in the background, reading Engine Python
        return {"FINISHED"}

    def _check_now(self, python: str) -> OperatorResult:
        """Batch mode: Check Engine on `python`, synchronously, shown in the preferences."""
        root = engine_client.default_engine_root() or ""
        current = preferences.engine_prefs()
        result = engine_client.run_check(python, root, current.weights, current.device)
        preferences.LAST_CHECK["result"] = result
        if result.ok:
            self.report({"INFO"}, "Flowstyle engine OK: " + result.summary())
            return {"FINISHED"}
        self.report({"ERROR"}, f"Flowstyle: installed, but the engine check failed in {python}: "
                               + "; ".join(result.problems))
        return {"CANCELLED"}


class FLOWSTYLE_OT_install_cancel(bpy.types.Operator):
    """Stop installing the engine now"""

    bl_idname = "flowstyle.install_cancel"
    bl_label = "Cancel Install"

    def execute(self, context: bpy.types.Context) -> OperatorResult:
        job = RUNNING.get("install")
        if job is not None:
            job.cancel()  # the install operator sees it on its next tick
        return {"FINISHED"}


def _say(text: str) -> None:
    """Progress on the console in background mode (`--command flowstyle install`)."""
    print(f"flowstyle: {text}", flush=True)


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + [line] if line else lines


def draw_install(layout: bpy.types.UILayout, prefs: Any) -> None:
    """The Install Engine box of the preferences."""
    box = layout.box()
    box.label(text="Engine Set-up", icon="PACKAGE")
    job = RUNNING.get("install")
    if job is not None:
        row = box.row(align=True)
        row.progress(factor=job.fraction, type="BAR", text=job.status[:90])
        row.operator("flowstyle.install_cancel", text="", icon="CANCEL")
    else:
        box.operator("flowstyle.install_engine", icon="IMPORT")
    if "status" in LAST:
        box.label(text=LAST["status"][:160], icon="INFO")
    if "log" in LAST:
        box.operator("wm.path_open", text="Open Install Log", icon="TEXT").filepath = LAST["log"]
    sub = box.column()
    sub.prop(prefs, "install_python")
    sub.prop(prefs, "install_wheels")
    sub.prop(prefs, "install_index_url")
    if not bpy.app.online_access and not prefs.install_wheels:
        sub.label(text="Online access is off: allow it (System > Network) or pick a wheel folder",
                  icon="ERROR")


CLASSES = (FLOWSTYLE_OT_install_engine, FLOWSTYLE_OT_install_cancel)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    job = RUNNING.pop("install", None)
    if job is not None:
        job.cancel()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
