"""`python -m engine ...`: the command line the add-on, batch scripts and farms share.

    python -m engine stylize INPUT --style painting.jpg --out DIR [options]
    python -m engine stylize --job job.json          (the add-on writes the job file)
    python -m engine train INPUT --style a.jpg [--style b.jpg] --out model.pt [options]
    python -m engine stylize INPUT --method network --model model.pt --out DIR
    python -m engine evaluate INPUT DIR [--json]
    python -m engine preview INPUT DIR --gif side_by_side.gif --sheet sheet.png
    python -m engine check [--json]
    python -m engine stylize ... --cluster tcp://host:8786   (or local:N): on a Dask cluster
    python -m engine batch JOB.json [JOB2.json ...] [--cluster ADDRESS]

Exit status: 0 done, 2 bad input or environment (the message says which setting, file or
frame and what to do: a wrong value, a damaged file, a full disk), 1 an unexpected failure
(a bug: the message gives the path of a log with the details, please report it),
130 stopped on request (Ctrl-C or SIGTERM). Finished frames are always kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import signal
import sys
from typing import Any

from .defaults import (DEFAULT_STYLE, PRESETS, TRAIN_LR_FLOOR, Region, Settings, SettingError,
                       StyleImage, nearest)
from .errors import FlowstyleError
from .progress import Progress

# Job-file keys that are not Settings fields (every Settings field is a job key too, so a
# field added to Settings is accepted in job files without a change here).
JOB_ONLY_KEYS: dict[str, type] = {"input": str, "out": str, "allow_download": bool}
# Options whose spelling is not "--" + the field name with dashes.
OPTION_OF_FIELD = {"styles": "--style", "use_depth": "--no-depth", "regions": "--region"}


def _style(text: str) -> StyleImage:
    """'painting.jpg' or 'painting.jpg:0.5' -> StyleImage (a Windows drive 'C:\\' is no weight)."""
    path, sep, weight = text.rpartition(":")
    if sep and path and not weight.startswith(("\\", "/")):
        try:
            return StyleImage(path, float(weight))
        except ValueError:
            pass
    return StyleImage(text, 1.0)


def _region(text: str) -> Region:
    """'2=scream.jpg', '2=a.jpg:0.7,b.jpg:0.3' or '3=keep' -> Region (see defaults.Region)."""
    index, sep, styles = text.partition("=")
    try:
        number = int(index)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--region wants INDEX=STYLE[,STYLE...] or INDEX=keep, e.g. 2=scream.jpg, not {text!r}") from None
    if not sep or not styles:
        raise argparse.ArgumentTypeError(f"--region {text!r}: give a style after '=', or 'keep'.")
    if styles.strip().lower() == "keep":
        return Region(number, [])
    return Region(number, [_style(part) for part in styles.split(",") if part])


def _frames(text: str) -> tuple[int, int]:
    """'1:48' -> (1, 48); '7' -> (7, 7). Both ends are required with a colon: '2:' used
    to mean frame 2 alone, which is not what anyone typing it meant."""
    start, colon, end = text.partition(":")
    try:
        return int(start), int(end if colon else start)
    except ValueError:
        pass
    if colon and start.strip() and not end.strip():
        hint = f"give both ends, e.g. {start.strip()}:48 (or {start.strip()} for that frame alone)"
    else:
        hint = "give START:END, e.g. 1:48, or one frame number"
    raise argparse.ArgumentTypeError(f"{text!r}: {hint}") from None


def _remember_option_names(p: argparse.ArgumentParser) -> None:
    """Let messages name a setting as the user typed it (dest train_steps -> --steps)."""
    p.set_defaults(option_names={a.dest: a.option_strings[-1] for a in p._actions
                                 if a.option_strings and a.dest != "help"})


def _add_stylize(sub: Any, name: str = "stylize",
                 help: str = "stylize a sequence (EXR folder or pattern, images, video)") -> Any:
    p = sub.add_parser(name, help=help)
    p.add_argument("input", nargs="?", help="folder, pattern (render_####.exr) or video file")
    p.add_argument("--out", help="output folder (created if missing)")
    p.add_argument("--job", help="a JSON job file (keys as the options; options given here win)")
    p.add_argument("--style", action="append", type=_style, metavar="PATH[:WEIGHT]",
                   help="style image, repeat to blend several")
    p.add_argument("--preset", choices=sorted(PRESETS))
    p.add_argument("--style-strength", type=float, help="multiplies the style weight (default 1)")
    p.add_argument("--temporal-strength", type=float,
                   help="multiplies the temporal weight; 0 = independent frames (default 1)")
    p.add_argument("--flow", choices=["auto", "vectors", "estimated"])
    p.add_argument("--no-depth", action="store_true", help="ignore the Depth pass")
    p.add_argument("--frames", type=_frames, metavar="START:END", help="inclusive frame range")
    p.add_argument("--region", action="append", type=_region, metavar="INDEX=STYLE[,STYLE]|keep",
                   help="per-object style: pixels whose Object Index pass is INDEX get these "
                        "styles ('keep': the original render); repeatable")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, ...")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"],
                   help="VGG pass: auto (bf16 where native, fp16 on older CUDA GPUs and MPS, "
                        "else fp32)")
    p.add_argument("--weights", help="caffe (embedded, default), torchvision, or a file path")
    p.add_argument("--allow-download", action="store_true",
                   help="allow downloading torchvision's weights (~548 MB) if not cached")
    p.add_argument("--optimizer", choices=["lbfgs", "adam"])
    p.add_argument("--iterations", type=int, help="iterations per later frame (overrides preset)")
    p.add_argument("--first-iterations", type=int, help="iterations for the first frame")
    p.add_argument("--height", type=int, help="working height in px (0 = full size)")
    p.add_argument("--progress", choices=["auto", "bar", "lines", "jsonl", "none"], default="auto")
    p.add_argument("--watch-parent", action="store_true",
                   help="stop (as on Ctrl-C) when the process that started this one ends")
    p.add_argument("--method", choices=["optimize", "network", "hybrid"],
                   help="optimize (default): each frame optimized; network: a model trained with "
                   "'train', one pass per frame at full size; hybrid: optimized, started from "
                   "the network's output")
    p.add_argument("--model", help="the trained model (network and hybrid)")
    p.add_argument("--style-mix", type=_floats, metavar="W1,W2,...",
                   help="weights of the model's styles (default: as trained)")
    p.add_argument("--tile", dest="network_tile", type=int, metavar="PX",
                   help="network: stylize frames in tiles of PX px (same output, less memory; "
                        "default 0 = only when a frame does not fit in memory)")
    _add_cluster(p)
    p.add_argument("--chunk-frames", type=int,
                   help="farm: frames per chunk task (default %d)" % Settings.chunk_frames)
    p.add_argument("--chunk-overlap", type=int,
                   help="farm: frames each chunk shares with the previous one, blended "
                        "(default %d)" % Settings.chunk_overlap)
    c = p.add_argument_group("colour", "the scene's colour management (README: Colour); names "
                             "are those of the OCIO config")
    c.add_argument("--ocio-config", metavar="PATH",
                   help="OpenColorIO config (default: $OCIO, else the installed bpy's, else the "
                        "sRGB curve)")
    c.add_argument("--working-space", help="colour space of the input EXRs (default Linear Rec.709)")
    c.add_argument("--display", help="display device (default sRGB)")
    c.add_argument("--view", help="view transform, e.g. Standard (default), AgX, Filmic")
    c.add_argument("--look", help="look, e.g. 'AgX - Punchy' (default None)")
    c.add_argument("--exposure", type=float, help="exposure in stops before the view (default 0)")
    c.add_argument("--gamma", type=float, help="display gamma after the view (default 1)")
    c.add_argument("--preserve-colour", action="store_true", default=None,
                   help="keep the render's colours, take only the style's luminance pattern")
    _remember_option_names(p)

    return p


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"want numbers separated by commas, not {text!r}") from None


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"want numbers separated by commas, e.g. 0.7,0.3, "
                                         f"not {text!r}") from None


def _add_train(sub: Any) -> None:
    p = sub.add_parser("train", help="train a style network on the shot (for --method network)")
    p.add_argument("input", nargs="?", help="folder, pattern (render_####.exr) or video file")
    p.add_argument("--out", help="the model file to write (model.pt)")
    p.add_argument("--job", help="a JSON job file (keys as the options; options given here win)")
    p.add_argument("--style", action="append", type=_style, metavar="PATH[:WEIGHT]",
                   help="style image; repeat for several styles in one network (the weight is "
                   "the default mix when stylizing)")
    p.add_argument("--region", action="append", type=_region, metavar="INDEX=STYLE[,STYLE]|keep",
                   help="per-object style (as stylize's): its styles are trained into the "
                        "network too, so stylize --region can use them; repeatable")
    p.add_argument("--steps", dest="train_steps", type=int, help="training steps (default 800)")
    p.add_argument("--crop", dest="train_crop", type=int, help="crop side in px (default 256)")
    p.add_argument("--batch", dest="train_batch", type=int, help="frame pairs per step (default 1)")
    p.add_argument("--lr", dest="train_lr", type=float, help="Adam learning rate (default 1e-3)")
    p.add_argument("--lr-decay", dest="train_lr_decay", type=float, metavar="FRACTION",
                   help="the last FRACTION of the steps lowers the rate to %g of it along a "
                        "half cosine (default %g; 0 = constant)"
                        % (TRAIN_LR_FLOOR, Settings.train_lr_decay))
    p.add_argument("--channels", dest="network_channels", type=_ints, metavar="C1,C2,C3",
                   help="widths of the network (default 16,32,64)")
    p.add_argument("--blocks", dest="network_blocks", type=int, help="residual blocks (default 5)")
    p.add_argument("--network-style-scale", dest="network_style_scale", type=float,
                   help="multiplies the style weight for the network (default %g; 1 = the "
                        "optimizer's balance, which paints over small objects)"
                        % Settings.network_style_scale)
    p.add_argument("--preview-every", dest="train_preview_every", type=int,
                   help="steps between previews of a held-out frame (default 100, 0 = none)")
    p.add_argument("--checkpoint-every", dest="train_checkpoint_every", type=int,
                   help="steps between resumable checkpoints (default 25)")
    p.add_argument("--style-strength", type=float, help="multiplies the style weight (default 1)")
    p.add_argument("--temporal-strength", type=float,
                   help="multiplies the temporal weight; 0 = no temporal loss (default 1)")
    p.add_argument("--flow", choices=["auto", "vectors", "estimated"])
    p.add_argument("--no-depth", action="store_true", help="ignore the Depth pass")
    p.add_argument("--frames", type=_frames, metavar="START:END", help="inclusive frame range")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, ...")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"])
    p.add_argument("--weights", help="caffe (embedded, default), torchvision, or a file path")
    p.add_argument("--allow-download", action="store_true")
    p.add_argument("--seed", dest="train_seed", type=int,
                   help="initial weights and crops drawn (default 0)")
    p.add_argument("--progress", choices=["auto", "bar", "lines", "jsonl", "none"], default="auto")
    p.add_argument("--watch-parent", action="store_true",
                   help="stop (as on Ctrl-C) when the process that started this one ends")
    _remember_option_names(p)


NETWORK_OPTIONS = ("method", "model", "style_mix", "train_steps", "train_crop", "train_batch",
                   "train_lr", "train_lr_decay", "network_channels", "network_blocks", "train_preview_every",
                   "train_checkpoint_every", "train_seed", "network_tile", "network_style_scale")


def _add_cluster(p: Any) -> None:
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="run on a Dask cluster: a scheduler (tcp://host:8786) or local:N "
                        "(N worker processes on this machine); needs dask[distributed]")


def job_keys() -> list[str]:
    """Every key a job file may have: the Settings fields and the job-only keys."""
    return [f.name for f in dataclasses.fields(Settings)] + list(JOB_ONLY_KEYS)


def read_job(path: str) -> dict[str, Any]:
    """Read a job file: a JSON object whose keys are `job_keys()`. Refuses, naming the key
    and what to give, a file that is not an object, an unknown (misspelt) key, and a
    job-only key of the wrong type; settings are checked later by Settings.validate()."""
    try:
        with open(path, encoding="utf-8") as f:
            job = json.load(f)
    except (OSError, ValueError) as exc:
        raise FlowstyleError(f"{path}: cannot read the job file ({exc}).") from exc
    if not isinstance(job, dict):
        raise FlowstyleError(f"{path}: the job file holds a JSON {type(job).__name__}; it must be "
                             'one object, e.g. {"input": "render/", "out": "stylized/", "styles": '
                             '[{"path": "painting.jpg", "weight": 1.0}]}.')
    valid = job_keys()
    for key in job:
        if key not in valid:
            close = nearest(key, valid)
            hint = f'did you mean "{close}"?' if close else "valid keys: " + ", ".join(sorted(valid))
            raise FlowstyleError(f'{path}: unknown key "{key}" ({hint}). Remove or rename it.')
    for key, kind in JOB_ONLY_KEYS.items():
        if job.get(key) is not None and not isinstance(job[key], kind):
            what = "true or false" if kind is bool else "a text in quotes (a path)"
            raise FlowstyleError(f'{path}: "{key}" is {json.dumps(job[key])}: give {what}.')
    return job


def _job_value(path: str, key: str, value: Any) -> Any:
    """A job-file value as the Settings field holds it (JSON has lists, not tuples, and
    styles as objects). Wrong shapes are left as they are for validate() to name."""
    if key == "styles" and isinstance(value, list):
        styles = []
        for st in value:
            if not (isinstance(st, dict) and isinstance(st.get("path"), str)
                    and set(st) <= {"path", "weight"}
                    and isinstance(st.get("weight", 1.0), (int, float))
                    and not isinstance(st.get("weight", 1.0), bool)):
                raise FlowstyleError(f'{path}: "styles" holds {json.dumps(st)}: give each style as '
                                     '{"path": "painting.jpg", "weight": 1.0} (weight optional).')
            styles.append(StyleImage(st["path"], float(st.get("weight", 1.0))))
        return styles
    if isinstance(value, list):  # long_term, frames, style_mix, network_channels ...
        return tuple(value)
    return value


def settings_from(args: argparse.Namespace) -> tuple[Settings, str, str, bool]:
    """Merge a job file and command-line options into (settings, input, out, allow_download),
    validated: a bad value is a FlowstyleError naming the option or job key."""
    job = read_job(args.job) if args.job else {}
    s = Settings()
    from_job = set()
    for f in dataclasses.fields(Settings):
        if job.get(f.name) is not None and f.name not in ("regions", "style_strengths"):
            setattr(s, f.name, _job_value(args.job, f.name, job[f.name]))
            from_job.add(f.name)
    try:
        if job.get("regions"):
            s.regions = [Region(int(r["index"]), [StyleImage(str(st["path"]), float(st.get("weight", 1.0)))
                                                  for st in r.get("styles", [])])
                         for r in job["regions"]]
        if job.get("style_strengths"):
            s.style_strengths = {int(k): float(v) for k, v in job["style_strengths"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise FlowstyleError(f"{args.job}: 'regions' must be a list of {{index, styles: [{{path, "
                             f"weight}}]}} and 'style_strengths' a map of frame -> number ({exc}).") from exc
    if getattr(args, "region", None):
        s.regions = args.region
    from_cli = set()
    for f in dataclasses.fields(Settings):  # options named like the field (argparse dest)
        value = getattr(args, f.name, None)
        if value is not None:
            setattr(s, f.name, value)
            from_cli.add(f.name)
    if args.style:
        s.styles = args.style
        from_cli.add("styles")
    if args.no_depth:
        s.use_depth = False
        from_cli.add("use_depth")
    try:
        s.validate()
    except SettingError as exc:
        if exc.key in from_job and exc.key not in from_cli:
            where = f'{args.job}: "{exc.key}"'
        else:
            names = {**getattr(args, "option_names", {}), **OPTION_OF_FIELD}
            where = names.get(exc.key, f'setting "{exc.key}"')
        raise FlowstyleError(exc.describe(where)) from None
    if not s.styles and s.method == "optimize":  # network/hybrid: the model's own styles
        s.styles = [StyleImage(DEFAULT_STYLE)]
        print("no --style given: using the built-in painting, The Starry Night (van Gogh, 1889).",
              file=sys.stderr)
    input_path = args.input or job.get("input")
    out = args.out or job.get("out")
    if not input_path:
        raise FlowstyleError("no input: give a folder, pattern or video (or 'input' in the job file).")
    if not out:
        raise FlowstyleError("no output folder: pass --out DIR (or 'out' in the job file).")
    return s, input_path, out, bool(args.allow_download or job.get("allow_download"))


def _failed(progress: Progress, exc: Exception, out: str | None) -> int:
    """Say why a run failed, through `progress` (a JSON event too, for the add-on), and
    return the exit status: 2 for bad input or environment, 1 (with a crash log) for a bug."""
    if isinstance(exc, FlowstyleError):
        progress.error(str(exc))
        return 2
    ordinary = ordinary_error(exc)
    if ordinary is not None:
        progress.error(ordinary)
        return 2
    progress.error(crash_message(exc, write_crash_log(exc, out)))
    return 1


def _stylize(args: argparse.Namespace) -> int:
    progress = Progress(args.progress)
    if args.watch_parent:
        from .watch import watch_parent
        watch_parent()
    try:
        settings, input_path, out, allow_download = settings_from(args)
        if args.cluster:
            from . import farm  # the only path that imports Dask
            farm.run_jobs([farm.Job(input_path, out, settings, allow_download)], args.cluster,
                          progress)
            return 0
        from .network_run import run_class  # torch import: after argument errors are reported
        run_class(settings)(input_path, out, settings, progress, allow_download).run()
    except Exception as exc:  # noqa: BLE001 - every failure is said as an event too
        return _failed(progress, exc, args.out)
    return 0


def _train(args: argparse.Namespace) -> int:
    progress = Progress(args.progress)
    if args.watch_parent:
        from .watch import watch_parent
        watch_parent()
    try:
        settings, input_path, out, allow_download = settings_from(args)
        from .train import Trainer  # torch import: after argument errors are reported
        Trainer(input_path, out, settings, progress, allow_download).run()
    except Exception as exc:  # noqa: BLE001 - every failure is said as an event too
        return _failed(progress, exc, args.out)
    return 0


def _batch(args: argparse.Namespace) -> int:
    """Many job files: all on the cluster at once with --cluster, else one after another."""
    progress = Progress(args.progress)
    parser = argparse.ArgumentParser(prog="python -m engine")
    _add_stylize(parser.add_subparsers(dest="command"))
    try:
        jobs = []
        for path in args.jobs:
            job_args = parser.parse_args(["stylize", "--job", path])
            settings, input_path, out, allow_download = settings_from(job_args)
            jobs.append((input_path, out, settings, allow_download))
        if args.cluster:
            from . import farm
            farm.run_jobs([farm.Job(*job) for job in jobs], args.cluster, progress)
            return 0
        from .network_run import run_class
        for input_path, out, settings, allow_download in jobs:
            run_class(settings)(input_path, out, settings, progress, allow_download).run()
    except Exception as exc:  # noqa: BLE001 - every failure is said as an event too
        return _failed(progress, exc, None)
    return 0


def _preview_frame(args: argparse.Namespace) -> int:
    progress = Progress(args.progress)
    try:
        settings, input_path, out, allow_download = settings_from(args)
        shot = None
        if args.shot_job:  # the shot's own job: its kept model, if current (preview_frame.py)
            parser = argparse.ArgumentParser(prog="python -m engine")
            _add_stylize(parser.add_subparsers(dest="command"))
            shot_settings, shot_input = settings_from(parser.parse_args(["stylize", "--job",
                                                                         args.shot_job]))[:2]
            shot = (shot_input, shot_settings)
        from .preview_frame import preview_frame
        report = preview_frame(input_path, args.frame, out, settings, progress, allow_download,
                               shot)
    except Exception as exc:  # noqa: BLE001 - every failure is said as an event too
        return _failed(progress, exc, None)
    print(json.dumps(report) if args.progress == "jsonl" else
          f"preview of frame {report['frame']} ({report['seconds']} s): {report['out']}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate
    if args.height is not None:
        try:
            Settings(height=args.height).validate()
        except SettingError as exc:
            raise FlowstyleError(exc.describe("--height")) from None
    report = evaluate(args.input, args.output, height=args.height, device=args.device,
                      allow_mismatch=args.allow_mismatch)
    text = json.dumps(report, indent=None if args.json else 2)
    if args.report:
        from .exr import new_temp_path
        from .errors import write_failed
        tmp = new_temp_path(args.report, ".json")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text + "\n")
            os.replace(tmp, args.report)
        except OSError as exc:
            os.remove(tmp)
            raise write_failed(args.report, exc) from exc
    print(text)
    return 0


def _preview(args: argparse.Namespace) -> int:
    from .preview import write_previews
    paths = write_previews(args.input, args.output, gif=args.gif, sheet=args.sheet,
                           allow_mismatch=args.allow_mismatch)
    for path in paths:
        print(path)
    return 0


def _check(args: argparse.Namespace) -> int:
    from .check import check_environment
    report = check_environment(weights=args.weights, device=args.device)
    if args.json:
        print(json.dumps(report))
    else:
        for key in ("python", "torch", "device"):
            print(f"{key}: {report[key]}")
        print(f"weights (caffe): {'found' if report['weights']['caffe'] else 'MISSING'}")
        print(f"farm (dask distributed, for --cluster): {report['distributed'] or 'not installed'}")
        for problem, fix in zip(report["problems"], report["fixes"]):
            print(f"problem: {problem}\n  fix: {fix}")
        print("ok" if report["ok"] else "NOT READY")
    return 0 if report["ok"] else 1


class Terminated(KeyboardInterrupt):
    """SIGTERM (the add-on's Cancel, a farm's stop, `kill`): unwinds exactly like Ctrl-C,
    so the file being written is removed, the lock released and finished frames kept.
    The exit status is Ctrl-C's too (130): for a caller both mean "stopped on request"."""


