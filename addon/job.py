"""What one stylize run asks of the engine, as plain data (no bpy).

The panel builds a `JobSpec` from the scene's settings, the batch command builds one from the
scene plus command-line options; both then go through the same pipeline. Keeping this module
free of bpy lets it be read, tested and reasoned about without Blender, and keeps the engine
contract (the job.json keys) in one place.

Folder layout of one run, all under `JobSpec.out_dir`:

    render/render_0001.exr ...   multilayer EXRs rendered by Blender (the engine's input)
    render/flowstyle_render.json the stamp saying which scene/range/resolution they are
    flowstyle_0001.exr ...       stylized frames written by the engine
    job.json                     the job handed to the engine
    flowstyle.log                the engine's stderr (human-readable log)
    .flowstyle/lock              held by the engine while it runs (engine/lock.py)
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import tempfile
import time
from typing import Any

# Allowed values; the engine CLI defines them, these mirror its contract.
PRESETS = ("preview", "final")
# optimize: every frame optimized; network: a network trained on the shot first, then one
# pass per frame; hybrid: optimized, started from that network's output.
METHODS = ("optimize", "network", "hybrid")
FLOW_SOURCES = ("auto", "vectors", "estimated")
DEVICES = ("auto", "cpu", "cuda")  # or "cuda:N"
WEIGHT_SOURCES = ("caffe", "torchvision")  # or a path to a weights file

RENDER_SUBDIR = "render"
RENDER_PREFIX = "render_"
OUTPUT_PREFIX = "flowstyle_"
JOB_FILE = "job.json"
MODEL_FILE = "model.pt"  # the network trained on the shot (network and hybrid methods)
LOG_FILE = "flowstyle.log"
# The engine's lock file (engine/lock.py): JSON {pid, host, started, command, token}.
LOCK_FILE = os.path.join(".flowstyle", "lock")


class JobError(ValueError):
    """A problem with the job's inputs that the user can fix (message says how)."""


@dataclasses.dataclass
class StyleRef:
    """One style image and its relative weight in the style loss."""

    path: str
    weight: float = 1.0


@dataclasses.dataclass
class RegionRef:
    """Per-object styles: pixels whose Object Index pass equals `index` (the objects' Pass
    Index) get `styles`; an empty list keeps the original render there."""

    index: int
    styles: list[StyleRef] = dataclasses.field(default_factory=list)
    name: str = ""  # what the artist called it (the object or collection), for messages


