"""Clip (video) metrics of G-HOP's protocol against analytic answers."""

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from hoitool.metrics.reconstruction import (align_similarity, auc_pck, cd_hand_cm2, chamfer_cm2, clip_object_metrics,
                                            mpjpe_index_mcp_cm, sample_surface)


def _plane(n: int = 41, side: float = 0.1) -> np.ndarray:
    t = np.linspace(-side / 2, side / 2, n)
    x, y = np.meshgrid(t, t)
    return np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], 1)


def _object_points() -> np.ndarray:
    """An asymmetric solid (no rotational symmetry for the alignment to hide behind)."""
    box = trimesh.creation.box((0.08, 0.05, 0.03))
    knob = trimesh.creation.box((0.02, 0.02, 0.04))
    knob.apply_translation((0.03, 0.015, 0.03))
    return sample_surface(trimesh.util.concatenate([box, knob]), 4000)


def test_auc_pck_analytic():
    assert auc_pck(np.zeros(50)) == pytest.approx(1.0)
    assert auc_pck(np.full(50, 0.025)) == pytest.approx(0.5, abs=0.011)
    assert auc_pck(np.full(50, 0.06)) == 0.0
    half = np.r_[np.zeros(10), np.full(10, 1.0)]  # half perfect, half far away
    assert auc_pck(half) == pytest.approx(0.5)
    assert auc_pck(np.r_[np.zeros(4), np.nan]) == pytest.approx(1.0)  # NaN ignored
    # uniform errors on [0, max]: PCK(t) = t / max, area 1/2
    assert auc_pck(np.linspace(0, 0.05, 10001)) == pytest.approx(0.5, abs=0.01)


def test_mpjpe_index_mcp_invariant_to_translation_and_analytic():
    rng = np.random.default_rng(0)
    gt = rng.normal(scale=0.05, size=(4, 21, 3))
    mean, err = mpjpe_index_mcp_cm(gt + np.array([0.3, -0.2, 0.5]), gt)
    assert mean == pytest.approx(0.0, abs=1e-9) and err.shape == (4, 21)
    # a per-frame shift is also removed (each frame is centred on its own index MCP)
    mean, _ = mpjpe_index_mcp_cm(gt + rng.normal(size=(4, 1, 3)), gt)
    assert mean == pytest.approx(0.0, abs=1e-9)
    # one joint (not the index MCP) off by 2 cm in every frame: mean 2/21 cm
    pred = gt.copy()
    pred[:, 8, 0] += 0.02
    mean, err = mpjpe_index_mcp_cm(pred, gt)
    assert mean == pytest.approx(2.0 / 21) and err[:, 8] == pytest.approx(np.full(4, 0.02))
    # moving the index MCP itself moves every other joint relative to it
    pred = gt.copy()
    pred[:, 5] += np.array([0.0, 0.01, 0.0])
    mean, _ = mpjpe_index_mcp_cm(pred, gt)
    assert mean == pytest.approx(20.0 / 21)


def test_chamfer_cm2_analytic():
    a = _plane()
    assert chamfer_cm2(a, a) == 0.0
    b = a + np.array([0.0, 0.0, 0.01])  # 1 cm off the plane: every nearest distance is 1 cm
    assert chamfer_cm2(a, b) == pytest.approx(2.0)
    assert chamfer_cm2(a, a + np.array([0.0, 0.0, 0.02])) == pytest.approx(8.0)  # squared distances
    assert cd_hand_cm2(a, b) == pytest.approx(2.0)  # no alignment in the hand frame


def test_clip_object_metrics_identical_and_similar_copy():
    gt = _object_points()
    m = clip_object_metrics(gt, gt)
    assert m["f5"] == 1.0 and m["f10"] == 1.0 and m["cd_cm2"] == pytest.approx(0.0, abs=1e-8)
    assert m["scale"] == pytest.approx(1.0, abs=1e-6)
    # a scaled, rotated (well beyond ICP's basin from the identity) and shifted copy
    R = Rotation.from_rotvec([0.0, 2.4, 1.1]).as_matrix()
    pred = 1.4 * gt @ R.T + np.array([0.2, -0.1, 0.3])
    m = clip_object_metrics(pred, gt)
    assert m["f5"] > 0.98 and m["f10"] > 0.99 and m["cd_cm2"] < 0.01
    assert m["scale"] == pytest.approx(1 / 1.4, rel=0.02)
    # without alignment the copy is far off
    assert chamfer_cm2(pred, gt) > 100


def test_align_similarity_recovers_transform_on_another_sample():
    box = trimesh.creation.box((0.08, 0.05, 0.03))
    gt = sample_surface(box, 3000, seed=1)
    src = sample_surface(box, 3000, seed=2)  # the same surface, other points
    R = Rotation.from_rotvec([0.3, -0.2, 0.4]).as_matrix()
    pred = 0.8 * src @ R.T + 0.05
    T = align_similarity(pred, gt)
    m = clip_object_metrics(pred, gt)
    assert np.cbrt(np.linalg.det(T[:3, :3])) == pytest.approx(1.25, rel=0.03)
    assert m["f5"] > 0.95 and m["cd_cm2"] < 0.05
