"""The refinement network applied in a camera frame (reconstruct's "refinenet" stage): the same
answer as in the object's own frame, and invariant to moving, scaling and mirroring the scene."""

import pytest
import torch
import trimesh

from hoitool.errors import InputError
from hoitool.geometry.grid import canonical_sdf
from hoitool.geometry.rotations import axis_angle_to_matrix
from hoitool.hand.mirror import mirror_params, mirror_points
from hoitool.hand.model import HandModel, HandParams, transform_params
from hoitool.hand.subset import even_subset
from hoitool.refine import RefineConfig, RefineNet, refine_hand
from hoitool.refine.scene import check_refinenet_hand, refine_in_camera


def _object() -> trimesh.Trimesh:
    """A leaning, off-centre cone: no mirror symmetry about any axis plane."""
    m = trimesh.creation.cone(0.05, 0.12, sections=24)
    m.apply_transform(trimesh.transformations.rotation_matrix(0.5, [0, 1, 0]))
    m.apply_translation([0.02, 0.01, -0.03])
    return m


@pytest.fixture(scope="module")
def setup():
    right, left = HandModel("right"), HandModel("left")
    net = RefineNet(RefineConfig(surface_points=16, width=32), torch.as_tensor(even_subset(right, 16)))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a network that moves the hand (an untrained one leaves it in place)
        net.head.weight.copy_(torch.randn(net.head.weight.shape, generator=g) * 0.05)
    grid, uTo = canonical_sdf(_object(), 32)
    # a right hand with its palm near the box, in the box's frame
    p = HandParams(torch.tensor([[0.3, -0.2, 0.1]]), torch.randn(1, 45, generator=g) * 0.2, torch.zeros(1, 10),
                   torch.tensor([[0.02, 0.05, 0.01]]), "right")
    return right, left, net, torch.as_tensor(grid), torch.as_tensor(uTo, dtype=torch.float32), p


def _verts(hand, params, c=1.0):
    with torch.no_grad():
        return c * hand(params).vertices


def _scene(hand, p_o, R, t, s, c):
    """Camera-frame params of a hand given in the frame of the object scaled by s / c."""
    T = torch.eye(4)[None].clone()
    T[:, :3, :3], T[:, :3, 3] = R, t / c
    return transform_params(hand, p_o, T)


def test_identity_placement_matches_the_object_frame(setup):
    right, _, net, grid, uTo, p = setup
    want = refine_hand(net, right, p, grid, uTo).params
    got = refine_in_camera(net, right, right, p, torch.ones(1), torch.eye(3)[None], torch.zeros(1, 3), torch.ones(1), grid, uTo)
    moved = (_verts(right, want) - _verts(right, p)).norm(dim=-1).mean()
    assert moved > 2e-3  # the network does move the hand: the comparison below is not trivial
    assert (_verts(right, got) - _verts(right, want)).norm(dim=-1).max() < 1e-5


def test_moving_and_scaling_the_scene_moves_the_answer(setup):
    """Place the same hand-object pair in a camera with a rotation, translation, object scale s
    and hand scale c (the object frame seen by the network is the mesh scaled by s / c): the
    refined camera-frame hand is the object-frame answer placed the same way."""
    right, _, net, grid, uTo, p = setup
    R = axis_angle_to_matrix(torch.tensor([[0.4, -1.1, 2.0]]))
    t = torch.tensor([[0.05, -0.03, 0.45]])
    for s, c in ((1.0, 1.0), (1.3, 1.3), (0.8, 1.1)):
        k = s / c
        uTo_k = uTo @ torch.diag(torch.tensor([1 / k, 1 / k, 1 / k, 1.0]))
        want_o = refine_hand(net, right, p, grid, uTo_k).params
        pc = _scene(right, p, R, t, s, c)
        got = refine_in_camera(net, right, right, pc, torch.tensor([c]), R, t, torch.tensor([s]), grid, uTo)
        want = _scene(right, want_o, R, t, s, c)
        assert (_verts(right, got, c) - _verts(right, want, c)).norm(dim=-1).max() < 2e-5, (s, c)


