"""Hand-object penetration from signed distances of hand points (negative inside the object)."""

from __future__ import annotations

import torch


def penetration_loss(sdf: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """(B,) sum over points of squared depth below `margin`. sdf: (B, N), any unit."""
    return ((margin - sdf).clamp_min(0) ** 2).sum(-1)


def penetration_depth(sdf: torch.Tensor) -> torch.Tensor:
    """(B,) deepest penetration (>= 0) among points. sdf: (B, N)."""
    return (-sdf).clamp_min(0).amax(-1)
