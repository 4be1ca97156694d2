"""Reconstruction metrics: Chamfer distance, F-score, MPJPE, with optional ICP alignment.

Two families:
- single-image (EasyHOI-style): `chamfer_fscore`, `aligned_chamfer_fscore` (centring, then
  a translation + uniform scale ICP, no rotation), `mpjpe_mm`;
- clip / video (G-HOP's HOI4D protocol): `auc_pck`, `mpjpe_index_mcp_cm`, `chamfer_cm2`,
  `clip_object_metrics` (similarity ICP from several initial rotations, then F@5 / F@10 mm
  and the squared Chamfer distance in cm^2), `cd_hand_cm2` (the same Chamfer in the hand
  frame, no alignment).
Both meet in `align_points` (any of the alignments by name), `object_scores` (every object
figure after one alignment) and `hand_scores` (every keypoint figure); `recon_scene` applies
them to whole reconstructions.
"""

from __future__ import annotations

import numpy as np
import trimesh
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from hoitool.geometry.icp import icp
from hoitool.geometry.transforms import np_apply, umeyama


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


def align_translation_scale(pred: np.ndarray, gt: np.ndarray, iters: int = 30) -> np.ndarray:
    """(4, 4) translation + uniform scale (no rotation) taking the cloud pred (N, 3) onto gt
    (M, 3): pred is centred on gt's centroid, then an ICP fits the scale about that centroid
    and a translation (EasyHOI's alignment)."""
    T0 = np.eye(4)
    T0[:3, 3] = gt.mean(0) - pred.mean(0)
    res = icp(np_apply(T0, pred), gt, mode="scale", iters=iters, scale_about=gt.mean(0))
    return res.transform @ T0


def aligned_chamfer_fscore(pred: np.ndarray, gt: np.ndarray, thresholds=(0.005, 0.01), iters: int = 30) -> dict:
    """chamfer_fscore after aligning pred to gt by centring and a translation + scale ICP
    (EasyHOI's protocol: shape quality regardless of the depth and size ambiguity)."""
    return chamfer_fscore(np_apply(align_translation_scale(pred, gt, iters), pred), gt, thresholds)


def mpjpe_mm(pred: np.ndarray, gt: np.ndarray, root: int | None = 0) -> float:
    """Mean per-joint position error (mm) of joints (..., J, 3); with `root`, both sets are
    first translated so that joint `root` is at the origin."""
    if root is not None:
        pred = pred - pred[..., root:root + 1, :]
        gt = gt - gt[..., root:root + 1, :]
    return float(np.linalg.norm(pred - gt, axis=-1).mean() * 1000)


# -- clip (video) metrics, G-HOP's protocol ---------------------------------------------------

#: OpenPose keypoint index of the index finger's MCP joint (wrist 0; thumb 1-4; index 5-8 ...).
INDEX_MCP = 5


def auc_pck(errors_m: np.ndarray, max_m: float = 0.05, steps: int = 100) -> float:
    """Area under the PCK curve (share of errors <= t) for thresholds t from 0 to max_m
    (steps + 1 evenly spaced, trapezoid rule), divided by max_m: in [0, 1], 1 when every
    error is 0. G-HOP reports it over 0-5 cm. NaN errors (missing joints) are ignored."""
    e = np.asarray(errors_m, dtype=np.float64).ravel()
    e = e[~np.isnan(e)]
    if e.size == 0:
        return float("nan")
    t = np.linspace(0.0, max_m, steps + 1)
    pck = (e[None, :] <= t[:, None]).mean(1)
    return float(((pck[1:] + pck[:-1]) / 2 * np.diff(t)).sum() / max_m)


