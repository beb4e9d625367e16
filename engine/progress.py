"""Progress for people (a bar with ETA on a terminal) and for programs (JSON lines).

JSON-lines mode writes one object per line to stdout and flushes each: the add-on reads
them as they come. Events: start, frame_done, frame_skipped, warning, error, finished.
Everything for people goes to stderr, so stdout stays machine-readable.
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Reports a run. mode: 'bar' (terminal), 'lines' (plain text), 'jsonl', 'none';
    'auto' picks 'bar' when stderr is a terminal, else 'lines'."""

    def __init__(self, mode: str = "auto", out: IO[str] | None = None, err: IO[str] | None = None):
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        if mode == "auto":
            mode = "bar" if self.err.isatty() else "lines"
        if mode not in ("bar", "lines", "jsonl", "none"):
            raise ValueError(f"unknown progress mode {mode!r}")
        self.mode = mode
        self.total = 0
        self.done = 0
        self.todo = 0
        self.started = time.perf_counter()
        self._durations: list[float] = []
        self.parallel = False  # frames finish in parallel (a farm): ETA from wall time

    def _emit(self, event: str, **data: Any) -> None:
        if self.mode == "jsonl":
            self.out.write(json.dumps({"event": event, **data}) + "\n")
            self.out.flush()

    def _say(self, text: str) -> None:
        if self.mode in ("bar", "lines", "jsonl"):
            self.err.write(text + "\n")
            self.err.flush()

    def eta(self) -> float:
        """Seconds left: later frames cost alike, the first (cold) frame more, so once a
        warm frame is done the estimate uses warm frames only."""
        remaining = self.todo - len(self._durations)
        if not self._durations or remaining <= 0:
            return 0.0
        if self.parallel:
            # Many workers: a frame's own time says nothing about when the run ends;
            # the rate at which frames have been finishing does.
            return remaining * (time.perf_counter() - self.started) / len(self._durations)
        sample = self._durations[1:] or self._durations
        return remaining * sum(sample) / len(sample)

    def start(self, total: int, todo: int, out_dir: str) -> None:
        self.total, self.todo, self.done = total, todo, total - todo
        self.started = time.perf_counter()
        self._emit("start", total=total, todo=todo, out=out_dir)
        if self.mode in ("bar", "lines"):
            resumed = f" ({total - todo} already done)" if todo < total else ""
            self._say(f"flowstyle: {todo} of {total} frames to stylize{resumed} -> {out_dir}")

    def cluster(self, address: str, dashboard: str | None, workers: int, **extra: Any) -> None:
        """A farm run: where it runs and where to watch it (Dask's dashboard)."""
        self.parallel = True
        self._emit("cluster", address=address, dashboard=dashboard, workers=workers, **extra)
        if self.mode in ("bar", "lines"):
            self._say(f"flowstyle: cluster {address} with {workers} workers; "
                      f"dashboard {dashboard or '(none)'}")

    def summary(self, event: str, message: str, **data: Any) -> None:
        """A closing number (e.g. the farm's seam score): an event of its own, and a line."""
        self._emit(event, message=message, **data)
        if self.mode in ("bar", "lines"):
            self._say(message)

    def frame_skipped(self, frame: int, reason: str) -> None:
        self._emit("frame_skipped", frame=frame, reason=reason)

    def frame_done(self, frame: int, seconds: float, path: str, **extra: Any) -> None:
        self.done += 1
        self._durations.append(seconds)
        eta = self.eta()
        self._emit("frame_done", frame=frame, done=self.done, total=self.total,
                   seconds=round(seconds, 3), eta=round(eta, 1), path=path, **extra)
        if self.mode == "bar":
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            self.err.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                           f"frame {frame} {seconds:.1f}s  ETA {format_seconds(eta)}   ")
            if self.done == self.total:
                self.err.write("\n")
            self.err.flush()
        elif self.mode == "lines":
            self._say(f"frame {frame}: {self.done}/{self.total} in {seconds:.1f}s, "
                      f"ETA {format_seconds(eta)}")

    # -- training (python -m engine train): steps instead of frames ---------------------
    def train_start(self, total: int, todo: int, out: str) -> None:
        self.total, self.todo, self.done = total, todo, total - todo
        self.started = time.perf_counter()
        self._durations = []
        self._emit("train_start", total=total, todo=todo, out=out)
        if self.mode in ("bar", "lines"):
            resumed = f" (resuming at step {total - todo})" if todo < total else ""
            self._say(f"flowstyle: training {todo} of {total} steps{resumed} -> {out}")

    def step_done(self, step: int, seconds: float, loss: float, every: int = 10) -> None:
        """One training step done (`step` counts from 1). People see every `every`-th."""
        self.done = step
        self._durations.append(seconds)
        eta = self.eta()
        self._emit("step_done", step=step, total=self.total, seconds=round(seconds, 3),
                   eta=round(eta, 1), loss=round(loss, 2))
        if step % every and step != self.total:
            return
        if self.mode == "bar":
            width = 30
            filled = int(width * step / max(self.total, 1))
            self.err.write(f"\r[{'#' * filled}{'.' * (width - filled)}] step {step}/{self.total} "
                           f"loss {loss:.4g}  ETA {format_seconds(eta)}   ")
            if step == self.total:
                self.err.write("\n")
            self.err.flush()
        elif self.mode == "lines":
            self._say(f"step {step}/{self.total}: loss {loss:.4g}, {seconds:.2f}s, "
                      f"ETA {format_seconds(eta)}")

    def event(self, name: str, text: str = "", **data: Any) -> None:
        """Any other event (checkpoint, preview): JSON for programs, `text` for people."""
        self._emit(name, **data)
        if text and self.mode == "lines":
            self._say(text)

    def warning(self, message: str) -> None:
        self._emit("warning", message=message)
        if self.mode != "none":
            if self.mode == "bar":
                self.err.write("\n")
            self._say(f"warning: {message}")

    def error(self, message: str) -> None:
        self._emit("error", message=message)
        if self.mode == "bar":
            self.err.write("\n")
        self.err.write(f"error: {message}\n")
        self.err.flush()

    def finished(self, out_dir: str) -> None:
        seconds = time.perf_counter() - self.started
        self._emit("finished", total=self.total, seconds=round(seconds, 2), out=out_dir)
        if self.mode in ("bar", "lines"):
            self._say(f"flowstyle: done in {format_seconds(seconds)}: {out_dir}")
