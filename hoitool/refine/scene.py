"""The refinement network applied to a hand and an object placed in a camera frame, as
single-image reconstruction leaves them (Cao et al. 2021, step 4).

There the hand is the hand model posed by HandParams and scaled by `c` about the camera centre,
and the object is its mesh mapped by x -> s R x + t. Dividing the camera frame by c gives the
hand its own metric size; in that frame the object is the mesh scaled by s / c. The network sees
the hand in that scaled object's frame (its SDF grid is the mesh's, with uTo rescaled), left
hands mirrored into right hands, and its update is mapped back the same way: the hand's scale c
and the object are left as they are.
"""

from __future__ import annotations

import numpy as np
import torch

from hoitool.errors import InputError
from hoitool.geometry.grid import GRID_RES, canonical_sdf
from hoitool.hand.mirror import mirror_params
from hoitool.hand.model import HandModel, HandParams, hand_fingerprint, transform_params
from hoitool.refine.model import RefineNet, refine_hand

_MIRROR = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))


def check_refinenet_hand(info: dict, hand: HandModel) -> None:
    """Refuse a refinement network trained with another hand model than `hand` (one line)."""
    want = info.get("hand_sha")
    if want is not None and want != hand_fingerprint(hand):
        raise InputError(f"the refinement network {info.get('path', '')} was trained with {info.get('hand', 'another hand model')}, "
                         f"not {hand.source}: train one on data prepared with this hand (hoitool train refinenet)")


def scaled_object_sdf(mesh, k: float, res: int = GRID_RES) -> tuple[np.ndarray, np.ndarray]:
    """The SDF grid the network reads for an object seen at k times its mesh's size (k = object
    scale / hand scale), made as training made it (hoitool.geometry.grid.canonical_sdf of the
    scaled mesh: 64^3, truncated at 6 cm of the scaled object): (grid, uTo) with uTo taking the
    mesh's own (unscaled) frame to u, as refine_in_camera takes them."""
    scaled = mesh.copy()
    scaled.apply_scale(k)
    grid, uTo = canonical_sdf(scaled, res)
    return grid, uTo @ np.diag([k, k, k, 1.0])


def _rigid_inverse(T: torch.Tensor) -> torch.Tensor:
    R, t = T[:, :3, :3], T[:, :3, 3:]
    out = torch.eye(4, dtype=T.dtype, device=T.device).repeat(len(T), 1, 1)
    out[:, :3, :3] = R.transpose(1, 2)
    out[:, :3, 3:] = -R.transpose(1, 2) @ t
    return out


@torch.no_grad()
def refine_in_camera(net: RefineNet, hand: HandModel, right: HandModel, params: HandParams, hand_scale: torch.Tensor,
                     R: torch.Tensor, t: torch.Tensor, s: torch.Tensor, grid, uTo, iterations: int | None = None) -> HandParams:
    """Refine camera-frame hands against their placed objects.

    Args:
        net: the refinement network. hand: the model of `params.side`. right: the right hand model
            the network was trained with (the same model as `hand` when params are right hands).
        params: (B) hand parameters, camera frame. hand_scale: (B,) the hands' scales about the camera.
        R: (B, 3, 3), t: (B, 3), s: (B,) object poses: camera point = s R x + t for mesh points x.
        grid: (R, R, R) the mesh's canonical SDF grid (u units); uTo: (4, 4) mesh frame -> u.
    Returns:
        (B) refined hand parameters, camera frame, for the same hand scales.
    """
    dev, dt = params.transl.device, params.transl.dtype
    B = params.batch_size
    c = torch.as_tensor(hand_scale, dtype=dt, device=dev).reshape(-1).expand(B)
    s = torch.as_tensor(s, dtype=dt, device=dev).reshape(-1).expand(B)
    R = torch.as_tensor(R, dtype=dt, device=dev).expand(B, 3, 3)
    t = torch.as_tensor(t, dtype=dt, device=dev).expand(B, 3)
    # W = camera / c; the object frame o'' of the mesh scaled by k = s / c: W = R o'' + t / c
    oTw = torch.eye(4, dtype=dt, device=dev).repeat(B, 1, 1)
    oTw[:, :3, :3] = R.transpose(1, 2)
    oTw[:, :3, 3] = -(R.transpose(1, 2) @ (t / c[:, None])[..., None])[..., 0]
    k = s / c
    unscale = torch.diag_embed(torch.stack([1 / k, 1 / k, 1 / k, torch.ones_like(k)], dim=-1))
    uTo_k = torch.as_tensor(uTo, dtype=dt, device=dev) @ unscale  # (B, 4, 4)
    p = transform_params(hand, params, oTw)
    left = params.side == "left"
    if left:  # the network is right-handed: mirror the scene through x = 0
        p = mirror_params(p)
        uTo_k = uTo_k @ _MIRROR.to(uTo_k)
    out = refine_hand(net, right, p, grid, uTo_k, iterations).params
    if left:
        out = mirror_params(out)
    return transform_params(hand, out, _rigid_inverse(oTw))
