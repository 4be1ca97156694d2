"""Generative metrics (FHID, KHID, precision/recall, diversity) and two-mesh plausibility
(intersection volume, penetration depth, surface distance) against analytic answers."""

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial.distance import cdist
from scipy.spatial.transform import Rotation

from hoitool.metrics import generative
from hoitool.metrics.generative import diversity, frechet_distance, kernel_distance, precision_recall
from hoitool.metrics.twohands import (
    _winding_grid,
    close_mesh,
    intersection_volume_cm3,
    mesh_distance_m,
    pair_metrics,
    penetration_depth_m,
)

# ---------------------------------------------------------------- generative


def test_frechet_self_zero_and_mean_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20000, 3))
    shift = np.array([1.0, -0.5, 0.25])
    b = rng.normal(size=(20000, 3)) + shift
    assert abs(frechet_distance(a, a)) < 1e-8
    # equal covariances: the distance is |shift|^2 = 1.3125 (up to sampling noise)
    assert frechet_distance(a, b) == pytest.approx(shift @ shift, abs=0.05)


def test_frechet_singular_covariance_is_finite():
    a = np.zeros((10, 4))
    a[:, 0] = np.arange(10)  # rank-1 covariance: the product is singular
    assert abs(frechet_distance(a, a)) < 1e-3
    assert frechet_distance(a, a + 2.0) == pytest.approx(16.0, abs=1e-3)


def _mmd2_reference(x, y, degree=3, coef=1.0):
    """Unbiased MMD^2 by loops over pairs."""
    g = 1.0 / x.shape[1]
    k = lambda u, v: (g * u @ v + coef) ** degree  # noqa: E731
    m = len(x)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kernel_distance_matches_reference_on_whole_sets():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(7, 3)) + 0.3
    mean, std = kernel_distance(x, y, subsets=3, subset_size=100)  # capped at 7: the whole sets
    assert mean == pytest.approx(_mmd2_reference(x, y), rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_kernel_distance_same_near_zero_shifted_positive():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(2000, 4)), rng.normal(size=(2000, 4))
    same, same_std = kernel_distance(a, b, subsets=20, subset_size=500)
    shifted, _ = kernel_distance(a, b + np.array([1.0, 0.5, 0.0, 0.0]), subsets=20, subset_size=500)
    assert abs(same) < 0.05 and same_std < 0.05
    assert shifted > 1.0


def _pr_reference(real, fake, k):
    def radii(x):
        d = cdist(x, x)
        np.fill_diagonal(d, np.inf)
        return np.sort(d, axis=1)[:, k - 1]

    p = np.mean(np.any(cdist(fake, real) <= radii(real)[None], axis=1))
    r = np.mean(np.any(cdist(real, fake) <= radii(fake)[None], axis=1))
    return p, r


def test_precision_recall_identical_far_and_reference(monkeypatch):
    rng = np.random.default_rng(3)
    real = rng.normal(size=(300, 5))
    assert precision_recall(real, real.copy(), k=5) == (1.0, 1.0)
    assert precision_recall(real, real + 100.0, k=5) == (0.0, 0.0)
    fake = rng.normal(size=(250, 5)) * 1.5 + 0.5
    ref = _pr_reference(real, fake, 3)
    assert precision_recall(real, fake, k=3) == pytest.approx(ref, abs=1e-12)
    assert 0.0 < ref[0] < 1.0 and 0.0 < ref[1] < 1.0
    monkeypatch.setattr(generative, "_BLOCK_ENTRIES", 1000)  # many small blocks
    assert precision_recall(real, fake, k=3) == pytest.approx(ref, abs=1e-12)


def test_diversity_known_configuration():
    # the vertices of a regular simplex: every pair is sqrt(2) * 3 apart
    assert diversity(3.0 * np.eye(6), pairs=500, seed=4) == pytest.approx(3.0 * np.sqrt(2.0), rel=1e-12)
    # two points: a pair is never a point with itself
    assert diversity(np.array([[0.0, 0.0], [3.0, 4.0]]), pairs=50) == pytest.approx(5.0)
    x = np.random.default_rng(5).normal(size=(50, 3))
    assert diversity(x, seed=7) == diversity(x, seed=7)


