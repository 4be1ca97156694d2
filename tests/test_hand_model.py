import numpy as np
import pytest
import smplx
import torch
import trimesh

from hoitool.assets import asset_dir
from hoitool.hand import HandModel, HandParams
from hoitool.hand.keypoints import FINGER_JOINTS, KEYPOINT_NAMES
from hoitool.hand.mirror import mirror_params, mirror_points
from hoitool.hand.prior import PosePrior

# MANO's published rest joints (metres): wrist, index 1-3, middle 1-3, little 1-3.
MANO_REST = {
    0: (0.0957, 0.0064, 0.0062), 1: (0.0076, 0.0012, 0.0269), 2: (-0.0251, 0.0052, 0.0291),
    3: (-0.0473, 0.0039, 0.0290), 4: (0.0010, 0.0049, 0.0028), 5: (-0.0302, 0.0068, -0.0028),
    6: (-0.0531, 0.0055, -0.0067), 7: (0.0269, -0.0036, -0.0370), 8: (0.0099, -0.0035, -0.0495),
    9: (-0.0060, -0.0042, -0.059),
}
#: The open hand is another person's hand: each rest joint within 12 mm of MANO's, the mean within 7 mm.
REST_TOL_MAX_M, REST_TOL_MEAN_M = 0.012, 0.007


def test_smplx_loads_asset_file_unchanged():
    for side, name in (("right", "open_hand_right.pkl"), ("left", "open_hand_left.pkl")):
        m = smplx.MANO(str(asset_dir() / "hand" / name), is_rhand=side == "right", use_pca=False, flat_hand_mean=True)
        out = m(return_verts=True)
        assert out.vertices.shape[1] == m.v_template.shape[0]
        assert torch.isfinite(out.vertices).all()


