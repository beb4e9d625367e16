"""Optical flow estimated with OpenCV, for footage without a Vector pass.

Used for live-action video, PNG/JPG sequences and renders without vectors. DIS (Kroeger
et al. 2016) is OpenCV's fast dense method; it is far less exact than a renderer's
vectors (the reliability mask catches much of what it gets wrong), which is why a run
that falls back to it says so.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

SMALL_FRAME_HEIGHT = 360  # px: below this, DIS uses small patches (see estimate_flow)


def _gray8(display: np.ndarray) -> np.ndarray:
    """(H, W, 3) display RGB [0, 1] -> (H, W) uint8 luma."""
    rgb8 = np.clip(display * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(rgb8, cv2.COLOR_RGB2GRAY)


def estimate_flow(source: np.ndarray, target: np.ndarray) -> torch.Tensor:
    """Flow from `source` to `target` (display RGB (H, W, 3) in [0, 1]) as 1×2×H×W pixels.

    out(p) is where pixel p of `source` is in `target`: pass (frame t, frame t-1) for
    frame t's backward flow and (frame t-1, frame t) for frame t-1's forward flow.
    """
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    if source.shape[0] < SMALL_FRAME_HEIGHT:
        # The preset's 8 px patches swallow whole objects in small frames. Measured on the
        # 96x72 test shot against its true vectors: endpoint error 0.40x that of assuming
        # no motion with 4 px patches at stride 1 on the full-size scale, 0.72x with the
        # preset.
        dis.setPatchSize(4)
        dis.setPatchStride(1)
        dis.setFinestScale(0)
    flow = dis.calc(_gray8(source), _gray8(target), None)  # (H, W, 2): dx, dy (y down)
    return torch.from_numpy(np.ascontiguousarray(flow.transpose(2, 0, 1)))[None].float()