def test_generative_input_validation():
    good = np.zeros((10, 3))
    bad = good.copy()
    bad[2, 1] = np.nan
    for call in (
        lambda: frechet_distance(bad, good),
        lambda: kernel_distance(good, bad),
        lambda: precision_recall(good, bad),
        lambda: diversity(bad),
    ):
        with pytest.raises(ValueError, match="NaN"):
            call()
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(np.zeros((1, 3)), good)
    with pytest.raises(ValueError, match="at least 2"):
        diversity(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="at least 6"):
        precision_recall(np.random.rand(5, 3), np.random.rand(10, 3), k=5)
    with pytest.raises(ValueError, match="feature sizes"):
        frechet_distance(good, np.zeros((10, 4)))


# ---------------------------------------------------------------- two meshes


def box(extents, centre=(0.0, 0.0, 0.0)) -> trimesh.Trimesh:
    m = trimesh.creation.box(extents=extents)
    m.apply_translation(centre)
    return m


def test_close_mesh_open_cylinder():
    closed = trimesh.creation.cylinder(radius=0.02, height=0.05, sections=24)
    caps = np.abs(closed.face_normals[:, 2]) > 0.99
    V, F = closed.vertices, closed.faces[~caps]
    assert not trimesh.Trimesh(V, F, process=False).is_watertight
    V2, F2 = close_mesh(V, F)
    m = trimesh.Trimesh(V2, F2, process=False)
    assert len(V2) == len(V) + 2  # one centroid per rim
    assert m.is_watertight and m.is_winding_consistent
    assert m.volume > 0 and m.volume == pytest.approx(closed.volume, rel=1e-9)  # planar rims: exact


def test_close_mesh_icosphere_holes_and_closed_unchanged():
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.03)
    V, F = close_mesh(sphere.vertices, sphere.faces)
    assert np.array_equal(V, sphere.vertices) and np.array_equal(F, sphere.faces)
    keep = np.ones(len(sphere.faces), bool)
    keep[[0, 100, 200]] = False  # three separate holes
    V, F = close_mesh(sphere.vertices, sphere.faces[keep])
    m = trimesh.Trimesh(V, F, process=False)
    assert m.is_watertight and m.is_winding_consistent
    assert m.volume > 0 and m.volume == pytest.approx(sphere.volume, rel=0.02)
    # the caps follow the given orientation: an inward mesh stays inward
    V, F = close_mesh(sphere.vertices, sphere.faces[keep][:, ::-1])
    assert trimesh.Trimesh(V, F, process=False).volume < 0


def test_intersection_volume_boxes():
    a = box((0.04, 0.04, 0.04))
    b = box((0.04, 0.04, 0.04), (0.02, 0.01, 0.0))
    expected = 2.0 * 3.0 * 4.0  # cm^3
    vol = intersection_volume_cm3(a.vertices, a.faces, b.vertices, b.faces)
    assert vol == pytest.approx(expected, rel=0.05)
    far = box((0.04, 0.04, 0.04), (0.05, 0.0, 0.0))
    assert intersection_volume_cm3(a.vertices, a.faces, far.vertices, far.faces) == 0.0
    # moved together: the same volume on a differently aligned grid
    R = Rotation.from_rotvec([0.3, -0.5, 0.7]).as_matrix()
    t = np.array([0.1, -0.2, 0.05])
    moved = intersection_volume_cm3(a.vertices @ R.T + t, a.faces, b.vertices @ R.T + t, b.faces)
    assert moved == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_intersection_volume_any_long_axis(axis):
    # the rays run along the overlap's longest axis: every axis gives the analytic volume
    ext, shift = np.full(3, 0.02), np.full(3, 0.01)
    ext[axis], shift[axis] = 0.08, 0.02
    a, b = box(ext), box(ext, shift)
    expected = np.prod(ext - shift) * 1e6  # 6 x 1 x 1 cm
    assert intersection_volume_cm3(a.vertices, a.faces, b.vertices, b.faces) == pytest.approx(expected, rel=0.05)


def test_intersection_volume_hands_match_winding_numbers(right_hand):
    import igl

    from hoitool.hand.model import HandParams

    V = right_hand(HandParams.zeros(1)).vertices[0].detach().numpy().astype(np.float64)
    F = right_hand.faces.numpy().astype(np.int64)
    W = V + [0.01, 0.005, 0.0]
    pitch = 0.004
    lo = np.maximum(V.min(0), W.min(0))
    n = np.ceil((np.minimum(V.max(0), W.max(0)) - lo) / pitch).astype(np.int64)
    axes = [lo[i] + (np.arange(n[i]) + 0.5) * pitch for i in range(3)]
    P = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    both = (np.asarray(igl.fast_winding_number(V, F, P)) > 0.5) & (np.asarray(igl.fast_winding_number(W, F, P)) > 0.5)
    expected = both.sum() * pitch**3 * 1e6
    assert expected > 100.0
    assert intersection_volume_cm3(V, F, W, F, pitch_m=pitch) == pytest.approx(expected, rel=1e-9)


