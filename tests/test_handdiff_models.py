"""The two-hand denoiser and the PointNet++ encoder: shapes, batch independence, CFG null token,
gradients, config round trips, point-order invariance."""

from dataclasses import asdict

import pytest
import torch
from torch import nn

from hoitool.models.handdiff import HandDiffConfig, HandDiffusionNet, handdiff_from_dict
from hoitool.models.pointnet2 import (PointNet2Config, PointNet2Encoder, farthest_point_sample, knn_group,
                                      pointnet2_from_dict)

SMALL = dict(token_dim=32, heads=4, layers=2, width=64, depth=4)


def small_net(**kw) -> HandDiffusionNet:
    """A small denoiser whose last layer is random (not the zero init), so outputs depend on inputs."""
    torch.manual_seed(0)
    net = HandDiffusionNet(HandDiffConfig(**{**SMALL, **kw}))
    nn.init.normal_(net.out.weight, std=0.1)
    nn.init.normal_(net.out.bias, std=0.1)
    return net.eval()


def test_handdiff_shapes_and_zero_init():
    net = HandDiffusionNet(HandDiffConfig(**SMALL, object_dim=16))
    x, c, o = torch.randn(5, 64), torch.randn(5, 64), torch.randn(5, 16)
    out = net(x, torch.randint(0, 129, (5,)), cond=c, obj=o)
    assert out.shape == (5, 64)
    assert torch.equal(out, torch.zeros(5, 64))  # last layer starts at zero
    assert net(x, torch.full((5,), 3.5), cond=c).shape == (5, 64)  # float timesteps, no object
    assert net(x, torch.tensor(7)).shape == (5, 64)  # scalar timestep broadcast
    joint = HandDiffusionNet(HandDiffConfig(**SMALL, dim=128, cond_dim=0))
    assert joint(torch.randn(3, 128), torch.zeros(3)).shape == (3, 128)
    with pytest.raises(ValueError):
        joint(torch.randn(3, 128), torch.zeros(3), cond=torch.randn(3, 64))
    with pytest.raises(ValueError):
        net(torch.randn(5, 63), torch.zeros(5))


@pytest.mark.parametrize("train", [False, True])
def test_handdiff_batch_independence(train):
    """Sample i's output depends only on sample i (the released code attended across the batch)."""
    net = small_net(object_dim=16)
    net.train(train)  # dropout is 0, so train mode is deterministic too (no fast path)
    B = 6
    x, t, c, o = torch.randn(B, 64), torch.randint(0, 129, (B,)), torch.randn(B, 64), torch.randn(B, 16)
    m = torch.tensor([True, False, True, True, False, True])
    with torch.no_grad():
        ref = net(x, t, cond=c, cond_mask=m, obj=o)
        x2, t2, c2, o2 = x.clone(), t.clone(), c.clone(), o.clone()
        x2[1:] = torch.randn(B - 1, 64)
        t2[1:] = torch.randint(0, 129, (B - 1,))
        c2[1:] += 5.0
        o2[1:] -= 3.0
        out = net(x2, t2, cond=c2, cond_mask=m, obj=o2)
        alone = net(x[:1], t[:1], cond=c[:1], cond_mask=m[:1], obj=o[:1])
    assert torch.allclose(out[0], ref[0], atol=1e-5)
    assert torch.allclose(alone[0], ref[0], atol=1e-5)
    assert not torch.allclose(out[1:], ref[1:], atol=1e-3)  # the others did change


def test_handdiff_null_condition():
    net = small_net(object_dim=16)
    with torch.no_grad():  # move the null tokens away from their init
        net.cond_null.normal_()
        net.obj_null.normal_()
    B = 4
    x, t, c, o = torch.randn(B, 64), torch.randint(0, 129, (B,)), torch.randn(B, 64), torch.randn(B, 16)
    off = torch.zeros(B, dtype=torch.bool)
    with torch.no_grad():
        given = net(x, t, cond=c, obj=o)
        masked = net(x, t, cond=c, cond_mask=off, obj=o)
        none = net(x, t, obj=o)
        assert torch.allclose(masked, none, atol=1e-6)
        assert (masked - given).abs().amax(-1).min() > 1e-3  # every sample changed
        mixed = net(x, t, cond=c, cond_mask=torch.tensor([True, False, True, False]), obj=o)
        assert torch.allclose(mixed[[0, 2]], given[[0, 2]], atol=1e-6)
        assert torch.allclose(mixed[[1, 3]], none[[1, 3]], atol=1e-6)
        assert torch.allclose(net(x, t, cond=c, obj=o, obj_mask=off), net(x, t, cond=c), atol=1e-6)
        assert not torch.allclose(net(x, t, cond=c), given, atol=1e-3)


def test_handdiff_gradients_reach_every_parameter():
    net = small_net(object_dim=16).train()
    B = 8
    m = torch.arange(B) % 2 == 0  # both the condition and its null token are used
    out = net(torch.randn(B, 64), torch.randint(0, 129, (B,)), cond=torch.randn(B, 64), cond_mask=m,
              obj=torch.randn(B, 16), obj_mask=~m)
    out.square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing


