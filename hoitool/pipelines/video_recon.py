"""Hand and object from an interaction clip, guided by the G-HOP prior (paper section 3.2.1).

Everything is expressed in the fixed camera frame c (OpenCV) of the clip. Per frame t the
hand is the hand model posed by HandParams in c (one shape for the clip); its own frame h_t
gives cTh_t. The object is ONE shape for the clip, an explicit signed distance grid in its
unit-ball frame u (res^3, trilinear), with a per-frame similarity hTo_t = base pose x small
per-frame delta (rotation, translation) and one scale: the hand-relative pose of G-HOP.

Stages (each kept in `VideoResult.stages`):
1. `hand`: the 2D-keypoint fit of every frame with keypoints (the single-image fit), then a
   clip fit: keypoint reprojection of every frame, pose and shape priors, one shape, and the
   3D joints' acceleration (temporal smoothness), which also fills frames without keypoints.
2. `init`: the category's template placed by the single-image pipeline (mask fit, contact
   alignment, refinement) on `init_frames` frames (the object's largest mask first); each pose
   relative to that frame's hand is carried to every frame, and the one whose silhouettes best
   match all the object masks is kept.
3. `object`: the shape grid, the scale and the per-frame poses, alternating iterations as
   G-HOP does: (a) object masks of every frame (occlusion-aware: pixels where the hand mask
   hides the object are ignored), hand-object contact and penetration, temporal smoothness of
   the poses; (b) eikonal regularity of the grid plus score distillation (SDS) from the prior
   on the interaction grid of `sds_frames` frames (`--no-prior`: (b) keeps only the
   regularity terms, so both runs have the same data steps). The hand stays as stage 1 left
   it: its skeletal field conditions the prior's query, and only the object channel is
   distilled (G-HOP also refines the hand with its masks and the hand channel).

The object is rendered by marching rays through the grid: a pixel's soft silhouette is
sigmoid(-min distance along its ray / (sigma x pixel footprint)); only rays through the
object's projected bounding sphere are marched, so the cost scales with the pixels touched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import trimesh

from hoitool.data.image_inputs import MIN_KEYPOINTS, ImageInputs
from hoitool.geometry.camera import Camera, crop_inside, crop_mask, square_window
from hoitool.geometry.grid import GRID_RES, canonical_sdf, nTh_from_joints, object_channel, query_grid
from hoitool.geometry.rotations import matrix_to_axis_angle, matrix_to_rot6d, rot6d_to_matrix, axis_angle_to_matrix
from hoitool.geometry.transforms import apply_transform, invert_transform, make_transform, transform_scale
from hoitool.hand.field import skeletal_field
from hoitool.hand.fitting import fit_to_2d_keypoints
from hoitool.hand.model import HandModel, HandParams
from hoitool.hand.prior import PosePrior
from hoitool.losses.contact import zone_distances
from hoitool.losses.masks import soft_iou
from hoitool.pipelines.image_recon import ReconstructConfig, reconstruct_image
from hoitool.prior.guidance import GuidanceConfig, multiscale_mse, sds_targets
from hoitool.render.soft import SoftRasterizer
from hoitool.utils.seeding import torch_generator

STAGES = ("hand", "init", "object")
#: Samples of the second (fine) pass along each ray, around the coarse pass's nearest sample.
FINE_SAMPLES = 9


@dataclass
class ClipInputs:
    frames: np.ndarray
    """(T, H, W, 3) uint8 RGB."""
    hand_masks: np.ndarray
    """(T, H, W) bool: visible hand."""
    object_masks: np.ndarray
    """(T, H, W) bool: visible object (may be empty on frames where it is hidden)."""
    keypoints: np.ndarray
    """(T, 21, 2) float pixels (OpenPose order)."""
    confidence: np.ndarray
    """(T, 21) in [0, 1]; 0 = missing (a frame without a detection has all zeros)."""

    def __post_init__(self):
        T = len(self.frames)
        for name in ("hand_masks", "object_masks", "keypoints", "confidence"):
            if len(getattr(self, name)) != T:
                raise ValueError(f"{name} has {len(getattr(self, name))} frames, the clip {T}")

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    def frame(self, t: int) -> ImageInputs:
        return ImageInputs(self.frames[t], self.hand_masks[t], self.object_masks[t], self.keypoints[t], self.confidence[t])


@dataclass
class VideoConfig:
    """Settings of clip reconstruction (defaults: a few minutes for 32 frames on 2 CPU cores)."""

    side: str = "right"
    use_prior: bool = True
    """Score distillation from the G-HOP prior (`--no-prior` turns it off: the ablation)."""
    render_size: int = 64
    """Side (pixels) of each frame's square crop around the hand and object masks."""
    sigma: float = 0.7
    """Soft silhouette sharpness, in crop pixels (the logistic scale of the ray's min distance)."""
    ray_samples: int = 24
    """Samples per ray through the object's bounding sphere (then FINE_SAMPLES around the nearest)."""
    shape_res: int = 16
    """Resolution of the coarse grid that reshapes the object (upsampled onto grid_res)."""
    grid_res: int = 48
    """Resolution of the object's SDF grid (unit-ball frame, [-1, 1]^3). At 32 a mug's handle
    thins away (the true mesh in its true pose: mask IoU 0.83 at 32, 0.94 at 48)."""
    hand_iters: int = 40
    """L-BFGS iterations of each single-frame keypoint fit."""
    fit_every: int = 4
    """The single-frame fit runs on every k-th frame with keypoints (the first and last always);
    the clip fit starts the others from the interpolation of these (each fit costs ~2-5 s)."""
    smooth_steps: int = 200
    """Adam steps of the clip's hand fit (120 -> 200: MPJPE 2.15 -> 2.09 cm on a knife clip,
    1.31 -> 1.28 cm on a mug clip)."""
    w_hand_mask: float = 0.0
    """(1 - soft IoU) of the hand's silhouette with its mask in the clip fit (pixels where the
    object mask hides the hand are ignored). Off by default: on two 24-frame clips, weight 5
    moved the hand's MPJPE from 2.09 to 2.24 cm (knife) and 1.28 to 1.26 cm (mug), weight 20 to
    2.37 and 1.30 cm, and doubled the stage's time (scripts: see the README)."""
    hand_mask_frames: int = 6
    """Frames whose hand masks are rendered per step of the clip fit."""
    w_joint_accel: float = 0.5
    """Mean squared 3D keypoint acceleration (cm per frame^2) of the clip's hand fit, against the
    keypoint term (mean squared reprojection error in units of the hand's 2D size x 100).
    G-HOP weights its temporal joint term 50 on its own scale."""
    init_frames: int = 3
    """Frames the single-image pipeline places the template on (the largest object mask, then
    the largest of each further part of the clip); the start whose pose relative to the hand best
    explains every frame's object mask is kept."""
    init_rotations: int = 400
    init_refine_steps: int = 60
    steps: int = 200
    """Object iterations; they alternate between (a) masks + contact + temporal and (b) eikonal + SDS."""
    lr_grid: float = 0.002
    shape_start: float = 0.5
    """The shape changes only after this share of the iterations: first the poses and the scale
    fit the masks, so that the shape does not bend to make up for a wrong pose."""
    lr_pose: float = 0.01
    lr_scale: float = 0.01
    w_mask: float = 10.0
    """Object mask L1 (mean over valid pixels) + (1 - soft IoU), per frame."""
    w_contact: float = 2.0
    """Hand contact zones within `contact_radius_m` at the start are pulled onto the surface (cm)."""
    contact_radius_m: float = 0.015
    w_penetration: float = 5.0
    """Mean depth (cm) of hand vertices inside the object."""
    w_temporal: float = 50.0
    """Squared frame-to-frame change of the per-frame pose deltas (rotation rad, translation per 5 cm)."""
    w_delta: float = 1.0
    """Squared size of the per-frame deltas (the grasp is mostly rigid)."""
    w_eikonal: float = 1.0
    w_laplacian: float = 0.2
    w_scale: float = 0.05
    """(log object scale)^2: the category template's size is only typical."""
    w_sds: float = 100.0
    """Score distillation (w(t) x multi-scale MSE of the object channel, [-1, 1] units). G-HOP
    uses 5000 on its own loss scale, over 15,000 iterations; here 200 iterations. On a 16-frame
    cup clip (shape changing from the start, lr 0.01) 20 and 100 gave F10 0.82 and 0.84, none 0.79."""
    sds_frames: int = 2
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    seed: int = 0
    device: str = "cpu"