def mpjpe_index_mcp_cm(pred: np.ndarray, gt: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean per-joint position error (cm) of keypoints (..., 21, 3) in metres (OpenPose
    order), after translating both sets so that the index finger's MCP joint (keypoint 5) is
    at the origin (G-HOP's hand metric; the centring joint, error 0, counts in the mean).

    Returns (mean error in cm, per-joint errors (..., 21) in metres), the latter for
    `auc_pck`."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    pred = pred - pred[..., INDEX_MCP:INDEX_MCP + 1, :]
    gt = gt - gt[..., INDEX_MCP:INDEX_MCP + 1, :]
    err = np.linalg.norm(pred - gt, axis=-1)
    return float(np.nanmean(err) * 100), err


def chamfer_cm2(pred_pts: np.ndarray, gt_pts: np.ndarray) -> float:
    """G-HOP's Chamfer distance: mean squared nearest distance pred -> gt plus mean squared
    nearest distance gt -> pred, in cm^2 (points in metres). Two clouds 1 cm apart
    everywhere give 2.0."""
    d1, _ = cKDTree(gt_pts).query(pred_pts)
    d2, _ = cKDTree(pred_pts).query(gt_pts)
    return float(((d1 ** 2).mean() + (d2 ** 2).mean()) * 1e4)


def _subsample(pts: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    if len(pts) <= n:
        return pts
    return pts[np.random.default_rng(seed).choice(len(pts), n, replace=False)]


def align_similarity(pred: np.ndarray, gt: np.ndarray, rotations: int = 10, iters: int = 50, max_points: int = 3000,
                     seed: int = 0) -> np.ndarray:
    """(4, 4) similarity transform (rotation, uniform scale, translation) taking the cloud
    pred onto gt, by ICP from several starts: pred is centred on gt's centroid, scaled to
    gt's RMS radius and turned by each of `rotations` initial rotations (the identity, then
    rotations - 1 fixed random ones drawn with `seed`), a similarity ICP is run from each
    (on at most max_points points of each cloud), and the result with the smallest symmetric
    mean nearest distance is kept (the identity, no alignment, competes too). The object frames of a reconstruction and of the truth
    need not agree, hence the rotation (G-HOP aligns with 10 initial rotations);
    `aligned_chamfer_fscore` by contrast fits only a translation and a scale."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    p, g = _subsample(pred, max_points, seed), _subsample(gt, max_points, seed + 1)
    cp, cg = p.mean(0), g.mean(0)
    s0 = np.sqrt(((g - cg) ** 2).sum(1).mean() / max(((p - cp) ** 2).sum(1).mean(), 1e-18))
    Rs = [np.eye(3)]
    if rotations > 1:
        Rs += list(Rotation.random(rotations - 1, random_state=seed).as_matrix())
    tree_g = cKDTree(g)
    best, best_T = tree_g.query(p)[0].mean() + cKDTree(p).query(g)[0].mean(), np.eye(4)  # no alignment
    for R in Rs:
        T0 = np.eye(4)
        T0[:3, :3] = s0 * R
        T0[:3, 3] = cg - s0 * R @ cp
        res = icp(np_apply(T0, p), g, mode="similarity", iters=iters)
        T = res.transform @ T0
        q = np_apply(T, p)
        cost = tree_g.query(q)[0].mean() + cKDTree(q).query(g)[0].mean()
        if cost < best:
            best, best_T = cost, T
    return best_T


#: The alignments of a predicted object onto the true one before it is scored, by name.
ALIGN_MODES = ("none", "translation-scale", "similarity")


def align_points(pred: np.ndarray, gt: np.ndarray, mode: str, rotations: int = 10) -> np.ndarray:
    """(4, 4) transform taking the cloud pred (N, 3) onto gt (M, 3), metres, by `mode`:
    "none" (the identity), "translation-scale" (`align_translation_scale`, EasyHOI) or
    "similarity" (`align_similarity` from `rotations` initial rotations, G-HOP)."""
    if mode == "none":
        return np.eye(4)
    if mode == "translation-scale":
        return align_translation_scale(pred, gt)
    if mode == "similarity":
        return align_similarity(pred, gt, rotations=rotations)
    raise ValueError(f"unknown alignment {mode!r}: use one of {', '.join(ALIGN_MODES)}")


def object_scores(pred: np.ndarray, gt: np.ndarray, align: str = "none", rotations: int = 10) -> dict:
    """Every object figure of predicted surface points pred (N, 3) against the true ones gt
    (M, 3), metres, after `align_points(pred, gt, align)`:
    chamfer_mm = (mean nearest distance pred -> gt + mean gt -> pred) / 2, mm;
    cd_cm2 = `chamfer_cm2` (G-HOP: the two mean squared nearest distances summed, cm^2);
    f5, f10 = F-scores at 5 and 10 mm; scale = the alignment's scale factor (1 for "none")."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    T = align_points(pred, gt, align, rotations)
    q = np_apply(T, pred)
    cf = chamfer_fscore(q, gt)
    return {"chamfer_mm": cf["chamfer_mm"], "cd_cm2": chamfer_cm2(q, gt), "f5": cf["f@5mm"], "f10": cf["f@10mm"],
            "scale": float(np.cbrt(np.linalg.det(T[:3, :3])))}


def clip_object_metrics(pred_pts_o: np.ndarray, gt_pts_o: np.ndarray, rotations: int = 10) -> dict:
    """Object shape quality of a clip reconstruction (G-HOP's protocol): `object_scores` after
    the similarity alignment (ICP from `rotations` initial rotations) of the predicted surface
    points (N, 3) onto the true ones (M, 3)."""
    return object_scores(pred_pts_o, gt_pts_o, "similarity", rotations)


def cd_hand_cm2(pred_pts_h: np.ndarray, gt_pts_h: np.ndarray) -> float:
    """`chamfer_cm2` of object points expressed in the hand frame (each cloud in the frame
    of its own hand: the hand-object arrangement), without any alignment."""
    return chamfer_cm2(pred_pts_h, gt_pts_h)


#: Keypoints of the palm (wrist, thumb base, the four knuckles: OpenPose order): the hand
#: model places them from the wrist's rotation and the shape alone, so they move rigidly
#: with the hand's frame whatever the fingers do.
PALM_KEYPOINTS = (0, 1, 5, 9, 13, 17)


def palm_transform(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(4, 4) rigid transform (rotation and translation, least squares) taking the predicted
    palm keypoints `PALM_KEYPOINTS` of pred (21, 3) onto those of gt (21, 3): the map from
    one hand's frame to the other's when only keypoints are known."""
    idx = list(PALM_KEYPOINTS)
    return umeyama(np.asarray(pred, dtype=np.float64)[idx], np.asarray(gt, dtype=np.float64)[idx], with_scale=False)


def hand_scores(pred: np.ndarray, gt: np.ndarray, auc_max_m: float = 0.05) -> dict:
    """Every keypoint figure of predicted hand keypoints pred (..., 21, 3) against the true
    ones gt (..., 21, 3), metres, OpenPose order:
    mpjpe_mm = mean joint error after translating both wrists (keypoint 0) to the origin;
    mpjpe_abs_mm = mean joint error as placed (camera frame);
    mpjpe_index_mcp_mm = mean joint error after centring both on the index MCP (keypoint 5,
    G-HOP's convention; its table gives it in cm);
    auc = `auc_pck` of the index-MCP-centred errors over 0 - auc_max_m (G-HOP: 0-5 cm)."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    mcp_cm, err = mpjpe_index_mcp_cm(pred, gt)
    return {"mpjpe_mm": mpjpe_mm(pred, gt), "mpjpe_abs_mm": mpjpe_mm(pred, gt, None), "mpjpe_index_mcp_mm": mcp_cm * 10,
            "auc": auc_pck(err, max_m=auc_max_m)}