def test_handdiff_config_round_trip():
    cfg = HandDiffConfig(dim=128, cond_dim=0, object_dim=32, token_dim=48, heads=3, layers=1, width=96, depth=5, dropout=0.1)
    net = HandDiffusionNet(cfg)
    again = handdiff_from_dict(asdict(net.config))
    assert again.config == cfg
    again.load_state_dict(net.state_dict())  # raises on a missing or mis-shaped weight
    assert net.config_dict() == asdict(cfg)
    net.eval(), again.eval()
    x = torch.randn(2, 128)
    obj = torch.randn(2, 32)
    assert torch.equal(net(x, torch.tensor([3, 9]), obj=obj), again(x, torch.tensor([3, 9]), obj=obj))


def test_fps_distinct_and_order_independent():
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(3, 200, 3, generator=g)
    idx = farthest_point_sample(pts, 50)
    assert idx.shape == (3, 50) and idx.dtype == torch.long
    for row in idx:
        assert len(set(row.tolist())) == 50
    # First pick: the point farthest from the centroid.
    far = (pts - pts.mean(1, keepdim=True)).norm(dim=-1).argmax(1)
    assert torch.equal(idx[:, 0], far)
    perm = torch.randperm(200, generator=g)
    idx_p = farthest_point_sample(pts[:, perm], 50)
    assert torch.equal(perm[idx_p], idx)  # the same points, in the same order
    # Duplicate points: still distinct indices.
    dup = torch.zeros(1, 10, 3)
    assert len(set(farthest_point_sample(dup, 10)[0].tolist())) == 10
    with pytest.raises(ValueError):
        farthest_point_sample(pts, 201)


def test_knn_group_matches_brute_force():
    g = torch.Generator().manual_seed(1)
    pts, feats = torch.randn(2, 40, 3, generator=g), torch.randn(2, 40, 2, generator=g)
    centres = pts[:, :5]
    grouped = knn_group(pts, centres, 4, feats)
    assert grouped.shape == (2, 5, 4, 5)
    for b in range(2):
        for m in range(5):
            d = (pts[b] - centres[b, m]).norm(dim=-1)
            nn_idx = d.argsort()[:4]
            want = torch.cat([pts[b, nn_idx] - centres[b, m], feats[b, nn_idx]], dim=-1)
            got = grouped[b, m]
            # Same set of rows (order within the group does not matter to the max pool).
            assert torch.allclose(got[got[:, 3].argsort()], want[want[:, 3].argsort()], atol=1e-6)
    assert torch.allclose(grouped[:, :, 0, :3], torch.zeros(2, 5, 3))  # the centre itself, at 0


def small_encoder(**kw) -> PointNet2Encoder:
    torch.manual_seed(0)
    cfg = PointNet2Config(**{**dict(in_features=1, centres=(32, 8), k=8, widths=((16, 32), (32, 64)), feature_dim=48), **kw})
    return PointNet2Encoder(cfg).eval()


def test_pointnet2_shapes_and_invariances():
    enc = small_encoder(out_dim=7)
    g = torch.Generator().manual_seed(2)
    pts = torch.randn(3, 150, 3, generator=g)
    lab = (torch.arange(150) < 75).float()[None, :, None].expand(3, -1, -1)
    with torch.no_grad():
        out, feat = enc(pts, lab), enc.features(pts, lab)
        assert out.shape == (3, 7) and feat.shape == (3, 48)
        perm = torch.randperm(150, generator=g)
        assert torch.allclose(enc(pts[:, perm], lab[:, perm]), out, atol=1e-5)
        assert torch.allclose(enc.features(pts[:, perm], lab[:, perm]), feat, atol=1e-5)
        others = pts.clone()
        others[1:] = torch.randn(2, 150, 3, generator=g)
        out2 = enc(others, lab)
        assert torch.allclose(out2[0], out[0], atol=1e-5)
        assert torch.allclose(enc(pts[:1], lab[:1])[0], out[0], atol=1e-5)
        assert not torch.allclose(out2[1:], out[1:], atol=1e-3)
        assert not torch.allclose(enc(pts, 1 - lab), out, atol=1e-3)  # the label is used
    with pytest.raises(ValueError):
        enc(pts)  # in_features = 1 needs features
    plain = small_encoder(in_features=0)
    assert plain(pts).shape == (3, 48)  # out_dim = 0: the feature


def test_pointnet2_gradients_and_round_trip():
    enc = small_encoder(out_dim=3).train()
    pts = torch.randn(2, 100, 3)
    lab = torch.rand(2, 100, 1)
    enc(pts, lab).square().sum().backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing
    d = asdict(enc.config)
    d = {**d, "centres": list(d["centres"]), "widths": [list(w) for w in d["widths"]]}  # as read from JSON
    again = pointnet2_from_dict(d)
    assert again.config == enc.config
    again.load_state_dict(enc.state_dict())
    with torch.no_grad():
        assert torch.allclose(again.eval()(pts, lab), enc.eval()(pts, lab))
