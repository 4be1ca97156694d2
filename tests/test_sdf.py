import numpy as np
import pytest
import trimesh

from hoitool.geometry.sdf import grid_points, sdf_grid, signed_distance


def box_sdf(p, half):
    q = np.abs(p) - half
    return np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(1), 0)


def test_box_matches_analytic():
    half = np.array([0.03, 0.05, 0.02])
    box = trimesh.creation.box(2 * half)
    p = np.random.default_rng(0).uniform(-0.1, 0.1, size=(5000, 3))
    assert np.abs(signed_distance(box, p) - box_sdf(p, half)).max() < 1e-6


def test_sphere_within_faceting_error():
    r = 0.05
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=r)
    p = np.random.default_rng(1).uniform(-0.1, 0.1, size=(5000, 3))
    err = np.abs(signed_distance(sphere, p) - (np.linalg.norm(p, axis=1) - r))
    assert err.max() < 2e-4  # chord sag of a level-4 icosphere of radius 5 cm is ~0.1 mm


def test_surface_samples_are_zero():
    m = trimesh.creation.torus(0.04, 0.015)
    s, _ = trimesh.sample.sample_surface(m, 2000, seed=0)
    assert np.abs(signed_distance(m, s)).max() < 1e-6


def test_truncation_keeps_near_values_and_signs():
    half = np.array([0.03, 0.03, 0.03])
    box = trimesh.creation.box(2 * half)
    P = grid_points(32, -0.1, 0.1).reshape(-1, 3)
    ref = box_sdf(P, half)
    got = sdf_grid(box, 32, -0.1, 0.1, truncation=0.02).reshape(-1)
    near = np.abs(ref) < 0.02
    assert np.abs(got[near] - ref[near]).max() < 1e-6
    assert np.all(np.abs(got[~near]) == pytest.approx(0.02, abs=1e-7))
    assert np.all(np.sign(got[np.abs(ref) > 1e-3]) == np.sign(ref[np.abs(ref) > 1e-3]))


def test_grid_index_order():
    # a box long in x: the grid's first axis must be x
    half = np.array([0.08, 0.02, 0.02])
    g = sdf_grid(trimesh.creation.box(2 * half), 33, -0.1, 0.1)
    t = np.linspace(-0.1, 0.1, 33)
    assert g[np.argmin(np.abs(t - 0.07)), 16, 16] < 0
    assert g[16, np.argmin(np.abs(t - 0.07)), 16] > 0


def test_hole_tolerated_by_winding_number():
    box = trimesh.creation.box((0.06, 0.06, 0.06))
    open_box = trimesh.Trimesh(box.vertices, box.faces[:-2], process=False)
    inside = np.array([[0.0, 0.0, 0.0], [0.01, -0.01, 0.005]])
    outside = np.array([[0.0, 0.0, 0.1], [0.08, 0.0, 0.0]])
    assert (signed_distance(open_box, inside) < 0).all()
    assert (signed_distance(open_box, outside) > 0).all()


@pytest.mark.parametrize("truncation", [None, 0.15])
@pytest.mark.parametrize("make", [
    lambda: trimesh.creation.torus(0.6, 0.2, major_sections=48, minor_sections=24),
    lambda: trimesh.util.concatenate([trimesh.creation.box((1.2, 0.5, 0.5)),
                                      trimesh.creation.box((0.5, 0.5, 1.2)).apply_translation([0.3, 0, 0])]),
])
def test_grid_signs_from_regions_equal_pointwise_winding_numbers(make, truncation):
    """sdf_grid takes winding numbers only near the surface and one per region: same signs as every point's."""
    m = make()
    m.merge_vertices()
    R = 40
    g = sdf_grid(m, R, -1.0, 1.0, truncation=truncation).reshape(-1)
    ref = signed_distance(m, grid_points(R).reshape(-1, 3), truncation=truncation)
    np.testing.assert_allclose(g, ref, atol=1e-6)


def test_winding_number_exact_and_fast_paths_agree():
    """A mesh of long thin faces takes the exact sum (its split copy would be huge); a fine mesh
    the fast one; both give the same inside/outside."""
    from hoitool.geometry import sdf

    cyl = trimesh.creation.cylinder(radius=0.3, height=1.5, sections=512)
    P = np.random.default_rng(0).uniform(-1, 1, (3000, 3))
    inside = (np.linalg.norm(P[:, :2], axis=1) < 0.3) & (np.abs(P[:, 2]) < 0.75)
    far = np.abs(signed_distance(cyl, P)) > 1e-3
    w = sdf.winding_number(cyl, P)
    assert ((w > 0.5) == inside)[far].all()
    V, F = sdf._vf(cyl)
    exact = np.asarray(sdf._lib().winding_number(V, F, P))
    np.testing.assert_allclose(w, exact, atol=1e-6)  # the cost model chose the exact sum here
    Vw, Fw = sdf._winding_vf(V, F)
    fast = np.asarray(sdf._lib().fast_winding_number(Vw, Fw, P))
    assert ((fast > 0.5) == inside)[far].all()
