"""Two-hand parameter vectors in InterHandGen's layout, and back.

Per hand, 64 numbers: [hand_pose 45 | betas 10 | rotation 6D 6 | position 3].

* Both hands live in the right hand's parameter space: the left hand's articulation
  (`hand_pose`) is mirrored (`hoitool.hand.mirror`), so a curled left index finger and a
  curled right index finger have the same numbers. Betas mean the same on both sides.
* The anchor is the right hand. Its 9 pose numbers are its rotation and its middle knuckle
  (MCP) position in the reference frame r: with no object, r is the anchor itself (so they
  are the identity and zero); with an object, r is the object's frame centred on its bounding
  box centre (so they say where the right hand holds the object).
* The second hand's 9 pose numbers are relative to the anchor:
  R_rel = R_a^T R_b and t = R_a^T (J_b - J_a), J = middle MCP position (metres).

The middle MCP hangs off the wrist only, so its position is R (J_mcp - J_0) + J_0 + transl with
the rest joints of the hand's shape: exact, cheap and differentiable.
"""

from __future__ import annotations

import torch

from hoitool.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_rot6d, rot6d_to_matrix
from hoitool.hand.mirror import mirror_axis_angle
from hoitool.hand.model import HandModel, HandParams, transform_params  # noqa: F401 (re-exported)

#: Middle finger MCP in MANO joint order (the anchor point of each hand).
MCP = 4
DIM = 64
POSE = slice(0, 45)
BETAS = slice(45, 55)
ROT = slice(55, 61)
POS = slice(61, 64)
#: The 9 numbers of a hand's rotation and position.
RIGID = slice(55, 64)


def knuckle(model: HandModel, params: HandParams) -> torch.Tensor:
    """(B, 3) middle MCP joint of posed hands, metres (in the frame the parameters put them in)."""
    J = model.rest_joints(params.betas)
    R = axis_angle_to_matrix(params.global_orient)
    return (R @ (J[:, MCP] - J[:, 0])[..., None])[..., 0] + J[:, 0] + params.transl


def place_hand(model: HandModel, R: torch.Tensor, mcp: torch.Tensor, hand_pose: torch.Tensor, betas: torch.Tensor) -> HandParams:
    """Hand parameters (model's side) with rotation R (B, 3, 3) and middle MCP at `mcp` (B, 3)."""
    J = model.rest_joints(betas)
    transl = mcp - (R @ (J[:, MCP] - J[:, 0])[..., None])[..., 0] - J[:, 0]
    return HandParams(matrix_to_axis_angle(R), hand_pose, betas, transl, model.side)


def to_vectors(right_model: HandModel, left_model: HandModel, right: HandParams, left: HandParams,
               rTw: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_a, x_b), each (B, 64), from a right and a left hand in a common frame w.

    rTw (B, 4, 4) maps w into the reference frame (an object-centred frame); None: the anchor's
    own frame (the anchor's rotation and position come out as identity and zero)."""
    if right.side != "right" or left.side != "left":
        raise ValueError("to_vectors takes a right hand and a left hand")
    Ra = axis_angle_to_matrix(right.global_orient)
    Rb = axis_angle_to_matrix(left.global_orient)
    Ja, Jb = knuckle(right_model, right), knuckle(left_model, left)
    B = right.batch_size
    if rTw is None:
        Ra_r, Ja_r = torch.eye(3).to(Ra).expand(B, 3, 3), torch.zeros_like(Ja)
    else:
        rTw = rTw.to(Ra).expand(B, 4, 4)
        Ra_r = rTw[:, :3, :3] @ Ra
        Ja_r = (rTw[:, :3, :3] @ Ja[..., None])[..., 0] + rTw[:, :3, 3]
    R_rel = Ra.transpose(1, 2) @ Rb
    t_rel = (Ra.transpose(1, 2) @ (Jb - Ja)[..., None])[..., 0]
    xa = torch.cat([right.hand_pose, right.betas, matrix_to_rot6d(Ra_r), Ja_r], dim=1)
    xb = torch.cat([mirror_axis_angle(left.hand_pose), left.betas, matrix_to_rot6d(R_rel), t_rel], dim=1)
    return xa, xb


def from_vectors(right_model: HandModel, left_model: HandModel, xa: torch.Tensor, xb: torch.Tensor) -> tuple[HandParams, HandParams]:
    """(right, left) hand parameters in the reference frame r from vectors (B, 64) (see `to_vectors`).
    Rotations pass through Gram-Schmidt, so any 6 numbers give a rotation."""
    Ra = rot6d_to_matrix(xa[:, ROT])
    right = place_hand(right_model, Ra, xa[:, POS], xa[:, POSE], xa[:, BETAS])
    Rb = Ra @ rot6d_to_matrix(xb[:, ROT])
    Jb = (Ra @ xb[:, POS][..., None])[..., 0] + xa[:, POS]
    left = place_hand(left_model, Rb, Jb, mirror_axis_angle(xb[:, POSE]), xb[:, BETAS])
    return right, left


def rotate_reference(xa: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """x_a with its reference frame rotated by Q (B, 3, 3) about the origin (x_b is relative: unchanged)."""
    out = xa.clone()
    out[:, ROT] = matrix_to_rot6d(Q @ rot6d_to_matrix(xa[:, ROT]))
    out[:, POS] = (Q @ xa[:, POS][..., None])[..., 0]
    return out


class VectorNormaliser(torch.nn.Module):
    """Per-dimension standardisation of x_a and x_b by the training data's mean and standard
    deviation (standard deviations below `floor` - e.g. the anchor's fixed pose without objects
    - are raised to 1, so constant numbers stay constant)."""

    def __init__(self, mean_a: torch.Tensor, std_a: torch.Tensor, mean_b: torch.Tensor, std_b: torch.Tensor):
        super().__init__()
        for k, v in (("mean_a", mean_a), ("std_a", std_a), ("mean_b", mean_b), ("std_b", std_b)):
            self.register_buffer(k, torch.as_tensor(v, dtype=torch.float32).reshape(DIM))

    @classmethod
    def fit(cls, xa: torch.Tensor, xb: torch.Tensor, floor: float = 1e-4) -> "VectorNormaliser":
        def stats(x):
            s = x.std(0)
            return x.mean(0), torch.where(s < floor, torch.ones_like(s), s)

        return cls(*stats(xa), *stats(xb))

    def state(self) -> dict:
        return {k: v.clone() for k, v in self.state_dict().items()}

    @classmethod
    def from_state(cls, d: dict) -> "VectorNormaliser":
        return cls(d["mean_a"], d["std_a"], d["mean_b"], d["std_b"])

    def norm_a(self, x):
        return (x - self.mean_a) / self.std_a

    def norm_b(self, x):
        return (x - self.mean_b) / self.std_b

    def denorm_a(self, z):
        return z * self.std_a + self.mean_a

    def denorm_b(self, z):
        return z * self.std_b + self.mean_b