def test_left_hand_is_the_mirrored_right(setup):
    """A left hand and the x-mirrored object: the answer is the mirror of the right-hand answer."""
    right, left, net, grid, uTo, p = setup
    R = axis_angle_to_matrix(torch.tensor([[0.2, 0.5, -0.3]]))
    t = torch.tensor([[0.0, 0.02, 0.5]])
    pc = _scene(right, p, R, t, 1.0, 1.0)
    got_r = refine_in_camera(net, right, right, pc, torch.ones(1), R, t, torch.ones(1), grid, uTo)
    # the mirrored scene: the hand mirrored, and the mirrored mesh M x placed by M R M and M t
    M = torch.diag(torch.tensor([-1.0, 1.0, 1.0]))
    mesh_m = _object().copy()
    mesh_m.apply_transform(torch.block_diag(M, torch.ones(1, 1)).double().numpy())  # trimesh re-winds a reflection
    grid_m, uTo_m = canonical_sdf(mesh_m, 32)
    got_l = refine_in_camera(net, left, right, mirror_params(pc), torch.ones(1), M @ R @ M, t @ M, torch.ones(1),
                             torch.as_tensor(grid_m), torch.as_tensor(uTo_m, dtype=torch.float32))
    assert got_l.side == "left"
    assert (_verts(left, got_l) - mirror_points(_verts(right, got_r))).norm(dim=-1).max() < 1e-4


def test_a_network_of_another_hand_is_refused(setup):
    right = setup[0]
    with pytest.raises(InputError, match="trained with"):
        check_refinenet_hand({"hand_sha": "0" * 16, "hand": "MANO at /x", "path": "m.pt"}, right)
    check_refinenet_hand({"hand_sha": None}, right)  # older files without a fingerprint pass


def test_moving_the_object_frame_changes_nothing(setup):
    """The same hand-object pair described in another object frame (a mesh whose origin and axes
    moved): the refined hand is the same hand, moved with the frame."""
    right, _, net, grid, uTo, p = setup
    want = refine_hand(net, right, p, grid, uTo).params
    T = torch.eye(4)[None].clone()  # new frame <- old frame
    T[:, :3, :3] = axis_angle_to_matrix(torch.tensor([[1.2, -0.4, 2.5]]))
    T[:, :3, 3] = torch.tensor([0.3, -0.2, 0.15])
    p2 = transform_params(right, p, T)
    got = refine_hand(net, right, p2, grid, uTo @ torch.linalg.inv(T[0])).params
    moved = (_verts(right, want) - _verts(right, p)).norm(dim=-1).mean()
    v_want = _verts(right, want) @ T[0, :3, :3].T + T[0, :3, 3]
    assert moved > 2e-3
    assert (_verts(right, got) - v_want).norm(dim=-1).max() < 1e-4  # float32 rounding at 0.3 m from the origin


def test_batched_scenes_match_one_at_a_time(setup):
    """Two hands with their own object pose, object scale and hand scale in one call."""
    right, _, net, grid, uTo, p = setup
    R = axis_angle_to_matrix(torch.tensor([[0.4, -1.1, 2.0], [-0.3, 0.2, 0.9]]))
    t = torch.tensor([[0.05, -0.03, 0.45], [-0.1, 0.02, 0.6]])
    s, c = torch.tensor([0.8, 1.2]), torch.tensor([1.1, 0.9])
    pc = HandParams.cat([_scene(right, p, R[i:i + 1], t[i:i + 1], float(s[i]), float(c[i])) for i in range(2)])
    both = refine_in_camera(net, right, right, pc, c, R, t, s, grid, uTo)
    for i in range(2):
        one = refine_in_camera(net, right, right, pc[i], c[i:i + 1], R[i:i + 1], t[i:i + 1], s[i:i + 1], grid, uTo)
        assert (_verts(right, both[i]) - _verts(right, one)).norm(dim=-1).max() < 1e-5