def _terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_stylize(sub)
    _add_train(sub)
    pf = _add_stylize(sub, "preview-frame", "stylize ONE frame fast into an EXR showing "
                      "original | stylized side by side (--out FILE.exr)")
    pf.add_argument("--frame", type=int, help="the frame to preview (default: the first)")
    pf.add_argument("--shot-job", help="network/hybrid: the shot's job file; its kept model "
                    "(the job's 'model') is used while it is current for the shot, else the "
                    "preview optimizes")
    e = sub.add_parser("evaluate", help="temporal stability and style/content losses, as JSON")
    e.add_argument("input", help="the input sequence (its Vector pass gives the true motion)")
    e.add_argument("output", help="the folder of stylized frames")
    e.add_argument("--height", type=int, default=None, help="working height for the VGG losses")
    e.add_argument("--device", default="auto")
    e.add_argument("--json", action="store_true", help="one line of JSON")
    e.add_argument("--report", help="also write the JSON to this file")
    e.add_argument("--allow-mismatch", action="store_true",
                   help="compare even if the outputs record other input files (moved renders)")
    v = sub.add_parser("preview", help="side-by-side GIF and contact sheet of input | output")
    v.add_argument("input")
    v.add_argument("output")
    v.add_argument("--gif", help="side-by-side animation (.gif)")
    v.add_argument("--sheet", help="contact sheet (.png)")
    v.add_argument("--allow-mismatch", action="store_true",
                   help="show even if the outputs record other input files (moved renders)")
    b = sub.add_parser("batch", help="stylize many job files (the add-on's job format)")
    b.add_argument("jobs", nargs="+", metavar="JOB.json")
    b.add_argument("--progress", choices=["auto", "bar", "lines", "jsonl", "none"], default="auto")
    _add_cluster(b)
    c = sub.add_parser("check", help="is this Python ready to run the engine?")
    c.add_argument("--json", action="store_true")
    c.add_argument("--weights", default="caffe", help="the weights the user will run with")
    c.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if hasattr(signal, "SIGTERM") and argv is None:
        # The add-on's Cancel (and `kill`) send SIGTERM: stop as on Ctrl-C, so the output
        # folder's lock is released and no half-written file is left.
        signal.signal(signal.SIGTERM, _terminated)
    handlers = {"stylize": _stylize, "preview-frame": _preview_frame, "batch": _batch, "train": _train, "evaluate": _evaluate, "preview": _preview, "check": _check}
    try:
        return handlers[args.command](args)
    except FlowstyleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        how = "stopped (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        try:  # stderr may be a pipe to a parent that is gone (--watch-parent)
            print(f"{how}: finished frames are kept; run the same command to resume.",
                  file=sys.stderr)
        except OSError:
            pass
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: name it, log it
        ordinary = ordinary_error(exc)
        if ordinary is not None:
            print(f"error: {ordinary}", file=sys.stderr)
            return 2
        log = write_crash_log(exc, getattr(args, "out", None))
        print(f"error: {crash_message(exc, log)}", file=sys.stderr)
        return 1


