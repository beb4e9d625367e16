"""Per-object styles (Gatys et al. 2017 spatial control), on a real Blender render.

The floor and the back wall are two objects with their own Object Index (3 and 4): the
floor gets The Starry Night (the run's main style), the wall The Scream, and the cube
(index 1) keeps the original render. Each region must move towards its own painting's
statistics, measured as the masked Gram distance on VGG features.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FAST, ROOT, STYLE, read_frame, render_shot, run_engine
from engine import defaults, losses, regions
from engine.defaults import Region, Settings, StyleImage

SCREAM = ROOT / "addon" / "styles" / "scream.jpg"


def test_one_all_covering_region_is_the_plain_style_loss():
    torch.manual_seed(0)
    feats = {"a": torch.rand(1, 8, 6, 5), "b": torch.rand(1, 16, 3, 3)}
    targets = {"a": torch.rand(1, 8, 8), "b": torch.rand(1, 16, 16)}
    plain = losses.style_loss(feats, targets)
    masks = torch.ones(1, 1, 12, 10)
    assert torch.allclose(losses.regional_style_loss(feats, [targets], masks), plain)
    # A "keep original" region contributes nothing; a half region half of its own loss.
    half = torch.zeros(1, 2, 12, 10)
    half[:, 0, :, :5], half[:, 1, :, 5:] = 1, 1
    only_left = losses.regional_style_loss(feats, [targets, None], half)
    assert 0 < float(only_left) < float(plain) * 1.5


def test_masks_are_one_hot_and_unclaimed_pixels_go_to_channel_0():
    index = np.array([[0, 1, 2], [3, 1, 7]], dtype=np.float32)
    masks = regions.region_masks(index, [Region(1, []), Region(3, [StyleImage("x")])])
    assert masks.shape == (1, 3, 2, 3)
    assert torch.equal(masks.sum(1), torch.ones(1, 2, 3))
    assert masks[0, 1].tolist() == [[0, 1, 0], [0, 1, 0]]
    assert masks[0, 2].tolist() == [[0, 0, 0], [1, 0, 0]]
    keep = regions.keep_original_mask(masks, [Region(1, []), Region(3, [StyleImage("x")])])
    assert keep[..., 0].tolist() == [[0, 1, 0], [0, 1, 0]]


def test_regions_change_the_fingerprint_but_no_regions_keeps_the_old_one():
    s = Settings(styles=[StyleImage("a.jpg")])
    base = s.fingerprint(["d1"], "w")
    with_region = Settings(styles=[StyleImage("a.jpg")], regions=[Region(2, [])])
    assert with_region.fingerprint(["d1"], "w", [[]]) != base
    other = Settings(styles=[StyleImage("a.jpg")], regions=[Region(3, [])])
    assert other.fingerprint(["d1"], "w", [[]]) != with_region.fingerprint(["d1"], "w", [[]])


@pytest.fixture(scope="module")
def floor_wall_shot(tmp_path_factory):
    return render_shot(tmp_path_factory.mktemp("floorwall"), "--frames", "2", "--samples", "4",
                       "--index-floor-wall")


def _painting_grams(vgg, height: int = 72) -> dict:
    """The Starry Night's and The Scream's Gram matrices ("starry", "scream") per style
    layer, from the paintings at `height` px."""
    from engine.run import load_style_images
    from engine.stylize import resize
    grams = {}
    with torch.no_grad():
        for name, path in (("starry", STYLE), ("scream", SCREAM)):
            (image, _), = load_style_images(Settings(styles=[StyleImage(str(path))]))[0]
            feats = vgg(resize(image, (height, round(image.shape[-1] * height / image.shape[-2]))))
            grams[name] = {n: losses.gram_matrix(feats[n]) for n in defaults.STYLE_LAYERS}
    return grams


def _gram_distances(image: torch.Tensor, mask: torch.Tensor, vgg, grams: dict) -> dict:
    feats = vgg(image)
    out = {}
    for style, target in grams.items():
        total = 0.0
        for name in defaults.STYLE_LAYERS:
            m = torch.nn.functional.interpolate(mask, size=feats[name].shape[-2:], mode="area")
            total += float((losses.masked_gram(feats[name], m) - target[name]).pow(2).mean())
        out[style] = total
    return out


@pytest.mark.slow
def test_each_object_moves_towards_its_own_painting(floor_wall_shot, tmp_path):
    out = tmp_path / "out"
    job = {"input": str(floor_wall_shot), "out": str(out),
           "styles": [{"path": str(STYLE), "weight": 1.0}],
           "regions": [{"index": 4, "styles": [{"path": str(SCREAM), "weight": 1.0}]},
                       {"index": 1, "styles": []}]}
    job_path = tmp_path / "job.json"
    job_path.write_text(json.dumps(job))
    run_engine("stylize", "--job", str(job_path), *FAST, "--progress", "none")

    from engine import colour
    from engine.vgg import VGGFeatures
    vgg = VGGFeatures(list(defaults.STYLE_LAYERS), "caffe")
    grams = _painting_grams(vgg)

    for n in (1, 2):
        source = read_frame(floor_wall_shot / f"render_{n:04d}.exr")
        result = read_frame(out / f"flowstyle_{n:04d}.exr")["Combined"]
        index = np.rint(source["Object Index"][..., 0])
        # "Keep original": the cube's pixels are the render's own, exactly.
        cube = index == 1
        assert cube.sum() > 50
        np.testing.assert_array_equal(result[cube], source["Combined"][cube])

        def display(rgba):
            return torch.from_numpy(colour.to_display(rgba)[0]).permute(2, 0, 1)[None]

        with torch.no_grad():
            for region, own, other in ((3, "starry", "scream"), (4, "scream", "starry")):
                mask = torch.from_numpy((index == region).astype(np.float32))[None, None]
                assert mask.mean() > 0.25  # floor and wall each cover a good part of the frame
                after = _gram_distances(display(result), mask, vgg, grams)
                before = _gram_distances(display(source["Combined"]), mask, vgg, grams)
                assert after[own] < after[other], (n, region, after)
                # ... and it moved towards its own painting, away from where it started.
                assert after[own] < 0.5 * before[own], (n, region, before, after)