@dataclass
class FrameState:
    hand: HandParams
    """(1,) hand parameters in the camera frame."""
    cTo: np.ndarray
    """(4, 4) rigid: the object's frame (the output mesh's frame) -> camera."""


@dataclass
class StageResult:
    frames: list[FrameState]
    mesh: trimesh.Trimesh
    """The object in its own frame, metres."""
    metrics: dict
    seconds: float


@dataclass
class VideoResult:
    stages: dict[str, StageResult]
    camera: Camera
    category: str
    key_frame: int
    losses: list[dict]
    """One entry per logged object iteration."""

    @property
    def final(self) -> StageResult:
        return list(self.stages.values())[-1]


# -- stage 1: the hand -------------------------------------------------------------------------
def _interp_missing(x: np.ndarray, have: np.ndarray) -> np.ndarray:
    """Fill rows of x (T, ...) where `have` is False by linear interpolation (ends: nearest)."""
    T = len(x)
    idx = np.flatnonzero(have)
    out = x.copy()
    flat = out.reshape(T, -1)
    for j in range(flat.shape[1]):
        flat[:, j] = np.interp(np.arange(T), idx, flat[idx, j])
    return flat.reshape(x.shape)


def fit_clip_hand(hand: HandModel, inputs: ClipInputs, camera: Camera, cfg: VideoConfig,
                  progress: Callable[[int, int], None] | None = None, crops: "_Crops | None" = None
                  ) -> tuple[HandParams, HandParams, np.ndarray]:
    """Per-frame keypoint fits, then the clip fit (one shape, smooth joints; with `crops`, also
    the hand masks of `mask_frames` frames per step, occlusion-aware).

    Returns (params (T,) of the single-frame fits, interpolated between them; clip params (T,);
    (T,) bool: frames with enough keypoints).
    """
    T = inputs.num_frames
    dev = hand.device
    have = (inputs.confidence > 0).sum(1) >= MIN_KEYPOINTS
    if not have.any():
        raise ValueError(f"no frame has {MIN_KEYPOINTS} or more hand keypoints: nothing to fit the hand to")
    fits: list[HandParams | None] = [None] * T
    with_kp = np.flatnonzero(have)
    anchors = sorted(set(with_kp[:: max(cfg.fit_every, 1)].tolist()) | {int(with_kp[-1])})
    fitted = np.zeros(T, bool)
    fitted[anchors] = True
    for n, t in enumerate(anchors):
        try:
            fits[t] = fit_to_2d_keypoints(hand, torch.as_tensor(inputs.keypoints[t]), camera,
                                          torch.as_tensor(inputs.confidence[t]), iters=cfg.hand_iters).params
        except ValueError:
            fitted[t] = False
        if progress:
            progress(n + 1, len(anchors) + cfg.smooth_steps)
    if not fitted.any():
        raise ValueError("the hand fit diverged on every frame: check the keypoints")
    ok = [f for f in fits if f is not None]
    arrays = {k: np.stack([getattr(f, k)[0].detach().cpu().numpy() if f is not None else np.zeros(getattr(ok[0], k).shape[1:], np.float32)
                           for f in fits]) for k in HandParams.TENSORS}
    # rotations interpolated as 6D (continuous), then re-orthonormalised by rot6d_to_matrix
    rot6 = np.stack([matrix_to_rot6d(axis_angle_to_matrix(torch.as_tensor(a)[None]))[0].numpy() for a in arrays["global_orient"]])
    rot6 = _interp_missing(rot6, fitted)
    arrays = {k: _interp_missing(v, fitted) for k, v in arrays.items()}
    tt = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=dev)  # noqa: E731
    go0 = matrix_to_axis_angle(rot6d_to_matrix(tt(rot6)))
    per_frame = HandParams(go0, tt(arrays["hand_pose"]), tt(arrays["betas"]), tt(arrays["transl"]), hand.side)

    prior = PosePrior.from_hand(hand).to(dev)
    uv = tt(inputs.keypoints)
    w = tt(inputs.confidence) * tt(have)[:, None]
    uv = torch.nan_to_num(uv)
    size = torch.stack([(uv[t][w[t] > 0].amax(0) - uv[t][w[t] > 0].amin(0)).norm() if have[t] else torch.zeros(())
                        for t in range(T)])
    size = torch.where(size > 0, size, size[size > 0].mean()).clamp_min(1.0)
    d6 = torch.nn.Parameter(tt(rot6))
    tr = torch.nn.Parameter(per_frame.transl.clone())
    q = torch.nn.Parameter(prior.to_anatomical(per_frame.hand_pose).clone())
    betas = torch.nn.Parameter(per_frame.betas[torch.as_tensor(fitted)].mean(0, keepdim=True).clone())
    opt = torch.optim.Adam([{"params": [d6], "lr": 0.01}, {"params": [tr], "lr": 0.002},
                            {"params": [q], "lr": 0.01}, {"params": [betas], "lr": 0.01}])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.1 ** (i / max(cfg.smooth_steps, 1)))
    use_masks = crops is not None and cfg.w_hand_mask > 0
    if use_masks:
        ras = SoftRasterizer(crops.S, crops.S, sigma=0.5, cull_back=True, silhouette="distance")
        shown = torch.nonzero(crops.hand.flatten(1).amax(1) > 0.5)[:, 0]
        faces = hand.faces
    for it in range(cfg.smooth_steps):
        hp = prior.from_anatomical(q)
        out = hand(global_orient=matrix_to_axis_angle(rot6d_to_matrix(d6)), hand_pose=hp, betas=betas.expand(T, -1), transl=tr)
        mask_term = out.vertices.new_zeros(())
        if use_masks and len(shown):
            g = torch_generator(cfg.seed, "video-hand-masks", it)
            pick = shown[torch.randperm(len(shown), generator=g)[: cfg.hand_mask_frames].to(shown.device)]
            v = out.vertices[pick]
            pix = torch.stack([crops.cams[int(t)].project(v[i]) for i, t in enumerate(pick)])
            sil = ras(pix, v[..., 2], faces).silhouette
            mask_term = cfg.w_hand_mask * (1 - soft_iou(sil, crops.hand[pick], crops.valid_hand[pick])).mean()
        err = (((camera.project(out.keypoints) - uv) / size[:, None, None]) ** 2).sum(-1)
        data = (w * err).sum() / w.sum().clamp_min(1) * 100
        j = out.keypoints * 100  # cm
        accel = ((j[2:] - 2 * j[1:-1] + j[:-2]) ** 2).sum(-1).mean() if T > 2 else j.new_zeros(())
        reg = 2e-3 * (q ** 2).sum((1, 2)).mean() + prior.limit_violation(hp).mean() + 1e-2 * (betas ** 2).sum()
        loss = data + cfg.w_joint_accel * accel + reg + mask_term
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if progress:
            progress(len(anchors) + it + 1, len(anchors) + cfg.smooth_steps)
    with torch.no_grad():
        clip = HandParams(matrix_to_axis_angle(rot6d_to_matrix(d6)), prior.from_anatomical(q), betas.expand(T, -1).clone(),
                          tr.detach().clone(), hand.side)
    return per_frame.detach(), clip.detach(), have


