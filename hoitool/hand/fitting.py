"""Fitting the hand model to 3D keypoints (inverse kinematics) with L-BFGS.

Used to recover a pose from a skeletal distance field (through its keypoints) and, later, to
lift 2D detections. Works in any frame: the fit optimises hand_pose, and optionally
global_orient and transl, with a joint-limit prior in anatomical angles.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hoitool.hand.model import HandModel, HandParams
from hoitool.hand.prior import PosePrior


@dataclass
class FitResult:
    params: HandParams
    """Fitted parameters (detached)."""
    keypoint_error: torch.Tensor
    """(B,) mean Euclidean keypoint error after the fit, metres."""


def fit_to_keypoints(
    hand: HandModel,
    target: torch.Tensor,
    init: HandParams | None = None,
    weights: torch.Tensor | None = None,
    *,
    optimise_global: bool = False,
    prior: PosePrior | None = None,
    prior_weight: float = 1e-4,
    limit_weight: float = 1e-2,
    iters: int = 60,
) -> FitResult:
    """Fit hand parameters so the 21 keypoints match `target` (B, 21, 3), metres.

    Args:
        init: starting parameters (their betas are kept); zeros if None.
        weights: (B, 21) per-keypoint weights (e.g. 0 for missing keypoints).
        optimise_global: also fit global_orient and transl (else they stay as in init).
        prior_weight: weight of the squared anatomical angles (keeps unobserved joints calm).
        limit_weight: weight of the joint-limit violation.
        iters: L-BFGS iterations (strong Wolfe line search).
    """
    B = target.shape[0]
    dev, dt = target.device, target.dtype
    p0 = (init or HandParams.zeros(B, hand.side, device=dev, dtype=dt)).to(dev).detach()
    prior = prior or PosePrior.from_hand(hand).to(dev)
    w = torch.ones(B, 21, device=dev, dtype=dt) if weights is None else weights.to(dev, dt)
    q = prior.to_anatomical(p0.hand_pose).contiguous().clone().requires_grad_(True)
    go = p0.global_orient.clone().requires_grad_(optimise_global)
    tr = p0.transl.clone().requires_grad_(optimise_global)
    variables = [q] + ([go, tr] if optimise_global else [])
    opt = torch.optim.LBFGS(variables, lr=1.0, max_iter=iters, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)
    scale = 1e2  # centimetres inside the loss keep the curvature well-conditioned

    def closure():
        opt.zero_grad()
        hp = prior.from_anatomical(q)
        kp = hand(global_orient=go, hand_pose=hp, betas=p0.betas, transl=tr).keypoints
        err = (((kp - target) * scale) ** 2).sum(-1)
        loss = (w * err).sum() / w.sum().clamp_min(1) * 21 / B
        loss = loss + prior_weight * (q ** 2).sum() / B * scale + limit_weight * prior.limit_violation(hp).sum() / B * scale**2
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        hp = prior.from_anatomical(q)
        params = HandParams(go.detach(), hp.detach(), p0.betas, tr.detach(), hand.side)
        kp = hand(params).keypoints
        err = ((kp - target).norm(dim=-1) * w).sum(1) / w.sum(1).clamp_min(1)
    return FitResult(params, err)


#: Keypoints of the palm (wrist, thumb CMC, index ... little MCP), nearly rigid and coplanar.
PALM_KEYPOINTS = [0, 1, 5, 9, 13, 17]


@dataclass
class Fit2DResult:
    params: HandParams
    """Fitted parameters in the camera frame (detached), one per image."""
    reprojection_px: torch.Tensor
    """(B,) confidence-weighted mean keypoint reprojection error, pixels."""


def _palm_pnp(hand: HandModel, uv: torch.Tensor, camera) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Candidate (global_orient (3,), transl (3,)) of the rest hand from the palm keypoints of
    one image, by planar PnP (IPPE gives the two mirror-ambiguous solutions)."""
    import cv2
    import numpy as np

    kp = hand(HandParams.zeros(1, hand.side)).keypoints[0].detach().cpu().numpy().astype(np.float64)
    J0 = hand.rest_joints()[0, 0].detach().cpu().numpy().astype(np.float64)
    obj = kp[PALM_KEYPOINTS]
    img = uv[PALM_KEYPOINTS].detach().cpu().numpy().astype(np.float64)
    K = camera.K(dtype=torch.float64).numpy()
    out = []
    for flag in (cv2.SOLVEPNP_IPPE, cv2.SOLVEPNP_SQPNP):
        try:
            n, rvecs, tvecs, _ = cv2.solvePnPGeneric(obj, img, K, None, flags=flag)
        except cv2.error:
            continue
        for r, t in zip(rvecs[:n], tvecs[:n]):
            R = cv2.Rodrigues(r)[0]
            t = t.reshape(3)
            if t[2] <= 0:
                continue
            transl = t - J0 + R @ J0
            out.append((torch.as_tensor(r.reshape(3), dtype=torch.float32), torch.as_tensor(transl, dtype=torch.float32)))
    if not out:  # degenerate detections: face the camera at a plausible distance
        z = camera.fx * 0.09 / max(float((uv.amax(0) - uv.amin(0)).max()), 1.0)
        c = uv.mean(0)
        out.append((torch.tensor([3.1416, 0.0, 0.0]), torch.tensor([(float(c[0]) - camera.cx) * z / camera.fx, (float(c[1]) - camera.cy) * z / camera.fy, z])))
    return out


