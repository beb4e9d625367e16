"""Will the Network / Hybrid method train the network again, and why? (no bpy, no torch)

The network trained on the shot is kept beside the output (out/model.pt) and reused while
the styles, the frames, the training settings and the engine are unchanged; the engine
decides (engine/train.py, Trainer.up_to_date). Beside the model it writes model.json, a
plain record of what the model was trained for; `training_decision` compares that record
with the run the panel would start, so the panel, the run's report and batch output can
say before anything runs whether the network will be trained again, and why.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from typing import Any

from .job import JobSpec

RECORD_FILE = "model.json"  # engine/train.py record_path(model.pt)
# Job keys that are not training settings, or are compared on their own.
# Per-object styles and keyframed strengths are folded into the styles and the strength
# a network is trained for (engine/train.py training_settings), compared as such.
_NOT_COMPARED = {"input", "out", "styles", "frames", "model", "method", "train_steps",
                 "regions", "style_strengths", "style_strength"}

_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> digest


def file_digest(path: str) -> str:
    """SHA-256 of a file's content, 16 hex digits (as the engine's), cached by size and
    modification time: the panel asks on every redraw."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()[:16]
    return _DIGESTS[key]


def file_identity(path: str) -> str:
    """A rendered frame's identity as the engine records it (engine/frames.py): size and
    modification time; 'missing' when absent."""
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def engine_version(engine_root: str | None) -> str | None:
    """__version__ of the engine package under `engine_root` (read, not imported: the
    engine needs torch), or None when it cannot be read."""
    if not engine_root:
        return None
    try:
        with open(os.path.join(engine_root, "engine", "__init__.py"), encoding="utf-8") as f:
            found = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', f.read(), re.M)
    except OSError:
        return None
    return found.group(1) if found else None


def _plain(value: Any) -> Any:
    """Numbers as floats, tuples as lists, dict keys as text: a job value and the engine's
    JSON record of it compare equal when they mean the same."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _digest_or_missing(path: str) -> str:
    try:
        return file_digest(path)
    except OSError:
        return "missing"


def training_strength(spec: JobSpec) -> float:
    """The style strength the network is trained with: the largest keyframed one when the
    strength is animated (engine/train.py training_strength)."""
    if spec.style_strengths:
        return max(max(spec.style_strengths.values()), 0.0) or 1.0
    return spec.style_strength


def _style_changes(spec: JobSpec, recorded: list[dict[str, Any]]) -> list[str]:
    """What differs between the run's styles and the model's, in words ([] if nothing)."""
    total = sum(st.weight for st in spec.styles) or 1.0
    current: list[tuple[str, float, str]] = []  # (path, weight summing to 1, digest)
    for st in spec.styles:
        current.append((os.path.abspath(st.path), st.weight / total, _digest_or_missing(st.path)))
    # One network holds every per-object style too: those not among the styles above
    # follow them with weight 0 (engine/train.py training_settings).
    for region in spec.regions:
        for st in region.styles:
            digest = _digest_or_missing(st.path)
            if digest not in {d for _, _, d in current}:
                current.append((os.path.abspath(st.path), 0.0, digest))
    old = [(str(r.get("path", "")), float(r.get("weight", 0)), str(r.get("digest"))) for r in recorded]
    if [(d, round(w, 9)) for _, w, d in current] == [(d, round(w, 9)) for _, w, d in old]:
        return []
    changes = []
    old_weights = {d: w for _, w, d in old}
    old_paths = {os.path.abspath(p) for p, _, _ in old}
    for path, weight, digest in current:
        name = os.path.basename(path)
        if digest in old_weights:
            if not math.isclose(old_weights[digest], weight, abs_tol=1e-9):
                changes.append(f"{name} weight {old_weights[digest]:.2f} -> {weight:.2f}")
        elif path in old_paths:
            changes.append(f"{name} edited")
        else:
            changes.append(f"{name} added")
    new_paths = {path for path, _, _ in current}
    new_digests = {digest for _, _, digest in current}
    for path, _, digest in old:
        if digest not in new_digests and os.path.abspath(path) not in new_paths:
            changes.append(f"{os.path.basename(path)} removed")
    return changes or ["order changed"]


def _frame_changes(spec: JobSpec, recorded: dict[str, str]) -> str:
    """What differs between the rendered frames and those the model was trained on."""
    wanted = [str(f) for f in range(spec.frame_start, spec.frame_end + 1)]
    if sorted(recorded, key=int) != wanted:
        numbers = sorted(int(n) for n in recorded) or [0]
        return (f"frame range changed (trained on {numbers[0]}-{numbers[-1]}, now "
                f"{spec.frame_start}-{spec.frame_end})")
    changed = [f for f in wanted if file_identity(spec.render_path(int(f))) != recorded[f]]
    if changed:
        return f"frames re-rendered ({len(changed)} of {len(wanted)} changed since training)"
    return ""


def _setting_changes(spec: JobSpec, recorded: dict[str, Any]) -> list[str]:
    """Training settings the run gives differently from the model's record."""
    changes = []
    for key, value in spec.to_job_dict().items():
        if key in _NOT_COMPARED or key not in recorded or value is None:
            continue
        if _plain(value) != _plain(recorded[key]):
            changes.append(key)
    if "style_strength" in recorded and not math.isclose(
            training_strength(spec), float(recorded["style_strength"]), abs_tol=1e-9):
        changes.append("style_strength")
    return changes


