"""Hand-to-object distance features: signed distance and its gradient direction, sampled from an
object's SDF grid (trilinear, in the object frame) at a fixed set of hand points."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hoitool.geometry.grid import query_grid
from hoitool.geometry.transforms import apply_transform, transform_scale
from hoitool.hand.model import HandModel, HandParams

#: Step (metres) of the central differences that give the SDF's gradient direction.
GRADIENT_STEP_M = 0.002


@dataclass
class SDFFeatures:
    """distance (B, N) signed distance in metres (negative inside); direction (B, N, 3) unit
    gradient of the SDF (outward, away from the surface), object frame, shrinking to zero where
    the gradient's norm falls below 1/2 (a flat, truncated SDF)."""

    distance: torch.Tensor
    direction: torch.Tensor


@dataclass
class HandPoints:
    """points (B, N, 3) the refinement points of a posed hand (surface subset, then the 21
    keypoints), metres, object frame; vertices (B, V, 3) the whole mesh."""

    points: torch.Tensor
    vertices: torch.Tensor


def sdf_features(grid: torch.Tensor, uTo: torch.Tensor, points: torch.Tensor, h: float = GRADIENT_STEP_M) -> SDFFeatures:
    """Sample an object's SDF at points of its own frame.

    Args:
        grid: (B or 1, 1, R, R, R) signed distances in u units on linspace(-1, 1, R) (the
            canonical grid of hoitool.data.prepared.load_object).
        uTo: (B, 4, 4) or (4, 4) object frame -> u (uniform scale).
        points: (B, N, 3) metres, object frame.
        h: central-difference step, metres.
    """
    B, N, _ = points.shape
    uTo = uTo.to(points).expand(B, 4, 4)
    scale = transform_scale(uTo)[:, None]  # u units per metre

    def sdf(p: torch.Tensor) -> torch.Tensor:
        return query_grid(grid.to(points), apply_transform(uTo, p)) / scale

    offsets = torch.eye(3, device=points.device, dtype=points.dtype) * h
    probe = torch.cat([points[:, :, None], points[:, :, None] + offsets, points[:, :, None] - offsets], dim=2)  # (B, N, 7, 3)
    d = sdf(probe.reshape(B, N * 7, 3)).reshape(B, N, 7)
    # unit where the SDF has a gradient; fading to 0 where it is flat (beyond the grid's truncation),
    # whose central differences are rounding noise of random direction. Outside the grid's box the
    # query adds the distance to the box, so the direction there points away from the box.
    diff = d[..., 1:4] - d[..., 4:7]
    direction = diff / diff.norm(dim=-1, keepdim=True).clamp_min(h)
    return SDFFeatures(d[..., 0], direction)


def hand_points(hand: HandModel, params: HandParams, vertex_ids: torch.Tensor) -> HandPoints:
    """The refinement points of posed hands: vertices `vertex_ids` (K,) then the 21 keypoints."""
    out = hand(params)
    return HandPoints(torch.cat([out.vertices[:, vertex_ids], out.keypoints], dim=1), out.vertices)
