"""Many machines: shots, and chunks of shots, on a Dask cluster (`--cluster`).

Dask distributed does all the scheduling: it places tasks on workers (one per GPU with
`resources={"GPU": 1}` when the workers advertise GPUs), reruns a task whose worker died,
and serves a dashboard. The engine only decides what a task is:

    anchor the first frame of every chunk after the first, stylized on its own from the
           frame's content (the same cold start as a run's first frame): a start that
           depends on nothing but that frame, computed once and shared by both neighbours.
    chunk  frames [lead, last] of a shot, optimized in order by an ordinary SequenceRun
           into a scratch folder. It starts from its anchor (the first chunk: a cold start)
           and runs `overlap` frames past the next chunk's anchor. On the way there it is
           pulled toward that anchor (warped back along the true motion) a little more each
           frame, in equal steps, so the change from one chunk's strokes to the next's is
           spread over the whole run-up instead of popping at the seam (a plain cross-fade
           over a few frames measured a seam 4-6x the warping error inside chunks).
    blend  the `overlap` frames two neighbouring chunks both computed, starting at the
           anchor: cross-faded in display space, the later chunk's weight rising
           (j+1)/(overlap+1). Runs when both chunks are done.

Network mode (`--method network`) has no history: its chunks own their frames outright, no
overlap, no blend, and the frames equal a one-process run's. Hybrid chunks are optimize's,
their start being the network's output for that frame (network_run.py).

Frames a chunk owns alone are written to the output folder as soon as they are computed,
the blended ones by the blend task, all with the normal output contract (run.py: atomic
EXR, fingerprint, settings). A killed chunk reruns elsewhere and resumes from its scratch
state (exact, like a resumed local run), so the final frames equal an undisturbed run's.
Shared storage is the user's: every worker must see the input and output paths (checked
up front, naming the worker that cannot).

`distributed` is optional: only this module imports it, and only a `--cluster` run imports
this module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from . import defaults, lock
from .defaults import Settings
from .errors import FlowstyleError
from .progress import Progress

SCRATCH_DIR = os.path.join(".flowstyle", "farm")  # inside the output folder
PIP_HINT = "pip install 'dask[distributed]==2026.8.0'"


@dataclass(frozen=True)
class Chunk:
    """One chunk task: frames lead..last are computed; first..last are the frames it owns
    (lead..first-1 are the overlap it shares with the previous chunk)."""

    lead: int
    first: int
    last: int


@dataclass
class Job:
    """One shot to stylize: what `stylize` gets from its options or a job file."""

    input: str
    out: str
    settings: Settings
    allow_download: bool = False


def plan_chunks(first: int, last: int, size: int, overlap: int) -> list[Chunk]:
    """Split frames first..last (inclusive) into chunks owning `size` frames each, every
    chunk after the first starting `overlap` frames early (0 <= overlap < size)."""
    if size < 1 or not 0 <= overlap < size:
        raise FlowstyleError(f"chunks of {size} frames with an overlap of {overlap}: the chunk "
                             "size must be at least 1 and the overlap from 0 to size-1 "
                             "(--chunk-frames, --chunk-overlap).")
    chunks = []
    for start in range(first, last + 1, size):
        chunks.append(Chunk(max(first, start - overlap), start, min(last, start + size - 1)))
    return chunks


def alone_frames(chunks: list[Chunk], i: int) -> range:
    """The frames chunk i writes by itself: its own frames minus the next chunk's lead-in."""
    end = chunks[i + 1].lead - 1 if i + 1 < len(chunks) else chunks[i].last
    return range(chunks[i].first, end + 1)


def blend_weight(index: int, overlap: int) -> float:
    """Weight of the later chunk at the index-th overlap frame (0-based): (index+1)/(overlap+1)."""
    return (index + 1) / (overlap + 1)


def farm_fingerprint(settings_fingerprint: str, first: int, size: int, overlap: int) -> str:
    """The fingerprint of a farm run's frames: the settings' plus where the chunks fall
    (a frame's pixels depend on its chunk), so a resumed run keeps only matching frames."""
    blob = f"{settings_fingerprint}:chunks:{first}:{size}:{overlap}".encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def scratch_root(out_dir: str, fingerprint: str) -> str:
    return os.path.join(os.path.abspath(out_dir), SCRATCH_DIR, fingerprint)