def training_decision(spec: JobSpec, version: str | None = None,
                      renders_stale: str = "") -> tuple[bool, str]:
    """(will_train, reason): whether the next run trains the network, and why, in words.

    spec: the run (its out_dir holds model.pt and model.json); version: the engine's
    version (engine_version()), None when unknown (not compared); renders_stale: why the
    frames will be rendered again before training ("" when they will not: render.py).
    """
    if spec.method == "optimize":
        return False, "Optimize does not use a trained network"
    model = spec.model_path
    if not os.path.isfile(model):
        return True, "no trained network yet"
    record_file = os.path.join(os.path.dirname(model), RECORD_FILE)
    try:
        with open(record_file, encoding="utf-8") as f:
            record = json.load(f)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError:
        return True, f"no record of what {os.path.basename(model)} was trained for ({RECORD_FILE} missing)"
    except (OSError, ValueError) as exc:
        return True, f"{RECORD_FILE} is unreadable ({exc})"
    try:
        if file_digest(model) != record.get("model_digest"):
            return True, f"{os.path.basename(model)} is damaged or was replaced (it is not the file {RECORD_FILE} describes)"
    except OSError as exc:
        return True, f"{os.path.basename(model)} is unreadable ({exc.strerror or exc})"
    try:
        return _compare(spec, record, version, renders_stale)
    except (TypeError, ValueError, AttributeError, KeyError) as exc:  # a hand-edited record
        return True, f"{RECORD_FILE} is unreadable ({type(exc).__name__}: {exc})"


def _compare(spec: JobSpec, record: dict[str, Any], version: str | None,
             renders_stale: str) -> tuple[bool, str]:
    """training_decision's comparison of the run with the model's record."""
    reasons = []
    if version is not None and record.get("engine_version") != version:
        reasons.append(f"engine version changed ({record.get('engine_version')} -> {version})")
    styles = _style_changes(spec, list(record.get("styles") or []))
    if styles:
        reasons.append("styles changed: " + ", ".join(styles))
    if renders_stale:
        reasons.append(f"frames will be rendered again ({renders_stale})")
    else:
        frames = _frame_changes(spec, dict(record.get("frames") or {}))
        if frames:
            reasons.append(frames)
    settings = _setting_changes(spec, dict(record.get("settings") or {}))
    steps = spec.train_steps or record.get("default_steps")  # None: the engine's default
    if record.get("steps") != steps:
        settings.append(f"train_steps {record.get('steps')} -> {steps}")
    if settings:
        reasons.append("settings changed: " + ", ".join(settings))
    if reasons:
        return True, "; ".join(reasons)
    return False, (f"the trained network is reused ({record.get('steps')} steps): styles, "
                   "frames and settings unchanged")
