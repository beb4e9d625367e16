"""One stylize run as a small state machine: check -> render -> engine -> wire.

    run = StylizeRun(scene, view_layer_name, spec)
    run.start()            # validates; raises StylizeError with every problem found
    while run.step():      # one small piece of work per call
        ...                # UI: return to Blender (timer tick); batch: sleep a little

`step()` is the ONLY driver, and both callers use it: the panel's modal operator calls it on
each timer tick, batch mode calls it in a loop (timers never fire in `blender -b`). So the
batch tests exercise exactly the code the UI runs.

Each step is short: the engine check and the engine run are separate processes that are only
polled. Rendering is one frame at a time, in one of two ways (render.py):

* Blender has a window (`render_job=True`, the default unless `bpy.app.background`): each
  frame is Blender's own render job, started by one step; the next steps only look whether
  its `render_complete` / `render_cancel` handler has fired. The UI stays live while a frame
  renders, and Esc (Blender's own, in the render) cancels it mid-frame, which cancels the run.
* Background mode (batch, scripts): a step renders one frame, blocking.

Whatever happens (error, cancel, exception), the user's render settings are restored and the
engine process is stopped; frames already finished (rendered or stylized) are kept, and the
next run reuses them.
"""

from __future__ import annotations

import atexit
import enum
import os
import time
from typing import Callable

import bpy

from . import compositor, engine_client, job, model_state, passes
from .engine_client import CheckResult, EngineProcess, Progress
from .job import JobSpec
from .render import ForeignRendersError, FrameRenderer, JobState, RenderJob

# Successful engine checks by (python, engine root): the check imports torch (seconds), and
# its answer does not change while Blender runs unless the environment does.
_CHECK_CACHE: dict[tuple[str, str, str, str], CheckResult] = {}

# Runs in progress, by scene name (the panel shows them; Blender exit stops them).
ACTIVE: dict[str, StylizeRun] = {}
# Last outcome per scene, for the panel: (level, message, log path or "").
LAST_RESULT: dict[str, tuple[str, str, str]] = {}
# Scenes whose last run stopped because their output folder holds renders of another stamp:
# the panel offers "Replace Renders" for them.
OFFER_RERENDER: set[str] = set()


class StylizeError(RuntimeError):
    """The run cannot start or failed; the message is for the user."""


class Phase(enum.Enum):
    CHECK = "checking the engine"
    RENDER = "rendering"
    ENGINE = "stylizing"
    WIRE = "wiring the compositor"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_PHASES = {Phase.DONE, Phase.FAILED, Phase.CANCELLED}


def validate(scene: bpy.types.Scene, view_layer: str, spec: JobSpec) -> list[str]:
    """Every problem that can be found before starting, each with what to do about it."""
    problems = job.validate_values(spec)
    if scene.camera is None:
        problems.append(f"The scene {scene.name!r} has no camera: add a camera and make it "
                        "the scene's active camera.")
    if scene.view_layers.get(view_layer) is None:
        problems.append(f"The view layer {view_layer!r} does not exist.")
    if spec.flow == "vectors":
        problem = passes.vector_pass_problem(scene)
        if problem:
            problems.append(problem)
    interpreter = engine_client.check_interpreter(spec.python)
    if interpreter:
        problems.append(interpreter)
    if resolve_engine_root(spec) is None:
        problems.append("The Flowstyle engine was not found next to the add-on: reinstall "
                        "the extension.")
    if not problems:  # only touch the disk when everything else is fine
        writable = job.check_output_writable(spec.out_dir)
        if writable:
            problems.append(writable)
    return problems


def resolve_engine_root(spec: JobSpec) -> str | None:
    return spec.engine_root or engine_client.default_engine_root()


