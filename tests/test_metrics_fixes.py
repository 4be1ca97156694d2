"""Geometry and metric invariants that real scans broke: signs on self-intersecting meshes, and
simulation displacement that must not depend on where a mesh file puts its origin."""

import numpy as np
import pytest
import trimesh

from hoitool.metrics import simulation as sim_mod

FREE_FALL_CM = 100 * 9.8 * 630 / 240**2  # 35 steps of 1/240 s, semi-implicit Euler


def _box_on_plate(offset):
    obj = trimesh.creation.box((0.04, 0.04, 0.04))
    plate = trimesh.creation.box((0.3, 0.3, 0.02))
    plate.apply_translation([0, 0, -0.0301])
    for m in (obj, plate):  # the same scene, only the file origin moves
        m.apply_translation(offset)
    return obj, plate


@pytest.mark.parametrize("offset", [(0.1, 0, 0), (0.3, 0.0, 0.0), (-0.2, 0.15, 0.05)])
def test_displacement_does_not_depend_on_the_file_origin(offset):
    obj, plate = _box_on_plate((0, 0, 0))
    with sim_mod.GraspSimulator(obj) as sim:
        ref = sim.displacement_cm(plate.vertices, plate.faces)
    obj, plate = _box_on_plate(offset)
    with sim_mod.GraspSimulator(obj) as sim:
        moved = sim.displacement_cm(plate.vertices, plate.faces)
    assert ref < 0.5
    assert moved == pytest.approx(ref, abs=0.05)  # before the fix: 9.1 cm at 10 cm, 10.5 cm at 30 cm


def test_six_gravity_directions():
    obj, plate = _box_on_plate((0.05, 0.0, 0.0))
    with sim_mod.GraspSimulator(obj) as sim:
        d = sim.displacements_cm(plate.vertices, plate.faces)
        far = trimesh.creation.box((0.01, 0.01, 0.01))
        far.apply_translation([1.0, 1.0, 1.0])
        free = sim.displacements_cm(far.vertices, far.faces)
    assert len(d) == len(sim_mod.SIX_DIRECTIONS)
    # the plate holds it against -z only; every other direction is a free fall (or a slide off the plate)
    assert d[5] < 0.5
    assert d[4] == pytest.approx(FREE_FALL_CM, rel=0.02)
    assert np.allclose(free, FREE_FALL_CM, rtol=0.02)


# -- signed distances on a watertight mesh that self-intersects ----------------------------------
def _two_boxes():
    a = trimesh.creation.box((0.08, 0.05, 0.05))
    b = trimesh.creation.box((0.05, 0.05, 0.08))
    b.apply_translation([0.02, 0, 0])
    m = trimesh.util.concatenate([a, b])
    m.merge_vertices()
    return m, (a, b)


def _inside_union(P, boxes):
    return np.any([np.all(np.abs(P - bx.bounding_box.centroid) < bx.extents / 2, axis=1) for bx in boxes], axis=0)


def test_signs_on_overlapping_boxes_follow_the_union():
    from hoitool.geometry.sdf import sdf_grid, signed_distance

    m, boxes = _two_boxes()
    assert m.is_watertight
    rng = np.random.default_rng(0)
    lo, hi = m.bounds
    P = rng.uniform(lo - 0.02, hi + 0.02, size=(18328, 3))
    s = signed_distance(m, P)
    inside = _inside_union(P, boxes)
    clear = np.abs(s) > 1e-4  # points on the surface have no sign
    assert ((s < 0) != inside)[clear].sum() == 0  # before the fix: 434 wrong
    # the same on a truncated grid (flood-filled far regions) around the object
    R = 48
    g = sdf_grid(m, R, -0.07, 0.07, truncation=0.01)
    t = np.linspace(-0.07, 0.07, R)
    G = np.stack(np.meshgrid(t, t, t, indexing="ij"), -1).reshape(-1, 3)
    gi = _inside_union(G, boxes)
    clear = np.abs(g.ravel()) > 1e-4
    assert ((g.ravel() < 0) != gi)[clear].sum() == 0


def test_depth_metric_inside_the_overlap_of_a_self_intersecting_object():
    from hoitool.metrics.grasp import grasp_metrics

    m, boxes = _two_boxes()
    # a 6 mm cube inside the upright box, above the flat one: every vertex is inside the union. Its
    # depth is the distance to the nearest sheet of the mesh, the upright box's top (z = 4 cm) or
    # the flat box's top (z = 2.5 cm, a face inside the upright box): the mesh as given, unresolved
    probe = trimesh.creation.box((0.006, 0.006, 0.006))
    probe.apply_translation([0.02, 0.0, 0.032])
    assert _inside_union(probe.vertices, boxes).all()
    z = probe.vertices[:, 2]
    depth_cm = 100 * np.minimum(0.04 - z, z - 0.025)
    g = grasp_metrics(probe.vertices[None], probe.faces, m, simulate=False)
    assert g.max_depth_cm[0] == pytest.approx(depth_cm.max(), abs=1e-4)
    # before the fix the four vertices nearest the inner face counted as outside: mean 0.50 cm, not 0.45
    assert g.mean_depth_cm[0] == pytest.approx(depth_cm.mean(), abs=1e-4)
