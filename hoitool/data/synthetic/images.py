"""Synthetic hand-object photographs with known 3D truth, for tests and benchmarks.

A grasp (hand parameters in the object's frame) is seen from a random camera: the scene is
rendered with pyrender, the visible hand and object masks come from the per-pixel nearest
mesh, and the 2D keypoints are the projected 3D keypoints plus Gaussian pixel noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import trimesh

from hoitool.geometry.camera import Camera
from hoitool.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from hoitool.hand.model import HandModel, HandParams
from hoitool.data.image_inputs import ImageInputs
from hoitool.render.offscreen import HAND_COLOR, OBJECT_COLOR, RenderMesh, render_camera


@dataclass
class SyntheticView:
    inputs: ImageInputs
    camera: Camera
    hand: HandParams
    """True hand parameters in the camera frame."""
    cTo: np.ndarray
    """(4, 4) true object pose (object mesh frame -> camera)."""
    hand_vertices: np.ndarray
    """(V, 3) camera frame."""
    keypoints: np.ndarray
    """(21, 3) camera frame."""
    object_vertices: np.ndarray
    """(N, 3) camera frame (the mesh's vertices)."""


def params_to_camera(hand: HandModel, params: HandParams, cTo: np.ndarray) -> HandParams:
    """Hand parameters in frame o mapped into frame c by the rigid cTo (4, 4)."""
    R = torch.as_tensor(cTo[:3, :3], dtype=torch.float32)
    t = torch.as_tensor(cTo[:3, 3], dtype=torch.float32)
    J0 = hand.rest_joints(params.betas)[:, 0]
    go = matrix_to_axis_angle(R @ axis_angle_to_matrix(params.global_orient))
    transl = (J0 + params.transl) @ R.T + t - J0
    return HandParams(go, params.hand_pose.clone(), params.betas.clone(), transl, params.side)


def random_camera(centre: np.ndarray, radius: float, size: int, rng: np.random.Generator, fov_deg, fill) -> tuple[Camera, np.ndarray]:
    """A square camera and the pose cTo (object frame -> camera) looking at `centre` from a random
    direction with a random roll, the bounding sphere (radius) filling `fill` of the half image."""
    fov = np.radians(rng.uniform(*fov_deg))
    f = size / (2 * np.tan(fov / 2))
    cam = Camera(f, f, (size - 1) / 2, (size - 1) / 2, size, size)
    dist = radius / np.tan(fov / 2) / rng.uniform(*fill)
    d = rng.normal(size=3)
    d /= np.linalg.norm(d)
    z = -d  # camera frame: z from the camera to the centre, random roll
    up = rng.normal(size=3)
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R_oc = np.stack([x, y, z], 1)  # columns: camera axes in o
    eye = centre + d * dist
    cTo = np.eye(4)
    cTo[:3, :3] = R_oc.T
    cTo[:3, 3] = -R_oc.T @ eye
    return cam, cTo


def random_view(hand: HandModel, mesh: trimesh.Trimesh, params_o: HandParams, rng: np.random.Generator, size: int = 320,
                fov_deg: tuple[float, float] = (35.0, 60.0), fill: tuple[float, float] = (0.45, 0.7), keypoint_noise_px: float = 2.0,
                min_pixels: int = 150, tries: int = 20) -> SyntheticView:
    """Render one grasp from a random viewpoint (the hand's back not necessarily hidden)."""
    with torch.no_grad():
        out_o = hand(params_o)
    hv_o = out_o.vertices[0].double().numpy()
    pts = np.concatenate([hv_o, mesh.vertices])
    centre = (pts.max(0) + pts.min(0)) / 2
    radius = np.linalg.norm(pts - centre, axis=1).max()
    for _ in range(tries):
        cam, cTo = random_camera(centre, radius, size, rng, fov_deg, fill)
        hv = hv_o @ cTo[:3, :3].T + cTo[:3, 3]
        ov = np.asarray(mesh.vertices) @ cTo[:3, :3].T + cTo[:3, 3]
        r = render_camera([RenderMesh(hv, hand.faces.cpu().numpy(), HAND_COLOR), RenderMesh(ov, mesh.faces, OBJECT_COLOR)], cam)
        hm, om = r.labels == 0, r.labels == 1
        if hm.sum() < min_pixels or om.sum() < min_pixels:
            continue
        kp = out_o.keypoints[0].double().numpy() @ cTo[:3, :3].T + cTo[:3, 3]
        uv = cam.project(torch.as_tensor(kp, dtype=torch.float32)).numpy()
        uv = uv + rng.normal(scale=keypoint_noise_px, size=uv.shape)
        inputs = ImageInputs(r.color, hm, om, uv.astype(np.float32), np.ones(21, np.float32))
        return SyntheticView(inputs, cam, params_to_camera(hand, params_o, cTo), cTo, hv, kp, ov)
    raise RuntimeError("no viewpoint showed both the hand and the object")