def ordinary_error(exc: BaseException) -> str | None:
    """The message for an error of the environment rather than of Flowstyle (a full disk,
    a file that cannot be opened, no memory left), or None for a bug."""
    if isinstance(exc, OSError):
        where = exc.filename or "a file"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return (f"{where}: cannot write ({exc.strerror}): the disk is full or over quota. "
                    "Free space (or choose another folder) and run the same command again.")
        return (f"{where}: {exc.strerror or exc}. Check that the path exists and that you may "
                "read or write it, and that the disk has free space.")
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return ("out of memory. Lower the working height (--height) or free memory, then run "
                "the same command again: finished frames are kept.")
    return None


def crash_message(exc: BaseException, log: str) -> str:
    return (f"unexpected failure, a bug in Flowstyle ({type(exc).__name__}: {exc}). Finished "
            f"frames are kept. The details are in {log}: please report the bug with that file.")


def write_crash_log(exc: BaseException, out_dir: str | None) -> str:
    """Write the traceback of an unexpected failure to a log file; returns its path.

    It goes to the output folder's .flowstyle/ (next to the run it belongs to) when there
    is one, else to the temporary directory."""
    import tempfile
    import time
    import traceback
    name = f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    text = (f"command: {' '.join(sys.argv)}\npython: {sys.version}\n\n"
            + "".join(traceback.format_exception(exc)))
    folders = [os.path.join(out_dir, ".flowstyle")] if out_dir and os.path.isdir(out_dir) else []
    for folder in folders + [tempfile.gettempdir()]:
        try:
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, name)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            return path
        except OSError:
            continue
    sys.stderr.write(text)  # nowhere to write: the traceback itself, rather than nothing
    return "(the traceback above)"


if __name__ == "__main__":
    sys.exit(main())
