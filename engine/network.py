"""A small feed-forward network that stylizes a frame in one pass, holding several styles.

The shape follows Johnson et al. 2016 with the fixes the literature found since:
three convolutions down (two of them stride 2), residual blocks, and two nearest-neighbour
upsamplings each followed by a convolution (Odena et al. 2016: transposed convolutions
leave a checkerboard); reflection padding (zero padding paints a bright rim at the frame's
edge); instance normalization (Ulyanov et al. 2016) made *conditional* (Dumoulin et al.
2017): every normalization layer has one (γ, β) per style and everything else is shared.
A style mix is a convex combination of the per-style (γ, β), so styles blend at run time.
Half Johnson's widths by default (16-32-64 channels, 0.42 M parameters): trained on one
shot rather than on COCO, it matched or beat the full width in every measure the benchmark
takes, at a quarter of the FLOPs (defaults.Settings.network_channels).

Fully convolutional: trained on 256-px crops, it runs on a frame of any size. Images are
N×3×H×W display RGB in [0, 1] in and out (a sigmoid on the last layer).

Why not output = input + what the network adds (an identity at the start): measured on
the test shot (64-px crops, 120 steps), that network stayed near its content — style loss
174k, total 1.01M — where this one reached style 71k, total 0.71M in the same steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .defaults import NETWORK_MARGIN

# F.instance_norm's epsilon: statistics fixed from outside (tiling.py) normalize as it does.
NORM_EPS = 1e-5


@dataclass(frozen=True)
class NetworkConfig:
    """The architecture: what a saved model must record to be rebuilt.

    channels: widths of the three downward convolutions (the residual blocks run at the
    last). blocks: residual blocks. styles: how many (γ, β) sets each norm layer holds.
    """

    styles: int = 1
    channels: tuple[int, int, int] = (16, 32, 64)
    blocks: int = 5

    def to_dict(self) -> dict:
        return {"styles": self.styles, "channels": list(self.channels), "blocks": self.blocks}

    @staticmethod
    def from_dict(data: dict) -> "NetworkConfig":
        return NetworkConfig(int(data["styles"]), tuple(int(c) for c in data["channels"]),  # type: ignore[arg-type]
                             int(data["blocks"]))


class ReflectionPad(nn.ReflectionPad2d):
    """nn.ReflectionPad2d in the input's own dtype and memory layout.

    autocast runs reflection padding in float32 on the CPU (it is on its float32 list):
    that doubles the activation's bytes, and the convolution after it casts it straight
    back. Padding only copies pixels, so it is exact in any dtype: run it without autocast.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x)


def instance_norm(x: torch.Tensor, gamma: torch.Tensor | None = None,
                  beta: torch.Tensor | None = None) -> torch.Tensor:
    """Instance norm of N×C×H×W x with per-channel scale and shift (C each, or None),
    in x's dtype and memory layout.

    group_norm with one group per channel is instance norm. On a bf16 x with float32 γ,
    β (the CPU's mixed-type kernel) it takes the statistics and applies the affine in
    float32 and rounds once, without a float32 copy of the activation (measured at
    128×135×240: 1.3 ms, against 23 ms for a float32 copy, norm, cast, γ, β).

    On channels_last x (StyleNetwork runs in it) torch's group norm has two flaws: its
    backward on the CPU is ~25x slower than on N×C×H×W (2×128×64×64 bf16: 32 ms against
    1.2 ms), and its forward takes the variance as E[x²] − E[x]² in one pass, which loses
    it when a channel's mean is large against its spread (float32: error 0.44 at a mean
    of 100 standard deviations; N×C×H×W: 1e-5). So when training (a graph is recorded)
    the norm runs on an N×C×H×W copy, and otherwise each channel is first centred on the
    mean of every 8th pixel (1/64 of the reads; instance norm does not change when a
    constant is taken off a channel): then the one-pass variance is exact to float32
    rounding whatever the mean (measured: 1e-6 up to a mean of 1000 standard deviations).
    """
    if x.device.type != "cpu" and x.dtype != torch.float32:
        # Only the CPU's group norm takes a half-type x with float32 γ, β: elsewhere
        # normalize a float32 copy (CUDA's autocast runs group norm in float32 anyway).
        return instance_norm(x.float(), gamma, beta).to(x.dtype)
    channels = x.shape[1]
    if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
        return F.group_norm(x, channels, gamma, beta, NORM_EPS)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, gamma, beta)):
        y = F.group_norm(x.contiguous(), channels, gamma, beta, NORM_EPS)
        return y.contiguous(memory_format=torch.channels_last)
    centre = x[:, :, ::8, ::8].mean(dim=(2, 3), keepdim=True, dtype=torch.float32)
    return F.group_norm(x - centre.to(x.dtype), channels, gamma, beta, NORM_EPS)


