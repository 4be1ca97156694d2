"""A hand as spheres along its skeleton, for fast and robust collision terms.

Each finger bone (joint to child joint, the last one to the fingertip) carries three spheres and
the palm twelve (between the wrist and the four finger knuckles), the thumb's base two more.
Centres are fixed blends of the shaped rest joints (so they follow the hand's shape); each is
carried by the rigid transform of the joint that drives its bone, as skinning would. Radii are the
distance from the centre to the nearest rest-pose vertex (spheres inscribed in the surface).

Overlap of two hands' spheres, sum over pairs of max(0, r_i + r_j - |c_i - c_j|)^2, is smooth,
always pushes overlapping parts apart however deep they are, and costs ~60 x 60 distances per pair
of hands, against the hundreds of skinned vertices and nearest-vertex searches of a mesh test.
"""

from __future__ import annotations

import numpy as np
import torch
from smplx.lbs import batch_rigid_transform, batch_rodrigues

from hoitool.hand.keypoints import FINGER_JOINTS, FINGERS
from hoitool.hand.model import HandModel

BONE_FRACTIONS = (0.15, 0.5, 0.85)
PALM_FRACTIONS = (0.3, 0.55, 0.8)


class HandSpheres(torch.nn.Module):
    """`forward(global_orient, hand_pose, betas, transl) -> (centres (B, S, 3), radii (S,))`, metres."""

    def __init__(self, hand: HandModel):
        super().__init__()
        L = hand.layer
        J = (L.J_regressor @ L.v_template).detach().double().numpy()
        V = L.v_template.detach().double().numpy()
        tips = hand.metadata.fingertips  # thumb .. little
        # each centre = sum_k blend[s, k] * point_k over points = 16 joints + 5 tips; driven by joint[s]
        rows, drive = [], []
        for f, finger in enumerate(FINGERS):
            chain = list(FINGER_JOINTS[finger]) + [16 + f]
            for a, b in zip(chain[:-1], chain[1:]):
                for t in BONE_FRACTIONS:
                    w = np.zeros(21)
                    w[a], w[b] = 1 - t, t
                    rows.append(w)
                    drive.append(a)
        for finger in ("index", "middle", "ring", "little"):
            for t in PALM_FRACTIONS:
                w = np.zeros(21)
                w[0], w[FINGER_JOINTS[finger][0]] = 1 - t, t
                rows.append(w)
                drive.append(0)
        for t in (0.4, 0.75):  # the thumb's base, between the wrist and the thumb's first joint
            w = np.zeros(21)
            w[0], w[FINGER_JOINTS["thumb"][0]] = 1 - t, t
            rows.append(w)
            drive.append(0)
        blend = np.stack(rows)
        pts = np.concatenate([J, V[tips]])
        centres = blend @ pts
        radii = np.array([np.linalg.norm(V - c, axis=1).min() for c in centres])
        self.register_buffer("blend", torch.as_tensor(blend, dtype=torch.float32))
        self.register_buffer("drive", torch.as_tensor(drive, dtype=torch.long))
        self.register_buffer("radii", torch.as_tensor(radii, dtype=torch.float32))
        self.register_buffer("j_template", L.J_regressor @ L.v_template)
        self.register_buffer("j_shapedirs", torch.einsum("jv,vcl->jcl", L.J_regressor, L.shapedirs))
        tip_ids = torch.as_tensor(np.asarray(tips), dtype=torch.long)
        self.register_buffer("tip_template", L.v_template[tip_ids].clone())
        self.register_buffer("tip_shapedirs", L.shapedirs[tip_ids].clone())
        self.register_buffer("parents", L.parents.clone())

    def forward(self, global_orient, hand_pose, betas, transl):
        B = hand_pose.shape[0]
        J = self.j_template + torch.einsum("bl,jcl->bjc", betas, self.j_shapedirs)
        tips = self.tip_template + torch.einsum("bl,vcl->bvc", betas, self.tip_shapedirs)
        rest = torch.einsum("sk,bkc->bsc", self.blend, torch.cat([J, tips], 1))
        rot = batch_rodrigues(torch.cat([global_orient, hand_pose], 1).reshape(-1, 3)).reshape(B, -1, 3, 3)
        _, A = batch_rigid_transform(rot, J, self.parents, dtype=rot.dtype)
        T = A[:, self.drive]
        c = (T[..., :3, :3] @ rest[..., None])[..., 0] + T[..., :3, 3] + transl[:, None]
        return c, self.radii


def sphere_overlap(ca: torch.Tensor, ra: torch.Tensor, cb: torch.Tensor, rb: torch.Tensor) -> torch.Tensor:
    """(B,) sum over sphere pairs of the squared overlap depth (m^2) between sets (B, S, 3) and (B, T, 3)."""
    d = torch.cdist(ca, cb)
    return (ra[:, None] + rb[None, :] - d).clamp_min(0).square().sum((1, 2))


def sphere_gap(ca: torch.Tensor, ra: torch.Tensor, cb: torch.Tensor, rb: torch.Tensor) -> torch.Tensor:
    """(B,) smallest gap (m) between the sphere sets' surfaces, negative when they overlap."""
    return (torch.cdist(ca, cb) - ra[:, None] - rb[None, :]).flatten(1).min(dim=1).values
