"""Fitting the hand model to 3D keypoints (inverse kinematics) and to 2D detections, with L-BFGS.

The 3D fit gives the field -> pose inverse (hand/field.py) its start and works in any frame:
it optimises hand_pose, and optionally global_orient and transl, with a joint-limit prior in
anatomical angles. Each hand (and each start of the 2D fit) has its own L-BFGS run. Tensors
are built on the hand model's device.
"""

from __future__ import annotations

import math
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

    Each hand gets its own L-BFGS run (its own curvature pairs and line search), so hand i's
    result depends only on its own target, init and weights, not on the rest of the batch.
    Tensors live on the hand model's device; the result is there too.

    Args:
        init: starting parameters (their betas are kept); zeros if None.
        weights: (B, 21) per-keypoint weights (e.g. 0 for missing keypoints).
        optimise_global: also fit global_orient and transl (else they stay as in init).
        prior_weight: weight of the squared anatomical angles (keeps unobserved joints calm).
        limit_weight: weight of the joint-limit violation.
        iters: L-BFGS iterations per hand (strong Wolfe line search).
    """
    B = target.shape[0]
    dev, dt = hand.device, torch.float32
    target = target.detach().to(dev, dt)
    p0 = (init or HandParams.zeros(B, hand.side, device=dev, dtype=dt)).to(dev, dt).detach()
    prior = (prior or PosePrior.from_hand(hand)).to(dev)
    w = torch.ones(B, 21, device=dev, dtype=dt) if weights is None else weights.to(dev, dt)
    scale = 1e2  # centimetres inside the loss keep the curvature well-conditioned
    q0 = prior.to_anatomical(p0.hand_pose)
    fitted = []
    for i in range(B):
        q = q0[i:i + 1].contiguous().clone().requires_grad_(True)
        go = p0.global_orient[i:i + 1].clone().requires_grad_(optimise_global)
        tr = p0.transl[i:i + 1].clone().requires_grad_(optimise_global)
        betas, tgt, wi = p0.betas[i:i + 1], target[i:i + 1], w[i:i + 1]
        variables = [q] + ([go, tr] if optimise_global else [])
        opt = torch.optim.LBFGS(variables, lr=1.0, max_iter=iters, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-9, tolerance_change=1e-12)

        def closure():
            opt.zero_grad()
            hp = prior.from_anatomical(q)
            kp = hand(global_orient=go, hand_pose=hp, betas=betas, transl=tr).keypoints
            err = (((kp - tgt) * scale) ** 2).sum(-1)
            loss = (wi * err).sum() / wi.sum().clamp_min(1) * 21
            loss = loss + prior_weight * (q ** 2).sum() * scale + limit_weight * prior.limit_violation(hp).sum() * scale**2
            loss.backward()
            return loss

        opt.step(closure)
        fitted.append((go.detach(), prior.from_anatomical(q).detach(), tr.detach()))
    with torch.no_grad():
        go, hp, tr = (torch.cat(t) for t in zip(*fitted))
        params = HandParams(go, hp, p0.betas, tr, hand.side)
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


def _rest_palm(hand: HandModel):
    """Rest keypoints (21, 3) of the hand model in h (float64 numpy), the same with the palm
    keypoints moved onto their least-squares plane (they are 1.8 mm RMS off it on the open
    hand, and IPPE wants a plane), the unit palm normal (3,) and the wrist joint J0 (3,)."""
    import numpy as np

    from hoitool.hand.metadata import palm_normal

    with torch.no_grad():
        kp = hand(HandParams.zeros(1, hand.side, device=hand.device)).keypoints[0].cpu().numpy().astype(np.float64)
        J = hand.rest_joints()[0].cpu().numpy().astype(np.float64)
    palm = kp[PALM_KEYPOINTS]
    c = palm.mean(0)
    n = np.linalg.svd(palm - c)[2][2]
    n = n if n @ palm_normal(J, hand.side) > 0 else -n
    flat = kp.copy()
    flat[PALM_KEYPOINTS] = palm - ((palm - c) @ n)[:, None] * n
    return kp, flat, n, J[0]


def _palm_pnp(hand: HandModel, uv: torch.Tensor, camera, confidence: torch.Tensor | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Candidate (global_orient (3,), transl (3,)) of the rest hand from the detected palm
    keypoints of one image, on the hand model's device.

    SQPnP on the palm keypoints with confidence > 0 (>= 4 of them; else on every detected
    keypoint of the flat rest hand), then IPPE's two mirror-ambiguous solutions against the
    rest palm flattened to its plane; a start within 0.15 rad and 2 cm of an earlier one is
    dropped. When PnP gives nothing, the palm and then the back of the hand face the camera
    at a plausible distance, centred on the detections.

    Args:
        uv: (21, 2) pixels. confidence: (21,), 0 = missing; ones if None.
    """
    import cv2
    import numpy as np

    dev = hand.device
    uv = uv.detach().double().cpu()
    conf = torch.ones(21, device="cpu") if confidence is None else confidence.detach().cpu()
    seen = (conf > 0) & torch.isfinite(uv).all(-1)
    kp, flat, normal, J0 = _rest_palm(hand)
    palm = [i for i in PALM_KEYPOINTS if seen[i]]
    K = camera.K(dtype=torch.float64).numpy()
    if len(palm) >= 4:
        solves = [(cv2.SOLVEPNP_SQPNP, kp[palm], palm), (cv2.SOLVEPNP_IPPE, flat[palm], palm)]
    else:
        ids = [i for i in range(21) if seen[i]]
        solves = [(cv2.SOLVEPNP_SQPNP, kp[ids], ids)] if len(ids) >= 4 else []
    found: list[tuple[np.ndarray, np.ndarray]] = []
    for flag, obj, ids in solves:
        try:
            n, rvecs, tvecs, _ = cv2.solvePnPGeneric(obj, uv[ids].numpy(), K, None, flags=flag)
        except cv2.error:
            continue
        for r, t in zip(rvecs[:n], tvecs[:n]):
            R = cv2.Rodrigues(r)[0]
            t = t.reshape(3)
            if ((obj @ R.T + t)[:, 2] <= 0).any():
                continue
            found.append((R, t - J0 + R @ J0))
    if not found and seen.any():  # degenerate detections: palm or back towards the camera
        pts = uv[seen]
        extent = max(float((pts.amax(0) - pts.amin(0)).max()), 1.0)
        z = camera.fx * float(np.linalg.norm(kp[12] - kp[0])) / extent  # wrist-to-tip length over the 2D extent
        c = pts.mean(0).numpy()
        P = np.array([(c[0] - camera.cx) * z / camera.fx, (c[1] - camera.cy) * z / camera.fy, z])
        d = (c - uv[0].numpy()) if seen[0] else np.array([0.0, -1.0])  # fingers away from the wrist, else up
        d = d / np.linalg.norm(d) if np.linalg.norm(d) > 1e-6 else np.array([0.0, -1.0])
        along = kp[9] - kp[0]  # wrist to middle knuckle, in the palm plane
        along = along - (along @ normal) * normal
        E = np.stack([along / np.linalg.norm(along), normal], 1)
        E = np.concatenate([E, np.cross(E[:, 0], E[:, 1])[:, None]], 1)
        centre = kp[PALM_KEYPOINTS].mean(0)
        for towards in (-1.0, 1.0):  # palm normal to -z (towards the camera), then to +z
            Fm = np.stack([np.array([d[0], d[1], 0.0]), np.array([0.0, 0.0, towards])], 1)
            Fm = np.concatenate([Fm, np.cross(Fm[:, 0], Fm[:, 1])[:, None]], 1)
            R = Fm @ E.T
            found.append((R, P - J0 - R @ (centre - J0)))
    out, kept = [], []
    for R, transl in found:  # IPPE's first solution usually repeats SQPnP's: keep distinct starts
        if any(np.linalg.norm(cv2.Rodrigues(R @ Rk.T)[0]) < 0.15 and np.linalg.norm(transl - tk) < 0.02 for Rk, tk in kept):
            continue
        kept.append((R, transl))
        out.append((torch.as_tensor(cv2.Rodrigues(R)[0].reshape(3), dtype=torch.float32, device=dev),
                    torch.as_tensor(transl, dtype=torch.float32, device=dev)))
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

    Starts from PnP of the detected palm keypoints (`_palm_pnp`: SQPnP's solution and IPPE's
    two mirror solutions, duplicates dropped), fits each with L-BFGS on the confidence-weighted squared
    reprojection error (in units of the hand's 2D size, so the weights do not depend on
    resolution) plus a pose prior (squared anatomical angles and joint limits) and a shape
    prior (squared betas), and keeps the best finite one. Missing keypoints (confidence 0,
    or NaN pixels) take no part. The absolute depth comes from the shape prior (an
    average-sized hand). Runs on the hand model's device; the result is there too.

    Args:
        uv: (21, 2) pixels. confidence: (21,) in [0, 1] (0 = missing), ones if None.
        camera: hoitool.geometry.camera.Camera.
    Raises:
        ValueError: no keypoint is detected, or every start diverged.
    """
    dev = hand.device
    # detections are checked and PnP-ed on the CPU (OpenCV); the fit runs on the model's device
    w = torch.ones(21, device="cpu") if confidence is None else confidence.detach().float().cpu()
    w = torch.nan_to_num(w, nan=0.0, posinf=0.0, neginf=0.0).clamp(0, 1)  # a NaN confidence: missing
    uv = uv.detach().float().cpu()
    finite = torch.isfinite(uv).all(-1)
    w = torch.where(finite, w, torch.zeros((), device="cpu"))
    uv = torch.where(finite[:, None], uv, torch.zeros((), device="cpu"))  # inf x 0 would be NaN
    if not (w > 0).any():
        raise ValueError("no keypoint has confidence > 0: nothing to fit the hand to")
    inits = _palm_pnp(hand, uv, camera, w)
    uv = torch.nan_to_num(uv).to(dev)  # missing points (confidence 0) stay out of every term
    w = w.to(dev)
    prior = (prior or PosePrior.from_hand(hand)).to(dev)
    size = float((uv[w > 0].amax(0) - uv[w > 0].amin(0)).norm()) or 1.0
    # every PnP solution with a flat and with a half-closed hand: L-BFGS keeps to its basin
    curled = prior.to_anatomical(prior.sample(1, torch.Generator().manual_seed(0), closure=torch.tensor([0.5], device="cpu")))[0]
    starts = [(g, t, q0) for g, t in inits for q0 in (torch.zeros(15, 3, device=dev), curled)]
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
             q0[None].clone().requires_grad_(True), torch.zeros(1, 10, device=dev, requires_grad=True)]
        with torch.no_grad():
            if not torch.isfinite(losses(*v)[0]).all():  # a start L-BFGS cannot even begin from
                continue
        opt = torch.optim.LBFGS(v, lr=1.0, max_iter=iters, line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12)

        def closure():
            opt.zero_grad()
            loss = losses(*v)[0].sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            total, kp = losses(*v)
            total = total.item()
            if math.isfinite(total) and (best is None or total < best[0]):  # a diverged start never wins
                px = ((camera.project(kp) - uv).norm(dim=-1) * w).sum(-1) / w.sum().clamp_min(1)
                best = (total, HandParams(v[0].detach(), prior.from_anatomical(v[2]).detach(), v[3].detach(), v[1].detach(), hand.side), px)
    if best is None:
        raise ValueError("the hand fit to 2D keypoints diverged from every start: check the keypoints and their confidences")
    return Fit2DResult(best[1], best[2])
