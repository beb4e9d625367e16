"""The panel says whether the Network method will train the network again, and why
(addon/model_state.py), from the record the REAL engine writes beside a REAL tiny model
(trained through `train --job`, as the add-on runs it); where the engine itself is asked,
its decision (train or reuse) agrees."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, STYLE, jsonl_events, run_engine

from addon import job, model_state
from addon.job import JobSpec, RegionRef, StyleRef

pytestmark = pytest.mark.slow

TINY = ["--crop", "48", "--channels", "8,16,32", "--blocks", "1", "--preview-every", "0"]


def engine_trains(spec: JobSpec) -> bool:
    """Ask the engine: run `train` for the spec and see whether it trained or reused."""
    job.write_job(spec)
    events = jsonl_events(run_engine("train", "--job", spec.job_path, "--out", spec.model_path,
                                     *TINY, "--progress", "jsonl").stdout)
    kinds = [e["event"] for e in events]
    assert ("up_to_date" in kinds) != ("train_start" in kinds), kinds
    return "train_start" in kinds


def test_the_panel_says_when_and_why_the_network_trains_again(shot: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "render").mkdir(parents=True)
    for n in (1, 2, 3):  # frames rendered by real Blender, as the add-on lays them out
        shutil.copy2(shot / f"render_{n:04d}.exr", out / "render" / f"render_{n:04d}.exr")
    painting = tmp_path / "a.jpg"
    shutil.copy(STYLE, painting)
    other = tmp_path / "b.png"
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(other)
    spec = JobSpec(styles=[StyleRef(str(painting))], out_dir=str(out), frame_start=1, frame_end=3,
                   python=sys.executable, method="network", train_steps=2)
    version = model_state.engine_version(str(ROOT))
    assert version and version[0].isdigit()

    def decide(s: JobSpec = spec, **kw: object) -> tuple[bool, str]:
        return model_state.training_decision(s, version, **kw)  # type: ignore[arg-type]

    assert decide() == (True, "no trained network yet")
    assert engine_trains(spec)
    will, why = decide()
    assert not will and "reused" in why, why
    assert not engine_trains(spec)  # the engine agrees: it reuses the model

    # What the panel says for each kind of change (the files stay as trained).
    cases = [
        (dataclasses.replace(spec, styles=[StyleRef(str(painting)), StyleRef(str(other), 3)]),
         {}, "styles changed: a.jpg weight 1.00 -> 0.25, b.png added"),
        (dataclasses.replace(spec, styles=[StyleRef(str(other))]), {},
         "styles changed: b.png added, a.jpg removed"),
        (dataclasses.replace(spec, regions=[RegionRef(1, [StyleRef(str(other))])]), {},
         "styles changed: b.png added"),  # one network holds the per-object styles too
        (dataclasses.replace(spec, style_strengths={1: 0.5, 2: 0.8, 3: 0.8}), {},
         "settings changed: style_strength"),  # trained at the largest keyframed strength
        (dataclasses.replace(spec, temporal_strength=0.5), {}, "settings changed: temporal_strength"),
        (dataclasses.replace(spec, train_steps=3), {}, "settings changed: train_steps 2 -> 3"),
        (dataclasses.replace(spec, frame_end=2), {},
         "frame range changed (trained on 1-3, now 1-2)"),
        (spec, {"renders_stale": "resolution changed"},
         "frames will be rendered again (resolution changed)"),
    ]
    for changed, kw, reason in cases:
        assert decide(changed, **kw) == (True, reason)
    will, why = model_state.training_decision(spec, "99.0")
    assert will and why == f"engine version changed ({version} -> 99.0)"
    assert decide(dataclasses.replace(spec, method="optimize"))[0] is False
    # Keys below the largest strength (1) are blended at stylize time: no new training.
    assert not decide(dataclasses.replace(spec, style_strengths={1: 1.0, 2: 0.3, 3: 0.6}))[0]

    # The style image edited in place (same path, new content).
    original = painting.read_bytes()
    painting.write_bytes(original + b"\0")
    assert decide() == (True, "styles changed: a.jpg edited")
    painting.write_bytes(original)
    assert not decide()[0]

    # A frame rendered again: both say train, then reuse again.
    frame = out / "render" / "render_0002.exr"
    os.utime(frame, ns=(frame.stat().st_atime_ns, frame.stat().st_mtime_ns + 10**9))
    assert decide() == (True, "frames re-rendered (1 of 3 changed since training)")
    assert engine_trains(spec)
    assert not decide()[0]

    # A damaged model file, then a missing record: both say train.
    model = Path(spec.model_path)
    model.write_bytes(model.read_bytes()[:4000])
    will, why = decide()
    assert will and "model.pt is damaged or was replaced" in why, why
    assert engine_trains(spec)
    (out / "model.json").unlink()
    assert decide() == (True, "no record of what model.pt was trained for (model.json missing)")
    assert engine_trains(spec)
    assert not decide()[0]
