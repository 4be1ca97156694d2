"""Mask losses: soft IoU between rendered and target masks, and a Sinkhorn transport
divergence that still pulls when the masks do not overlap."""

from __future__ import annotations

import math

import torch


def soft_iou(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) soft IoU = (sum p g + 1e-6) / (sum p + sum g - sum p g + 1e-6) of masks (B, H, W) in
    [0, 1]; pixels where `valid` is 0 are ignored (e.g. where an occluder hides the target)."""
    if valid is not None:
        pred, target = pred * valid, target * valid
    inter = (pred * target).flatten(1).sum(1)
    union = pred.flatten(1).sum(1) + target.flatten(1).sum(1) - inter
    return (inter + 1e-6) / (union + 1e-6)


def _lse(x: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.logsumexp(x, dim)


def _ot(x: torch.Tensor, a: torch.Tensor, y: torch.Tensor, b: torch.Tensor, eps: float, iters: int) -> torch.Tensor:
    """Entropic OT cost (B,) between weighted point clouds x (B, N, D), a (B, N) and
    y (B, M, D), b (B, M) (weights summing to 1), cost |x - y|^2 / 2.

    The potentials f (B, N), g (B, M) come from log-domain Sinkhorn without gradient. The
    value is the dual <a, f> + <b, g> with f rebuilt from the fixed g with gradient: that is
    max over f of the dual objective for this g, so its gradient in the cost is the transport
    plan (envelope theorem) and points get d OT / d x = sum_j pi_ij (x_i - y_j), as finite
    differences of the value give. (Rebuilding g from f with gradient as well would count
    the plan twice: twice the gradient.)"""
    la, lb = torch.log(a.clamp_min(1e-30)), torch.log(b.clamp_min(1e-30))
    with torch.no_grad():
        C = 0.5 * torch.cdist(x, y) ** 2
        f = torch.zeros_like(a)
        g = torch.zeros_like(b)
        for _ in range(iters):
            f = -eps * _lse(lb[:, None, :] + (g[:, None, :] - C) / eps, 2)
            g = -eps * _lse(la[:, :, None] + (f[:, :, None] - C) / eps, 1)
    C = 0.5 * torch.cdist(x, y) ** 2
    f = -eps * _lse(lb[:, None, :] + (g[:, None, :] - C) / eps, 2)
    return (a * f).sum(1) + (b * g).sum(1)


def sinkhorn_divergence(x: torch.Tensor, a: torch.Tensor, y: torch.Tensor, b: torch.Tensor, blur: float = 0.05, iters: int = 50) -> torch.Tensor:
    """Debiased Sinkhorn divergence (B,) S = OT(x, y) - OT(x, x)/2 - OT(y, y)/2, with
    epsilon = blur^2 (coordinates in [0, 1]); zero for equal clouds, positive otherwise,
    and its gradient moves x towards y however far apart they are."""
    eps = blur ** 2
    return _ot(x, a, y, b, eps, iters) - 0.5 * _ot(x, a, x, a, eps, iters) - 0.5 * _ot(y, b, y, b, eps, iters)


def mask_points(mask: torch.Tensor, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to n pixel centres (n, 2) of a (H, W) mask, normalised by max(H, W), with weights
    (n,) summing to 1 (mask values of the picked pixels)."""
    H, W = mask.shape
    idx = torch.nonzero(mask.flatten() > 0.5)[:, 0]
    if len(idx) == 0:
        raise ValueError("empty mask")
    if len(idx) > n:
        idx = idx[torch.randperm(len(idx), generator=generator)[:n]]
    pts = torch.stack([idx % W, idx // W], -1).float() / max(H, W)
    w = mask.flatten()[idx].float()
    return pts, w / w.sum()


def mass_term(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) |sum pred - sum target| / pixels: the difference in covered area."""
    return (pred.flatten(1).sum(1) - target.flatten(1).sum(1)).abs() / math.prod(pred.shape[1:])
