"""Running the style network on a frame too large for memory, in tiles, without seams.

Why tiling is not just cutting the frame: every normalization layer of the network is an
instance norm (network.ConditionalInstanceNorm), which subtracts the mean and divides by
the standard deviation of each channel *over the whole image*. Run on its own, each tile
would be normalized with its own statistics: a dark tile is brightened, a busy one calmed,
and every tile border becomes a visible seam (tests/test_network.py shows it).

So the tiles share the whole frame's statistics, gathered exactly, layer after layer:

  1. For the first norm layer: run each tile up to that layer, and take the mean and
     variance of its activations over the tile's *core*, the part of the frame the tile
     owns, mapped to that layer's resolution (1/1, 1/2 or 1/4). The cores partition the
     frame, so together they give the whole frame's mean and variance.
  2. Fix those statistics in the layer, and do the same for the next norm layer; and so
     on for all of them (each pass runs further into the network). So that the tiles do
     not run through the residual blocks again for each of their 10 layers, each tile's
     activation is kept between those layers (1/4 size, in host memory) and advanced one
     layer at a time (staged_statistics).
  3. Run every tile to the end with all statistics fixed and keep its core.

Each tile is its core plus a margin of the network's receptive-field radius on every
side, so a core pixel sees exactly the pixels it sees in a whole-frame pass; with the
statistics equal too, the tiled frame equals the whole-frame one up to float rounding,
and no feathered blend is needed (a blend would only mix in the margins, which are less
exact: their convolutions pad by reflection at the tile's edge instead of seeing the
neighbours). bench/tiling.py measures it against a cheaper alternative (statistics from
one pass over a downscaled frame) and against per-tile statistics.

Cost (bench/tiling.py, 1024x576 in 256-px tiles): 3.2x the untiled time, 1.8x the naive
per-tile tiling's (itself 1.8x for the margins); running every tile from the input for
each layer instead (gather_statistics alone) took 12.4x. Peak memory 180 MB against the
untiled 542 MB: one tile's activations plus the kept ones (~64 bytes per tile pixel).
Statistics from one pass over a half-size frame would cost 2.1x but move colours by up to
0.16. Tiling is only used when a frame does not fit in memory, or when asked for.

Device-agnostic: the same code runs on CUDA (under autocast) and on the CPU. Tiles are
N×3×h×w slices of an N-frame batch; statistics are per frame and channel.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .network import ConditionalInstanceNorm, ConvNorm, NetworkConfig, StyleNetwork

ALIGN = 4  # the network halves the image twice: tiles start and end on multiples of 4 px


def receptive_radius(config: NetworkConfig) -> int:
    """How far (px of the input) an output pixel sees in each direction, rounded up to a
    multiple of 4: the margin a tile needs for its core to be exact.

    A k×k convolution whose input has stride j (px of the frame per pixel) reaches
    (k // 2)·j px further; a nearest upsampling from stride j may shift by up to one source
    pixel, j px more. Measured (tests/test_tiling.py): 8 px less is no longer exact.
    """
    reach = 4 * 1 + 1 * 1 + 1 * 2  # 9×9 at 1/1, 3×3 stride 2 on 1/1, 3×3 stride 2 on 1/2
    reach += 2 * config.blocks * 1 * 4  # two 3×3 per residual block, at 1/4
    reach += 4 + 1 * 2  # upsample from 1/4, then 3×3 at 1/2
    reach += 2 + 1 * 1  # upsample from 1/2, then 3×3 at 1/1
    reach += 4 * 1  # the last 9×9 at 1/1
    return int(math.ceil(reach / ALIGN) * ALIGN)


def norm_layers(network: StyleNetwork) -> list[ConditionalInstanceNorm]:
    """The network's norm layers in the order a forward pass runs them (module registration
    order: down, residual blocks a then b, up)."""
    return [m for m in network.modules() if isinstance(m, ConditionalInstanceNorm)]


@dataclass(frozen=True)
class Tile:
    """One tile of a frame padded to multiples of 4, in px: the slice [y0:y1, x0:x1] it
    runs on, and the core [cy0:cy1, cx0:cx1] it owns (frame coordinates). All multiples of 4."""

    y0: int
    y1: int
    x0: int
    x1: int
    cy0: int
    cy1: int
    cx0: int
    cx1: int


def _spans(length: int, core: int, margin: int) -> list[tuple[int, int, int, int]]:
    """1-D: (start, end, core start, core end) of tiles covering [0, length) (all multiples of 4)."""
    spans = []
    for c0 in range(0, length, core):
        c1 = min(c0 + core, length)
        spans.append((max(0, c0 - margin), min(length, c1 + margin), c0, c1))
    return spans


def plan_tiles(height: int, width: int, core: int, margin: int) -> list[Tile]:
    """Tiles over a (height, width) frame (multiples of 4): cores of `core` px (a multiple of
    4; the last row and column smaller), each grown by `margin` px where the frame allows."""
    if height % ALIGN or width % ALIGN or core % ALIGN or margin % ALIGN or core <= 0:
        raise ValueError(f"tiling needs multiples of {ALIGN}: {height}x{width}, core {core}, "
                         f"margin {margin}")
    return [Tile(y0, y1, x0, x1, cy0, cy1, cx0, cx1)
            for y0, y1, cy0, cy1 in _spans(height, core, margin)
            for x0, x1, cx0, cx1 in _spans(width, core, margin)]


class _Stop(Exception):
    """Raised by the gathering hook: the pass has reached the layer it was run for."""


def _pad4(images: torch.Tensor) -> torch.Tensor:
    """Reflect-pad the bottom and right to multiples of 4, exactly as StyleNetwork.forward."""
    h, w = images.shape[-2:]
    pad_h, pad_w = (-h) % ALIGN, (-w) % ALIGN
    return F.pad(images, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else images


def _core_statistics(x: torch.Tensor, tile: Tile) -> tuple[int, torch.Tensor, torch.Tensor]:
    """(pixels, mean, variance) of a tile's activations x (N×C×h×w, the tile at 1/f of its
    size) over its core: N×C each, float64 on the CPU. The mean and variance are taken in
    float32 where x is (MPS has no float64) and combined in float64 by _combine."""
    f = (tile.x1 - tile.x0) // x.shape[-1]  # this layer runs at 1/f of the frame
    core = x[:, :, (tile.cy0 - tile.y0) // f:(tile.cy1 - tile.y0) // f,
             (tile.cx0 - tile.x0) // f:(tile.cx1 - tile.x0) // f].float()
    return (core.shape[-2] * core.shape[-1], core.mean(dim=(2, 3)).double().cpu(),
            core.var(dim=(2, 3), unbiased=False).double().cpu())


def _combine(parts: list[tuple[int, torch.Tensor, torch.Tensor]],
             device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole frame's (mean, variance), N×C float32 on `device`, from its cores'.

    The cores partition the layer: the whole's mean is the cores' pixel-weighted mean, its
    (biased, as instance_norm's) variance the weighted mean of each core's variance plus
    its mean's squared distance from the whole's (Chan et al. 1979)."""
    count = sum(n for n, _, _ in parts)
    mean = sum(n * m for n, m, _ in parts) / count
    var = sum(n * (v + (m - mean).square()) for n, m, v in parts) / count
    return mean.float().to(device), var.float().to(device)


