"""Probe `python -m engine` with bad inputs and faults, as a new user would (issue 9).

    python bench/bad_inputs.py [--root CHECKOUT] [--only NAME ...]

Runs each case in a subprocess against the engine in CHECKOUT (default: this one) on a
tiny synthetic sequence (4 frames, 64x48, with a Vector pass), and prints one line per
case: exit status, whether a traceback reached the user, and the first line of the
message. The summary counts tracebacks and exit-1 endings: for ordinary mistakes there
should be none (exit 2 with a message, or a warning where the run can carry on).
Not a test: it prints what a user sees, for the README's table and for comparing versions.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TINY = ["--height", "32", "--first-iterations", "2", "--iterations", "1"]


def write_frames(folder: Path, n: int = 4, size: tuple[int, int] = (48, 64), shift: float = 0.0) -> Path:
    """n frames of a moving gradient, Blender-like multilayer EXRs (Combined, Vector)."""
    import OpenEXR
    folder.mkdir(parents=True, exist_ok=True)
    h, w = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    for k in range(1, n + 1):
        rgb = np.stack([(x + 2 * k + shift) % w / w, y / h, np.full_like(x, 0.3)], -1) * 0.8
        rgba = np.concatenate([rgb, np.ones_like(x)[..., None]], -1).astype(np.float32)
        vectors = np.zeros((h, w, 4), np.float32)
        vectors[..., 0] = -2.0 if k > 1 else 0.0
        vectors[..., 2] = -2.0
        parts = []
        for name, arr, chans in (("Combined", rgba, "RGBA"), ("Vector", vectors, "XYZW")):
            channels = {f"ViewLayer.{name}.{c}": np.ascontiguousarray(arr[..., i])
                        for i, c in enumerate(chans)}
            header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
            parts.append(OpenEXR.Part(header, channels, f"ViewLayer.{name}"))
        OpenEXR.File(parts).write(str(folder / f"render_{k:04d}.exr"))
    return folder


class Probe:
    def __init__(self, root: Path, work: Path):
        self.root, self.work = root, work
        self.frames = write_frames(work / "frames")
        self.style = work / "style.png"
        from PIL import Image
        Image.fromarray((np.random.default_rng(0).random((96, 96, 3)) * 255).astype(np.uint8)).save(self.style)
        self.results: list[dict] = []

    def engine(self, *args: str, timeout: float = 240, limit_bytes: int | None = None,
               umask: int | None = None, term_after: float | None = None) -> subprocess.CompletedProcess:
        env = dict(os.environ, PYTHONPATH=str(self.root))

        def setup() -> None:
            if limit_bytes is not None:  # a full disk, for this process only
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
            if umask is not None:
                os.umask(umask)
        cmd = [sys.executable, "-m", "engine", *args]
        if term_after is None:
            return subprocess.run(cmd, env=env, cwd=self.root, capture_output=True, text=True,
                                  timeout=timeout, preexec_fn=setup)
        proc = subprocess.Popen(cmd, env=env, cwd=self.root, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, preexec_fn=setup)
        time.sleep(term_after)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)

    def base_out(self) -> Path:
        """A finished run on the probe's frames (made once), for evaluate and preview."""
        out = self.work / "base_out"
        if not out.exists():
            self.stylize(self.frames, out)
        return out

    def copy(self, name: str) -> Path:
        dest = self.work / name
        shutil.copytree(self.frames, dest)
        return dest

    def stylize(self, inp: Path | str, out: Path | str, *extra: str, **kw) -> subprocess.CompletedProcess:
        return self.engine("stylize", str(inp), "--out", str(out), "--style", str(self.style),
                           "--progress", "none", *TINY, *extra, **kw)

    def record(self, name: str, result: subprocess.CompletedProcess, ok: bool | None = None,
               note: str = "") -> None:
        err = result.stderr or ""
        lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("no --style")]
        message = next((ln for ln in lines if ln.startswith(("error", "warning", "interrupted",
                                                            "terminated", "problem"))),
                       lines[-1] if lines else (result.stdout.strip().splitlines() or [""])[-1])
        self.results.append({"case": name, "exit": result.returncode,
                             "traceback": "Traceback" in err, "ok": ok, "note": note,
                             "message": message[:160]})
        flag = {True: "handled", False: "NOT HANDLED", None: ""}[ok]
        print(f"{name:34s} exit {result.returncode:>4}  {'TRACEBACK ' if 'Traceback' in err else ''}"
              f"{flag} {note}\n    {message[:150]}", flush=True)


