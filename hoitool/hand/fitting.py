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
