"""The object channel of a record's interaction grid, in the hand-centric frame n.

Left hands are mirrored into right hands (x -> -x, object included), as G-HOP does, so every
grid is in a right hand's frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hoitool.geometry.grid import GRID_RES, nTh_from_joints, object_channel
from hoitool.geometry.transforms import invert_transform
from hoitool.hand.mirror import mirror_params
from hoitool.hand.model import HandModel, HandParams

MIRROR = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))


@dataclass
class RecordGrids:
    """object_grid (B, res, res, res) in [-1, 1]; hTo (B, 4, 4) object frame -> hand frame of
    the right hand (mirrored for left records); nTh (B, 4, 4); right_params: the hand in its own
    frame h (global_orient = transl = 0)."""

    object_grid: torch.Tensor
    hTo: torch.Tensor
    nTh: torch.Tensor
    right_params: HandParams


def record_grids(right_hand: HandModel, sdf_u: torch.Tensor, uTo: torch.Tensor, params: HandParams, res: int = GRID_RES) -> RecordGrids:
    """Hand-centric object grids of B grasps of one object.

    Args:
        right_hand: the right hand model.
        sdf_u: (1, 1, R, R, R) canonical SDF of the object (u units); uTo (4, 4).
        params: (B) hand parameters in the object frame, either side.
    """
    if right_hand.side != "right":
        raise ValueError("record_grids needs the right hand model")
    left = params.side == "left"
    p = mirror_params(params) if left else params
    oTh = right_hand.frame_from_hand(p)  # in the (mirrored) object frame
    if left:
        oTh = MIRROR.to(oTh) @ oTh  # mirrored object frame -> original: M is its own inverse
    hTo = torch.linalg.inv(oTh)  # a reflection for left hands, so not the rigid inverse
    local = HandParams(torch.zeros_like(p.global_orient), p.hand_pose, p.betas, torch.zeros_like(p.transl), "right")
    nTh = nTh_from_joints(right_hand.rest_joints(p.betas))
    uTn = uTo.to(oTh)[None] @ oTh @ invert_transform(nTh)
    return RecordGrids(object_channel(sdf_u, uTn, res)[:, 0], hTo, nTh, local)