def test_intersection_volume_self_intersecting_mesh():
    # two overlapping boxes in one mesh: their union, [0, 6] x [0, 4] x [0, 4] cm
    b1, b2 = box((0.04, 0.04, 0.04), (0.02, 0.02, 0.02)), box((0.04, 0.04, 0.04), (0.04, 0.02, 0.02))
    union = trimesh.util.concatenate([b1, b2])
    third = box((0.04, 0.02, 0.02), (0.03, 0.02, 0.02))  # [1, 5] x [1, 3] x [1, 3]
    vol = intersection_volume_cm3(union.vertices, union.faces, third.vertices, third.faces)
    assert vol == pytest.approx(4.0 * 2.0 * 2.0, rel=0.05)  # counted once where b1 and b2 overlap


def test_winding_grid_matches_igl_on_self_intersecting_hand(right_hand):
    import igl

    from hoitool.hand.model import HandParams

    p = HandParams.zeros(1)
    p.hand_pose[:] = torch.tensor([0.0, 0.0, 1.5]).repeat(15)  # curled through the palm
    V = right_hand(p).vertices[0].detach().numpy().astype(np.float64)
    F = right_hand.faces.numpy().astype(np.int64)
    pitch = 0.004
    lo = V.min(0)
    n = np.ceil((V.max(0) - lo) / pitch).astype(np.int64)
    axes = [lo[i] + (np.arange(n[i]) + 0.5) * pitch for i in range(3)]
    P = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    ref = np.asarray(igl.fast_winding_number(V, F, P)).reshape(*n)
    w = _winding_grid(V, F, lo, n, pitch)
    assert (np.round(ref) > 1.5).any()  # fingers inside the palm: winding number 2 there
    assert np.array_equal(w > 0.5, ref > 0.5)


def test_mesh_distance_and_penetration_depth_boxes():
    a = box((0.04, 0.04, 0.04))
    gap = 0.007
    b = box((0.04, 0.02, 0.02), (0.02 + gap + 0.02, 0.0, 0.0))
    assert mesh_distance_m(a.vertices, a.faces, b.vertices, b.faces) == pytest.approx(gap, abs=1e-9)
    assert penetration_depth_m(a.vertices, a.faces, b.vertices, b.faces) == 0.0
    depth = 0.003
    c = box((0.04, 0.02, 0.02), (0.02 - depth + 0.02, 0.0, 0.0))
    assert mesh_distance_m(a.vertices, a.faces, c.vertices, c.faces) == 0.0
    assert penetration_depth_m(a.vertices, a.faces, c.vertices, c.faces) == pytest.approx(depth, abs=1e-9)
    assert penetration_depth_m(c.vertices, c.faces, a.vertices, a.faces) == pytest.approx(depth, abs=1e-9)


def test_pair_metrics_tiny_batch():
    a = box((0.04, 0.04, 0.04))
    open_faces = a.faces[a.face_normals[:, 2] < 0.99]  # no top: pair_metrics closes it
    b = box((0.04, 0.02, 0.02))
    centres = [0.036, 0.05, 0.07]  # overlap 4 mm, gap 1 cm, gap 3 cm
    va = np.stack([a.vertices] * 3)
    vb = np.stack([b.vertices + [x, 0.0, 0.0] for x in centres])
    m = pair_metrics(va, open_faces, torch.as_tensor(vb), b.faces)
    assert set(m) == {"penetration_volume_cm3", "penetration_depth_cm", "distance_cm", "proximity", "contact"}
    assert all(v.shape == (3,) for v in m.values())
    assert m["penetration_volume_cm3"] == pytest.approx([0.4 * 2.0 * 2.0, 0.0, 0.0], abs=0.05)
    assert m["penetration_depth_cm"] == pytest.approx([0.4, 0.0, 0.0], abs=1e-6)
    assert m["distance_cm"] == pytest.approx([0.0, 1.0, 3.0], abs=1e-6)
    assert m["proximity"].tolist() == [True, True, False]
    assert m["contact"].tolist() == [True, False, False]
