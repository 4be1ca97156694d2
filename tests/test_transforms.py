import numpy as np
import torch

from hoitool.geometry import rotations as R
from hoitool.geometry.transforms import apply_transform, invert_transform, make_transform, umeyama


def test_invert_similarity():
    g = torch.Generator().manual_seed(0)
    rot = R.random_rotations(8, g, dtype=torch.float64)
    T = make_transform(rot, torch.randn(8, 3, generator=g, dtype=torch.float64), torch.rand(8, generator=g, dtype=torch.float64) + 0.5)
    eye = torch.eye(4, dtype=torch.float64).expand(8, 4, 4)
    assert torch.allclose(T @ invert_transform(T), eye, atol=1e-10)
    p = torch.randn(8, 5, 3, generator=g, dtype=torch.float64)
    assert torch.allclose(apply_transform(invert_transform(T), apply_transform(T, p)), p, atol=1e-10)


def test_umeyama_recovers_similarity():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(30, 3))
    rot = R.random_rotations(1, torch.Generator().manual_seed(1), dtype=torch.float64)[0].numpy()
    dst = 1.7 * src @ rot.T + np.array([0.1, -0.2, 0.3])
    T = umeyama(src, dst)
    assert np.allclose(T[:3, :3], 1.7 * rot, atol=1e-9)
    assert np.allclose(T[:3, 3], [0.1, -0.2, 0.3], atol=1e-9)