def fit_to_2d_keypoints(
    hand: HandModel,
    uv: torch.Tensor,
    camera,
    confidence: torch.Tensor | None = None,
    *,
    iters: int = 150,
    prior: PosePrior | None = None,
    pose_weight: float = 2e-3,
    shape_weight: float = 1e-2,
    limit_weight: float = 1.0,
) -> Fit2DResult:
    """Fit the hand model to 21 detected 2D keypoints (OpenPose order) of one image under a
    perspective camera: pose, shape, rotation and translation in the camera frame (OpenCV).

    Starts from planar PnP of the palm keypoints (both mirror solutions), fits each with
    L-BFGS on the confidence-weighted squared reprojection error (in units of the hand's
    2D size, so the weights do not depend on resolution) plus a pose prior (squared
    anatomical angles and joint limits) and a shape prior (squared betas), and keeps the
    better. The absolute depth comes from the shape prior (an average-sized hand).

    Args:
        uv: (21, 2) pixels. confidence: (21,) in [0, 1] (0 = missing), ones if None.
        camera: hoitool.geometry.camera.Camera.
    """
    uv = uv.detach().float().cpu()
    w = torch.ones(21) if confidence is None else confidence.detach().float().cpu().clamp(0, 1)
    prior = prior or PosePrior.from_hand(hand).to("cpu")
    size = float((uv[w > 0].amax(0) - uv[w > 0].amin(0)).norm()) or 1.0
    inits = _palm_pnp(hand, uv, camera)
    # every PnP solution with a flat and with a half-closed hand: L-BFGS keeps to its basin
    curled = prior.to_anatomical(prior.sample(1, torch.Generator().manual_seed(0), closure=torch.tensor([0.5])))[0]
    starts = [(g, t, q0) for g, t in inits for q0 in (torch.zeros(15, 3), curled)]
    def losses(go, tr, q, betas):
        hp = prior.from_anatomical(q)
        kp = hand(global_orient=go, hand_pose=hp, betas=betas, transl=tr).keypoints
        err = (((camera.project(kp) - uv) / size) ** 2).sum(-1)
        data = (w * err).sum(-1) / w.sum().clamp_min(1) * 100
        reg = pose_weight * (q ** 2).sum((1, 2)) + limit_weight * prior.limit_violation(hp) + shape_weight * (betas ** 2).sum(-1)
        return data + reg, kp

    best = None
    for g0, t0, q0 in starts:  # each start has its own line search
        v = [g0[None].clone().requires_grad_(True), t0[None].clone().requires_grad_(True),
             q0[None].clone().requires_grad_(True), torch.zeros(1, 10, requires_grad=True)]
        opt = torch.optim.LBFGS(v, lr=1.0, max_iter=iters, line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12)

        def closure():
            opt.zero_grad()
            loss = losses(*v)[0].sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            total, kp = losses(*v)
            if best is None or total.item() < best[0]:
                px = ((camera.project(kp) - uv).norm(dim=-1) * w).sum(-1) / w.sum().clamp_min(1)
                best = (total.item(), HandParams(v[0].detach(), prior.from_anatomical(v[2]).detach(), v[3].detach(), v[1].detach(), hand.side), px)
    return Fit2DResult(best[1], best[2])
