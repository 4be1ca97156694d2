import numpy as np
import torch
import trimesh

from hoitool.geometry import rotations as R
from hoitool.geometry.grid import (
    GRID_RES, N_UNIT_M, OBJECT_CLAMP, grid_coords, nTh_from_joints, object_channel, query_grid,
    unit_ball_transform,
)
from hoitool.geometry.sdf import sdf_grid, signed_distance
from hoitool.geometry.transforms import apply_transform, invert_transform, make_transform


def _object():
    m = trimesh.creation.capsule(height=0.08, radius=0.025)
    m.apply_translation([0.02, -0.01, 0.03])
    uTo = unit_ball_transform(m.vertices)
    mu = m.copy()
    mu.apply_transform(uTo)
    sdf_u = torch.as_tensor(sdf_grid(mu, 64), dtype=torch.float32)[None, None]
    return m, uTo, sdf_u


def test_unit_ball_transform():
    m, uTo, _ = _object()
    v = m.vertices @ uTo[:3, :3].T + uTo[:3, 3]
    assert np.allclose(v.mean(0), 0, atol=1e-9)
    assert np.isclose(np.linalg.norm(v, axis=1).max(), 0.9)


def test_nTh_puts_origin_on_palm_side_of_index_knuckle(right_hand):
    J = right_hand.rest_joints()
    nTh = nTh_from_joints(J)
    c = J[:, 1] + torch.tensor([0.0, -0.08, 0.0])
    assert torch.allclose(apply_transform(nTh, c[:, None])[:, 0], torch.zeros(1, 3), atol=1e-6)
    assert torch.allclose(apply_transform(nTh, (c + torch.tensor([0.2, 0, 0]))[:, None]), torch.tensor([[[1.0, 0, 0]]]), atol=1e-6)


def test_object_channel_matches_direct_sdf():
    m, uTo, sdf_u = _object()
    g = torch.Generator().manual_seed(0)
    rot = R.random_rotations(2, g)
    oTh = make_transform(rot, torch.tensor([[0.01, 0.0, -0.02], [0.0, 0.03, 0.0]]))
    hTn = invert_transform(nTh_from_joints(torch.zeros(2, 16, 3)))
    uTn = torch.as_tensor(uTo, dtype=torch.float32) @ oTh @ hTn
    ch = object_channel(sdf_u, uTn)
    assert ch.shape == (2, 1, GRID_RES, GRID_RES, GRID_RES)
    pts_o = apply_transform(oTh @ hTn, grid_coords().reshape(1, -1, 3).expand(2, -1, -1))
    pts_u = apply_transform(torch.as_tensor(uTo, dtype=torch.float32)[None], pts_o)
    for b in range(2):
        ref = signed_distance(m, pts_o[b].numpy()) / N_UNIT_M
        ref = np.clip(ref, -OBJECT_CLAMP, OBJECT_CLAMP) / OBJECT_CLAMP
        got = ch[b].reshape(-1).numpy()
        in_box = (pts_u[b].abs() <= 1).all(-1).numpy()
        # inside the u box: trilinear interpolation of a 64^3 grid, within one voxel
        voxel_n = 2.0 / 63 / uTo[0, 0] / N_UNIT_M / OBJECT_CLAMP
        err = np.abs(got - ref)[in_box]
        assert err.max() < voxel_n, (err.max(), voxel_n)
        # outside it: border value plus distance to the box, never below the true distance
        assert (got[~in_box] >= ref[~in_box] - 1e-4).all()
        inside = ref < -0.25
        assert inside.sum() > 20 and (ch[b].reshape(-1).numpy()[inside] < 0).all()


def test_object_channel_differentiable_in_transform():
    _, uTo, sdf_u = _object()
    t = torch.tensor([[0.0, 0.0, 0.0]], requires_grad=True)
    oTh = make_transform(torch.eye(3)[None], t)
    hTn = invert_transform(nTh_from_joints(torch.zeros(1, 16, 3)))
    ch = object_channel(sdf_u, torch.as_tensor(uTo, dtype=torch.float32) @ oTh @ hTn)
    ch.sum().backward()
    assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_query_grid_outside_box_grows():
    sdf = torch.zeros(1, 1, 8, 8, 8)
    p = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 0.0, -3.0]]])
    assert torch.allclose(query_grid(sdf, p), torch.tensor([[1.0, 2.0]]))