@dataclasses.dataclass
class JobSpec:
    """Everything needed to render, stylize and wire one shot.

    Defaults match the engine's documented defaults, so an omitted option means the same
    thing in the panel, in batch and on a farm running `python -m engine` directly.
    """

    styles: list[StyleRef]
    out_dir: str
    frame_start: int
    frame_end: int
    python: str
    preset: str = "preview"
    style_strength: float = 1.0
    temporal_strength: float = 1.0
    flow: str = "auto"
    use_depth: bool = True
    device: str = "auto"
    weights: str = "caffe"
    iterations: int | None = None  # per frame after the first; None: the preset decides
    first_iterations: int | None = None  # first (cold-start) frame; None: the preset decides
    height: int | None = None  # working height in px; None: the preset decides
    mix: float = 1.0  # compositor mix factor: 0 = original render, 1 = stylized
    rerender: bool = False  # ignore an earlier matching render
    # May the engine download torchvision's weights? Inside Blender this is exactly
    # bpy.app.online_access: extensions must not touch the network otherwise.
    allow_download: bool = False
    engine_root: str | None = None  # folder containing the `engine` package; None: auto
    method: str = "optimize"  # one of METHODS
    train_steps: int | None = None  # network training steps; None: the engine's default
    # Farm: a Dask scheduler address (tcp://host:8786, or local:N for N processes here) the
    # engine submits to; empty: the engine runs here. Not in job.json (a machine's choice).
    cluster: str = ""
    chunk_frames: int | None = None  # farm: frames per chunk task; None: the engine's default
    # The scene's colour management (the engine shows VGG what the artist sees and keeps
    # the output in the working space): OCIO names, exposure in stops, display gamma, and
    # the running Blender's config.ocio ("" lets the engine find one).
    working_space: str = "Linear Rec.709"
    display: str = "sRGB"
    view: str = "Standard"
    look: str = "None"
    exposure: float = 0.0
    gamma: float = 1.0
    ocio_config: str = ""
    preserve_colour: bool = False  # keep the render's colours, paint only luminance
    regions: list[RegionRef] = dataclasses.field(default_factory=list)  # per-object styles
    # Keyframed style strength, sampled per frame (frame -> strength); empty: not animated.
    style_strengths: dict[int, float] = dataclasses.field(default_factory=dict)

    @property
    def model_path(self) -> str:
        """The trained network, kept beside the output and reused while the styles, the
        settings and the rendered frames are unchanged (the engine checks)."""
        return os.path.join(self.out_dir, MODEL_FILE)

    @property
    def frame_count(self) -> int:
        return self.frame_end - self.frame_start + 1

    @property
    def render_dir(self) -> str:
        return os.path.join(self.out_dir, RENDER_SUBDIR)

    @property
    def job_path(self) -> str:
        return os.path.join(self.out_dir, JOB_FILE)

    @property
    def log_path(self) -> str:
        return os.path.join(self.out_dir, LOG_FILE)

    def render_path(self, frame: int) -> str:
        """Where Blender's render of `frame` goes (the engine finds frames by trailing digits)."""
        return os.path.join(self.render_dir, f"{RENDER_PREFIX}{frame:04d}.exr")

    def output_path(self, frame: int) -> str:
        """Where the engine writes the stylized `frame` (engine contract)."""
        return os.path.join(self.out_dir, f"{OUTPUT_PREFIX}{frame:04d}.exr")

    def finished_frames(self) -> list[int]:
        """Frames of this range whose stylized EXR already exists (the engine writes atomically)."""
        return [f for f in range(self.frame_start, self.frame_end + 1)
                if os.path.isfile(self.output_path(f))]

    def to_job_dict(self) -> dict[str, Any]:
        """The job.json the engine reads (`python -m engine stylize --job job.json`)."""
        return {
            "input": self.render_dir,
            "out": self.out_dir,
            "styles": [{"path": s.path, "weight": s.weight} for s in self.styles],
            "preset": self.preset,
            "style_strength": self.style_strength,
            "temporal_strength": self.temporal_strength,
            "flow": self.flow,
            "use_depth": self.use_depth,
            "frames": [self.frame_start, self.frame_end],
            "device": self.device,
            "weights": self.weights,
            "iterations": self.iterations,
            "first_iterations": self.first_iterations,
            "height": self.height,
            "allow_download": self.allow_download,
            **({"chunk_frames": self.chunk_frames} if self.chunk_frames else {}),
            "working_space": self.working_space,
            "display": self.display,
            "view": self.view,
            "look": self.look,
            "exposure": self.exposure,
            "gamma": self.gamma,
            "ocio_config": self.ocio_config,
            "preserve_colour": self.preserve_colour,
            # Only for the network methods: an optimize job stays what older engines read.
            **({"method": self.method, "model": self.model_path, "train_steps": self.train_steps}
               if self.method != "optimize" else {}),
            **self._optional_job_keys(),
        }

    def _optional_job_keys(self) -> dict[str, Any]:
        """Keys only present when used, so a plain job stays as it was."""
        extra: dict[str, Any] = {}
        if self.regions:
            extra["regions"] = [{"index": r.index,
                                 "styles": [{"path": s.path, "weight": s.weight} for s in r.styles]}
                                for r in self.regions]
        if self.style_strengths:
            extra["style_strengths"] = {str(f): v for f, v in sorted(self.style_strengths.items())}
        return extra


def write_job(spec: JobSpec) -> str:
    """Write job.json atomically (write, then rename) and return its path."""
    return write_json_atomic(spec.job_path, spec.to_job_dict())


def write_json_atomic(path: str, data: Any) -> str:
    """Write JSON so a reader never sees half a file, even if Blender dies mid-write."""
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def parse_style_arg(text: str) -> StyleRef:
    """Parse `PATH[:WEIGHT]` as the engine's `--style` does.

    Only a suffix that parses as a number is a weight, so `C:\\art\\x.jpg` and `a:b.jpg` stay
    paths.
    """
    path, sep, tail = text.rpartition(":")
    if sep and path:
        try:
            return StyleRef(path=path, weight=float(tail))
        except ValueError:
            pass
    return StyleRef(path=text, weight=1.0)


def parse_frames(text: str) -> tuple[int, int]:
    """Parse `START:END` (inclusive) or a single frame number."""
    start_s, sep, end_s = text.partition(":")
    try:
        start = int(start_s)
        end = int(end_s) if sep else start
    except ValueError:
        raise JobError(f"--frames expects START:END with whole numbers, got {text!r}") from None
    return start, end