def test_open_hand_basics(right_hand):
    assert right_hand.source.startswith("open hand")
    assert 700 <= right_hand.num_vertices <= 860
    mesh = trimesh.Trimesh(right_hand.v_template.numpy(), right_hand.faces.numpy(), process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0


def test_rest_joints_near_mano(right_hand):
    J = right_hand.rest_joints()[0].numpy()
    err = np.array([np.linalg.norm(J[i] - np.array(p)) for i, p in MANO_REST.items()])
    assert err.max() < REST_TOL_MAX_M and err.mean() < REST_TOL_MEAN_M, err


def test_mano_axes_conventions(right_hand):
    J = right_hand.rest_joints()[0].numpy()
    v = right_hand.v_template.numpy()
    tips = v[right_hand.metadata.fingertips]
    assert (tips[1:, 0] < J[0, 0] - 0.1).all()  # fingers towards -x
    assert right_hand.metadata.palm_normal[1] < -0.9  # palm faces -y
    assert tips[0, 2] > J[4, 2] + 0.05  # thumb towards +z


def test_zero_pose_is_flat(right_hand):
    out = right_hand(HandParams.zeros(1))
    assert torch.allclose(out.vertices[0], right_hand.v_template, atol=1e-6)
    kp = out.keypoints[0].numpy()
    n = right_hand.metadata.palm_normal
    for f, base in (("index", 5), ("middle", 9), ("ring", 13), ("little", 17)):
        bones = np.diff(kp[base:base + 4], axis=0)
        bones /= np.linalg.norm(bones, axis=1, keepdims=True)
        bend = np.degrees(np.arccos(np.clip((bones[:-1] * bones[1:]).sum(1), -1, 1)))
        assert bend.max() < 12, (f, bend)  # straight fingers
        assert np.abs(bones @ n).max() < 0.2, f  # lying in the palm plane


def test_keypoint_order(right_hand):
    kp = right_hand(HandParams.zeros(1)).keypoints[0]
    J = right_hand.rest_joints()[0]
    assert KEYPOINT_NAMES[5] == "index1" and torch.allclose(kp[5], J[1])
    assert KEYPOINT_NAMES[1] == "thumb1" and torch.allclose(kp[1], J[13])
    assert KEYPOINT_NAMES[17] == "little1" and torch.allclose(kp[17], J[7])
    # tips are farther from the wrist than the last joint of their finger
    for t, j in ((4, 15), (8, 3), (12, 6), (16, 12), (20, 9)):
        assert (kp[t] - kp[0]).norm() > (J[j] - J[0]).norm()


def test_mirroring(right_hand, left_hand):
    g = torch.Generator().manual_seed(0)
    p = HandParams(0.5 * torch.randn(6, 3, generator=g), 0.4 * torch.randn(6, 45, generator=g),
                   torch.randn(6, 10, generator=g), 0.1 * torch.randn(6, 3, generator=g), "right")
    back = mirror_params(mirror_params(p))
    for k in HandParams.TENSORS:
        assert torch.equal(getattr(back, k), getattr(p, k))
    r, l = right_hand(p), left_hand(mirror_params(p))
    assert torch.allclose(l.vertices, mirror_points(r.vertices), atol=1e-5)
    assert torch.allclose(l.keypoints, mirror_points(r.keypoints), atol=1e-5)
    assert np.array_equal(left_hand.metadata.fingertips, right_hand.metadata.fingertips)


def test_batch_of_poses_finite_and_continuous(right_hand):
    prior = PosePrior.from_hand(right_hand)
    g = torch.Generator().manual_seed(1)
    pose = prior.sample(64, g)
    p = HandParams.zeros(64)
    p.hand_pose = pose
    p.betas = torch.randn(64, 10, generator=g)
    v = right_hand(p).vertices
    assert torch.isfinite(v).all()
    p2 = p.clone()
    p2.hand_pose = pose + 1e-3 * torch.randn(64, 45, generator=g)
    dv = (right_hand(p2).vertices - v).norm(dim=-1).max()
    assert dv < 5e-4  # 1 mrad on every joint moves no vertex more than 0.5 mm


def test_shape_directions_have_their_meaning(right_hand):
    def length(betas):
        kp = right_hand(HandParams(torch.zeros(1, 3), torch.zeros(1, 45), betas, torch.zeros(1, 3))).keypoints[0]
        return (kp[12] - kp[0]).norm().item(), (kp[12] - kp[9]).norm().item(), (kp[9] - kp[0]).norm().item()

    b = torch.zeros(1, 10)
    base = length(b)
    b[0, 0] = 2.0  # size
    big = length(b)
    assert all(x > y for x, y in zip(big, base))
    b = torch.zeros(1, 10)
    b[0, 1] = 2.0  # finger length
    fl = length(b)
    assert fl[1] > base[1] + 0.003 and abs(fl[2] - base[2]) < abs(fl[1] - base[1])


def test_joints_follow_shape(right_hand):
    # the regressor is a convex combination of vertices: scaling the shaped template scales joints
    assert (right_hand.layer.J_regressor >= 0).all()
    assert torch.allclose(right_hand.layer.J_regressor.sum(1), torch.ones(16), atol=1e-5)


def test_metadata(right_hand):
    md = right_hand.metadata
    assert len(md.fingertips) == 5 and len(set(md.fingertips.tolist())) == 5
    for zone in ("thumb", "index", "middle", "ring", "little", "palm"):
        assert len(md.contact_zones[zone]) >= 5, zone
    v = right_hand.v_template.numpy()
    palm = v[md.contact_zones["palm"]]
    centre = v.mean(0)
    assert ((palm - centre) @ md.palm_normal).mean() > 0  # palm zone on the palm side
    assert 0.2 < md.palmar_faces.mean() < 0.6


def test_prior_flexion_curls_towards_palm(right_hand, left_hand):
    for hand in (right_hand, left_hand):
        prior = PosePrior.from_hand(hand)
        q = torch.zeros(1, 15, 3)
        for j in FINGER_JOINTS["index"]:
            q[0, j - 1, 0] = 1.0
        kp = hand(hand_pose=prior.from_anatomical(q)).keypoints[0]
        rest = hand(HandParams.zeros(1, hand.side)).keypoints[0]
        n = torch.as_tensor(hand.metadata.palm_normal, dtype=torch.float32)
        assert ((kp[8] - rest[8]) @ n) > 0.03


def test_prior_is_side_symmetric(right_hand, left_hand):
    pr, pl = PosePrior.from_hand(right_hand), PosePrior.from_hand(left_hand)
    q = torch.randn(3, 15, 3, generator=torch.Generator().manual_seed(3)) * 0.3
    p = HandParams.zeros(3)
    p.hand_pose = pr.from_anatomical(q)
    assert torch.allclose(mirror_params(p).hand_pose, pl.from_anatomical(q), atol=1e-5)
    assert torch.allclose(pr.to_anatomical(pr.from_anatomical(q)), q, atol=1e-5)


def test_samples_within_limits(right_hand):
    prior = PosePrior.from_hand(right_hand)
    s = prior.sample(500, torch.Generator().manual_seed(4))
    assert prior.limit_violation(s).max() < 1e-8


def test_mano_dir_without_files_is_a_clear_error(tmp_path, monkeypatch):
    from hoitool.errors import InputError

    with pytest.raises(InputError, match="MANO_RIGHT.pkl"):
        HandModel("right", mano_dir=tmp_path)
    monkeypatch.setenv("HOITOOL_MANO_DIR", str(tmp_path))
    with pytest.raises(InputError, match="HOITOOL_MANO_DIR"):
        HandModel("left")