def gather_statistics(network: StyleNetwork, images: torch.Tensor, mix: torch.Tensor,
                      tiles: list[Tile], norms: list[ConditionalInstanceNorm] | None = None
                      ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The whole frame's per-channel mean and variance at each norm layer of `norms` (in
    forward order; default: all), each by running every tile from the input up to that
    layer (see the module docstring). images: N×3×H×W display [0, 1], H and W multiples
    of 4; mix: N×S. Returns one (mean, variance) per layer, each N×C float32, and leaves
    the layers' statistics fixed to them (release with release_statistics)."""
    found: list[tuple[torch.Tensor, torch.Tensor]] = []
    for norm in norm_layers(network) if norms is None else norms:
        parts: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # per core: pixels, mean, var
        tile = tiles[0]  # the tile being run: the loop below sets it, `record` reads it

        def record(module: torch.nn.Module, args: tuple) -> None:
            parts.append(_core_statistics(args[0], tile))
            raise _Stop

        handle = norm.register_forward_pre_hook(record)
        try:
            for tile in tiles:
                try:
                    network(images[:, :, tile.y0:tile.y1, tile.x0:tile.x1], mix)
                except _Stop:
                    pass
        finally:
            handle.remove()
        norm.stats = _combine(parts, images.device)
        found.append(norm.stats)
    return found


