"""Per-object styles, keyframed strength and Preview Frame with a trained network.

The network methods honour what optimize honours: each region in its own style ("keep
original" exactly the render), the per-frame style strength (a changed key redoes only
its frames), and Preview Frame runs the shot's network instead of optimizing.
Tiny sizes throughout (the 96x72 rendered shots, small networks, few steps).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, STYLE, jsonl_events, read_frame, render_shot, run_engine
from engine import colour, exr
from engine.run import ATTR_FINGERPRINT

pytestmark = pytest.mark.slow

SCREAM = ROOT / "addon" / "styles" / "scream.jpg"
TINY = {"train_steps": 30, "train_crop": 48, "network_channels": [8, 16, 32], "network_blocks": 1,
        "train_preview_every": 0}


def _write_job(path: Path, **job) -> str:
    path.write_text(json.dumps(job))
    return str(path)


def _display(rgba: np.ndarray) -> np.ndarray:
    return colour.to_display(rgba)[0]


# -- per-object styles ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def floor_wall_shot(tmp_path_factory):
    return render_shot(tmp_path_factory.mktemp("floorwall"), "--frames", "2", "--samples", "4",
                       "--index-floor-wall")


def _region_job(tmp_path: Path, shot: Path, model: Path, out: Path, method: str = "network",
                **extra) -> str:
    """Floor (3, no region): Starry Night; wall (4): The Scream; cube (1): keep original."""
    return _write_job(tmp_path / f"job_{out.name}.json", input=str(shot), out=str(out),
                      styles=[{"path": str(STYLE), "weight": 1.0}],
                      regions=[{"index": 4, "styles": [{"path": str(SCREAM), "weight": 1.0}]},
                               {"index": 1, "styles": []}],
                      method=method, model=str(model), **extra)


@pytest.fixture(scope="module")
def region_model(floor_wall_shot, tmp_path_factory):
    """A network trained from the regions' job: the regions' styles join the main one."""
    folder = tmp_path_factory.mktemp("region_model")
    model = folder / "model.pt"
    job = _region_job(folder, floor_wall_shot, model, folder / "unused")
    run_engine("train", "--job", job, "--out", str(model), "--steps", "240", "--crop", "64",
               "--channels", "16,32,64", "--blocks", "1", "--lr", "0.01", "--preview-every", "0",
               "--progress", "none")
    return model


def test_network_mode_styles_each_object_with_its_own_painting(floor_wall_shot, region_model,
                                                               tmp_path):
    from test_regions import _gram_distances, _painting_grams
    from engine import defaults
    from engine.train import load_model
    from engine.vgg import VGGFeatures

    model, out = region_model, tmp_path / "out"
    job = _region_job(tmp_path, floor_wall_shot, model, out)
    assert [Path(st["path"]).name for st in load_model(str(model)).styles] == \
        ["starry_night.jpg", "scream.jpg"]
    run_engine("stylize", "--job", job, "--progress", "none")
    # The same model with the whole frame in The Scream: the wall must be exactly that.
    scream_out = tmp_path / "scream_only"
    run_engine("stylize", str(floor_wall_shot), "--method", "network", "--model", str(model),
               "--style-mix", "0,1", "--out", str(scream_out), "--progress", "none")

    vgg = VGGFeatures(list(defaults.STYLE_LAYERS), "caffe")
    grams = _painting_grams(vgg)
    for n in (1, 2):
        source = read_frame(floor_wall_shot / f"render_{n:04d}.exr")
        result = read_frame(out / f"flowstyle_{n:04d}.exr")["Combined"]
        index = np.rint(source["Object Index"][..., 0])
        cube, wall = index == 1, index == 4
        assert cube.sum() > 50
        np.testing.assert_array_equal(result[cube], source["Combined"][cube])  # keep original
        scream = read_frame(scream_out / f"flowstyle_{n:04d}.exr")["Combined"]
        np.testing.assert_array_equal(result[wall], scream[wall])

        def display(rgba):
            return torch.from_numpy(_display(rgba)).permute(2, 0, 1)[None]

        with torch.no_grad():
            for region, own, other in ((3, "starry", "scream"), (4, "scream", "starry")):
                mask = torch.from_numpy((index == region).astype(np.float32))[None, None]
                after = _gram_distances(display(result), mask, vgg, grams)
                before = _gram_distances(display(source["Combined"]), mask, vgg, grams)
                assert after[own] < after[other], (n, region, after)
                # Towards its own painting. How far depends on the tiny network's seed and
                # rounding (240 steps: 0.60-0.93 of the distance it started at over seeds
                # 0-3), so only the direction is asserted here; the optimize test asks 0.5.
                assert after[own] < before[own], (n, region, before, after)


def test_hybrid_starts_each_region_from_its_own_style(floor_wall_shot, region_model, tmp_path):
    from engine.defaults import Region, Settings, StyleImage
    from engine.network_run import HybridRun, NetworkRun
    common = dict(styles=[StyleImage(str(STYLE))], model=str(region_model), height=72,
                  first_iterations=3, iterations=2,
                  regions=[Region(4, [StyleImage(str(SCREAM))]), Region(1, [])])
    network = NetworkRun(str(floor_wall_shot), str(tmp_path / "n"),
                         Settings(method="network", **common))
    hybrid = HybridRun(str(floor_wall_shot), str(tmp_path / "h"),
                       Settings(method="hybrid", **common))
    cur = network.inputs(1)
    expected = network.stylize_batch(cur.display, cur.regions, [1.0])
    assert hybrid.size == tuple(expected.shape[-2:])  # the working size is the frame's
    torch.testing.assert_close(hybrid.network_output(1), expected)
    # ... and the optimization keeps "keep original" exactly the render.
    out = tmp_path / "hybrid"
    run_engine("stylize", "--job", _region_job(tmp_path, floor_wall_shot, region_model, out,
                                               method="hybrid"),
               "--height", "72", "--first-iterations", "3", "--iterations", "2",
               "--progress", "none")
    source = read_frame(floor_wall_shot / "render_0002.exr")
    result = read_frame(out / "flowstyle_0002.exr")["Combined"]
    cube = np.rint(source["Object Index"][..., 0]) == 1
    np.testing.assert_array_equal(result[cube], source["Combined"][cube])


@pytest.fixture(scope="module")
def starry_model(shot, tmp_path_factory):
    """A tiny network for Starry Night only, trained from a shot job (frames 1-3)."""
    folder = tmp_path_factory.mktemp("starry")
    model = folder / "model.pt"
    job = _write_job(folder / "shot_job.json", input=str(shot), out=str(folder / "shot_out"),
                     styles=[{"path": str(STYLE), "weight": 1.0}], frames=[1, 3],
                     method="network", model=str(model), **TINY)
    run_engine("train", "--job", job, "--out", str(model), "--progress", "none")
    return model, job


def test_a_region_style_the_model_lacks_is_refused_and_nothing_is_written(
        floor_wall_shot, starry_model, tmp_path):
    model, _ = starry_model
    out = tmp_path / "out"
    result = run_engine("stylize", "--job", _region_job(tmp_path, floor_wall_shot, model, out),
                        "--progress", "none", check=False)
    assert result.returncode == 2, result.stderr
    assert "scream.jpg" in result.stderr and "region 4" in result.stderr, result.stderr
    assert not out.exists()


# -- keyframed strength --------------------------------------------------------------------

def _strength_job(tmp_path: Path, shot: Path, model: Path, strengths: dict, out="out") -> str:
    return _write_job(tmp_path / "job.json", input=str(shot), out=str(tmp_path / out),
                      styles=[{"path": str(STYLE)}], frames=[1, 3], method="network",
                      model=str(model), style_strengths=strengths)


def test_network_strength_blends_from_the_render_and_a_changed_key_redoes_only_its_frame(
        shot, starry_model, tmp_path):
    model, _ = starry_model
    full = tmp_path / "full"
    run_engine("stylize", str(shot), "--method", "network", "--model", str(model), "--frames",
               "1:3", "--out", str(full), "--progress", "none")
    run_engine("stylize", "--job", _strength_job(tmp_path, shot, model,
                                                 {"1": 0.0, "2": 1.0, "3": 0.5}),
               "--progress", "none")
    out = tmp_path / "out"
    shown = {}
    for n in (1, 2, 3):
        source = read_frame(shot / f"render_{n:04d}.exr")["Combined"]
        shown[n] = (_display(source), _display(read_frame(out / f"flowstyle_{n:04d}.exr")["Combined"]),
                    _display(read_frame(full / f"flowstyle_{n:04d}.exr")["Combined"]))
    render, result, network = shown[1]
    np.testing.assert_allclose(result, render, atol=2e-3)  # strength 0: the render
    assert np.abs(network - render).mean() > 0.02  # ... where the network paints
    render, result, network = shown[2]
    np.testing.assert_array_equal(result, network)  # the trained strength: its output
    render, result, network = shown[3]  # half the trained strength: half way
    np.testing.assert_allclose(result, 0.5 * (render + network), atol=3e-3)

    prints = [exr.read_attributes(str(out / f"flowstyle_{n:04d}.exr"))[ATTR_FINGERPRINT]
              for n in (1, 2, 3)]
    assert len(set(prints)) == 3
    result = run_engine("stylize", "--job", _strength_job(tmp_path, shot, model,
                                                          {"1": 0.0, "2": 1.0, "3": 0.25}),
                        "--progress", "jsonl")
    events = jsonl_events(result.stdout)
    assert [e["frame"] for e in events if e["event"] == "frame_skipped"] == [1, 2]
    assert [e["frame"] for e in events if e["event"] == "frame_done"] == [3]


def test_hybrid_strength_zero_is_the_render(shot, starry_model, tmp_path):
    model, _ = starry_model
    job = _write_job(tmp_path / "job.json", input=str(shot), out=str(tmp_path / "out"),
                     styles=[{"path": str(STYLE)}], frames=[1, 2], method="hybrid",
                     model=str(model), style_strengths={"1": 1.0, "2": 0.0})
    run_engine("stylize", "--job", job, "--height", "72", "--first-iterations", "3",
               "--iterations", "2", "--progress", "none")
    for n, painted in ((1, True), (2, False)):
        render = _display(read_frame(shot / f"render_{n:04d}.exr")["Combined"])
        result = _display(read_frame(tmp_path / "out" / f"flowstyle_{n:04d}.exr")["Combined"])
        change = float(np.abs(result - render).mean())
        assert (change > 0.02) if painted else (change < 2e-3), (n, change)


# -- Preview Frame with a network ----------------------------------------------------------

def test_preview_frame_runs_the_current_shot_network_and_optimizes_when_it_is_stale(
        shot, starry_model, tmp_path):
    model, shot_job = starry_model
    full = tmp_path / "full"
    run_engine("stylize", str(shot), "--method", "network", "--model", str(model), "--frames",
               "2:2", "--out", str(full), "--progress", "none")
    expected = read_frame(full / "flowstyle_0002.exr")["Combined"]
    preview_job = _write_job(tmp_path / "preview_job.json", input=str(shot),
                             out=str(tmp_path / "scratch"), styles=[{"path": str(STYLE)}],
                             method="network", model=str(tmp_path / "scratch" / "model.pt"))
    out = tmp_path / "preview.exr"
    quick = ["--height", "32", "--first-iterations", "2"]  # if it optimized, make it short
    result = run_engine("preview-frame", "--job", preview_job, "--frame", "2", "--out", str(out),
                        "--shot-job", shot_job, *quick, "--progress", "jsonl")
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["method"] == "network" and report["working_size"] == [72, 96]
    side = exr.read_rgba(str(out))
    np.testing.assert_array_equal(side[:, 96:], expected)  # what stylize writes for frame 2
    assert not Path(json.loads(Path(shot_job).read_text())["out"]).exists()  # the shot's folder

    # The shot now asks for another painting: the kept model is stale, the preview optimizes.
    stale = json.loads(Path(shot_job).read_text())
    stale["styles"] = [{"path": str(SCREAM)}]
    stale_job = _write_job(tmp_path / "stale_job.json", **stale)
    result = run_engine("preview-frame", "--job", preview_job, "--frame", "2", "--out", str(out),
                        "--shot-job", stale_job, *quick, "--progress", "jsonl")
    events = jsonl_events(result.stdout)
    assert json.loads(result.stdout.splitlines()[-1])["method"] == "optimize"
    assert any(e["event"] == "warning" and "not using the shot's network" in e["message"]
               for e in events)