def chunk_dir(out_dir: str, fingerprint: str, chunk: Chunk) -> str:
    return os.path.join(scratch_root(out_dir, fingerprint), f"chunk_{chunk.lead:06d}_{chunk.last:06d}")


def result_path(directory: str, number: int) -> str:
    return os.path.join(directory, f"result_{number:06d}.pt")


# -- worker side -------------------------------------------------------------------------

class _WorkerProgress(Progress):
    """Progress on a worker: the frames it finishes go to the client as Dask events."""

    def __init__(self, topic: str, job: int, report: set[int]):
        super().__init__("none")
        self.topic, self.job, self.report = topic, job, report

    def send(self, **msg: Any) -> None:
        from distributed import get_worker
        try:
            get_worker().log_event(self.topic, {"job": self.job, **msg})
        except ValueError:  # not on a worker (called directly, e.g. by a test)
            pass

    def frame_done(self, frame: int, seconds: float, path: str, **extra: Any) -> None:
        if frame in self.report:
            self.send(kind="frame_done", frame=frame, seconds=seconds)

    def warning(self, message: str) -> None:
        self.send(kind="warning", message=message)


def _writer(job: Job, fingerprint: str, first: int, last: int):
    """A model-less SequenceRun over first..last that writes final frames into job.out."""
    from .run import SequenceRun
    settings = dataclasses.replace(job.settings, frames=(first, last))
    writer = SequenceRun(job.input, job.out, settings, load_model=False)
    writer.fingerprint = fingerprint
    return writer


def _load_result(directory: str, number: int):
    import torch
    path = result_path(directory, number)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError):
        return None


def anchor_dir(out_dir: str, fingerprint: str, frame: int) -> str:
    return os.path.join(scratch_root(out_dir, fingerprint), f"anchor_{frame:06d}")


def pull_fraction(step: int, length: int) -> float:
    """How far frame `step` (1-based) of a pull over `length` steps moves toward the anchor,
    as a fraction of what is left: 1/(length-step+1). Compounded, the trajectory covers the
    gap in equal steps of 1/length (step `length` would land on the anchor)."""
    return 1.0 / (length - step + 1)


def _chunk_run_class(job: Job, directory: str, write_alone=None):
    """The job's run class, with results kept in `directory` (working size, display space)
    instead of output EXRs, and optionally anchored (see run_chunk)."""
    import torch
    from . import flow as flowlib
    from .network_run import run_class
    from .stylize import FrameStats, TemporalTerm, resize

    class ChunkRun(run_class(job.settings)):  # type: ignore[misc]
        start_anchor: tuple[int, torch.Tensor] | None = None  # (frame, image): the start
        end_anchor: tuple[int, torch.Tensor] | None = None  # (frame, image): pulled toward
        _toward: dict | None = None
        _anchor_display: torch.Tensor | None = None  # the anchor's frame, working size

        def finished(self, number: int) -> bool:
            state = _load_result(self.out_dir, number)
            return (state is not None and state["fingerprint"] == self.fingerprint
                    and state["input"] == self.sequence.identity(number))

        def write(self, number: int, image: torch.Tensor) -> str:
            path = result_path(self.out_dir, number)
            torch.save({"fingerprint": self.fingerprint, "input": self.sequence.identity(number),
                        "image": image.cpu()}, path + ".partial")
            os.replace(path + ".partial", path)
            return write_alone(number, image) if write_alone else path

        def toward_anchor(self, number: int) -> tuple[torch.Tensor, torch.Tensor]:
            """(flow number→anchor on number's grid, its reliability mask), working size.
            Composed once for the whole run-up, from the anchor back."""
            assert self.end_anchor is not None
            target = self.end_anchor[0]
            if self._toward is None:
                first = self.sequence.numbers[0]
                steps = {t: self.flows(t + 1) for t in range(first, target)}
                self._toward, flow, back = {}, None, None
                for t in range(target - 1, first - 1, -1):
                    b, f = (flowlib.resize_flow(x, self.size) for x in steps[t])
                    flow = f if flow is None else flowlib.compose(f, flow)  # t→t+1→…→target
                    back = b if back is None else flowlib.compose(back, b)  # target→…→t+1→t
                    self._toward[t] = (flow, flowlib.reliability_mask(flow, back))
                # The anchor frame itself: keep pulling only the pixels pulled all along
                # (a pixel the anchor's frame uncovers was never pulled; the blend takes it).
                step_back = flowlib.resize_flow(steps[target - 1][0], self.size)
                self._toward[target] = (torch.zeros_like(step_back),
                                        flowlib.warp(self._toward[target - 1][1], step_back))
            return self._toward[number]

        def stylize_frame(self, number: int):
            if self.start_anchor and number == self.start_anchor[0]:
                return self.start_anchor[1].to(self.device), FrameStats()
            if self.end_anchor is None or number == self.sequence.numbers[0]:
                return super().stylize_frame(number)
            target, anchor = self.end_anchor
            if number > target:  # the overlap after the anchor: the blend takes over
                return super().stylize_frame(number)
            s = self.settings
            first = self.sequence.numbers[0]
            # R+1 steps over the R frames to the anchor: it gets R/(R+1) of the way there
            # and the blend over the overlap does the rest, also where the anchor is not
            # visible from earlier frames (uncovered later), which the pull cannot reach.
            r = pull_fraction(number - first, target - first + 1)
            flow, mask = self.toward_anchor(number)
            pulled = flowlib.warp(anchor.to(self.device), flow)
            content = resize(self.inputs(number).display, self.size)
            # Not toward the anchor's look where it differs from this frame's (a shadow
            # moved in between: flow.appearance_mask); the history's terms carry it there.
            if self._anchor_display is None:
                self._anchor_display = resize(self.inputs(target).display, self.size)
            anchor_content = flowlib.warp(self._anchor_display, flow)
            mask = mask * flowlib.appearance_mask(content, anchor_content, s.appearance_tolerance)
            if hasattr(self, "network_output"):  # hybrid: the network fills what history lacks
                self._network = self.network_output(number)
            terms, backward_1 = self.temporal_terms(number)
            init = self.initial_image(content, terms, backward_1)
            init = init + r * mask * (pulled - init)
            # Held to the history with weight 1 and to the anchor with r/(1-r): the optimum
            # lies a fraction r of the way from one to the other.
            terms.append(TemporalTerm(pulled, mask, r / (1 - r)))
            return self.stylizer.stylize(content, init, terms, s.iterations, pyramid=False)

    return ChunkRun


