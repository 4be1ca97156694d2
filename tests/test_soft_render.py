"""The soft rasteriser against pyrender and analytic answers; camera, mask and depth losses,
ray casting, ICP and reconstruction metrics."""

import numpy as np
import pytest
import torch
import trimesh
from scipy import ndimage

from hoitool.geometry.camera import Camera, crop_mask
from hoitool.geometry.icp import icp
from hoitool.geometry.raycast import nearest_farthest, ray_hits
from hoitool.hand.model import HandParams
from hoitool.losses.masks import mask_points, sinkhorn_divergence, soft_iou
from hoitool.losses.ordinal_depth import ordinal_depth_loss
from hoitool.metrics.reconstruction import aligned_chamfer_fscore, chamfer_fscore, mpjpe_mm, sample_surface
from hoitool.render.soft import SoftRasterizer, render_mesh, splat_points


def _posed_hand(hand):
    p = HandParams.zeros(1)
    p.global_orient[:] = torch.tensor([2.0, 0.3, 0.2])
    p.transl[:] = torch.tensor([0.0, 0.0, 0.4])
    return hand(p).vertices


def test_soft_silhouette_and_depth_match_pyrender(right_hand):
    from hoitool.render.offscreen import RenderMesh, render_camera

    v = _posed_hand(right_hand)
    cam = Camera(150.0, 160.0, 83.0, 55.0, 160, 120)  # off-centre principal point, unequal focals
    ref = render_camera([RenderMesh(v[0].numpy(), right_hand.faces.numpy())], cam)
    hard = ref.depth > 0
    assert hard.sum() > 1000
    for cull in (False, True):
        out = render_mesh(SoftRasterizer(120, 160, sigma=1e-4, gamma=1e-4, cull_back=cull), cam, v, right_hand.faces)
        sil = out.silhouette[0].numpy() > 0.5
        band = ndimage.binary_dilation(hard) & ~ndimage.binary_erosion(hard)
        # every disagreement lies on the one-pixel boundary band (rasterisation rules differ there)
        assert not ((sil ^ hard) & ~band).any()
        assert (sil & hard).sum() / (sil | hard).sum() > 0.93
        inner = ndimage.binary_erosion(hard, iterations=1)
        err = np.abs(out.depth[0].numpy() - ref.depth)[inner]
        assert np.median(err) < 5e-4 and np.percentile(err, 90) < 2e-3


