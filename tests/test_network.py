"""The style network trained on the shot (`train`, `stylize --method network|hybrid`).

Tiny sizes throughout: the 96x72 rendered shot, 48-px crops, an 8-16-32 network with one
residual block, a dozen steps. What is checked is behaviour a user relies on, not quality.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, STYLE, _env, jsonl_events, read_frame, run_engine
from engine import exr
from engine.defaults import Settings, SettingError, StyleImage
from engine.evaluate import edge_band, evaluate
from engine.network import NetworkConfig, StyleNetwork, one_hot, style_mix
from engine.network_run import NetworkRun
from engine.train import MODEL_FORMAT_VERSION, Trainer, learning_rate, load_model

pytestmark = pytest.mark.slow

TINY = ["--crop", "48", "--channels", "8,16,32", "--blocks", "1", "--preview-every", "0"]
STEPS = 30


def tiny_settings(**changes) -> Settings:
    base = dict(styles=[StyleImage(str(STYLE))], train_steps=STEPS, train_crop=48,
                network_channels=(8, 16, 32), network_blocks=1, train_preview_every=0,
                train_checkpoint_every=1000)
    base.update(changes)
    return Settings(**base)


@pytest.fixture(scope="module")
def trained(shot, tmp_path_factory):
    """The same tiny training with and without the temporal term: {strength: model path}."""
    folder = tmp_path_factory.mktemp("models")
    models = {}
    for strength in (0.0, 1.0):
        path = str(folder / f"temporal_{strength}.pt")
        Trainer(str(shot), path, tiny_settings(temporal_strength=strength)).run()
        models[strength] = path
    return models


def test_style_mix_one_zero_is_exactly_style_a_and_blends_in_between():
    torch.manual_seed(0)
    network = StyleNetwork(NetworkConfig(styles=2, channels=(4, 8, 8), blocks=1)).eval()
    with torch.no_grad():  # give the styles different (γ, β) and a non-zero output layer
        for p in network.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        image = torch.rand(1, 3, 30, 41)
        a = network(image, one_hot(0, 2))
        b = network(image, one_hot(1, 2))
        assert torch.equal(network(image, style_mix([1, 0], 2)), a)
        assert torch.equal(network(image, style_mix([0, 3], 2)), b)
        half = network(image, style_mix([1, 1], 2))
    assert (a - b).abs().mean() > 0.01
    assert 0 < (half - a).abs().mean() < (b - a).abs().mean()
    assert half.shape == image.shape  # any size, not only multiples of 4


def test_training_lowers_the_loss_and_the_model_is_plain_data(trained, shot):
    trainer = Trainer(str(shot), trained[1.0], tiny_settings())
    fixed = trainer.batch(torch.Generator().manual_seed(123))
    untrained = trainer.new_state()[0]
    model = load_model(trained[1.0])
    before, _ = trainer.loss_terms(untrained, fixed.previous, fixed.current, fixed.flow, fixed.mask, 0)
    after, _ = trainer.loss_terms(model.network, fixed.previous, fixed.current, fixed.flow, fixed.mask, 0)
    assert float(after) < 0.9 * float(before.detach())

    data = torch.load(trained[1.0], weights_only=True)  # no pickled code
    assert data["engine_version"] and data["format_version"] == MODEL_FORMAT_VERSION
    assert data["steps"] == STEPS
    assert [st["digest"] for st in data["styles"]] == [trainer.digests[0]]
    assert json.loads(data["settings"])["train_crop"] == 48


def test_the_network_style_scale_keeps_more_of_the_frame(trained, shot, tmp_path):
    # Trained at the optimizer's balance (scale 1) a network paints over the frame's
    # content (the demo shot's cube vanished); the default scale keeps more of it.
    # 60 steps: at 30 the two are within the seed's noise (0.97-1.03 measured).
    optimizers_balance, default = str(tmp_path / "scale_1.pt"), str(tmp_path / "default.pt")
    Trainer(str(shot), optimizers_balance, tiny_settings(network_style_scale=1.0, train_steps=60)).run()
    trainer = Trainer(str(shot), default, tiny_settings(train_steps=60))
    trainer.run()
    generator = torch.Generator().manual_seed(123)
    batches = [trainer.batch(generator) for _ in range(6)]  # one crop alone is too noisy
    content = {}
    for name, path in (("default", default), ("scale 1", optimizers_balance)):
        network = load_model(path).network
        content[name] = float(np.mean([
            trainer.loss_terms(network, b.previous, b.current, b.flow, b.mask, 0)[1]["content"]
            for b in batches]))
    assert Settings().network_style_scale < 1
    # 60 steps of a tiny network: 0.80 (the benchmark's network: 0.87, docs/tuning.md).
    assert content["default"] < 0.95 * content["scale 1"], content


def test_the_temporal_term_lowers_the_warping_error(trained, shot, tmp_path):
    errors = {}
    for strength, model in trained.items():
        out = tmp_path / f"out_{strength}"
        NetworkRun(str(shot), str(out), Settings(method="network", model=model)).run()
        errors[strength] = evaluate(str(shot), str(out))["warping_error"]["output"]
    assert errors[1.0] < 0.95 * errors[0.0], errors  # measured 0.86x at 30 steps


def test_network_stylize_keeps_the_output_contract_and_resumes(trained, transparent_shot, shot,
                                                               tmp_path):
    out = tmp_path / "out"
    args = ["stylize", str(transparent_shot), "--method", "network", "--model", trained[1.0],
            "--out", str(out), "--progress", "jsonl"]
    events = jsonl_events(run_engine(*args).stdout)
    assert [e["frame"] for e in events if e["event"] == "frame_done"] == [1, 2, 3]
    for n in (1, 2, 3):
        source = read_frame(transparent_shot / f"render_{n:04d}.exr")["Combined"]
        result = exr.read_rgba(str(out / f"flowstyle_{n:04d}.exr"))
        assert result.shape == source.shape  # full resolution
        assert np.array_equal(result[..., 3], source[..., 3])
        empty = source[..., 3] == 0
        assert np.all(result[empty][:, :3] == 0)
        assert np.abs(result[~empty][:, :3] - source[~empty][:, :3]).mean() > 0.01
    settings = json.loads(exr.read_attributes(str(out / "flowstyle_0002.exr"))["flowstyle.settings"])
    assert settings["method"] == "network" and settings["style_mix"] == [1.0]
    again = jsonl_events(run_engine(*args).stdout)
    assert [e["frame"] for e in again if e["event"] == "frame_skipped"] == [1, 2, 3]
    # Another model: the frames are redone.
    other = [a if a != trained[1.0] else trained[0.0] for a in args]
    redone = jsonl_events(run_engine(*other).stdout)
    assert [e["frame"] for e in redone if e["event"] == "frame_done"] == [1, 2, 3]


def _train_command(shot, model, *extra):
    return [sys.executable, "-m", "engine", "train", str(shot), "--style", str(STYLE), "--out",
            str(model), *TINY, "--steps", "8", "--checkpoint-every", "2", "--progress", "jsonl",
            *extra]


def test_the_learning_rate_holds_then_falls_to_its_floor_in_the_last_fraction():
    from engine.defaults import TRAIN_LR_FLOOR
    rates = [learning_rate(step, 100, 1e-3, 0.3) for step in range(100)]
    assert rates[:70] == [1e-3] * 70  # constant until the last 30 steps
    assert all(a > b for a, b in zip(rates[70:], rates[71:]))  # then strictly falling
    assert rates[-1] == pytest.approx(TRAIN_LR_FLOOR * 1e-3)
    assert {learning_rate(step, 100, 1e-3, 0.0) for step in range(100)} == {1e-3}
    with pytest.raises(SettingError, match="train_lr_decay"):
        Settings(train_lr_decay=1.5).validate()


def test_killed_training_resumes_and_ends_as_an_unbroken_run(shot, tmp_path):
    unbroken = tmp_path / "unbroken.pt"
    subprocess.run(_train_command(shot, unbroken), env=_env(), cwd=ROOT, check=True,
                   capture_output=True, timeout=600)
    killed = tmp_path / "killed.pt"
    process = subprocess.Popen(_train_command(shot, killed), env=_env(), cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if '"checkpoint"' in line and json.loads(line)["step"] >= 4:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert not killed.exists()
    resumed = jsonl_events(run_engine("train", str(shot), "--style", str(STYLE), "--out",
                                      str(killed), *TINY, "--steps", "8", "--checkpoint-every",
                                      "2", "--progress", "jsonl").stdout)
    start = [e for e in resumed if e["event"] == "train_start"][0]
    assert 0 < start["todo"] < 8, start
    a = torch.load(unbroken, weights_only=True)["network"]
    b = torch.load(killed, weights_only=True)["network"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_wrong_model_is_refused_with_exit_2_and_nothing_written(trained, shot, tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(open(trained[1.0], "rb").read()[:5000])
    data = torch.load(trained[1.0], weights_only=True)
    data["format_version"] = 99
    data["engine_version"] = "9.0.0"
    future = tmp_path / "future.pt"
    torch.save(data, future)
    other_style = tmp_path / "other.png"
    from PIL import Image
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(other_style)
    cases = [
        (["--model", str(corrupt)], "damaged"),
        (["--model", str(future)], "9.0.0"),
        (["--model", str(tmp_path / "missing.pt")], "not found"),
        (["--model", trained[1.0], "--style", str(other_style)], "other styles"),
        (["--model", trained[1.0], "--style-mix", "0.5,0.5"], "1 style"),
        ([], "--model"),
    ]
    for extra, message in cases:
        out = tmp_path / "out"
        result = run_engine("stylize", str(shot), "--method", "network", "--out", str(out),
                            *extra, check=False)
        assert result.returncode == 2, (extra, result.stderr)
        assert message in result.stderr, (extra, result.stderr)
        assert not (out.exists() and any(p.suffix == ".exr" for p in out.iterdir()))


def test_training_on_footage_without_vectors_uses_estimated_flow(shot, tmp_path):
    from PIL import Image
    from engine import colour
    frames = tmp_path / "png"
    frames.mkdir()
    for n in range(1, 5):
        display, _, _ = colour.to_display(read_frame(shot / f"render_{n:04d}.exr")["Combined"])
        Image.fromarray((display * 255 + 0.5).astype(np.uint8)).save(frames / f"f_{n:04d}.png")
    model = tmp_path / "m.pt"
    result = run_engine("train", str(frames), "--style", str(STYLE), "--out", str(model), *TINY,
                        "--steps", "2", "--progress", "lines")
    assert "estimating optical flow" in result.stderr
    assert load_model(str(model)).steps == 2


def test_hybrid_starts_from_the_network_where_there_is_no_history(trained, shot, tmp_path):
    from engine.network_run import HybridRun
    from engine.run import SequenceRun
    from engine.stylize import resize
    settings = Settings(method="hybrid", model=trained[1.0], height=72, first_iterations=6,
                        iterations=3)
    run = HybridRun(str(shot), str(tmp_path / "direct"), settings)
    first, stats = run.stylize_frame(1)
    assert stats.iterations <= 2  # a third of a cold start's budget, no pyramid
    # A third of what optimize's cold start spends over all its levels (3 here).
    climb = dict(height=72, first_iterations=6, min_level_height=16, early_stop=0)
    cold = SequenceRun(str(shot), str(tmp_path / "optimize"), Settings(
        styles=[StyleImage(str(STYLE))], **climb)).stylize_frame(1)[1]
    warm = HybridRun(str(shot), str(tmp_path / "climb"), Settings(
        method="hybrid", model=trained[1.0], **climb)).stylize_frame(1)[1]
    assert len(cold.levels) == 3 and len(warm.levels) == 1
    assert warm.iterations == cold.iterations // 3 == 6
    run.results[1] = first
    terms, backward_1 = run.temporal_terms(2)
    content = resize(run.inputs(2).display, run.size)
    run._network = run.network_output(2)
    init = run.initial_image(content, terms, backward_1)
    known = sum(t.mask for t in terms)
    uncovered = (known == 0).expand_as(init)
    assert uncovered.any(), "the moving objects should uncover some pixels"
    assert torch.equal(init[uncovered], run._network[uncovered])
    reliable = (known > 0).expand_as(init)
    assert torch.allclose(init[reliable], terms[0].warped[reliable], atol=1e-6)

    out = tmp_path / "out"
    run_engine("stylize", str(shot), "--method", "hybrid", "--model", trained[1.0], "--out",
               str(out), "--frames", "1:3", "--height", "72", "--first-iterations", "6",
               "--iterations", "3")
    settings = json.loads(exr.read_attributes(str(out / "flowstyle_0003.exr"))["flowstyle.settings"])
    assert settings["method"] == "hybrid"


def seam_ratio(image: torch.Tensor, tile: int) -> float:
    """Mean |difference| between neighbouring pixels across tile borders (every `tile` px)
    over the same elsewhere: about 1 in an image without seams."""
    dx = (image[..., 1:] - image[..., :-1]).abs().mean(dim=(0, 1, 2))
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(dim=(0, 1, 3))
    across = torch.cat([dx[tile - 1::tile], dy[tile - 1::tile]])
    border_x = torch.zeros_like(dx, dtype=torch.bool)
    border_x[tile - 1::tile] = True
    border_y = torch.zeros_like(dy, dtype=torch.bool)
    border_y[tile - 1::tile] = True
    elsewhere = torch.cat([dx[~border_x], dy[~border_y]])
    return float(across.mean() / elsewhere.mean())


def assert_same_as_whole(tiled: torch.Tensor, whole: torch.Tensor, tile: int) -> None:
    # Float32 rounding only: the tiles' statistics are the whole frame's sums added in
    # another order, and each core sees what it sees in a whole pass (measured max 4e-7).
    # 1e-4 is 1/40 of an 8-bit level.
    assert float((tiled - whole).abs().max()) < 1e-4
    # The whole frame's own ratio at the same columns (measured 1.0206 for both).
    assert abs(seam_ratio(tiled, tile) - seam_ratio(whole, tile)) < 0.01


def test_tiled_frames_equal_whole_ones_without_seams(trained, shot, tmp_path):
    from engine.tiling import stylize_tiled
    run = NetworkRun(str(shot), str(tmp_path / "out"), Settings(method="network", model=trained[1.0]))
    frame = run.inputs(2).display  # 1×3×72×96: 3×3 tiles of 32 px
    network, mix = run.model.network, torch.tensor(run.mix)
    with torch.no_grad():
        whole = network(frame, mix)
        assert_same_as_whole(stylize_tiled(network, frame, mix, 32), whole, 32)
        # The same statistics without keeping activations (when host memory is short).
        assert_same_as_whole(stylize_tiled(network, frame, mix, 32, "exact-rerun"), whole, 32)
        # The naive tiling, each tile normalized with its own statistics, fails the same
        # check: other colours per tile (measured max 0.19) and seams (ratio 1.21).
        per_tile = stylize_tiled(network, frame, mix, 32, statistics="per-tile")
    with pytest.raises(AssertionError):
        assert_same_as_whole(per_tile, whole, 32)
    # Its departure from the whole frame changes at tile borders, not smoothly: seams.
    print("per-tile seam ratio of the difference", seam_ratio(per_tile - whole, 32))
    assert seam_ratio(per_tile - whole, 32) > 1.5


def test_stylize_with_tiles_writes_the_same_frames(trained, shot, tmp_path):
    common = ["stylize", str(shot), "--method", "network", "--model", trained[1.0],
              "--frames", "1:2", "--progress", "jsonl", "--precision", "fp32"]
    run_engine(*common, "--out", str(tmp_path / "whole"))
    events = jsonl_events(run_engine(*common, "--out", str(tmp_path / "tiled"), "--tile", "40").stdout)
    assert [e["tile"] for e in events if e["event"] == "tiling"] == [40]
    for n in (1, 2):
        whole = exr.read_rgba(str(tmp_path / "whole" / f"flowstyle_{n:04d}.exr"))
        tiled = exr.read_rgba(str(tmp_path / "tiled" / f"flowstyle_{n:04d}.exr"))
        # float32 rounding (measured 2e-6). Under bf16 autocast (this CPU's "auto") the
        # convolutions round differently on a tile than on the whole frame: measured 2e-3.
        assert np.abs(tiled - whole).max() < 1e-4
    bad = run_engine(*common, "--out", str(tmp_path / "bad"), "--tile", "8", check=False)
    assert bad.returncode == 2 and "--tile" in bad.stderr, bad.stderr


def test_hybrid_runs_the_network_in_tiles_too(trained, shot, tmp_path):
    from engine.network_run import HybridRun
    common = dict(method="hybrid", model=trained[1.0], height=72, precision="fp32")
    whole = HybridRun(str(shot), str(tmp_path / "whole"), Settings(**common))
    tiled = HybridRun(str(shot), str(tmp_path / "tiled"), Settings(**common, network_tile=40))
    assert (whole.tile, tiled.tile) == (0, 40)
    assert whole.fingerprint == tiled.fingerprint  # the same pixels: finished frames are kept
    assert float((tiled.network_output(2) - whole.network_output(2)).abs().max()) < 1e-4


@pytest.mark.parametrize("strength", [0.0, 1.0])
def test_the_network_paints_a_frames_edges_as_it_would_paint_its_interior(trained, shot, tmp_path,
                                                                          strength):
    """A network run on the frame alone paints its outer pixels unlike the same pixels
    inside a larger frame (on the demo shot: a dark band 6-8 px deep along the bottom).
    The engine runs it on a mirrored margin, so the frame's edges come out as they would
    if the picture went on: stylizing the frame, and stylizing it with 16 px more of
    (mirrored) picture around it, must agree at the edges about as well as inside, where
    only the instance norms' statistics differ."""
    import torch.nn.functional as F
    run = NetworkRun(str(shot), str(tmp_path / "out"), Settings(method="network", model=trained[strength]))
    edges, interiors = [], []
    for n in run.sequence.numbers[:3]:
        frame = run.inputs(n).display
        alone = run.stylize_batch(frame)
        inside = run.stylize_batch(F.pad(frame, (16, 16, 16, 16), mode="reflect"))[..., 16:-16, 16:-16]
        difference = (alone - inside).abs().mean(dim=1)[0]
        ring = torch.ones_like(difference, dtype=torch.bool)
        ring[8:-8, 8:-8] = False
        edges.append(float(difference[ring].mean()))
        interiors.append(float(difference[~ring].mean()))
    assert np.mean(edges) < 1.25 * np.mean(interiors), (edges, interiors)  # bare: 1.9