def run_anchor(job: Job, frame: int, fingerprint: str, token: str) -> str:
    """The anchor task: frame `frame` stylized on its own (a cold start, as a run's first
    frame; hybrid: from the network's output). Both chunks it joins start from / end at it."""
    lock.GRANTED.add(token)
    directory = anchor_dir(job.out, fingerprint, frame)
    settings = dataclasses.replace(job.settings, frames=(frame, frame))
    run = _chunk_run_class(job, directory)(job.input, directory, settings, None, job.allow_download)
    run._run()  # the client holds the lock (see run_chunk)
    return result_path(directory, frame)


def _anchor_image(path: str | None):
    if path is None:
        return None
    state = _load_result(os.path.dirname(path), int(os.path.basename(path)[7:13]))
    if state is None:
        raise FlowstyleError(f"{path}: the anchor frame's result is missing; run again to redo it.")
    return state["image"]


def run_chunk(job: Job, job_index: int, chunks: list[Chunk], i: int, fingerprint: str,
              topic: str, token: str, start: str | None = None, end: str | None = None) -> dict:
    """The chunk task: optimize chunk i in order, keep every result in its scratch folder,
    write the frames it owns alone. Resumes from the scratch folder when rerun.

    start: the anchor result this chunk starts from (every chunk but the first); end: the
    next chunk's start (every chunk but the last), which this chunk is pulled toward over
    its run-up so it arrives there: both neighbours share that frame, and the change from
    one chunk's strokes to the next's is spread over the whole run-up instead of popping."""
    lock.GRANTED.add(token)  # the client holds the output folder's lock for this run
    chunk = chunks[i]
    alone = alone_frames(chunks, i)
    writer = _writer(job, fingerprint, alone.start, alone.stop - 1)
    directory = chunk_dir(job.out, fingerprint, chunk)

    def write_alone(number: int, image: Any) -> str:
        if number in alone and not writer.finished(number):
            return writer.write(number, image)
        return result_path(directory, number)

    started = time.perf_counter()
    progress = _WorkerProgress(topic, job_index, set(alone))
    settings = dataclasses.replace(job.settings, frames=(chunk.lead, chunk.last))
    run = _chunk_run_class(job, directory, write_alone)(job.input, directory, settings, progress,
                                                       job.allow_download)
    if start is not None:
        run.start_anchor = (chunk.lead, _anchor_image(start))
    if end is not None and job.settings.temporal_strength != 0:
        run.end_anchor = (chunks[i + 1].lead, _anchor_image(end))
    setup = time.perf_counter() - started
    # Not run(): its lock on the scratch folder could not be taken over on another host
    # after a worker died there; the client's lock on the output folder covers the run.
    summary = run._run()
    # A chunk killed between its scratch result and the output frame: write what is missing.
    for number in alone:
        if not writer.finished(number):
            state = _load_result(directory, number)
            writer.write(number, state["image"])
            progress.send(kind="frame_done", frame=number, seconds=0.0)
    return {"job": job_index, "chunk": i, "frames": chunk.last - chunk.lead + 1,
            "stylized": summary["stylized"], "seconds": time.perf_counter() - started,
            "setup_seconds": setup, "host": socket.gethostname(), "pid": os.getpid()}