# -- the object: SDF grid, per-frame hand-relative poses, ray-marched silhouettes ----------------
class _Crops:
    """Per frame: a square crop around the hand and object masks, its camera, targets and weights."""

    def __init__(self, inputs: ClipInputs, camera: Camera, S: int, dev):
        self.S = S
        T = inputs.num_frames
        H, W = inputs.frames.shape[1:3]
        obj, hnd, ins, cams = [], [], [], []
        for t in range(T):
            both = inputs.hand_masks[t] | inputs.object_masks[t]
            if not both.any():
                both = np.ones((H, W), bool)
            x0, y0, side = square_window(both)
            inside = crop_inside(H, W, x0, y0, side, S)
            crop = lambda m: np.clip(np.where(inside > 0, crop_mask(m.astype(np.float32), x0, y0, side, S) / np.maximum(inside, 1e-6), 0), 0, 1)  # noqa: E731
            obj.append(crop(inputs.object_masks[t]))
            hnd.append(crop(inputs.hand_masks[t]))
            ins.append(inside)
            cams.append(camera.crop(x0, y0, side, S))
        tt = lambda a: torch.as_tensor(np.stack(a), dtype=torch.float32, device=dev)  # noqa: E731
        self.obj, self.hand, inside = tt(obj), tt(hnd), tt(ins)
        self.cams = cams
        hm, om = (self.hand > 0.5).float(), (self.obj > 0.5).float()
        self.valid = inside * (1.0 - hm * (1.0 - om))
        """(T, S, S): pixels inside the image and not where the hand hides the object."""
        self.valid_hand = inside * (1.0 - om * (1.0 - hm))
        """(T, S, S): pixels inside the image and not where the object hides the hand."""
        ys, xs = torch.meshgrid(torch.arange(S, device=dev, dtype=torch.float32), torch.arange(S, device=dev, dtype=torch.float32), indexing="ij")
        uv = torch.stack([xs, ys], -1).reshape(-1, 2)
        self.dirs = torch.stack([c.rays(uv) for c in cams])  # (T, S*S, 3)
        self.pixel_m = torch.tensor([1.0 / c.fx for c in cams], device=dev)
        """(T,) metric size of one crop pixel at depth 1 m."""
        self.has_object = (self.obj > 0.5).flatten(1).any(1)