def test_soft_silhouette_area_and_gradient_are_analytic():
    # a square 20 px wide, 40 cm away: the sharp silhouette covers its area
    cam = Camera(400.0, 400.0, 31.5, 31.5, 64, 64)
    sq = torch.tensor([[-0.01, -0.01, 0.4], [0.01, -0.01, 0.4], [0.01, 0.01, 0.4], [-0.01, 0.01, 0.4]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    sharp = render_mesh(SoftRasterizer(64, 64, sigma=1e-3), cam, sq[None], faces)
    assert sharp.silhouette.sum().item() == pytest.approx(400.0, abs=25.0)
    assert sharp.depth[0, 31, 31].item() == pytest.approx(0.4, abs=1e-5)
    # the soft IoU with a target moved 3 px to the right pulls the square right
    target = render_mesh(SoftRasterizer(64, 64, sigma=1e-3), cam, (sq + torch.tensor([0.003, 0.0, 0.0]))[None], faces).silhouette
    shift = torch.zeros(3, requires_grad=True)
    out = render_mesh(SoftRasterizer(64, 64, sigma=1.0), cam, (sq + shift)[None], faces)
    (1 - soft_iou(out.silhouette, target)).sum().backward()
    assert shift.grad[0] < 0 and abs(shift.grad[1]) < 0.1 * abs(shift.grad[0])


def test_splat_and_crop_camera():
    cam = Camera(500.0, 500.0, 99.5, 79.5, 200, 160)
    pts = torch.tensor([[[0.0, 0.0, 1.0], [0.02, -0.01, 0.5]]])
    crop = cam.crop(60, 40, 80, 40)
    uv, uvc = cam.project(pts), crop.project(pts)
    assert torch.allclose(uvc, (uv - torch.tensor([60.0, 40.0]) + 0.5) * 0.5 - 0.5, atol=1e-4)
    occ = splat_points(uv, 160, 200, dilate=0)
    assert occ.sum() == 2 and occ[0, 80, 100] == 1  # (99.5, 79.5) rounds to (100, 80)
    m = np.zeros((160, 200), np.float32)
    m[40:80, 60:140] = 1
    c = crop_mask(m, 60, 40, 80, 40)
    assert c.shape == (40, 40) and c[:20].min() == 1 and c[20:].max() == 0


def test_soft_iou_sinkhorn_and_ordinal_depth():
    a = torch.zeros(1, 10, 10)
    a[0, :, :5] = 1
    b = torch.zeros(1, 10, 10)
    b[0, :, 2:7] = 1
    assert soft_iou(a, b).item() == pytest.approx(30 / 70, abs=1e-4)
    valid = torch.ones(10, 10)
    valid[:, 5:] = 0  # ignore the right half: a vs b then is 30 / 50
    assert soft_iou(a, b, valid).item() == pytest.approx(30 / 50, abs=1e-4)
    # Sinkhorn divergence: ~0 for equal clouds, its gradient moves disjoint clouds together
    g = torch.Generator().manual_seed(0)
    y = torch.rand(1, 60, 2, generator=g) * 0.2
    w = torch.full((1, 60), 1 / 60)
    assert abs(sinkhorn_divergence(y, w, y, w).item()) < 1e-4
    x = (y + torch.tensor([0.6, 0.0])).requires_grad_(True)
    d = sinkhorn_divergence(x, w, y, w)
    d.backward()
    assert d.item() == pytest.approx(0.5 * 0.6**2, rel=0.1)  # W2^2 / 2 of a pure shift
    assert (x.grad[..., 0] > 0).all()
    pts, wt = mask_points(b[0], 20, g)
    assert pts.shape == (20, 2) and wt.sum().item() == pytest.approx(1.0)
    # ordinal depth: hand in front where the mask shows the hand costs less than behind
    sil = torch.ones(1, 4, 4)
    hand_mask, obj_mask = torch.ones(4, 4), torch.zeros(4, 4)
    good = ordinal_depth_loss(sil, torch.full((1, 4, 4), 0.40), sil, torch.full((1, 4, 4), 0.45), hand_mask, obj_mask)
    bad = ordinal_depth_loss(sil, torch.full((1, 4, 4), 0.45), sil, torch.full((1, 4, 4), 0.40), hand_mask, obj_mask)
    assert good.item() < 0.01 < 4.0 < bad.item()


def test_ray_hits_depth_peeling_of_a_box():
    box = trimesh.creation.box((1.0, 1.0, 1.0))
    box.apply_translation([0, 0, 2.0])
    o = torch.zeros(3, 3)
    d = torch.tensor([[0.0, 0.0, 1.0], [0.1, 0.0, 1.0], [3.0, 0.0, 1.0]])
    t = ray_hits(o, d, torch.tensor(box.vertices, dtype=torch.float32), torch.tensor(box.faces))
    near, far, hit = nearest_farthest(t)
    assert hit.tolist() == [True, True, False]
    assert near[0].item() == pytest.approx(1.5) and far[0].item() == pytest.approx(2.5)
    assert near[1].item() == pytest.approx(1.5) and far[1].item() == pytest.approx(2.5)  # units of |d|


def test_icp_modes_recover_known_motions():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(300, 3)) * 0.05 + np.array([0.0, 0.0, 0.5])
    r = icp(src, src + np.array([0.01, -0.02, 0.005]), mode="translation")
    assert np.allclose(r.transform[:3, 3], [0.01, -0.02, 0.005], atol=1e-6)
    r = icp(src, 1.2 * src, mode="ray")  # a scale about the camera centre
    assert r.transform[0, 0] == pytest.approx(1.2, abs=1e-6) and np.allclose(r.transform[:3, 3], 0, atol=1e-9)
    r = icp(src, 0.97 * src + np.array([0.0, 0.003, 0.0]), mode="scale", iters=100)
    assert r.transform[0, 0] == pytest.approx(0.97, abs=1e-4) and r.error < 1e-5


def test_reconstruction_metrics():
    m = trimesh.creation.icosphere(4, 0.05)
    a, b = sample_surface(m, 4000, 0), sample_surface(m, 4000, 1)
    same = chamfer_fscore(a, b)
    assert same["chamfer_mm"] < 2.0 and same["f@5mm"] > 0.999
    off = chamfer_fscore(a + [0.02, 0, 0], b)
    assert off["f@5mm"] < 0.3 and off["chamfer_mm"] > 8
    assert aligned_chamfer_fscore(1.3 * a + 0.05, b)["f@5mm"] > 0.99
    j = np.random.default_rng(0).normal(size=(21, 3))
    assert mpjpe_mm(j + 1.0, j) == pytest.approx(0.0, abs=1e-9)
    assert mpjpe_mm(j + 0.001, j, root=None) == pytest.approx(np.sqrt(3), rel=1e-6)
