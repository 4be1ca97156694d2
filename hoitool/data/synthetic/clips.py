"""Synthetic hand-object interaction clips with known 3D truth, for benchmarking video
reconstruction (the setting of G-HOP's HOI4D evaluation, with exact truth).

A grasp (hand parameters in the object's frame) is held rigidly: hand and object move
together as one rigid body in front of a fixed camera. The start pose is a random view (as
`hoitool.data.synthetic.images.random_view` draws one); over the clip the body turns by
`rotation_deg` about a random axis through the scene centre and moves by `translation_m`,
both eased in and out (smoothstep). Each frame is one pyrender render (colour and the
per-pixel label map, from which the visible hand and object masks come); 2D keypoints are the
projected truth plus Gaussian pixel noise, and a share `drop` of the frames (never the first)
has none (a missed detection).

    clip = make_clip(hand, mesh, params_o, "mug", np.random.default_rng(0), frames=32)
    write_clip(clip, Path("clips/mug_0"))           # the input layout of `hoitool reconstruct`
    truth = read_truth(Path("clips/mug_0"))

Folder layout written by `write_clip`:
    frames/00000.png ...        RGB frames
    hand_masks/00000.png ...    visible hand (white = hand)
    object_masks/00000.png ...  visible object (white = object)
    keypoints.json              one entry per frame: 21 [u, v, 1.0] (pixels, OpenPose order),
                                or null for a frame without keypoints
    truth.npz                   3D truth, camera frame (see `write_clip`)
    object.obj                  the true object mesh in its own frame, metres
    clip.json                   category, focal, frames, size, noise, dropped frames, source
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh
from scipy.spatial.transform import Rotation

from hoitool.data.synthetic.images import random_camera
from hoitool.geometry.camera import Camera
from hoitool.hand.model import HandModel, HandParams
from hoitool.render.offscreen import HAND_COLOR, OBJECT_COLOR, RenderMesh, render_camera

from hoitool.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle

#: Arrays of the hand parameters stored per frame in truth.npz (camera frame).
HAND_KEYS = HandParams.TENSORS


@dataclass
class SyntheticClip:
    frames: np.ndarray
    """(T, H, W, 3) uint8 RGB."""
    hand_masks: np.ndarray
    """(T, H, W) bool: visible hand."""
    object_masks: np.ndarray
    """(T, H, W) bool: visible object."""
    keypoints: np.ndarray
    """(T, 21, 2) float32 pixels: projected truth + Gaussian noise; NaN on dropped frames."""
    confidence: np.ndarray
    """(T, 21) float32: 1, or 0 on dropped frames."""
    camera: Camera
    """Fixed over the clip."""
    hand: HandParams
    """True hand parameters in the camera frame, batched over the T frames."""
    cTo: np.ndarray
    """(T, 4, 4) true object pose per frame (object mesh frame -> camera)."""
    hand_vertices: np.ndarray
    """(T, V, 3) camera frame."""
    keypoints3d: np.ndarray
    """(T, 21, 3) camera frame."""
    mesh: trimesh.Trimesh
    """The object in its own frame, metres."""
    category: str
    grasp: HandParams | None = None
    """The grasp: hand parameters in the object frame (batch 1), the same for every frame."""
    source: str = ""
    """Where the grasp came from (a record id), free text."""

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def dropped(self) -> np.ndarray:
        """Indices of the frames without keypoints."""
        return np.flatnonzero(self.confidence.max(1) == 0)


def _params_to_camera(hand: HandModel, params_o: HandParams, cTo: np.ndarray) -> HandParams:
    """The grasp params_o (batch 1, object frame) in the camera frame of each pose cTo
    (T, 4, 4), batched over T, on the CPU (images.params_to_camera, on any device)."""
    with torch.no_grad():
        dev = hand.device
        R = torch.as_tensor(cTo[:, :3, :3], dtype=torch.float32, device=dev)
        t = torch.as_tensor(cTo[:, :3, 3], dtype=torch.float32, device=dev)
        J0 = hand.rest_joints(params_o.betas)[:, 0]  # (1, 3)
        go = matrix_to_axis_angle(R @ axis_angle_to_matrix(params_o.global_orient))
        transl = torch.einsum("tij,bj->ti", R, J0 + params_o.transl) + t - J0
        n = len(cTo)
        p = HandParams(go, params_o.hand_pose.expand(n, -1).clone(), params_o.betas.expand(n, -1).clone(), transl, params_o.side)
    return p.to("cpu")


def _smoothstep(x: np.ndarray) -> np.ndarray:
    return x * x * (3 - 2 * x)


def _start_pose(centre: np.ndarray, radius: float, size: int, rng: np.random.Generator, fov_deg, fill) -> tuple[Camera, np.ndarray]:
    """A camera and object pose cTo looking at `centre` from a random direction (random_view's draw)."""
    return random_camera(centre, radius, size, rng, fov_deg, fill)


def _trajectory(cTo0: np.ndarray, centre_c: np.ndarray, frames: int, angle: float, axis: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """(T, 4, 4) poses M(s_t) @ cTo0 with M(s) a rotation by s * angle about `axis` through
    `centre_c` (camera frame) followed by a translation s * shift; s eased from 0 to 1."""
    s = _smoothstep(np.linspace(0.0, 1.0, frames)) if frames > 1 else np.zeros(1)
    out = np.empty((frames, 4, 4))
    for i, si in enumerate(s):
        R = Rotation.from_rotvec(axis * angle * si).as_matrix()
        M = np.eye(4)
        M[:3, :3] = R
        M[:3, 3] = centre_c - R @ centre_c + si * shift
        out[i] = M @ cTo0
    return out


def make_clip(hand: HandModel, mesh: trimesh.Trimesh, params_o: HandParams, category: str, rng: np.random.Generator,
              frames: int = 32, size: int = 256, noise_px: float = 2.0, drop: float = 0.1,
              fov_deg: tuple[float, float] = (35.0, 60.0), fill: tuple[float, float] = (0.45, 0.65),
              rotation_deg: tuple[float, float] = (30.0, 60.0), translation_m: tuple[float, float] = (0.02, 0.05),
              min_pixels: int = 60, tries: int = 20, source: str = "") -> SyntheticClip:
    """Render a clip of the rigid grasp `params_o` (hand parameters in the object frame,
    batch 1) moving in front of a fixed camera.

    Args:
        frames, size: number of frames T and the square image side (pixels).
        noise_px: standard deviation of the Gaussian noise on the 2D keypoints (pixels).
        drop: share of the frames (rounded, never the first) without keypoints.
        fov_deg: range of the horizontal field of view drawn for the camera.
        fill: range of the share of the half image the scene's bounding sphere covers at the
            start (smaller than random_view's so the moving scene stays in the frame).
        rotation_deg, translation_m: ranges of the total rotation (about a random axis
            through the scene centre) and translation (random direction) over the clip.
        min_pixels: every frame must show at least this many pixels of the hand and of the
            object (scaled with the image area from 256 px); a trajectory failing it is
            redrawn, at most `tries` times.
        source: free text kept with the clip (e.g. the record id).

    Raises:
        RuntimeError when no trajectory in `tries` shows both hand and object in every frame.
    """
    if params_o.batch_size != 1:
        raise ValueError("make_clip takes the hand parameters of one grasp (batch 1)")
    if frames < 1:
        raise ValueError("a clip needs at least one frame")
    params_o = params_o.detach().to(hand.device, torch.float32)
    with torch.no_grad():
        out_o = hand(params_o)
    hv_o = out_o.vertices[0].double().cpu().numpy()
    kp_o = out_o.keypoints[0].double().cpu().numpy()
    faces_h = hand.faces.cpu().numpy()
    ov_o = np.asarray(mesh.vertices, dtype=np.float64)
    pts = np.concatenate([hv_o, ov_o])
    centre = (pts.max(0) + pts.min(0)) / 2
    radius = float(np.linalg.norm(pts - centre, axis=1).max())
    need = max(10, int(round(min_pixels * size * size / 256 ** 2)))
    for _ in range(tries):
        cam, cTo0 = _start_pose(centre, radius, size, rng, fov_deg, fill)
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        angle = np.radians(rng.uniform(*rotation_deg))
        shift = rng.normal(size=3)
        shift *= rng.uniform(*translation_m) / np.linalg.norm(shift)
        centre_c = cTo0[:3, :3] @ centre + cTo0[:3, 3]
        cTo = _trajectory(cTo0, centre_c, frames, angle, axis, shift)
        # cheap pre-check: the scene centre stays in front of the camera and inside the image
        cc = np.einsum("tij,j->ti", cTo[:, :3, :3], centre) + cTo[:, :3, 3]
        if (cc[:, 2] < radius + 0.02).any():
            continue
        uvc = cam.project(torch.as_tensor(cc, dtype=torch.float64)).numpy()
        if ((uvc < 0.1 * size) | (uvc > 0.9 * size)).any():
            continue
        imgs, hms, oms, hvs, kps = [], [], [], [], []
        ok = True
        for T in cTo:
            hv = hv_o @ T[:3, :3].T + T[:3, 3]
            ov = ov_o @ T[:3, :3].T + T[:3, 3]
            r = render_camera([RenderMesh(hv, faces_h, HAND_COLOR), RenderMesh(ov, mesh.faces, OBJECT_COLOR)], cam)
            hm, om = r.labels == 0, r.labels == 1
            if hm.sum() < need or om.sum() < need:
                ok = False
                break
            imgs.append(r.color)
            hms.append(hm)
            oms.append(om)
            hvs.append(hv)
            kps.append(kp_o @ T[:3, :3].T + T[:3, 3])
        if not ok:
            continue
        kp3 = np.stack(kps)
        uv = cam.project(torch.as_tensor(kp3, dtype=torch.float64)).numpy()
        uv = uv + rng.normal(scale=noise_px, size=uv.shape)
        conf = np.ones((frames, 21), np.float32)
        n_drop = min(int(round(drop * frames)), frames - 1)
        if n_drop > 0:
            idx = rng.choice(np.arange(1, frames), size=n_drop, replace=False)
            conf[idx] = 0.0
            uv[idx] = np.nan
        params_c = _params_to_camera(hand, params_o, cTo)
        return SyntheticClip(
            frames=np.stack(imgs).astype(np.uint8), hand_masks=np.stack(hms), object_masks=np.stack(oms),
            keypoints=uv.astype(np.float32), confidence=conf, camera=cam, hand=params_c, cTo=cTo,
            hand_vertices=np.stack(hvs), keypoints3d=kp3, mesh=mesh, category=category, grasp=params_o.to("cpu").clone(), source=source,
        )
    raise RuntimeError(f"no trajectory in {tries} tries showed both the hand and the object in every frame")


def _png(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(array).save(path)


def write_clip(clip: SyntheticClip, folder: Path) -> None:
    """Write the clip as the input folder of `hoitool reconstruct` (layout in the module
    docstring) with its truth.

    truth.npz keys: cTo (T, 4, 4), hand_vertices (T, V, 3), keypoints3d (T, 21, 3) (camera
    frame, metres); keypoints2d (T, 21, 2) (the noisy input, NaN when dropped), confidence
    (T, 21); fx, fy, cx, cy, width, height (the camera); global_orient (T, 3), hand_pose
    (T, 45), betas (T, 10), transl (T, 3) (hand parameters in the camera frame per frame);
    grasp_global_orient (1, 3), grasp_hand_pose, grasp_betas, grasp_transl (the grasp in the
    object frame); side.
    """
    folder = Path(folder)
    for sub in ("frames", "hand_masks", "object_masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i in range(clip.num_frames):
        name = f"{i:05d}.png"
        _png(clip.frames[i], folder / "frames" / name)
        _png(clip.hand_masks[i].astype(np.uint8) * 255, folder / "hand_masks" / name)
        _png(clip.object_masks[i].astype(np.uint8) * 255, folder / "object_masks" / name)
    kps = []
    for uv, c in zip(clip.keypoints, clip.confidence):
        kps.append(None if c.max() == 0 else [[float(u), float(v), 1.0] for u, v in uv])
    (folder / "keypoints.json").write_text(json.dumps(kps))
    cam = clip.camera
    arrays = {"cTo": clip.cTo, "hand_vertices": clip.hand_vertices, "keypoints3d": clip.keypoints3d,
              "keypoints2d": clip.keypoints, "confidence": clip.confidence,
              "fx": cam.fx, "fy": cam.fy, "cx": cam.cx, "cy": cam.cy, "width": cam.width, "height": cam.height,
              "side": clip.hand.side, **clip.hand.numpy()}
    if clip.grasp is not None:
        arrays.update({f"grasp_{k}": v for k, v in clip.grasp.numpy().items()})
    np.savez_compressed(folder / "truth.npz", **arrays)
    clip.mesh.export(folder / "object.obj")
    info = {"category": clip.category, "focal": cam.fx, "frames": clip.num_frames, "width": cam.width, "height": cam.height,
            "dropped": [int(i) for i in clip.dropped], "source": clip.source}
    (folder / "clip.json").write_text(json.dumps(info, indent=1))


def read_truth(folder: Path) -> dict:
    """The truth of a clip folder written by `write_clip`: every truth.npz array (scalars as
    Python numbers, side as str), plus camera (Camera), hand (HandParams, camera frame, batch
    T), grasp (HandParams in the object frame, or None), mesh (trimesh.Trimesh, object frame)
    and info (clip.json)."""
    folder = Path(folder)
    with np.load(folder / "truth.npz") as z:
        out = {k: z[k] for k in z.files}
    for k in ("fx", "fy", "cx", "cy"):
        out[k] = float(out[k])
    for k in ("width", "height"):
        out[k] = int(out[k])
    out["side"] = str(out["side"])
    out["camera"] = Camera(out["fx"], out["fy"], out["cx"], out["cy"], out["width"], out["height"])
    out["hand"] = HandParams.from_numpy({k: out[k] for k in HAND_KEYS}, side=out["side"])
    out["grasp"] = (HandParams.from_numpy({k: out[f"grasp_{k}"] for k in HAND_KEYS}, side=out["side"])
                    if "grasp_transl" in out else None)
    out["mesh"] = trimesh.load(folder / "object.obj", process=False, force="mesh")
    out["info"] = json.loads((folder / "clip.json").read_text())
    return out