class ObjectModel(torch.nn.Module):
    """One SDF grid + one scale + per-frame poses relative to the hand.

    x_h = s R_t x_o + t_t  with R_t = R_base dR_t, t_t = t_base + dt_t, and the SDF in u = uTo x_o
    (x_o: the template's frame, metres).
    """

    def __init__(self, grid: np.ndarray, uTo: np.ndarray, hTo: np.ndarray, T: int, shape_res: int = 16):
        super().__init__()
        f = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
        self.register_buffer("grid0", f(grid)[None, None].clone())
        self.delta = torch.nn.Parameter(torch.zeros(1, 1, shape_res, shape_res, shape_res))
        """The shape's change: a coarse grid, upsampled (trilinear) onto the initial one, so that
        the masks reshape the object smoothly instead of carving voxels."""
        self.register_buffer("uTo", f(uTo))
        s = float(np.cbrt(abs(np.linalg.det(hTo[:3, :3]))))
        self.log_s = torch.nn.Parameter(torch.tensor(np.log(s), dtype=torch.float32))
        self.base6d = torch.nn.Parameter(matrix_to_rot6d(f(hTo[:3, :3] / s)[None])[0].clone())
        self.base_t = torch.nn.Parameter(f(hTo[:3, 3]).clone())
        self.d_rot = torch.nn.Parameter(torch.zeros(T, 3))
        self.d_t = torch.nn.Parameter(torch.zeros(T, 3))

    @property
    def grid(self) -> torch.Tensor:
        """(1, 1, R, R, R) the current signed distances, u units."""
        R = self.grid0.shape[-1]
        return self.grid0 + torch.nn.functional.interpolate(self.delta, size=(R, R, R), mode="trilinear", align_corners=True)

    @property
    def u_per_m(self) -> torch.Tensor:
        return transform_scale(self.uTo[None])[0]

    def hTo(self) -> torch.Tensor:
        """(T, 4, 4) similarity: template frame o -> hand frame h, per frame."""
        R = rot6d_to_matrix(self.base6d[None]) @ axis_angle_to_matrix(self.d_rot)
        return make_transform(R, self.base_t + self.d_t, self.log_s.exp().expand(R.shape[0]))

    def uTc(self, cTh: torch.Tensor) -> torch.Tensor:
        """(T, 4, 4): camera-frame points -> the grid's u frame."""
        return self.uTo[None] @ invert_transform(cTh @ self.hTo())

    def sdf_c(self, points_c: torch.Tensor, uTc: torch.Tensor) -> torch.Tensor:
        """(B, N) metric signed distances of camera points (B, N, 3) under uTc (B, 4, 4)."""
        return query_grid(self.grid, apply_transform(uTc, points_c)) / transform_scale(uTc)[:, None]

    def regularity(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Eikonal (|grad d| = 1 where |d| < 0.3 u) and Laplacian terms of the grid."""
        g = self.grid[0, 0]
        h = 2.0 / (g.shape[0] - 1)
        gx = (g[2:, 1:-1, 1:-1] - g[:-2, 1:-1, 1:-1]) / (2 * h)
        gy = (g[1:-1, 2:, 1:-1] - g[1:-1, :-2, 1:-1]) / (2 * h)
        gz = (g[1:-1, 1:-1, 2:] - g[1:-1, 1:-1, :-2]) / (2 * h)
        c = g[1:-1, 1:-1, 1:-1]
        band = (c.detach().abs() < 0.3).float()
        eik = (band * ((gx ** 2 + gy ** 2 + gz ** 2 + 1e-9).sqrt() - 1) ** 2).sum() / band.sum().clamp_min(1)
        lap = (g[2:, 1:-1, 1:-1] + g[:-2, 1:-1, 1:-1] + g[1:-1, 2:, 1:-1] + g[1:-1, :-2, 1:-1] + g[1:-1, 1:-1, 2:]
               + g[1:-1, 1:-1, :-2] - 6 * c)
        return eik, (band * lap ** 2).sum() / band.sum().clamp_min(1)

    @torch.no_grad()
    def mesh(self) -> trimesh.Trimesh:
        """The zero level set in the template frame o, scaled by s (metres)."""
        from skimage.measure import marching_cubes

        g = self.grid[0, 0].detach().cpu().numpy()
        if not (g.min() < 0 < g.max()):
            raise ValueError("the object's distance grid has no surface left: lower lr_grid or w_sds")
        R = g.shape[0]
        v, f, _, _ = marching_cubes(g, 0.0, spacing=(2 / (R - 1),) * 3)
        v = v - 1.0  # [i, j, k] = (x_i, y_j, z_k) on linspace(-1, 1)
        oTu = np.linalg.inv(self.uTo.cpu().double().numpy())
        v_o = v @ oTu[:3, :3].T + oTu[:3, 3]
        m = trimesh.Trimesh(v_o * float(self.log_s.exp()), f, process=True)  # outward faces: negative inside
        parts = m.split(only_watertight=False)
        if len(parts) > 1:  # keep the largest piece: specks of the grid are not the object
            m = max(parts, key=lambda p: len(p.faces))
        return m

    @torch.no_grad()
    def output_poses(self, cTh: torch.Tensor) -> np.ndarray:
        """(T, 4, 4) rigid cTo' for the output mesh (template frame scaled by s)."""
        hTo = self.hTo()
        s = self.log_s.exp()
        rigid = hTo.clone()
        rigid[:, :3, :3] = hTo[:, :3, :3] / s
        return (cTh @ rigid).cpu().double().numpy()


def render_silhouettes(obj: ObjectModel, crops: _Crops, uTc: torch.Tensor, frames: torch.Tensor, sigma: float,
                       samples: int) -> torch.Tensor:
    """(F, S, S) soft object silhouettes of the given frames (indices into the clip)."""
    S = crops.S
    dev = uTc.device
    Fn = len(frames)
    M = uTc[frames]
    cTu = invert_transform(M)
    centre = cTu[:, :3, 3]  # u origin in camera
    radius = 1.0 / transform_scale(M)  # the unit ball's radius in metres
    dirs = crops.dirs[frames]  # (F, P, 3)
    with torch.no_grad():
        along = (dirs * centre[:, None]).sum(-1)  # (F, P)
        rho2 = (centre ** 2).sum(-1)[:, None] - along ** 2
        half = (radius[:, None] ** 2 - rho2).clamp_min(0).sqrt()
        hit = (half > 0) & (along - half > 1e-3)
    sil = torch.zeros(Fn, S * S, device=dev)
    fi, pi = torch.nonzero(hit, as_tuple=True)
    if len(fi) == 0:
        return sil.reshape(Fn, S, S)
    with torch.no_grad():
        lo, hi = along[fi, pi] - half[fi, pi], along[fi, pi] + half[fi, pi]
        s = (torch.arange(samples, device=dev, dtype=torch.float32) + 0.5) / samples
        depth = lo[:, None] + (hi - lo)[:, None] * s  # (R, samples)
    Mr = M[fi]
    ray = dirs[fi, pi]
    with torch.no_grad():  # coarse pass: where along each ray the distance is smallest
        d = _ray_distances(obj, Mr, ray, depth)
        step = (hi - lo) / samples
        near = depth.gather(1, d.argmin(1, keepdim=True))
        fine = near + step[:, None] * torch.linspace(-1.0, 1.0, FINE_SAMPLES, device=dev)  # +- one coarse step
    d = _ray_distances(obj, Mr, ray, fine)
    dmin, arg = d.min(1)
    z = fine.gather(1, arg[:, None])[:, 0] * ray[:, 2]
    tau = sigma * crops.pixel_m[frames][fi] * z
    sil = sil.index_put((fi, pi), torch.sigmoid(-dmin / tau))
    return sil.reshape(Fn, S, S)


def _ray_distances(obj: ObjectModel, Mr: torch.Tensor, ray: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """(R, K) metric distances at K depths (R, K) along rays (R, 3) from the camera, grid under Mr (R, 4, 4)."""
    pts = ray[:, None] * depth[..., None]
    pu = torch.einsum("rij,rsj->rsi", Mr[:, :3, :3], pts) + Mr[:, None, :3, 3]
    return query_grid(obj.grid, pu.reshape(1, -1, 3)).reshape(depth.shape) / transform_scale(Mr)[:, None]


def _mask_loss(sil: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    l1 = ((sil - target).abs() * valid).flatten(1).sum(1) / valid.flatten(1).sum(1).clamp_min(1)
    return l1 + (1 - soft_iou(sil, target, valid))


@dataclass
class _Hand:
    """The clip's hand, fixed during the object stage."""

    verts: torch.Tensor
    """(T, V, 3) camera."""
    cTh: torch.Tensor
    """(T, 4, 4)."""
    field: torch.Tensor
    """(T, 20, 16, 16, 16) skeletal field in the grid frame n."""
    hTn: torch.Tensor
    """(T, 4, 4)."""


def _hand_state(hand: HandModel, params: HandParams) -> _Hand:
    with torch.no_grad():
        out = hand(params)
        cTh = hand.frame_from_hand(params)
        local = HandParams(torch.zeros_like(params.global_orient), params.hand_pose, params.betas, torch.zeros_like(params.transl), params.side)
        kp_h = hand(local).keypoints
        nTh = nTh_from_joints(hand.rest_joints(params.betas))
        fld = skeletal_field(apply_transform(nTh, kp_h))
    return _Hand(out.vertices, cTh, fld, invert_transform(nTh))


# -- stage 2: initial object from the key frame ----------------------------------------------------
def key_frame(inputs: ClipInputs, have: np.ndarray) -> int:
    """The frame with a hand fit whose object mask is largest."""
    return key_frames(inputs, have, 1)[0]


def key_frames(inputs: ClipInputs, have: np.ndarray, n: int) -> list[int]:
    """Up to n frames for the initial object: the largest object mask among frames with keypoints
    first, then the largest of each further equal part of the clip (different views)."""
    area = inputs.object_masks.reshape(inputs.num_frames, -1).sum(1) * have
    first = int(np.argmax(area))
    picked = [first]
    for part in np.array_split(np.arange(inputs.num_frames), n):
        if len(picked) == n or not len(part) or first in part:
            continue
        best = int(part[np.argmax(area[part])])
        if area[best] > 0:
            picked.append(best)
    return picked


@torch.no_grad()
def clip_mask_iou(obj: "ObjectModel", hnd: "_Hand", crops: "_Crops", cfg: VideoConfig) -> float:
    """Mean (over frames showing the object) soft IoU of the object's silhouettes with its masks."""
    frames = torch.nonzero(crops.has_object)[:, 0]
    sil = render_silhouettes(obj, crops, obj.uTc(hnd.cTh), frames, cfg.sigma, cfg.ray_samples)
    return float(soft_iou(sil, crops.obj[frames], crops.valid[frames]).mean())


def initial_object(hand: HandModel, inputs: ClipInputs, camera: Camera, mesh: trimesh.Trimesh, template: bool,
                   k: int, cfg: VideoConfig) -> np.ndarray:
    """hTo (4, 4) similarity: the template placed by the single-image pipeline on frame k,
    relative to the hand that pipeline fitted on frame k (its scale about the camera undone);
    the clip's hands then carry it to every frame."""
    rc = ReconstructConfig(side=cfg.side, rotations=cfg.init_rotations, refine_steps=cfg.init_refine_steps, top_k=2,
                           seed=cfg.seed, device=cfg.device)
    res = reconstruct_image(inputs.frame(k), mesh, camera, rc, template=template, hand=hand)
    st = res.final
    c = st.hand_scale
    cTo = np.eye(4)
    cTo[:3, :3], cTo[:3, 3] = st.s / c * st.R, st.t / c
    with torch.no_grad():
        cTh = hand.frame_from_hand(st.hand.to(hand.device))[0].cpu().double().numpy()
    return np.linalg.inv(cTh) @ cTo


# -- stage 3: the object over the clip --------------------------------------------------------------
def optimise_object(obj: ObjectModel, hnd: _Hand, crops: _Crops, cfg: VideoConfig, zone_index: torch.Tensor, prior, category: str,
                    progress: Callable[[int, int], None] | None = None, log: list | None = None) -> None:
    T = hnd.cTh.shape[0]
    dev = hnd.cTh.device
    opt = torch.optim.Adam([{"params": [obj.delta], "lr": cfg.lr_grid}, {"params": [obj.base6d, obj.d_rot], "lr": cfg.lr_pose},
                            {"params": [obj.base_t, obj.d_t], "lr": cfg.lr_pose * 0.05}, {"params": [obj.log_s], "lr": cfg.lr_scale}])
    decay = lambda i: 0.1 ** (i / max(cfg.steps, 1))  # noqa: E731
    start = int(cfg.shape_start * cfg.steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, [lambda i: decay(i) * (i >= start), decay, decay, decay])
    mask_frames = torch.nonzero(crops.has_object)[:, 0]
    with torch.no_grad():
        zd0 = zone_distances(obj.sdf_c(hnd.verts, obj.uTc(hnd.cTh)), zone_index)
        near = (zd0 < cfg.contact_radius_m).float()  # (T, Z)
    for it in range(cfg.steps):
        uTc = obj.uTc(hnd.cTh)
        terms = {}
        if it % 2 == 0:
            sil = render_silhouettes(obj, crops, uTc, mask_frames, cfg.sigma, cfg.ray_samples)
            terms["mask"] = cfg.w_mask * _mask_loss(sil, crops.obj[mask_frames], crops.valid[mask_frames]).mean()
            d = obj.sdf_c(hnd.verts, uTc) * 100  # cm
            zd = zone_distances(d, zone_index).clamp_min(0)
            terms["contact"] = cfg.w_contact * ((near * zd).sum(1) / near.sum(1).clamp_min(1)).mean()
            depth = (-d).clamp_min(0)
            terms["penetration"] = cfg.w_penetration * (depth.sum(1) / (depth > 0).float().sum(1).clamp_min(1)).mean()
            if T > 1:
                dr, dt = obj.d_rot, obj.d_t / 0.05
                terms["temporal"] = cfg.w_temporal * (((dr[1:] - dr[:-1]) ** 2).sum(-1).mean() + ((dt[1:] - dt[:-1]) ** 2).sum(-1).mean())
            terms["delta"] = cfg.w_delta * ((obj.d_rot ** 2).sum(-1).mean() + ((obj.d_t / 0.05) ** 2).sum(-1).mean())
            terms["scale"] = cfg.w_scale * obj.log_s ** 2
        else:
            eik, lap = obj.regularity()
            terms["eikonal"] = cfg.w_eikonal * eik
            terms["laplacian"] = cfg.w_laplacian * lap
            if prior is not None:
                g = torch_generator(cfg.seed, "video-sds-frames", it)
                pick = torch.randperm(T, generator=g)[: cfg.sds_frames].to(dev)
                uTn = uTc[pick] @ hnd.cTh[pick] @ hnd.hTn[pick]
                grid_n = object_channel(obj.grid, uTn, GRID_RES)
                target = sds_targets(prior, grid_n.detach(), hnd.field[pick], [category] * len(pick),
                                     [(cfg.seed, "video-sds", int(t), it) for t in pick], cfg.guidance)
                terms["sds"] = cfg.w_sds * (target.weight * multiscale_mse(grid_n, target.object_grid, cfg.guidance.scales)).mean()
        loss = sum(terms.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the object loss is not finite at iteration {it}")
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log is not None:
            log.append({"iteration": it, **{k: round(float(v.detach()), 6) for k, v in terms.items()}})
        if progress:
            progress(it + 1, cfg.steps)


@torch.no_grad()
def clip_metrics(obj: ObjectModel, hnd: _Hand, crops: _Crops, cfg: VideoConfig, keypoints: torch.Tensor | None = None,
                 inputs: ClipInputs | None = None, camera: Camera | None = None, hand: HandModel | None = None) -> dict:
    uTc = obj.uTc(hnd.cTh)
    frames = torch.nonzero(crops.has_object)[:, 0]
    sil = render_silhouettes(obj, crops, uTc, frames, cfg.sigma, cfg.ray_samples)
    iou = soft_iou((sil > 0.5).float(), (crops.obj[frames] > 0.5).float(), crops.valid[frames])
    d = obj.sdf_c(hnd.verts, uTc)
    m = {"object_iou": float(iou.mean()), "max_penetration_mm": float((-d).clamp_min(0).amax(1).mean() * 1000),
         "min_distance_mm": float(d.amin(1).clamp_min(0).mean() * 1000), "scale": float(obj.log_s.exp())}
    return m


def _stage(hand: HandModel, params: HandParams, cTo: np.ndarray, mesh: trimesh.Trimesh, metrics: dict, t0: float) -> StageResult:
    frames = [FrameState(params[t].detach().to("cpu"), cTo[t]) for t in range(params.batch_size)]
    return StageResult(frames, mesh, metrics, time.perf_counter() - t0)


def reconstruct_clip(inputs: ClipInputs, mesh: trimesh.Trimesh, camera: Camera, category: str, cfg: VideoConfig | None = None,
                     template: bool = False, hand: HandModel | None = None, prior=None,
                     progress: Callable[[str, int, int], None] | None = None) -> VideoResult:
    """Reconstruct the hand and the object of a clip.

    Args:
        mesh: the initial object shape (a category template, or a metric template when `template`).
        prior: the G-HOP InteractionPrior (needed when cfg.use_prior).
        progress: callback(stage, done, total).
    """
    cfg = cfg or VideoConfig()
    dev = torch.device(cfg.device)
    hand = (hand or HandModel(cfg.side)).to(dev)
    tick = progress or (lambda *a: None)
    if cfg.use_prior and prior is None:
        raise ValueError("use_prior needs the prior")
    stages: dict[str, StageResult] = {}
    T = inputs.num_frames
    crops = _Crops(inputs, camera, cfg.render_size, dev)
    if not bool(crops.has_object.any()):
        raise ValueError("the object mask is empty on every frame")
    md = hand.metadata
    zones = [np.asarray(z) for z in md.contact_zones.values() if len(z)]
    width = max(len(z) for z in zones)
    zone_index = torch.as_tensor(np.stack([np.resize(z, width) for z in zones]), device=dev)

    # 1. hand
    t0 = time.perf_counter()
    _, params, have = fit_clip_hand(hand, inputs, camera, cfg, lambda d, n: tick("hand", d, n), crops)
    hnd = _hand_state(hand, params)
    # 2. initial object from the key frame
    t1 = time.perf_counter()
    tick("init", 0, 1)
    grid, uTo = canonical_sdf(mesh, cfg.grid_res, truncation_m=None)
    best = None
    candidates = key_frames(inputs, have, cfg.init_frames)
    for n, k in enumerate(candidates):  # the single-image start of each, kept if it explains the whole clip best
        cand = ObjectModel(grid, uTo, initial_object(hand, inputs, camera, mesh, template, k, cfg), T, cfg.shape_res).to(dev)
        iou = clip_mask_iou(cand, hnd, crops, cfg)
        if best is None or iou > best[0]:
            best = (iou, k, cand)
        tick("init", n + 1, len(candidates))
    _, k, obj = best
    m_init = clip_metrics(obj, hnd, crops, cfg)
    mesh0 = obj.mesh()
    # the hand stage has no object yet: it is shown with the initial one
    stages["hand"] = _stage(hand, params, obj.output_poses(hnd.cTh), mesh0, {"frames_with_keypoints": int(have.sum())}, t0)
    stages["hand"].seconds = t1 - t0
    stages["init"] = _stage(hand, params, obj.output_poses(hnd.cTh), mesh0, {**m_init, "key_frame": k}, t1)
    # 3. the object over the clip
    t2 = time.perf_counter()
    log: list[dict] = []
    optimise_object(obj, hnd, crops, cfg, zone_index, prior if cfg.use_prior else None, category,
                    lambda d, n: tick("object", d, n), log)
    stages["object"] = _stage(hand, params, obj.output_poses(hnd.cTh), obj.mesh(), clip_metrics(obj, hnd, crops, cfg), t2)
    return VideoResult(stages, camera, category, k, log)


def hand_vertices(hand: HandModel, params: HandParams) -> np.ndarray:
    with torch.no_grad():
        return hand(params.to(hand.device)).vertices.cpu().double().numpy()


def hand_keypoints(hand: HandModel, params: HandParams) -> np.ndarray:
    with torch.no_grad():
        return hand(params.to(hand.device)).keypoints.cpu().double().numpy()