class StylizeRun:
    """See the module docstring. `on_message` receives one human line per notable event."""

    def __init__(self, scene: bpy.types.Scene, view_layer: str, spec: JobSpec,
                 on_message: Callable[[str], None] | None = None,
                 render_job: bool | None = None) -> None:
        self.scene_name = scene.name
        # Render through Blender's render job (the UI stays live) unless there is no UI.
        use_job = not bpy.app.background if render_job is None else render_job
        self.render_job: RenderJob | None = RenderJob() if use_job else None
        self.view_layer = view_layer
        self.spec = spec
        self.on_message = on_message or (lambda text: None)
        self.phase = Phase.CHECK
        self.message = ""
        self.error = ""
        self.warnings: list[str] = []
        self.progress = Progress()
        self.events: list[dict[str, object]] = []
        self.pass_changes: list[passes.Change] = []
        self.renderer: FrameRenderer | None = None
        self._check: engine_client.CheckProcess | None = None
        self._engine: EngineProcess | None = None
        self.model_note = ""  # network methods: whether and why the network trains
        self._commands: list[list[str]] = []  # engine commands still to run (train, stylize)
        self._render_total = 0

    def _check_key(self) -> tuple[str, str, str, str]:
        """(python, engine root, weights, device): what the engine check depends on."""
        return (self.spec.python, resolve_engine_root(self.spec) or "", self.spec.weights,
                self.spec.device)

    # -- driving -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.phase not in FINAL_PHASES

    def start(self) -> None:
        """Validate and register the run; raises StylizeError listing every problem."""
        scene = self._scene()
        if self.scene_name in ACTIVE:
            raise StylizeError(f"Flowstyle is already running on scene {self.scene_name!r}.")
        OFFER_RERENDER.discard(self.scene_name)
        problems = validate(scene, self.view_layer, self.spec)
        if problems:
            raise StylizeError("\n".join(problems))
        busy = job.busy_folder_problem(self.spec.out_dir)  # before rendering into it
        if busy:
            raise StylizeError(busy)
        self.renderer = FrameRenderer(scene, self.view_layer, self.spec)
        foreign = self.renderer.foreign_renders()  # before the check: nothing runs in vain
        if foreign:
            OFFER_RERENDER.add(self.scene_name)
            raise StylizeError(foreign)
        ACTIVE[self.scene_name] = self
        key = self._check_key()
        cached = _CHECK_CACHE.get(key)
        if cached is not None:
            self._after_check(cached)
        else:
            self._check = engine_client.CheckProcess(*key)
            self._say("checking the engine in " + self.spec.python)

    def step(self) -> bool:
        """Do one small piece of work; return True while the run goes on."""
        if not self.running:
            return False
        try:
            if self.phase is Phase.CHECK:
                self._step_check()
            elif self.phase is Phase.RENDER:
                self._step_render()
            elif self.phase is Phase.ENGINE:
                self._step_engine()
            elif self.phase is Phase.WIRE:
                self._step_wire()
        except Exception as exc:  # anything: settings must come back, the engine must stop
            if isinstance(exc, ForeignRendersError):
                OFFER_RERENDER.add(self.scene_name)
            self._fail(str(exc) or type(exc).__name__)
        return self.running

    def cancel(self, why: str = "Cancelled") -> None:
        """Stop now. Finished frames stay on disk; settings are restored (once Blender has
        stopped rendering, if a render job is still in flight)."""
        if not self.running:
            return
        self._cleanup()
        done = len(self.spec.finished_frames())
        rendered = len(self.renderer.rendered) if self.renderer is not None else 0
        self._finish(Phase.CANCELLED,
                     f"{why}; {done} finished frame(s) kept in {self.spec.out_dir}"
                     + (f", {rendered} newly rendered frame(s) kept for the next run"
                        if rendered and self.phase is Phase.RENDER else ""))

    def run_to_completion(self, poll_interval: float = 0.1) -> None:
        """Drive the run until it ends (batch). Ctrl+C cancels cleanly."""
        try:
            while self.step():
                if self.phase in (Phase.ENGINE, Phase.CHECK):
                    time.sleep(poll_interval)
        except KeyboardInterrupt:
            self.cancel()
            raise

    # -- phases ------------------------------------------------------------------------------

    def _step_check(self) -> None:
        assert self._check is not None
        result = self._check.poll()
        if result is not None:
            self._check = None
            if result.ok:
                _CHECK_CACHE[self._check_key()] = result
            self._after_check(result)

    def _after_check(self, result: CheckResult) -> None:
        if not result.ok:
            text = f"The engine cannot run in {self.spec.python}: " + "; ".join(result.problems)
            if result.fixes:
                text += ". To fix: " + "; ".join(result.fixes)
            self._fail(text)
            return
        self._say("engine OK: " + result.summary())
        self.phase = Phase.RENDER

    def _step_render(self) -> None:
        renderer = self.renderer
        assert renderer is not None
        if not renderer.active and not renderer.rendered:
            todo = renderer.plan()
            self._render_total = len(todo)
            if renderer.reused:
                self._say(f"reusing {len(renderer.reused)} rendered frame(s) in "
                          f"{self.spec.render_dir}")
            if todo:
                self.pass_changes = renderer.begin()
                for change in self.pass_changes:
                    self._say(f"render setting (restored afterwards): {change}")
        if renderer.todo:
            job = self.render_job
            if job is None:  # background mode: render the frame now, blocking
                frame = renderer.render_next()
            elif job.state is JobState.IDLE:
                frame = renderer.start_job(job)
                self._say(f"rendering frame {frame} (Esc in the render cancels)")
                return
            elif job.state is JobState.RUNNING:
                return  # Blender renders; the UI is live
            elif job.state is JobState.CANCELLED:
                self.cancel("Rendering cancelled")
                return
            else:
                frame = renderer.collect_job(job)
            self._say(f"rendered frame {frame} ({len(renderer.rendered)}/{self._render_total})")
            return
        if self.render_job is not None:
            self.render_job.remove()
        problems = renderer.end()
        self.warnings.extend(problems)
        for problem in problems:
            self._say("warning: " + problem)
        self._start_engine()

    def _start_engine(self) -> None:
        spec = self.spec
        job.write_job(spec)
        self._commands = [["stylize", "--job", spec.job_path, "--progress", "jsonl",
                           "--watch-parent", *(["--cluster", spec.cluster] if spec.cluster else [])]]
        if spec.method != "optimize":
            # Say whether and why the network trains (the frames are rendered by now).
            will_train, why = model_state.training_decision(
                spec, model_state.engine_version(resolve_engine_root(spec)))
            self.model_note = f"training the network: {why}" if will_train else why
            self._say(self.model_note)
            # Training first, in the background like stylizing. The engine skips it when
            # the model beside the output was trained for these styles, settings and frames.
            self._commands.insert(0, ["train", "--job", spec.job_path, "--out", spec.model_path,
                                      "--progress", "jsonl", "--watch-parent"])
        self._next_engine()

    def _next_engine(self) -> None:
        spec = self.spec
        root = resolve_engine_root(spec)
        assert root is not None
        args = self._commands.pop(0)
        self._engine = EngineProcess(spec.python, root, args, spec.log_path)
        self._say(f"engine {args[0]} started (pid {self._engine.pid}), log: {spec.log_path}")
        self.phase = Phase.ENGINE

    def _step_engine(self) -> None:
        engine = self._engine
        assert engine is not None
        for event in engine.poll():
            self.events.append(event)
            self.progress.apply(event)
            self._say(engine_client.describe_event(event))
            if event.get("event") == "warning":
                self.warnings.append(str(event.get("message")))
        code = engine.exit_code
        if code is None:
            return
        self._engine = None
        if code == 0 and self._commands:  # trained: now stylize
            self.progress = Progress()
            self._next_engine()
            return
        if code == 0:
            self.phase = Phase.WIRE
            return
        reason = (self.progress.errors[-1] if self.progress.errors else engine.log_tail()) \
            or "no message"
        what = {2: "refused the input", 1: "crashed"}.get(code, f"stopped (exit code {code})")
        if code == 2 and "another Flowstyle run" in reason:  # engine/lock.py's refusal
            what = "found the output folder busy"
        self._fail(f"The engine {what}: {reason}")

    def _step_wire(self) -> None:
        compositor.wire(self._scene(), self.spec)
        done = len(self.spec.finished_frames())
        self._finish(Phase.DONE, f"Stylized {done} frame(s) into {self.spec.out_dir}; "
                                 "the compositor shows them through the 'Flowstyle Mix' node"
                                 + (f" ({self.model_note})" if self.model_note else ""))

    # -- endings -----------------------------------------------------------------------------

    def _fail(self, reason: str) -> None:
        self._cleanup()
        self.error = reason
        if os.path.isfile(self.spec.log_path):  # the engine ran: its log says more
            reason += f" (log: {self.spec.log_path})"
        self._finish(Phase.FAILED, reason)

    def _cleanup(self) -> None:
        """Stop processes and restore settings; never raises."""
        if self._check is not None:
            self._check.terminate()
            self._check = None
        if self._engine is not None:
            self._engine.terminate()
            self._engine = None
        job = self.render_job
        if job is not None and job.in_flight():
            # Blender is still rendering our frame and writes it with the scene's settings
            # when it ends: restore them only then (Esc in the render stops it sooner).
            bpy.app.timers.register(self._restore_after_job, first_interval=0.2)
            return
        self._restore()

    def _restore_after_job(self) -> float | None:
        """Timer: restore the settings once Blender's render job is over."""
        if self.render_job is not None and self.render_job.in_flight():
            return 0.2
        self._restore()
        return None

    def _restore(self) -> None:
        if self.render_job is not None:
            self.render_job.remove()
        if self.renderer is not None and self.renderer.active:
            try:
                self.warnings.extend(self.renderer.end())
            except Exception as exc:  # restoring is best effort; say what failed
                self.warnings.append(f"Could not restore render settings: {exc}")

    def _finish(self, phase: Phase, message: str) -> None:
        self.phase = phase
        self.message = message
        ACTIVE.pop(self.scene_name, None)
        level = {Phase.DONE: "INFO", Phase.CANCELLED: "WARNING"}.get(phase, "ERROR")
        log = self.spec.log_path
        LAST_RESULT[self.scene_name] = (
            level, message, log if phase is Phase.FAILED and os.path.isfile(log) else "")
        self._say(message)

    # -- helpers -----------------------------------------------------------------------------

    def _scene(self) -> bpy.types.Scene:
        scene = bpy.data.scenes.get(self.scene_name)
        if scene is None:
            raise StylizeError(f"The scene {self.scene_name!r} no longer exists.")
        return scene

    def _say(self, text: str) -> None:
        self.message = text
        self.on_message(text)

    def status_text(self) -> str:
        """One line for the status bar and the panel."""
        if self.phase is Phase.RENDER and self.renderer is not None:
            return (f"Flowstyle: rendering {len(self.renderer.rendered)}/"
                    f"{self._render_total or self.spec.frame_count}")
        if self.phase is Phase.ENGINE:
            return "Flowstyle: " + self.progress.text()
        return f"Flowstyle: {self.phase.value}"

    def fraction(self) -> float:
        """0..1 for a progress bar: rendering is the first tenth, stylizing the rest."""
        if self.phase is Phase.RENDER and self.renderer is not None and self._render_total:
            return 0.1 * len(self.renderer.rendered) / self._render_total
        if self.phase is Phase.ENGINE:
            return 0.1 + 0.9 * self.progress.fraction
        return 1.0 if self.phase is Phase.DONE else 0.0


@atexit.register
def _stop_all() -> None:
    # Blender quitting must not leave an engine running on the GPU.
    for run in list(ACTIVE.values()):
        run.cancel()
