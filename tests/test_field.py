import torch

from hoitool.geometry.grid import HAND_CLAMP, grid_coords
from hoitool.hand import HandParams
from hoitool.hand.field import hand_field, keypoints_from_field, pose_from_field, skeletal_field
from hoitool.hand.prior import PosePrior


def test_field_values_and_channels():
    kp = torch.zeros(1, 21, 3)
    kp[0, 5] = torch.tensor([0.3, -0.2, 0.1])
    f = skeletal_field(kp, 16)
    assert f.shape == (1, 20, 16, 16, 16)
    x = grid_coords(16).reshape(-1, 3)
    ref = ((x - kp[0, 5]) ** 2).sum(-1).clamp(max=HAND_CLAMP)
    assert torch.allclose(f[0, 4].reshape(-1), ref)  # channel 4 is keypoint 5 (index1)
    assert f.max() <= HAND_CLAMP


def test_keypoints_from_field_exact():
    kp = torch.rand(3, 21, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    est, valid = keypoints_from_field(skeletal_field(kp))
    assert valid.all()
    assert torch.allclose(est, kp[:, 1:], atol=1e-4)


def test_field_to_pose_round_trip(right_hand):
    """field(pose) -> fitted pose reproduces the 21 keypoints within 5 mm."""
    prior = PosePrior.from_hand(right_hand)
    p = HandParams.zeros(12)
    p.hand_pose = prior.sample(12, torch.Generator().manual_seed(7))
    fitted = pose_from_field(right_hand, hand_field(right_hand, p))
    err = (right_hand(p).keypoints - right_hand(fitted).keypoints).norm(dim=-1)
    assert err.max() < 0.005, err.max()
