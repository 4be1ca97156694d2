"""Left/right mirroring of hand parameters, consistent with MANO's convention.

Mirroring through the plane x = 0 (M = diag(-1, 1, 1)) maps a right hand with parameters
(global_orient, hand_pose, betas, transl) onto a left hand with axis-angles (x, -y, -z),
the same betas and transl (-x, y, z): left_model(mirror(p)).vertices == M right_model(p).vertices.
"""

from __future__ import annotations

import torch

from hoitool.hand.model import HandParams

_AA = torch.tensor([1.0, -1.0, -1.0])
_T = torch.tensor([-1.0, 1.0, 1.0])


def mirror_axis_angle(aa: torch.Tensor) -> torch.Tensor:
    """Mirror axis-angles (..., 3k) through x = 0: (x, y, z) -> (x, -y, -z) per joint."""
    s = _AA.to(aa)
    return (aa.reshape(*aa.shape[:-1], -1, 3) * s).reshape(aa.shape)


def mirror_points(p: torch.Tensor) -> torch.Tensor:
    """Mirror points (..., 3) through x = 0."""
    return p * _T.to(p)


def mirror_params(params: HandParams) -> HandParams:
    """The same hand on the other side: right <-> left."""
    return HandParams(
        global_orient=mirror_axis_angle(params.global_orient),
        hand_pose=mirror_axis_angle(params.hand_pose),
        betas=params.betas.clone(),
        transl=mirror_points(params.transl),
        side="left" if params.side == "right" else "right",
    )