def job(probe: Probe, name: str, data) -> Path:
    path = probe.work / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def cases(p: Probe) -> dict:
    w, f, st = p.work, p.frames, str(p.style)

    def c_truncated_output_resume():
        out = w / "trunc_out"
        p.stylize(f, out)
        target = out / "flowstyle_0003.exr"
        data = target.read_bytes()
        target.write_bytes(data[: len(data) - 200])
        r = p.stylize(f, out, "--progress", "lines")  # "none" would hide the warning
        p.record("truncated output, resume", r, r.returncode == 0 and "0003" in r.stderr
                 and "warning" in r.stderr)

    def c_mode():
        out = w / "mode_out"
        r = p.stylize(f, out, "--frames", "1:1", umask=0o022)
        modes = sorted({oct((out / n).stat().st_mode & 0o777) for n in os.listdir(out)
                        if n.endswith(".exr")})
        p.record("output file mode (umask 022)", r, modes == ["0o644"], f"modes {modes}")

    def c_partial_leftover():
        out = w / "partial_out"
        p.stylize(f, out, "--frames", "1:1")
        (out / ".partial_abc123.exr").write_bytes(b"")
        (out / ".flowstyle" / "state_000001.pt.partial").write_bytes(b"")
        r = p.stylize(f, out, "--frames", "1:2")
        left = [n for n in os.listdir(out) if "partial" in n] + \
               [n for n in os.listdir(out / ".flowstyle") if "partial" in n]
        p.record("0-byte .partial leftovers", r, not left, f"left: {left}")

    def c_full_disk():
        out = w / "full_out"
        r = p.stylize(f, out, limit_bytes=20_000)
        left = [n for n in os.listdir(out) if "partial" in n] if out.exists() else []
        if (out / ".flowstyle").exists():
            left += [n for n in os.listdir(out / ".flowstyle") if "partial" in n]
        p.record("full disk", r, r.returncode == 2 and "space" in r.stderr and not left,
                 f"left: {left}")

    def c_out_is_input():
        d = p.copy("same")
        p.stylize(d, d, "--frames", "1:2")
        r = p.stylize(d, d, "--frames", "1:2")
        p.record("--out equal to the input folder", r, r.returncode == 2)

    def c_empty_dirs():
        out = w / "deep" / "new_out"
        r = p.stylize(f, out, "--weights", str(w / "missing.pth"))
        p.record("empty output folder after failed start", r, not out.exists(),
                 f"exists: {out.exists()}")

    def c_jsonl_truncated_input():
        d = p.copy("jsonl_trunc")
        path = d / "render_0003.exr"
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        r = p.engine("stylize", str(d), "--out", str(w / "jsonl_out"), "--style", st,
                     "--progress", "jsonl", *TINY)
        bad = [ln for ln in r.stdout.splitlines() if not ln.startswith("{")]
        p.record("jsonl stdout with a damaged EXR", r, not bad and r.returncode == 2,
                 f"non-JSON stdout lines: {len(bad)}")

    def c_truncated_input_message():
        d = p.copy("trunc_in")
        path = d / "render_0002.exr"
        data = path.read_bytes()
        path.write_bytes(data[: len(data) - 300])
        r = p.stylize(d, w / "trunc_in_out")
        p.record("truncated input EXR", r, r.returncode == 2 and ("truncated" in r.stderr
                                                                   or "damaged" in r.stderr))

    def c_sigterm():
        out = w / "term_out"
        r = p.stylize(f, out, "--first-iterations", "200", "--iterations", "200", term_after=8)
        left = [n for n in os.listdir(out) if "partial" in n] if out.exists() else []
        p.record("SIGTERM mid-run", r, r.returncode in (130, 143) and "resume" in r.stderr
                 and not left)

    def c_eval_mismatch():
        other = write_frames(w / "other", size=(40, 64), shift=7)
        out = w / "eval_out"
        p.stylize(f, out, "--frames", "1:3")
        r = p.engine("evaluate", str(other), str(out), "--json", "--height", "32")
        p.record("evaluate: other scene's output", r, r.returncode == 2)
        other2 = write_frames(w / "other2", shift=9)
        r = p.engine("evaluate", str(other2), str(out), "--json", "--height", "32")
        p.record("evaluate: same size, other input", r, r.returncode == 2 or "warning" in r.stderr)
        os.remove(out / "flowstyle_0002.exr")
        r = p.engine("evaluate", str(f), str(out), "--json", "--height", "32")
        p.record("evaluate: missing output frame", r, r.returncode == 2 or "missing" in r.stderr)
        r = p.engine("preview", str(other2), str(out), "--sheet", str(w / "s.png"))
        p.record("preview: other input", r, r.returncode == 2 or "warning" in r.stderr)

    def c_preview_errors():
        out = w / "prev_out"
        p.stylize(f, out, "--frames", "1:2")
        blocker = w / "blocker"
        blocker.write_text("")
        r = p.engine("preview", str(f), str(out), "--gif", str(blocker / "a.gif"))
        p.record("preview: GIF path under a file", r, r.returncode == 2)
        import cv2
        video = str(w / "clip.avi")
        vw = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 8, (80, 60))
        for k in range(3):
            vw.write(np.full((60, 80, 3), 40 * k, np.uint8))
        vw.release()
        r = p.engine("preview", video, str(out), "--gif", str(w / "v.gif"))
        p.record("preview: video against EXR output", r, r.returncode == 2)
        r = p.engine("preview", str(f), str(w / "nothing_here"), "--gif", str(w / "n.gif"))
        p.record("preview: no stylized frames", r, r.returncode == 2)

    def simple(name, args, expect=2, **kw):
        def run():
            r = p.engine(*args, **kw)
            p.record(name, r, r.returncode == expect and "Traceback" not in r.stderr)
        return run

    def sty(name, *extra, inp=None):
        return simple(name, ["stylize", str(inp or f), "--out", str(w / f"o_{name[:12]}".replace(" ", "_")),
                             "--style", st, "--progress", "none", *TINY, *extra])

    from PIL import Image
    tiny = w / "tiny.png"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tiny)
    small = w / "small.png"
    Image.new("RGB", (40, 40), (200, 10, 10)).save(small)
    garbage = w / "garbage.pth"
    garbage.write_bytes(os.urandom(4000))
    text_weights = w / "weights.txt"
    text_weights.write_text("hello")
    notimg = w / "notimg.jpg"
    notimg.write_text("not a jpeg")
    a_file = w / "a_file"
    a_file.write_text("")

    jobs = {
        "list": [1, 2], "string number": {"input": str(f), "out": str(w / "j1"), "iterations": "5"},
        "styles string": {"input": str(f), "out": str(w / "j2"), "styles": st},
        "misspelt key": {"input": str(f), "out": str(w / "j3"), "iteratons": 5},
        "frames one end": {"input": str(f), "out": str(w / "j4"), "frames": [1]},
        "height negative": {"input": str(f), "out": str(w / "j5"), "height": -3},
    }
    (w / "notjson.json").write_text("{ not json")

    all_cases = {
        "missing input": sty("missing input", inp=w / "nope"),
        "iterations 0": sty("iterations 0", "--iterations", "0"),
        "iterations -3": sty("iterations -3", "--iterations", "-3"),
        "first-iterations 0": sty("first-iterations 0", "--first-iterations", "0"),
        "height -5": sty("height -5", "--height", "-5"),
        "height 1000000": sty("height 1000000", "--height", "1000000"),
        "height 4": sty("height 4", "--height", "4"),
        "style-strength -1": sty("style-strength -1", "--style-strength", "-1"),
        "temporal-strength nan": sty("temporal-strength nan", "--temporal-strength", "nan"),
        "frames 2:": sty("frames 2:", "--frames", "2:"),
        "frames 5:2": sty("frames 5:2", "--frames", "5:2"),
        "frames 9:12 (none)": sty("frames 9:12 (none)", "--frames", "9:12"),
        "device foo": sty("device foo", "--device", "foo"),
        "device cuda (no GPU)": sty("device cuda (no GPU)", "--device", "cuda"),
        "device cuda:7": sty("device cuda:7", "--device", "cuda:7"),
        "check --device foo": simple("check --device foo", ["check", "--device", "foo"], expect=1),
        "check --device cuda": simple("check --device cuda", ["check", "--device", "cuda"], expect=1),
        "evaluate --device foo": lambda: simple("evaluate --device foo", [
            "evaluate", str(f), str(p.base_out()), "--device", "foo"])(),
        "evaluate --height -1": lambda: simple("evaluate --height -1", [
            "evaluate", str(f), str(p.base_out()), "--height", "-1"])(),
        # No options beside --job: an option would win over the job's bad value.
        **{f"job: {k}": simple(f"job: {k}", ["stylize", "--job", str(job(p, k.replace(" ", "_"), {
            **({"height": 32, "first_iterations": 2, "iterations": 1} if isinstance(v, dict) else {}),
            **v} if isinstance(v, dict) else v)), "--progress", "none"]) for k, v in jobs.items()},
        "job: not JSON": simple("job: not JSON", ["stylize", "--job", str(w / "notjson.json")]),
        "job: missing file": simple("job: missing file", ["stylize", "--job", str(w / "none.json")]),
        "style not an image": sty("style not an image", "--style", str(notimg)),
        "style missing": sty("style missing", "--style", str(w / "gone.jpg")),
        "style 8x8 px": sty("style 8x8 px", "--style", str(tiny)),
        "style 40x40 px (above the minimum)": simple("style 40x40 px (above the minimum)", [
            "stylize", str(f), "--out", str(w / "o_small"), "--style", str(small), "--frames", "1:1",
            "--progress", "none", *TINY], expect=0),
        "style weight -1": sty("style weight -1", "--style", f"{st}:-1"),
        "weights: random bytes": sty("weights: random bytes", "--weights", str(garbage)),
        "weights: a text file": sty("weights: a text file", "--weights", str(text_weights)),
        "weights: missing file": sty("weights: missing file", "--weights", str(w / "no.pth")),
        "weights: a folder": sty("weights: a folder", "--weights", str(w)),
        "out under a file": sty("out under a file", inp=f) if False else simple(
            "out under a file", ["stylize", str(f), "--out", str(a_file / "out"), "--style", st, *TINY]),
        "preset unknown (argparse)": sty("preset unknown (argparse)", "--preset", "ultra"),
        "truncated input EXR": c_truncated_input_message,
        "jsonl + damaged EXR": c_jsonl_truncated_input,
        "truncated output resume": c_truncated_output_resume,
        "output mode": c_mode,
        "partial leftovers": c_partial_leftover,
        "full disk": c_full_disk,
        "out == input": c_out_is_input,
        "empty dirs": c_empty_dirs,
        "sigterm": c_sigterm,
        "evaluate/preview mismatch": c_eval_mismatch,
        "preview errors": c_preview_errors,
    }
    return all_cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(Path(__file__).resolve().parent.parent),
                        help="the Flowstyle checkout whose engine is probed")
    parser.add_argument("--only", nargs="*", help="case names (default: all)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flowstyle-probe-") as tmp:
        probe = Probe(Path(args.root).resolve(), Path(tmp))
        for name, case in cases(probe).items():
            if args.only and name not in args.only:
                continue
            try:
                case()
            except Exception as exc:  # a probe failure is a finding, not a reason to stop
                print(f"{name}: probe failed: {type(exc).__name__}: {exc}", flush=True)
                probe.results.append({"case": name, "exit": None, "traceback": False,
                                      "ok": False, "note": f"probe failed: {exc}", "message": ""})
    res = probe.results
    tracebacks = sum(r["traceback"] for r in res)
    exit1 = sum(r["exit"] == 1 and not r["case"].startswith("check") for r in res)
    handled = sum(bool(r["ok"]) for r in res)
    print(f"\n{len(res)} bad inputs: {tracebacks} ended in a traceback, {exit1} in exit 1 "
          f"(check excluded), {handled} handled as expected, {len(res) - handled} not.")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