class ConditionalInstanceNorm(nn.Module):
    """Instance norm whose scale and shift are chosen (or blended) per style.

    forward(x, mix): x N×C×H×W; mix S (one mix for the whole batch) or N×S (one per
    image), each the style weights (one-hot for one style). γ = mix·Γ and β = mix·Β with
    Γ, Β of shape S×C.
    """

    def __init__(self, channels: int, styles: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(styles, channels))
        self.beta = nn.Parameter(torch.zeros(styles, channels))
        # Tiled inference (engine/tiling.py) fixes the statistics to the whole frame's:
        # (mean, variance), each N×C float32. None: this input's own (instance norm).
        self.stats: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        # Statistics in float32 even under autocast: a bf16 mean over a 1080p plane loses
        # the low bits that tell the shading apart (`instance_norm` takes them in float32).
        with torch.autocast(x.device.type, enabled=False):  # γ, β stay float32
            gamma, beta = mix @ self.gamma, mix @ self.beta
        channels = x.shape[1]
        if self.stats is None and mix.dim() == 1:
            return instance_norm(x, gamma, beta)
        gamma, beta = (t.reshape(-1, channels, 1, 1) for t in (gamma, beta))
        if self.stats is None:  # one γ, β per image: normalize, then each image's own
            return instance_norm(x) * gamma.to(x.dtype) + beta.to(x.dtype)
        mean, var = (t[:, :, None, None] for t in self.stats)
        return ((x.float() - mean) * (torch.rsqrt(var + NORM_EPS) * gamma) + beta).to(x.dtype)