def run_blend(job: Job, job_index: int, chunks: list[Chunk], i: int, fingerprint: str,
              topic: str, token: str, *_done: Any) -> dict:
    """The blend task between chunks i and i+1 (runs after both: `_done` are their results).

    Overlap frame j gets (1-w)·left + w·right, w = (j+1)/(overlap+1), in display space at
    the working size, then the normal output write."""
    lock.GRANTED.add(token)
    left, right = chunks[i], chunks[i + 1]
    frames = range(right.lead, right.first)
    writer = _writer(job, fingerprint, frames.start, frames.stop - 1)
    progress = _WorkerProgress(topic, job_index, set(frames))
    left_dir = chunk_dir(job.out, fingerprint, left)
    right_dir = chunk_dir(job.out, fingerprint, right)
    for j, number in enumerate(frames):
        if writer.finished(number):
            continue
        started = time.perf_counter()
        a, b = _load_result(left_dir, number), _load_result(right_dir, number)
        if a is None or b is None:
            raise FlowstyleError(f"frame {number}: a chunk's scratch result is missing in "
                                 f"{left_dir if a is None else right_dir}; run again to redo it.")
        w = blend_weight(j, len(frames))
        writer.write(number, (1 - w) * a["image"] + w * b["image"])
        progress.send(kind="frame_done", frame=number, seconds=time.perf_counter() - started)
    return {"job": job_index, "blend": i, "frames": len(frames)}


def run_network_chunk(job: Job, job_index: int, chunk: Chunk, topic: str, token: str) -> dict:
    """The network-mode task: frames chunk.first..last through the network, written directly
    (each frame on its own: no overlap, any order, any worker)."""
    from .network_run import NetworkRun
    lock.GRANTED.add(token)
    started = time.perf_counter()
    settings = dataclasses.replace(job.settings, frames=(chunk.first, chunk.last))
    progress = _WorkerProgress(topic, job_index, set(range(chunk.first, chunk.last + 1)))
    run = NetworkRun(job.input, job.out, settings, progress, job.allow_download)
    setup = time.perf_counter() - started
    summary = run._run()  # the client holds the lock
    return {"job": job_index, "chunk": chunk.first, "frames": summary["frames"],
            "stylized": summary["stylized"], "seconds": time.perf_counter() - started,
            "setup_seconds": setup, "host": socket.gethostname(), "pid": os.getpid()}


def worker_check(paths: list[tuple[str, str]]) -> dict:
    """Run on every worker first: {"problems": paths it cannot use, "pid", "host"}."""
    return {"problems": worker_problems(paths), "pid": os.getpid(), "host": socket.gethostname()}


def worker_problems(paths: list[tuple[str, str]]) -> list[str]:
    """Which of these input/output paths can this machine not use?"""
    import glob
    problems = []
    for input_path, out_dir in paths:
        if not (os.path.exists(input_path) or glob.glob(input_path.replace("#", "?"))):
            problems.append(f"cannot see the input {input_path}")
        parent = out_dir
        while parent and not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not parent or not os.access(parent, os.W_OK):
            problems.append(f"cannot write the output folder {out_dir}")
    return problems


# -- client side -------------------------------------------------------------------------

def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise FlowstyleError("--cluster needs Dask distributed, which is not installed in this "
                             f"Python: {PIP_HINT}") from None
    return distributed


