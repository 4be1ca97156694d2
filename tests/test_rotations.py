import math

import torch

from hoitool.geometry import rotations as R


def _random_aa(n, max_angle=math.pi - 1e-3, seed=0):
    g = torch.Generator().manual_seed(seed)
    axis = torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=torch.float64), dim=-1)
    angle = torch.rand(n, 1, generator=g, dtype=torch.float64) * max_angle
    return axis * angle


def test_axis_angle_matrix_round_trip():
    aa = torch.cat([_random_aa(500), torch.zeros(1, 3, dtype=torch.float64), torch.tensor([[1e-7, 0, 0]], dtype=torch.float64)])
    M = R.axis_angle_to_matrix(aa)
    assert torch.allclose(M @ M.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand_as(M), atol=1e-10)
    assert torch.allclose(torch.det(M), torch.ones(len(M), dtype=torch.float64), atol=1e-10)
    assert torch.allclose(R.matrix_to_axis_angle(M), aa, atol=1e-6)


def test_rodrigues_matches_matrix_exponential():
    aa = _random_aa(50)
    assert torch.allclose(R.axis_angle_to_matrix(aa), torch.linalg.matrix_exp(R.skew(aa)), atol=1e-10)


def test_near_pi_gives_same_rotation():
    aa = _random_aa(200, seed=1)
    aa = torch.nn.functional.normalize(aa, dim=-1) * (math.pi - 1e-5)
    M = R.axis_angle_to_matrix(aa)
    assert torch.allclose(R.axis_angle_to_matrix(R.matrix_to_axis_angle(M)), M, atol=1e-6)


def test_rot6d_and_quaternion_round_trip():
    M = R.random_rotations(300, torch.Generator().manual_seed(2), dtype=torch.float64)
    assert torch.allclose(R.rot6d_to_matrix(R.matrix_to_rot6d(M)), M, atol=1e-10)
    assert torch.allclose(R.quaternion_to_matrix(R.matrix_to_quaternion(M)), M, atol=1e-10)


def test_gradient_finite_at_identity():
    aa = torch.zeros(4, 3, requires_grad=True)
    R.axis_angle_to_matrix(aa).sum().backward()
    assert torch.isfinite(aa.grad).all()


def test_rotation_angle():
    aa = _random_aa(100, seed=3)
    assert torch.allclose(R.rotation_angle(R.axis_angle_to_matrix(aa)), aa.norm(dim=-1), atol=1e-6)
