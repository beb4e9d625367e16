"""Per-object styles: region masks from Blender's Object Index pass.

Blender writes each object's "Pass Index" (Object Properties > Relations; the add-on can set
it per object or per collection) into the Object Index pass, exactly per pixel and per frame.
So a region's mask is simply `index == region.index` on each frame's own render: it moves
with the objects exactly, with no warping and no drift. Masks are soft only after they are
shrunk to the working size and to each VGG layer's size (area averages).
"""

from __future__ import annotations

import numpy as np
import torch

from .defaults import Region


def region_masks(index: np.ndarray, regions: list[Region]) -> torch.Tensor:
    """One-hot region masks of a frame: 1×(1+R)×H×W float32 in {0, 1}, summing to 1.

    index: the Object Index pass, (H, W) float (whole numbers). Channel 0 holds the pixels
    of no region (they get the run's main styles); channel 1+k is `regions[k]`. An index
    listed twice counts for its first region.
    """
    ids = np.rint(index).astype(np.int64)
    masks = np.zeros((1 + len(regions),) + ids.shape, dtype=np.float32)
    claimed = np.zeros(ids.shape, dtype=bool)
    for k, region in enumerate(regions):
        inside = (ids == region.index) & ~claimed
        masks[1 + k] = inside
        claimed |= inside
    masks[0] = ~claimed
    return torch.from_numpy(masks)[None]


def keep_original_mask(masks: torch.Tensor, regions: list[Region]) -> np.ndarray | None:
    """(H, W, 1) float32: 1 where a "keep original" region (no styles) is, or None if none.

    masks: 1×(1+R)×H×W as from `region_masks`, at the size of the output.
    """
    keep = [1 + k for k, region in enumerate(regions) if not region.styles]
    if not keep:
        return None
    return masks[0, keep].sum(dim=0).clamp(0, 1)[..., None].cpu().numpy()
