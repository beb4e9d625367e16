"""Tiled network inference (engine/tiling.py): the plan of tiles and the margin they need.

Equality of tiled and whole frames with a trained model is in tests/test_network.py
(test_tiled_frames_equal_whole_ones_without_seams), next to the model it trains.
"""

from __future__ import annotations

import torch

from conftest import read_frame
from engine.network import NetworkConfig, StyleNetwork, one_hot
from engine.tiling import plan_tiles, receptive_radius, stylize_tiled


def test_tile_cores_cover_the_frame_once_and_margins_stay_inside():
    owner = torch.zeros(100, 148, dtype=torch.int32)
    for t in plan_tiles(100, 148, 32, 12):
        owner[t.cy0:t.cy1, t.cx0:t.cx1] += 1
        assert 0 <= t.y0 <= t.cy0 < t.cy1 <= t.y1 <= 100 and 0 <= t.x0 <= t.cx0 < t.cx1 <= t.x1 <= 148
        assert t.cy0 - t.y0 in (0, 12) and t.x1 - t.cx1 in (0, 12)
    assert bool((owner == 1).all())


def test_the_margin_is_the_networks_reach(shot):
    """With the receptive radius as margin the tiles are exact; 8 px less is not (so the
    radius is not a loose guess), for 1 and 3 residual blocks."""
    import numpy as np
    frame = torch.from_numpy(np.ascontiguousarray(
        read_frame(shot / "render_0003.exr")["Combined"][..., :3])).permute(2, 0, 1)[None]
    frame = (frame / (1 + frame)).clamp(0, 1)  # any display-range image will do
    torch.manual_seed(0)
    for blocks in (1, 3):
        network = StyleNetwork(NetworkConfig(1, (4, 8, 8), blocks)).eval()
        with torch.no_grad():
            for p in network.parameters():  # random but not near-identity weights
                p.add_(torch.randn_like(p) * 0.3)
            whole = network(frame, one_hot(0, 1))
            radius = receptive_radius(network.config)
            exact = stylize_tiled(network, frame, one_hot(0, 1), 32, margin=radius)
            short = stylize_tiled(network, frame, one_hot(0, 1), 32, margin=radius - 8)
        assert float((exact - whole).abs().max()) < 1e-4, blocks
        assert float((short - whole).abs().max()) > 1e-3, blocks


def test_the_add_on_says_when_frames_are_tiled():
    from addon import engine_client
    line = engine_client.describe_event({"event": "tiling", "tile": 512})
    assert line.startswith("frames too large for memory at once") and "tiles of 512 px" in line


def test_memory_decides_whether_and_how_frames_are_tiled(monkeypatch):
    """The decision from the free memory (patched: this machine cannot be made small):
    whole frames when they fit, else the largest tiles that fit; the tiles' activations
    kept in host memory when it holds them, else rerun; too little memory is refused."""
    import pytest
    from engine import network_run
    from engine.defaults import Settings
    from engine.errors import FlowstyleError
    from engine.progress import Progress
    config = NetworkConfig(1, (8, 16, 32), 1)  # receptive radius 28 px
    free = {"bytes": 0}
    monkeypatch.setattr(network_run, "available_bytes", lambda device: free["bytes"])

    def tile(size, **settings):
        return network_run.network_tile(Settings(**settings), size, torch.device("cpu"),
                                        config, Progress("none"))

    # A tile with its margins in half the free memory at 1 KB per pixel:
    # floor(sqrt(free / 2 / 1024)) - 2 * 28, down to a multiple of 4.
    free["bytes"] = 100 << 20
    assert tile((72, 96)) == 0  # 7 MB fits
    assert tile((72, 96), network_tile=40) == 40  # asked for
    assert tile((1080, 1920)) == 168  # needs ~2 GB: 226 - 56 = 170 -> 168
    free["bytes"] = 20 << 20
    assert tile((512, 768)) == 44  # 101 - 56 = 45 -> 44
    free["bytes"] = 4 << 20  # 45 - 56: no room for a tile's margins
    with pytest.raises(FlowstyleError, match="even in tiles"):
        tile((512, 768))
    free["bytes"] = 1 << 30
    assert network_run.tile_statistics((2160, 3840)) == "exact-rerun"  # 1 GB < 128 B/px
    assert network_run.tile_statistics((1080, 1920)) == "exact"
