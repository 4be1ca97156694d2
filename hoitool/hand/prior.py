"""An anatomical pose prior: joint frames, limits and a sampler of plausible articulations.

Each of the 15 finger joints gets an orthonormal frame derived from the rest geometry:
flexion (curling towards the palm), abduction (sideways, about the palm normal) and twist
(about the bone). A MANO axis-angle pose `hand_pose (B, 45)` maps linearly to anatomical
angles `q (B, 15, 3)` = (flexion, abduction, twist) in radians and back. Flexion and
abduction have the same meaning and sign for left and right hands.
"""

from __future__ import annotations

import numpy as np
import torch

from hoitool.hand.keypoints import FINGER_JOINTS
from hoitool.hand.metadata import palm_normal, thumb_palmar_direction

# (flexion, abduction, twist) limits in radians: [lo, hi] for proximal, middle, distal joints.
FINGER_LIMITS = np.array([
    [[-0.30, 1.60], [-0.35, 0.35], [-0.15, 0.15]],  # MCP
    [[-0.05, 1.90], [-0.05, 0.05], [-0.05, 0.05]],  # PIP
    [[-0.10, 1.40], [-0.05, 0.05], [-0.05, 0.05]],  # DIP
])
THUMB_LIMITS = np.array([
    [[-0.50, 1.00], [-0.60, 0.60], [-0.50, 0.50]],  # CMC
    [[-0.20, 1.20], [-0.20, 0.20], [-0.20, 0.20]],  # MCP
    [[-0.40, 1.40], [-0.05, 0.05], [-0.10, 0.10]],  # IP
])


class PosePrior(torch.nn.Module):
    """Joint frames (15, 3, 3) and limits (15, 3, 2) of one hand model (one side).

    `frames[j]` has columns (flexion axis, abduction axis, twist axis) in the rest frame, so
    the axis-angle of joint j is `frames[j] @ q[j]`.
    """

    def __init__(self, frames: np.ndarray, limits: np.ndarray):
        super().__init__()
        self.register_buffer("frames", torch.as_tensor(frames, dtype=torch.float32))
        self.register_buffer("limits", torch.as_tensor(limits, dtype=torch.float32))

    @classmethod
    def from_geometry(cls, joints: np.ndarray, tips: np.ndarray, side: str) -> "PosePrior":
        """Frames from rest joints (16, 3) and fingertip positions (5, 3: thumb ... little)."""
        J = np.asarray(joints, dtype=np.float64)
        n = palm_normal(J, side)
        n_thumb = thumb_palmar_direction(J, n)
        tip_of = dict(zip(["thumb", "index", "middle", "ring", "little"], np.asarray(tips, dtype=np.float64)))
        frames = np.zeros((15, 3, 3))
        limits = np.zeros((15, 3, 2))
        for finger, ids in FINGER_JOINTS.items():
            chain = [J[i] for i in ids] + [tip_of[finger]]
            towards = n_thumb if finger == "thumb" else n
            for k, jid in enumerate(ids):
                b = chain[k + 1] - chain[k]
                b /= np.linalg.norm(b)
                e_flex = np.cross(b, towards)
                e_flex /= np.linalg.norm(e_flex)
                e_abd = np.cross(e_flex, b)
                frames[jid - 1] = np.stack([e_flex, e_abd, b], axis=1)
                limits[jid - 1] = (THUMB_LIMITS if finger == "thumb" else FINGER_LIMITS)[k]
        if side == "left":
            # mirroring keeps the flexion axis (as an axis-angle) but flips abduction and
            # twist; flip them back so every angle means the same on both sides
            frames[:, :, 1:] *= -1
        return cls(frames, limits)

    @classmethod
    def from_hand(cls, hand) -> "PosePrior":
        """Build from a HandModel (its rest joints and fingertip vertices at zero shape)."""
        J = hand.rest_joints().detach().cpu().numpy()[0]
        tips = hand.v_template.detach().cpu().numpy()[hand.metadata.fingertips]
        return cls.from_geometry(J, tips, hand.side)

    def to_anatomical(self, hand_pose: torch.Tensor) -> torch.Tensor:
        """(B, 45) axis-angle -> (B, 15, 3) (flexion, abduction, twist)."""
        aa = hand_pose.reshape(-1, 15, 3)
        return torch.einsum("jab,nja->njb", self.frames, aa)

    def from_anatomical(self, q: torch.Tensor) -> torch.Tensor:
        """(B, 15, 3) anatomical angles -> (B, 45) axis-angle."""
        return torch.einsum("jab,njb->nja", self.frames, q).reshape(-1, 45)

    def limit_violation(self, hand_pose: torch.Tensor) -> torch.Tensor:
        """(B,) sum of squared radians by which joints exceed their limits."""
        q = self.to_anatomical(hand_pose)
        lo, hi = self.limits[..., 0], self.limits[..., 1]
        return ((lo - q).clamp_min(0) ** 2 + (q - hi).clamp_min(0) ** 2).sum((1, 2))

    def clamp(self, hand_pose: torch.Tensor) -> torch.Tensor:
        q = self.to_anatomical(hand_pose)
        q = torch.maximum(torch.minimum(q, self.limits[..., 1]), self.limits[..., 0])
        return self.from_anatomical(q)

    def sample(self, n: int, generator: torch.Generator | None = None, closure: torch.Tensor | None = None) -> torch.Tensor:
        """n plausible articulations (n, 45): a shared grasp closure in [0, 1] with per-finger
        variation, coupled PIP/DIP flexion, small abduction and twist, all within limits."""
        g = generator
        dev = self.frames.device
        if closure is None:
            closure = torch.rand(n, 1, generator=g)
        closure = closure.reshape(n, 1).cpu()
        fingers = (closure + 0.15 * torch.randn(n, 5, generator=g)).clamp(0, 1)  # thumb..little
        lim = self.limits.cpu()
        q = torch.zeros(n, 15, 3)
        order = ["thumb", "index", "middle", "ring", "little"]
        for fi, name in enumerate(order):
            ids = [j - 1 for j in FINGER_JOINTS[name]]
            r = fingers[:, fi]
            for k, j in enumerate(ids):
                lo, hi = lim[j, 0, 0], lim[j, 0, 1]
                base = lo.clamp_min(0) if name != "thumb" else lo * 0.3
                frac = (r * (0.85 if k < 2 else 0.75) + 0.1 * torch.randn(n, generator=g)).clamp(0, 1)
                q[:, j, 0] = base + frac * (hi - base)
            # abduction: spread shrinks as the hand closes
            j = ids[0]
            spread = 0.5 * (1 - r) * lim[j, 1, 1] * torch.randn(n, generator=g)
            q[:, j, 1] = spread
            q[:, ids, 2] = 0.3 * lim[ids, 2, 1] * torch.randn(n, len(ids), generator=g)
        # thumb CMC: flexion (set above) brings it in front of the palm; it also swings a
        # little towards the fingers as the hand closes
        t = FINGER_JOINTS["thumb"][0] - 1
        q[:, t, 1] = 0.1 + 0.2 * fingers[:, 0] + 0.15 * torch.randn(n, generator=g)
        q = torch.maximum(torch.minimum(q, lim[..., 1]), lim[..., 0])
        return self.from_anatomical(q.to(dev))
