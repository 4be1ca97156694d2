"""Reconstruction metrics: Chamfer distance, F-score, MPJPE, with optional ICP alignment."""

from __future__ import annotations

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from hoitool.geometry.icp import icp
from hoitool.geometry.transforms import np_apply


def sample_surface(mesh: trimesh.Trimesh, n: int = 10000, seed: int = 0) -> np.ndarray:
    """n points (n, 3) drawn uniformly by area (deterministic for a seed)."""
    pts, _ = trimesh.sample.sample_surface(mesh, n, seed=seed)
    return np.asarray(pts, dtype=np.float64)


def chamfer_fscore(pred: np.ndarray, gt: np.ndarray, thresholds=(0.005, 0.01)) -> dict:
    """Symmetric Chamfer distance and F-scores between point sets (N, 3) and (M, 3), metres.

    Returns chamfer_mm = (mean pred->gt distance + mean gt->pred distance) / 2 in mm, and
    f@{t} (t in mm) = harmonic mean of precision (share of pred within t of gt) and recall.
    """
    d_pg, _ = cKDTree(gt).query(pred)
    d_gp, _ = cKDTree(pred).query(gt)
    out = {"chamfer_mm": float((d_pg.mean() + d_gp.mean()) / 2 * 1000)}
    for t in thresholds:
        p, r = float((d_pg < t).mean()), float((d_gp < t).mean())
        out[f"f@{t * 1000:g}mm"] = 0.0 if p + r == 0 else 2 * p * r / (p + r)
    return out


def aligned_chamfer_fscore(pred: np.ndarray, gt: np.ndarray, thresholds=(0.005, 0.01), iters: int = 30) -> dict:
    """chamfer_fscore after aligning pred to gt by centring and a translation + scale ICP
    (EasyHOI's protocol: shape quality regardless of the depth and size ambiguity)."""
    T0 = np.eye(4)
    T0[:3, 3] = gt.mean(0) - pred.mean(0)
    res = icp(np_apply(T0, pred), gt, mode="scale", iters=iters, scale_about=gt.mean(0))
    return chamfer_fscore(np_apply(res.transform @ T0, pred), gt, thresholds)


def mpjpe_mm(pred: np.ndarray, gt: np.ndarray, root: int | None = 0) -> float:
    """Mean per-joint position error (mm) of joints (..., J, 3); with `root`, both sets are
    first translated so that joint `root` is at the origin."""
    if root is not None:
        pred = pred - pred[..., root:root + 1, :]
        gt = gt - gt[..., root:root + 1, :]
    return float(np.linalg.norm(pred - gt, axis=-1).mean() * 1000)