def connect(address: str, timeout: float = defaults.FARM_CONNECT_TIMEOUT):
    """A Dask client for `address`: 'tcp://host:8786' (a running scheduler) or 'local:N'
    (a LocalCluster of N worker processes on this machine). Returns (client, cluster)."""
    distributed = _import_distributed()
    import dask
    cluster = None
    if address.startswith("local:"):
        try:
            n = int(address[len("local:"):])
            assert n >= 1
        except (ValueError, AssertionError):
            raise FlowstyleError(f"--cluster {address}: use local:N with N >= 1 worker "
                                 "processes, or a scheduler address tcp://host:8786.") from None
        import logging
        # One task per worker process, each with its share of the cores (a Nanny sets
        # OMP_NUM_THREADS=1 by default, which would leave cores idle with fewer workers).
        threads = max(1, (os.cpu_count() or 1) // n)
        cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                           dashboard_address=":0", silence_logs=logging.ERROR,
                                           env={"OMP_NUM_THREADS": str(threads)})
        address = cluster.scheduler_address
    elif "://" not in address:
        address = "tcp://" + address
    with dask.config.set({"distributed.comm.timeouts.connect": f"{timeout}s"}):
        try:
            client = distributed.Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            if cluster is not None:
                cluster.close()
            raise FlowstyleError(f"cannot reach the Dask scheduler at {address} within "
                                 f"{timeout:.0f} s ({exc.__class__.__name__}). Is `dask scheduler` "
                                 "running there, and is the port open from this machine?") from None
    try:
        client.wait_for_workers(1, timeout=max(timeout, 30.0))
    except (OSError, TimeoutError):
        client.close()
        if cluster is not None:
            cluster.close()
        raise FlowstyleError(f"the Dask scheduler at {address} has no workers: start some with "
                             f"`dask worker {address}`.") from None
    return client, cluster


def check_workers(client: Any, jobs: list[Job]) -> dict:
    """Stop up front if a worker cannot see an input or write an output (a tiny task run on
    every worker). Returns address -> {"problems", "pid", "host", "resources"}."""
    paths = [(os.path.abspath(j.input), os.path.abspath(j.out)) for j in jobs]
    answers = client.run(worker_check, paths, on_error="return")
    workers = client.scheduler_info(n_workers=-1)["workers"]
    root = _root()
    for address, answer in sorted(answers.items()):
        if isinstance(answer, BaseException):
            raise FlowstyleError(f"worker {address} cannot run the engine ({answer}). Every worker "
                                 "needs this engine and its packages (requirements.txt): start "
                                 f"it with PYTHONPATH={root} (the folder holding engine/), e.g. "
                                 f"PYTHONPATH={root} dask worker {client.scheduler.address}")
        answer["resources"] = workers.get(address, {}).get("resources") or {}
        if answer["problems"]:
            raise FlowstyleError(f"worker {address} (host {answer['host']}) {answer['problems'][0]}. "
                                 "Every worker must "
                                 "see the same paths as this machine (shared storage: mount it at "
                                 "the same path on every worker).")
    return answers


class _Plan:
    """One job's chunks, fingerprint and what is left to do (built on the client)."""

    def __init__(self, job: Job):
        from .network_run import HybridRun, NetworkRun
        from .run import SequenceRun
        s = job.settings
        self.job = job
        self.network = s.method == "network"
        # The run's own checks (input, style, model, output folder) and its fingerprint.
        if s.method == "optimize":
            self.run = SequenceRun(job.input, job.out, s, load_model=False)
        else:
            self.run = {"network": NetworkRun, "hybrid": HybridRun}.get(s.method, SequenceRun)(
                job.input, job.out, s)
        self.numbers = self.run.sequence.numbers
        self.size = s.chunk_frames
        # Optimized chunks share at least their anchor frame (see run_chunk).
        self.overlap = 0 if self.network else max(1, min(s.chunk_overlap, s.chunk_frames - 1))
        self.chunks = plan_chunks(self.numbers[0], self.numbers[-1], self.size, self.overlap)
        if not self.network:  # a network frame is the same whatever its chunk
            self.run.fingerprint = farm_fingerprint(self.run.fingerprint, self.numbers[0],
                                                    self.size, self.overlap)
        self.fingerprint = self.run.fingerprint
        self.done = {n for n in self.numbers if self.run.finished(n)}

    def needs_chunk(self, i: int) -> bool:
        c = self.chunks[i]
        return any(n not in self.done for n in range(c.lead, c.last + 1))

    def needs_blend(self, i: int) -> bool:
        right = self.chunks[i + 1]
        return any(n not in self.done for n in range(right.lead, right.first))