def validate_values(spec: JobSpec) -> list[str]:
    """Problems with the spec itself (no files touched); empty when it is usable."""
    problems: list[str] = []
    if spec.frame_end < spec.frame_start:
        problems.append(
            f"The frame range {spec.frame_start}-{spec.frame_end} has no frames: "
            "the end frame is before the start frame.")
    if spec.frame_start < 0:
        problems.append(
            f"The frame range starts at {spec.frame_start}: Flowstyle numbers its files by "
            "frame and needs frames of 0 or more.")
    if not spec.styles:
        problems.append("No style image: add at least one style image.")
    for style in spec.styles:
        if not style.path:
            problems.append("A style entry has no file: pick an image or remove the entry.")
        elif not os.path.isfile(style.path):
            problems.append(f"The style image {style.path!r} does not exist.")
        if style.weight < 0:
            problems.append(f"The style image {style.path!r} has a negative weight.")
    if spec.preset not in PRESETS:
        problems.append(f"Unknown preset {spec.preset!r}; use one of {', '.join(PRESETS)}.")
    if spec.flow not in FLOW_SOURCES:
        problems.append(f"Unknown flow source {spec.flow!r}; use one of {', '.join(FLOW_SOURCES)}.")
    if spec.device not in DEVICES and not spec.device.startswith("cuda:"):
        problems.append(f"Unknown device {spec.device!r}; use one of {', '.join(DEVICES)}.")
    if spec.weights not in WEIGHT_SOURCES and not os.path.isfile(spec.weights):
        problems.append(
            f"Weights {spec.weights!r} are neither 'caffe', 'torchvision' nor an existing file.")
    seen: set[int] = set()
    for region in spec.regions:
        label = region.name or f"Pass Index {region.index}"
        if region.index in seen:
            problems.append(f"Two per-object styles use Pass Index {region.index}: give "
                            f"{label!r} its own index.")
        seen.add(region.index)
        for style in region.styles:
            if not style.path or not os.path.isfile(style.path):
                problems.append(f"The style image of {label!r} ({style.path or 'none'}) does not "
                                "exist: pick one, or tick Keep Original.")
    if not 0.0 <= spec.mix <= 1.0:
        problems.append(f"The mix factor {spec.mix} must be between 0 and 1.")
    return problems


def check_output_writable(out_dir: str) -> str | None:
    """Create `out_dir` if needed and prove we can write there; return a problem or None."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".flowstyle_write_test_", dir=out_dir)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        return (f"The output folder {out_dir!r} cannot be written ({exc.strerror or exc}): "
                "choose another output folder.")
    return None


def _pid_alive(pid: int) -> bool | None:
    """Whether `pid` runs on this machine; None where it cannot be told safely (Windows:
    os.kill would terminate the process)."""
    if os.name == "nt":
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:  # Linux: a zombie no longer runs; a process started after the lock is another one
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rpartition(")")[2].split()
        return fields[0] != "Z"
    except (OSError, IndexError):
        return True


def _started_after(pid: int, when: float) -> bool:
    """Linux: True when process `pid` started after `when` (its pid was reused)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            ticks = int(fh.read().rpartition(")")[2].split()[19])
        with open("/proc/stat", encoding="ascii") as fh:
            boot = next(int(line.split()[1]) for line in fh if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK") > when + 2
    except (OSError, ValueError, IndexError, StopIteration, AttributeError):
        return False


def busy_folder_problem(out_dir: str) -> str | None:
    """Why `out_dir` must not be used now: another Flowstyle run holds its lock. None when
    free, or when the lock is a dead run's on this machine (the engine takes it over).

    Checked before rendering, so a second Blender never re-renders the frames a running
    engine reads; the engine itself refuses too (exit 2), which covers any race.
    """
    path = os.path.join(out_dir, LOCK_FILE)
    try:
        with open(path, encoding="utf-8") as fh:
            holder = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        holder = {}
    if not isinstance(holder, dict):
        holder = {}
    pid, host = holder.get("pid"), holder.get("host")
    if host == socket.gethostname() and isinstance(pid, int):
        alive = _pid_alive(pid)
        if alive is None:
            return None  # cannot tell here: the engine decides
        started = holder.get("started")
        if not alive or (isinstance(started, (int, float)) and _started_after(pid, started)):
            return None
    if holder:
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC",
                              time.gmtime(float(holder.get("started") or 0)))
        who = (f"pid {pid} on host {host} since {since} "
               f"(command: {holder.get('command', '?')})")
    else:
        who = "another run (its lock file is unreadable)"
    return (f"The output folder {out_dir} is in use by another Flowstyle run: {who}. Wait "
            "for it to finish or stop it, or choose another output folder. If you are sure "
            f"that run is over, delete {path}.")
