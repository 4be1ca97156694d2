"""Ordinal depth (Cao et al. 2021): where both meshes are rendered, the one the segmentation
shows must be in front; only pixels whose rendered depth order disagrees with the masks
cost anything (as in the paper and PHOSA)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def ordinal_depth_loss(sil_a: torch.Tensor, depth_a: torch.Tensor, sil_b: torch.Tensor, depth_b: torch.Tensor,
                       mask_a: torch.Tensor, mask_b: torch.Tensor, scale_m: float = 0.01) -> torch.Tensor:
    """(B,) ordinal depth loss of two rendered meshes a and b against their masks.

    At a pixel where both are rendered and the masks show one of them (front = a where
    mask_a and not mask_b, b where mask_b and not mask_a), the violation is
    x = (D_front - D_back) / scale_m. Pixels with x <= 0 (rendered order agrees with the
    masks) cost nothing and give no gradient; the others cost log(1 + exp(x)) - log 2 (Cao
    et al.'s log(1 + exp(D_front - D_back)), shifted to be 0 at x = 0 so the loss is
    continuous), whose gradient pushes the front mesh nearer and the back one farther.
    The sum is divided by the number of pixels where both are rendered and one is shown.

    Args:
        sil_a, sil_b: (B, H, W) soft silhouettes in [0, 1].
        depth_a, depth_b: (B, H, W) rendered depths, metres.
        mask_a, mask_b: (H, W) or (B, H, W) segmentation masks in [0, 1].
        scale_m: metres per unit of x.
    """
    both = sil_a * sil_b
    wa = both * mask_a * (1 - mask_b)  # a is visible: a must be nearer
    wb = both * mask_b * (1 - mask_a)
    xa = (depth_a - depth_b) / scale_m
    xb = -xa
    la = torch.where(xa > 0, F.softplus(xa) - math.log(2.0), torch.zeros_like(xa))
    lb = torch.where(xb > 0, F.softplus(xb) - math.log(2.0), torch.zeros_like(xb))
    num = (wa * la + wb * lb).flatten(1).sum(1)
    return num / (wa + wb).flatten(1).sum(1).clamp_min(1.0)