def seam_score(job: Job, chunks: list[Chunk], overlap: int) -> dict:
    """Warping error (evaluate.py) of the frame pairs a chunk boundary touches — the
    `overlap`+1 pairs along each blend — against that of the pairs inside chunks."""
    import numpy as np
    from .evaluate import evaluate
    report = evaluate(job.input, job.out, perceptual=False)
    per_pair = report["warping_error"]["output_per_pair"]
    numbers = list(range(chunks[0].first, chunks[-1].last + 1))
    seams = {n for c in chunks[1:] for n in range(c.lead, c.first + 1)}
    if len(per_pair) != len(numbers) - 1:
        return {"across": None, "inside": None, "ratio": None}  # other frames in the folder
    across = [e for n, e in zip(numbers[1:], per_pair) if n in seams]
    inside = [e for n, e in zip(numbers[1:], per_pair) if n not in seams]
    a = float(np.mean(across)) if across else None
    b = float(np.mean(inside)) if inside else None
    return {"across": a, "inside": b, "ratio": (a / b) if a is not None and b else None,
            "pairs_across": len(across), "pairs_inside": len(inside)}


def run_jobs(jobs: list[Job], cluster: str, progress: Progress | None = None,
             seam: bool = True) -> list[dict]:
    """Stylize every job on the cluster at `cluster`; returns one summary per job."""
    progress = progress or Progress("none")
    distributed = _import_distributed()
    import logging
    # Dask logs a lost scheduler with a traceback of its own; the error below says it plainly.
    logging.getLogger("distributed.client").setLevel(logging.CRITICAL)
    client, local = connect(cluster)  # first: an unreachable scheduler is said within seconds
    events = threading.Lock()
    held = contextlib.ExitStack()
    try:
        plans = [_Plan(job) for job in jobs]  # bad input stops here, before any task runs
        # One run per output folder, as for a local run; the workers write under this lock.
        locks = [lock.OutputLock(plan.run.out_dir, progress.warning) for plan in plans]
        for held_lock in locks:
            held.enter_context(held_lock)
        workers = check_workers(client, jobs)
        gpu = any("GPU" in w["resources"] for w in workers.values())
        resources = {"GPU": 1} if gpu else None
        progress.cluster(cluster, client.dashboard_link, len(workers),
                         pids=sorted(w["pid"] for w in workers.values()), gpu=gpu)
        total = sum(len(p.numbers) for p in plans)
        todo = sum(len(p.numbers) - len(p.done) for p in plans)
        progress.start(total, todo, jobs[0].out if len(jobs) == 1 else f"{len(jobs)} jobs")
        reported: set[tuple[int, int]] = set()
        for k, plan in enumerate(plans):
            for n in sorted(plan.done):
                reported.add((k, n))
                progress.frame_skipped(n, "resumed")

        def on_event(event: tuple[float, dict]) -> None:
            msg = event[1]
            with events:
                if msg["kind"] == "warning":
                    progress.warning(msg["message"])
                elif (msg["job"], msg["frame"]) not in reported:
                    reported.add((msg["job"], msg["frame"]))
                    extra = {"job": msg["job"]} if len(jobs) > 1 else {}
                    progress.frame_done(msg["frame"], msg["seconds"],
                                        _output(plans[msg["job"]], msg["frame"]), **extra)

        topic = f"flowstyle-{uuid.uuid4().hex[:12]}"
        client.subscribe_topic(topic, on_event)
        futures = []
        for k, plan in enumerate(plans):
            token = locks[k].token
            chunk_futures: dict[int, Any] = {}
            anchors: dict[int, Any] = {}  # chunk i -> the future of its start frame's result
            for i, chunk in enumerate(plan.chunks):
                if i and not plan.network and (plan.needs_chunk(i - 1) or plan.needs_chunk(i)):
                    anchors[i] = client.submit(
                        run_anchor, plan.job, chunk.lead, plan.fingerprint, token,
                        key=f"flowstyle-anchor-{plan.fingerprint}-{k}-{i}-{topic}",
                        resources=resources, retries=defaults.FARM_RETRIES, pure=False)
            for i, chunk in enumerate(plan.chunks):
                if not plan.needs_chunk(i):
                    continue
                key = f"flowstyle-chunk-{plan.fingerprint}-{k}-{i}-{topic}"
                if plan.network:
                    chunk_futures[i] = client.submit(
                        run_network_chunk, plan.job, k, chunk, topic, token, key=key,
                        resources=resources, retries=defaults.FARM_RETRIES, pure=False)
                else:
                    chunk_futures[i] = client.submit(
                        run_chunk, plan.job, k, plan.chunks, i, plan.fingerprint, topic, token,
                        anchors.get(i), anchors.get(i + 1),
                        key=key, resources=resources, retries=defaults.FARM_RETRIES, pure=False)
            for i in range(len(plan.chunks) - 1):
                if plan.overlap and plan.needs_blend(i):
                    futures.append(client.submit(
                        run_blend, plan.job, k, plan.chunks, i, plan.fingerprint, topic, token,
                        chunk_futures.get(i), chunk_futures.get(i + 1),
                        key=f"flowstyle-blend-{plan.fingerprint}-{k}-{i}-{topic}",
                        retries=defaults.FARM_RETRIES, pure=False))
            futures.extend(chunk_futures.values())
        results = []
        try:
            for future in distributed.as_completed(futures, loop=client.loop):
                results.append(future.result())  # re-raises a task's FlowstyleError here
        except FlowstyleError:
            client.cancel(futures)
            raise
        except RuntimeError as exc:
            if "deserializ" not in str(exc):
                raise
            raise FlowstyleError(f"the Dask scheduler at {cluster} cannot read the engine's tasks: "
                                 "the scheduler, like every worker, needs this engine importable. "
                                 f"Start it with PYTHONPATH={_root()} (the folder holding engine/) "
                                 f"and the packages of requirements.txt.") from None
        except distributed.client.FutureCancelledError as exc:
            raise FlowstyleError(f"lost the Dask scheduler at {cluster} ({exc}); finished frames "
                                 "are kept: run the same command again to resume.") from None
        except OSError as exc:
            raise FlowstyleError(f"lost the Dask scheduler at {cluster} ({exc}); finished frames "
                                 "are kept: run the same command again to resume.") from None
        # Events travel separately from results: give the last ones a moment, then report
        # any frame whose event was lost (the frame itself is on disk: checked below).
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and len(reported) < total:
            time.sleep(0.05)
        summaries = []
        for k, plan in enumerate(plans):
            missing = [n for n in plan.numbers if not plan.run.finished(n)]
            if missing:
                raise FlowstyleError(f"{plan.job.out}: frames {missing[:5]} were not written; "
                                     "run the same command again to finish them.")
            with events:
                for n in plan.numbers:
                    if (k, n) not in reported:
                        reported.add((k, n))
                        progress.frame_done(n, 0.0, _output(plan, n))
            chunk_results = [r for r in results if r["job"] == k and "chunk" in r]
            summary = {"out": os.path.abspath(plan.job.out), "frames": len(plan.numbers),
                       "chunks": len(plan.chunks), "chunk_frames": plan.size,
                       "chunk_overlap": plan.overlap,
                       "chunk_seconds": [round(r["seconds"], 2) for r in chunk_results],
                       "setup_seconds": [round(r["setup_seconds"], 2) for r in chunk_results]}
            if seam and plan.overlap and len(plan.chunks) > 1 and len(plan.numbers) > 1:
                score = seam_score(plan.job, plan.chunks, plan.overlap)
                summary["seam"] = score
                if score["ratio"] is not None:
                    progress.summary("seam", f"seam score {plan.job.out}: warping error across "
                                     f"chunk boundaries / inside chunks = {score['ratio']:.2f} "
                                     f"({score['across']:.5f} / {score['inside']:.5f}; "
                                     "target <= 1.5)", **score)
            if not plan.network:
                shutil.rmtree(scratch_root(plan.job.out, plan.fingerprint), ignore_errors=True)
            summaries.append(summary)
        progress.finished(jobs[0].out if len(jobs) == 1 else f"{len(jobs)} jobs")
        return summaries
    finally:
        held.close()
        client.close()
        if local is not None:
            local.close()


def _root() -> str:
    """The folder holding the engine package (what PYTHONPATH must name on a farm)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _output(plan: _Plan, number: int) -> str:
    from .run import output_path
    return output_path(plan.run.out_dir, number)


def available() -> str | None:
    """The installed Dask distributed version, or None (for `python -m engine check`)."""
    try:
        import distributed
    except ImportError:
        return None
    return str(distributed.__version__)