def test_scaled_sdf_is_the_scaled_object(setup):
    """The grid read for an object seen at k times its size gives k x the mesh's own distances at
    k x its points (the training grids' 6 cm truncation holds at the scaled size)."""
    from hoitool.geometry.grid import SDFVolume
    from hoitool.refine.scene import scaled_object_sdf

    mesh = _object()
    g = torch.Generator().manual_seed(3)
    pts = torch.as_tensor(mesh.bounds.mean(0), dtype=torch.float32) + (torch.rand(1, 300, 3, generator=g) - 0.5) * 0.12
    own = SDFVolume(*canonical_sdf(mesh, 64))(pts)
    for k in (0.7, 1.6):
        grid, uTo = scaled_object_sdf(mesh, k)
        uTo_k = torch.as_tensor(uTo, dtype=torch.float32) @ torch.diag(torch.tensor([1 / k, 1 / k, 1 / k, 1.0]))
        got = SDFVolume(grid, uTo_k)(k * pts)
        near = own.abs() < 0.02
        assert near.sum() > 30 and (got[near] - k * own[near]).abs().max() < 2e-3 * max(k, 1)
        assert float(got.max()) <= 0.06 + 1e-4  # capped at 6 cm of the scaled object


def test_refine_hand_refuses_another_hand_model(setup):
    right, _, net, grid, uTo, p = setup
    net.hand_sha = "0" * 16
    try:
        with pytest.raises(InputError, match="trained with"):
            refine_hand(net, right, p, grid, uTo)
    finally:
        del net.hand_sha


def test_reconstruct_runs_the_network_on_the_kept_hypothesis(setup):
    """reconstruct_image's "refinenet" stage is the network applied to the joint stage's answer,
    with the mesh 20 cm off its own origin (the stage converts to the mesh's origin and scale)."""
    import numpy as np

    from hoitool.data.synthetic.images import random_view
    from hoitool.pipelines.image_recon import ReconstructConfig, reconstruct_image
    from hoitool.refine.scene import scaled_object_sdf

    right, _, net, _, _, _ = setup
    mesh = trimesh.creation.box((0.06, 0.05, 0.08))
    hp = HandParams.zeros(1)
    hp.transl[:] = torch.tensor([-0.02, -0.06, 0.0])
    view = random_view(right, mesh, hp, np.random.default_rng(1), size=160)
    moved = mesh.copy()
    moved.apply_translation([0.2, -0.1, 0.05])
    cfg = ReconstructConfig(method="cao", rotations=50, candidates=2, top_k=2, pose_steps=5, refine_steps=5)
    res = reconstruct_image(view.inputs, moved, view.camera, cfg, hand=right, refinenet=net)
    assert list(res.stages) == ["pose", "joint", "refinenet"] and res.final is res.hypotheses[0]
    joint, fin = res.stages["joint"], res.stages["refinenet"]
    assert np.allclose(fin.R, joint.R) and np.allclose(fin.t, joint.t) and fin.s == joint.s and fin.hand_scale == joint.hand_scale
    grid, uTo = scaled_object_sdf(moved, joint.s / joint.hand_scale)
    want = refine_in_camera(net, right, right, joint.hand, torch.tensor([joint.hand_scale]), torch.as_tensor(joint.R, dtype=torch.float32)[None],
                            torch.as_tensor(joint.t, dtype=torch.float32)[None], torch.tensor([joint.s]), grid, uTo)
    assert (_verts(right, fin.hand) - _verts(right, joint.hand)).norm(dim=-1).mean() > 1e-3
    assert (_verts(right, fin.hand) - _verts(right, want)).norm(dim=-1).max() < 1e-4
    assert fin.metrics["loss"] == joint.metrics["loss"]