def staged_statistics(network: StyleNetwork, images: torch.Tensor, mix: torch.Tensor,
                      tiles: list[Tile]
                      ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[torch.Tensor]]:
    """The same statistics as gather_statistics (every layer's), at a fraction of its cost.

    Running every tile from the input for each of the 15 layers costs ~7 forward passes,
    most of them through the residual blocks again and again. Instead: the three layers
    before the blocks are gathered that way (short runs), then each tile is run once to the
    blocks' input and its activation kept (128 channels at 1/4 size: 32 bytes per pixel of
    the tile, in host memory), and every block's two layers are gathered by advancing
    those kept activations one layer at a time; the two upsampling layers start from them
    again. Returns, and fixes, one (mean, variance) per norm layer in forward order, as
    gather_statistics; and each tile's activation after the last block (host memory), for
    finish_tiles.
    """
    device = images.device
    found = gather_statistics(network, images, mix, tiles, [layer.norm for layer in network.down])
    # Where the tiles' activations wait between layers: host memory, usually larger than a
    # GPU's (on the CPU, the same memory: 32-64 bytes per pixel of the tiles).
    keep = torch.device("cpu")

    def fix(layer: ConvNorm, activations: Iterable[torch.Tensor]) -> None:
        """Fix `layer`'s statistics from each tile's input to its norm, one tile at a time
        (a generator: only one tile's activations on the device at once)."""
        layer.norm.stats = _combine([_core_statistics(a, t) for a, t in zip(activations, tiles)],
                                    device)
        found.append(layer.norm.stats)

    def kept(activations: Iterable[torch.Tensor], into: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        """Pass each activation on, and keep it in host memory."""
        for a in activations:
            into.append(a.to(keep))
            yield a

    blocks_in = []  # each tile's activation at the residual blocks' input, then after each
    for t in tiles:
        x = images[:, :, t.y0:t.y1, t.x0:t.x1] - 0.5  # as StyleNetwork.forward
        for layer in network.down:
            x = layer(x, mix)
        blocks_in.append(x.to(keep))
    for block in network.res:
        inner: list[torch.Tensor] = []
        fix(block.a, kept((block.a.before_norm(x.to(device)) for x in blocks_in), inner))
        after_a, inner = inner, []
        fix(block.b, kept((block.b.before_norm(block.a.after_norm(y.to(device), mix))
                           for y in after_a), inner))
        for i, y in enumerate(inner):  # in place: one copy of the kept activations
            blocks_in[i] = (blocks_in[i].to(device) + block.b.after_norm(y.to(device), mix)).to(keep)
        del inner, after_a
    up0, up1 = network.up
    fix(up0, (up0.before_norm(x.to(device)) for x in blocks_in))
    fix(up1, (up1.before_norm(up0.after_norm(up0.before_norm(x.to(device)), mix))
              for x in blocks_in))
    return found, blocks_in


def finish_tiles(network: StyleNetwork, blocks_out: list[torch.Tensor], tiles: list[Tile],
                 shape: torch.Size, device: torch.device, mix: torch.Tensor) -> torch.Tensor:
    """The network's output from each tile's activation after the residual blocks (as
    staged_statistics keeps them), with every statistic fixed: the rest of
    StyleNetwork.forward, each core written into an N×3×H×W float32 frame of `shape`."""
    out = torch.empty(shape, dtype=torch.float32, device=device)
    for x, t in zip(blocks_out, tiles):
        x = x.to(device)
        for layer in network.up:
            x = layer(x, mix)
        result = torch.sigmoid(network.out(x).float())  # as StyleNetwork.forward
        out[:, :, t.cy0:t.cy1, t.cx0:t.cx1] = result[:, :, t.cy0 - t.y0:t.cy1 - t.y0,
                                                     t.cx0 - t.x0:t.cx1 - t.x0]
    return out


def release_statistics(network: StyleNetwork) -> None:
    """Back to normal instance norm: every layer computes its own statistics again."""
    for norm in norm_layers(network):
        norm.stats = None


def downscaled_statistics(network: StyleNetwork, images: torch.Tensor, mix: torch.Tensor,
                          factor: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The cheaper alternative to gather_statistics, kept for bench/tiling.py: each norm
    layer's statistics from one whole-frame pass at 1/factor of the size (area average).
    Not exact: a smaller image has less fine detail, so smaller variances."""
    small = F.interpolate(images, scale_factor=1 / factor, mode="area")
    found: list[tuple[torch.Tensor, torch.Tensor]] = []

    def record(module: torch.nn.Module, args: tuple) -> None:
        x = args[0].float()
        found.append((x.mean(dim=(2, 3)), x.var(dim=(2, 3), unbiased=False)))

    handles = [norm.register_forward_pre_hook(record) for norm in norm_layers(network)]
    try:
        network(small, mix)
    finally:
        for handle in handles:
            handle.remove()
    return found


def run_tiles(network: StyleNetwork, images: torch.Tensor, mix: torch.Tensor,
              tiles: list[Tile]) -> torch.Tensor:
    """Every tile through the network (with whatever statistics its layers hold), each
    core written into the output. images N×3×H×W -> N×3×H×W in (0, 1), float32."""
    out = torch.empty(images.shape, dtype=torch.float32, device=images.device)
    for t in tiles:
        result = network(images[:, :, t.y0:t.y1, t.x0:t.x1], mix).float()
        out[:, :, t.cy0:t.cy1, t.cx0:t.cx1] = result[:, :, t.cy0 - t.y0:t.cy1 - t.y0,
                                                     t.cx0 - t.x0:t.cx1 - t.x0]
    return out


def stylize_tiled(network: StyleNetwork, images: torch.Tensor, mix: torch.Tensor, core: int,
                  statistics: str = "exact", margin: int | None = None) -> torch.Tensor:
    """The network's output for `images` computed in tiles of `core` px (plus margins).

    images: N×3×H×W display RGB [0, 1], any H, W; mix: N×S or S style weights.
    statistics: "exact" (the whole frame's, gathered tile by tile: equals the untiled
    output), "downscaled:F" (from one pass at 1/F size) or "per-tile" (each tile its own:
    seams, for comparison only). margin: px around each core (default: the receptive
    radius). Returns N×3×H×W in (0, 1), float32. Call under torch.no_grad().
    """
    h, w = images.shape[-2:]
    mix = mix.to(images.device, torch.float32)
    padded = _pad4(images)
    margin = receptive_radius(network.config) if margin is None else margin
    core = max(ALIGN, core - core % ALIGN)
    tiles = plan_tiles(padded.shape[-2], padded.shape[-1], core, margin)
    try:
        if statistics == "exact":
            _, blocks_out = staged_statistics(network, padded, mix, tiles)
            return finish_tiles(network, blocks_out, tiles, padded.shape, padded.device,
                                mix)[:, :, :h, :w]
        if statistics == "exact-rerun":
            gather_statistics(network, padded, mix, tiles)
        elif statistics.startswith("downscaled:"):
            stats = downscaled_statistics(network, padded, mix, int(statistics.split(":")[1]))
            for norm, value in zip(norm_layers(network), stats, strict=True):
                norm.stats = value
        elif statistics != "per-tile":
            raise ValueError(f"unknown statistics {statistics!r}")
        return run_tiles(network, padded, mix, tiles)[:, :, :h, :w]
    finally:
        release_statistics(network)
