"""Approach trajectories and look-at cameras for rendering HOI data (HOIDiffusion's stage 1).

    params = grasp_trajectory(hand, grasp, frames=8)        # (8) hand parameters, open and back -> grasp
    cam, cTo = look_at_camera(centre_o, rng, size=256)       # intrinsics and object -> camera (OpenCV)

A trajectory keeps the grasp's global orientation; the hand starts flat (zero finger pose)
and `back_m` metres back along the approach, i.e. against the palm normal's direction in the
grasp (the way the palm faces the object). Finger joints follow the per-joint slerp from the
identity to the grasp's rotation, which for axis-angles is exact scaling: aa_j(s) = s aa_j;
the translation is linear. Frame s = k / (frames - 1), so the last frame is the grasp itself.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from hoitool.geometry.camera import Camera
from hoitool.geometry.rotations import axis_angle_to_matrix
from hoitool.hand.model import HandModel, HandParams

BACK_M = 0.3
DISTANCE_M = (0.35, 0.45)
ELEVATION_DEG = (5.0, 60.0)


def approach_direction(hand: HandModel, params: HandParams) -> torch.Tensor:
    """(B, 3) unit direction the hand moves in to reach the grasp: the palm normal (out of the
    palm, towards the object) turned by the grasp's global orientation."""
    n = torch.as_tensor(hand.metadata.palm_normal, dtype=params.global_orient.dtype, device=params.global_orient.device)
    return axis_angle_to_matrix(params.global_orient) @ n


def grasp_trajectory(hand: HandModel, params: HandParams, frames: int = 8, back_m: float = BACK_M) -> HandParams:
    """(frames) hand parameters from the open hand `back_m` back along the approach to the grasp
    `params` (one grasp, batch 1)."""
    if params.batch_size != 1:
        raise ValueError("grasp_trajectory takes one grasp (batch 1)")
    if frames < 2:
        raise ValueError(f"a trajectory needs at least 2 frames, got {frames}")
    s = torch.linspace(0.0, 1.0, frames, dtype=params.hand_pose.dtype, device=params.hand_pose.device)[:, None]
    d = approach_direction(hand, params)
    return HandParams(params.global_orient.expand(frames, 3).clone(), s * params.hand_pose, params.betas.expand(frames, -1).clone(),
                      params.transl - (1.0 - s) * back_m * d, params.side)


def look_at_camera(centre: np.ndarray, rng: np.random.Generator, size: int = 256, fov_deg: float = 50.0,
                   distance_m: tuple[float, float] = DISTANCE_M, elevation_deg: tuple[float, float] = ELEVATION_DEG,
                   up: np.ndarray = np.array([0.0, 0.0, 1.0])) -> tuple[Camera, np.ndarray]:
    """A random camera looking at `centre` (object frame, metres) from `distance_m` away, raised
    `elevation_deg` above the plane normal to `up`, at a random azimuth. Returns the intrinsics
    and cTo (4, 4), the object frame -> OpenCV camera frame (x right, y down, z forward)."""
    up = np.asarray(up, dtype=np.float64)
    up = up / np.linalg.norm(up)
    dist = rng.uniform(*distance_m)
    elev = math.radians(rng.uniform(*elevation_deg))
    azim = rng.uniform(0.0, 2 * math.pi)
    a = np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 1.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(up, a)
    horizontal = math.cos(azim) * a + math.sin(azim) * b
    eye = np.asarray(centre, dtype=np.float64) + dist * (math.cos(elev) * horizontal + math.sin(elev) * up)
    z = np.asarray(centre, dtype=np.float64) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)  # image right; up projects to image up, i.e. -y
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])  # rows: camera axes in the object frame
    cTo = np.eye(4)
    cTo[:3, :3] = R
    cTo[:3, 3] = -R @ eye
    f = (size / 2) / math.tan(math.radians(fov_deg) / 2)
    return Camera(f, f, (size - 1) / 2, (size - 1) / 2, size, size), cTo
