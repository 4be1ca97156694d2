"""The conventions every dataset converter relies on, checked against direct computations:
moving hand parameters between frames, PCA / mean-pose expansion, and left hands posed by
toolkits with the released MANO_LEFT.pkl."""

import numpy as np
import torch

from dataset_fixtures import pca_and_mean, random_pose
from fake_mano import make_fake_mano_dir
from hoitool.data.datasets.base import Context, ConvertOptions
from hoitool.hand.mano_io import read_model_file
from hoitool.hand.model import HandModel, HandParams, transform_params


def _random_params(side, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return HandParams(torch.randn(n, 3, generator=g), 0.3 * torch.randn(n, 45, generator=g), 1.5 * torch.randn(n, 10, generator=g),
                      0.2 * torch.randn(n, 3, generator=g), side)


def test_transform_params_moves_the_mesh_rigidly(right_hand, left_hand):
    rng = np.random.default_rng(0)
    for hand in (right_hand, left_hand):
        p = _random_params(hand.side)
        T = torch.as_tensor(np.stack([random_pose(rng) for _ in range(3)]), dtype=torch.float32)
        with torch.no_grad():
            want = hand(p).vertices @ T[:, :3, :3].transpose(1, 2) + T[:, None, :3, 3]
            got = hand(transform_params(hand, p, T)).vertices
        assert (got - want).abs().max() < 2e-5


def test_full_pose_expands_pca_and_mean(tmp_path, fake_mano):
    ctx = Context(ConvertOptions("ho3d", tmp_path, tmp_path, mano_dir=str(fake_mano)))
    comps, mean = pca_and_mean(fake_mano, "left")
    c = np.random.default_rng(1).normal(size=(2, 12))
    assert np.allclose(ctx.full_pose("left", c, pca=True, flat_mean=False), c @ comps[:12] + mean, atol=1e-5)
    a = np.random.default_rng(2).normal(size=45)
    assert np.allclose(ctx.full_pose("left", a, flat_mean=False), a + mean, atol=1e-6)
    assert np.allclose(ctx.full_pose("left", a), a, atol=1e-6)


def test_left_hands_posed_with_the_released_file_keep_their_wrist_and_shape(tmp_path):
    mano = make_fake_mano_dir(tmp_path / "mano", released_left=True)
    released = HandModel.from_arrays(read_model_file(mano / "MANO_LEFT.pkl"), "left")  # as a toolkit poses it
    corrected = HandModel("left", mano)
    assert not torch.allclose(released.layer.shapedirs, corrected.layer.shapedirs)
    p = _random_params("left")
    ctx = Context(ConvertOptions("dexycb", tmp_path, tmp_path, mano_dir=str(mano)))
    q = ctx.left_as_released(p)
    with torch.no_grad():
        want, naive, got = released(p), corrected(p), corrected(q)
    wrist_err = (got.joints[:, 0] - want.joints[:, 0]).abs().max()
    assert wrist_err < 1e-5
    err = (got.vertices - want.vertices).norm(dim=-1).mean()
    naive_err = (naive.vertices - want.vertices).norm(dim=-1).mean()
    assert err < 0.5 * naive_err, (err, naive_err)
    right = _random_params("right")
    assert ctx.left_as_released(right) is right