class ConvNorm(nn.Module):
    """Reflection pad, convolution, conditional instance norm, optional ReLU.

    upsample: double the size (nearest) before the convolution.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, styles: int,
                 relu: bool = True, upsample: bool = False):
        super().__init__()
        self.pad = ReflectionPad(kernel // 2)
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride)
        self.norm = ConditionalInstanceNorm(c_out, styles)
        self.relu = relu
        self.upsample = upsample

    def forward(self, x: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        return self.after_norm(self.before_norm(x), mix)

    # The two halves of forward, apart for tiling.py (which gathers the norm's statistics
    # in between).
    def before_norm(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(self.pad(x))

    def after_norm(self, x: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        x = self.norm(x, mix)  # a new tensor: ReLU in place spares a 1080p-sized allocation
        return F.relu(x, inplace=True) if self.relu else x


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, styles: int):
        super().__init__()
        self.a = ConvNorm(channels, channels, 3, 1, styles)
        self.b = ConvNorm(channels, channels, 3, 1, styles, relu=False)

    def forward(self, x: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x, mix), mix).add_(x)  # in place: b's norm output is new


class StyleNetwork(nn.Module):
    """The image-transformation network. forward(image, mix) -> stylized image.

    image: N×3×H×W display RGB [0, 1], any H, W (padded by reflection to a multiple of 4
    inside, cropped back). mix: N×S or S style weights (see `style_mix`).
    Returns N×3×H×W display RGB in (0, 1).
    """

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.config = config
        c1, c2, c3 = config.channels
        s = config.styles
        self.down = nn.ModuleList([ConvNorm(3, c1, 9, 1, s), ConvNorm(c1, c2, 3, 2, s),
                                   ConvNorm(c2, c3, 3, 2, s)])
        self.res = nn.ModuleList([ResidualBlock(c3, s) for _ in range(config.blocks)])
        self.up = nn.ModuleList([ConvNorm(c3, c2, 3, 1, s, upsample=True),
                                 ConvNorm(c2, c1, 3, 1, s, upsample=True)])
        self.out = nn.Sequential(ReflectionPad(4), nn.Conv2d(c1, 3, 9, 1))

    def forward(self, image: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        mix = mix.to(image.device, torch.float32)
        pad_h, pad_w = (-h) % 4, (-w) % 4
        x = F.pad(image, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else image
        # channels_last (N×H×W×C in memory) all the way: oneDNN's convolutions compute in
        # it, so an N×C×H×W activation costs a reorder in and out of every convolution
        # (measured, bf16 128×135×240 3×3: 34 ms against 6.6 ms), and the pads, norms,
        # upsamplings and ReLUs run in it as fast as in N×C×H×W or faster.
        x = (x - 0.5).contiguous(memory_format=torch.channels_last)
        for layer in self.down:
            x = layer(x, mix)
        for block in self.res:
            x = block(x, mix)
        for layer in self.up:
            x = layer(x, mix)
        # A sigmoid keeps the output displayable without clamping away gradients.
        out = torch.sigmoid(self.out(x)[:, :, :h, :w].float()).to(image.dtype)
        return out.contiguous()


def run_with_margin(network: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                    images: torch.Tensor, mix: torch.Tensor, margin: int = NETWORK_MARGIN) -> torch.Tensor:
    """`network(images, mix)` run on the images mirrored `margin` px past each edge, with
    the margin cropped off: the frame's edges come out like its interior.

    network: a pass (StyleNetwork, or tiling.stylize_tiled with its arguments bound);
    images: N×3×H×W display [0, 1]. Returns N×3×H×W. The margin shrinks to fit frames
    smaller than it (reflection needs margin < H, W).
    """
    h, w = images.shape[-2:]
    m = min(margin, h - 1, w - 1)
    if m <= 0:
        return network(images, mix)
    padded = F.pad(images, (m, m, m, m), mode="reflect")
    return network(padded, mix)[..., m:m + h, m:m + w]


def style_mix(weights: list[float] | tuple[float, ...], styles: int) -> torch.Tensor:
    """Style weights -> an S-vector summing to 1 (Dumoulin's convex combination).

    weights: one non-negative number per style of the model, not all 0.
    """
    if len(weights) != styles:
        raise ValueError(f"{len(weights)} style weights for a model of {styles} styles")
    mix = torch.tensor([float(w) for w in weights], dtype=torch.float32)
    if bool((mix < 0).any()) or float(mix.sum()) <= 0:
        raise ValueError("style weights must be non-negative and not all 0")
    return mix / mix.sum()


def one_hot(style: int, styles: int) -> torch.Tensor:
    """The mix that selects one style: an S-vector with a 1 at `style`."""
    mix = torch.zeros(styles)
    mix[style] = 1.0
    return mix


def parameter_count(network: nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())


def flops_per_pixel(config: NetworkConfig) -> float:
    """Multiply-adds ×2 per input pixel of one forward pass (convolutions only; the norms,
    ReLUs and upsampling add a few % more). A layer at stride s runs on 1/s² of the pixels."""
    c1, c2, c3 = config.channels
    layers = [  # (c_in, c_out, kernel, fraction of the input's pixels)
        (3, c1, 9, 1.0), (c1, c2, 3, 1 / 4), (c2, c3, 3, 1 / 16),
        *[(c3, c3, 3, 1 / 16)] * (2 * config.blocks),
        (c3, c2, 3, 1 / 4), (c2, c1, 3, 1.0), (c1, 3, 9, 1.0),
    ]
    return float(sum(2 * ci * co * k * k * frac for ci, co, k, frac in layers))


__all__ = ["NetworkConfig", "StyleNetwork", "run_with_margin", "style_mix", "one_hot", "parameter_count",
           "flops_per_pixel"]
