"""Ordinal depth (Cao et al. 2021): where both meshes are rendered, the one the segmentation
shows must be in front."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ordinal_depth_loss(sil_a: torch.Tensor, depth_a: torch.Tensor, sil_b: torch.Tensor, depth_b: torch.Tensor,
                       mask_a: torch.Tensor, mask_b: torch.Tensor, scale_m: float = 0.01) -> torch.Tensor:
    """(B,) mean over pixels where both a and b are rendered of log(1 + exp((D_front - D_back) /
    scale_m)), front = the one the masks show there (mask_a or mask_b). Silhouettes, depths
    (B, H, W); masks (H, W) or (B, H, W) in [0, 1]."""
    both = sil_a * sil_b
    wa = both * mask_a * (1 - mask_b)  # a is visible: a must be nearer
    wb = both * mask_b * (1 - mask_a)
    la = F.softplus((depth_a - depth_b) / scale_m)
    lb = F.softplus((depth_b - depth_a) / scale_m)
    num = (wa * la + wb * lb).flatten(1).sum(1)
    return num / (wa + wb).flatten(1).sum(1).clamp_min(1.0)
