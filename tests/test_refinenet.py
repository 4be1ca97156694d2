"""Cao et al.'s refinement network: SDF features, the untrained update, learning, the command."""

import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hoitool.cli.main import app
from hoitool.errors import InputError
from hoitool.geometry.transforms import make_transform
from hoitool.hand.model import HandParams
from hoitool.hand.subset import even_subset
from hoitool.refine import RefineConfig, RefineNet, load_refinenet, refine_hand, sdf_features
from hoitool.utils.modelfile import default_model_path

runner = CliRunner()


def _sphere(res=64, radius_u=0.5):
    t = torch.linspace(-1, 1, res)
    p = torch.stack(torch.meshgrid(t, t, t, indexing="ij"), -1)
    return p.norm(dim=-1) - radius_u


def test_features_match_analytic_sphere():
    """A sphere of radius 5 cm about c, stored at 10 u per metre (a 3.2 mm grid step): trilinear
    distances within the interpolation bound of |p - c| - r (3 h^2 / 8 times the largest
    curvature, 1 / 2 cm: 0.19 mm), exact at grid nodes; gradient directions along p - c."""
    c = torch.tensor([0.01, -0.02, 0.03])
    uTo = make_transform(torch.eye(3), -10 * c, 10.0)
    g = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(2, 200, 3, generator=g), dim=-1)
    rad = 0.05 + (torch.rand(2, 200, 1, generator=g) * 2 - 1) * 0.03  # 2 .. 8 cm from c: in and out
    pts = c + dirs * rad
    f = sdf_features(_sphere()[None, None], uTo, pts)
    assert f.distance.shape == (2, 200) and f.direction.shape == (2, 200, 3)
    exact = rad[..., 0] - 0.05
    h = 0.2 / 63
    assert (f.distance - exact).abs().max() < 3 * h * h / 8 / 0.02
    assert (f.distance - exact).abs().mean() < 5e-5
    assert ((f.distance < 0) == (exact < 0)).float().mean() > 0.99
    cos = (f.direction * dirs).sum(-1)
    assert cos.min() > 0.995
    # batched grids and transforms agree with one shared grid
    f2 = sdf_features(_sphere()[None, None].expand(2, -1, -1, -1, -1), uTo.expand(2, 4, 4), pts)
    assert torch.allclose(f.distance, f2.distance, atol=1e-6)
    # at grid nodes trilinear sampling returns the stored values themselves
    t = torch.linspace(-1, 1, 64)
    nodes = torch.stack([t[[5, 20, 40, 58]], t[[10, 31, 33, 50]], t[[7, 12, 44, 60]]], -1)
    fn = sdf_features(_sphere()[None, None], uTo, (nodes / 10 + c)[None])
    assert torch.allclose(fn.distance[0], (nodes.norm(dim=-1) - 0.5) / 10, atol=1e-6)


def test_features_exact_for_a_plane():
    """A half-space is linear, so trilinear sampling and central differences reproduce it exactly."""
    t = torch.linspace(-1, 1, 64)
    p = torch.stack(torch.meshgrid(t, t, t, indexing="ij"), -1)
    n = torch.nn.functional.normalize(torch.tensor([1.0, 2.0, -2.0]), dim=0)
    grid = p @ n - 0.1
    uTo = make_transform(torch.eye(3), torch.tensor([0.2, 0.0, -0.1]), 5.0)
    pts = (torch.rand(1, 100, 3, generator=torch.Generator().manual_seed(3)) * 1.6 - 0.8 - uTo[:3, 3]) / 5
    f = sdf_features(grid[None, None], uTo, pts)
    exact = ((pts * 5 + uTo[:3, 3]) @ n - 0.1) / 5
    assert torch.allclose(f.distance, exact, atol=1e-6)
    assert torch.allclose(f.direction, n.expand(1, 100, 3), atol=1e-4)


def test_untrained_network_leaves_the_hand(right_hand):
    torch.manual_seed(0)
    cfg = RefineConfig(surface_points=32)
    net = RefineNet(cfg, torch.as_tensor(even_subset(right_hand, 32)))
    g = torch.Generator().manual_seed(1)
    params = HandParams(0.5 * torch.randn(3, 3, generator=g), 0.2 * torch.randn(3, 45, generator=g), torch.zeros(3, 10),
                        0.02 * torch.randn(3, 3, generator=g), "right")
    uTo = make_transform(torch.eye(3), torch.zeros(3), 10.0)
    res = refine_hand(net, right_hand, params, _sphere().numpy(), uTo.numpy(), iterations=3)
    assert len(res.steps) == 3
    moved = (right_hand(res.params).vertices - right_hand(params).vertices).norm(dim=-1).max()
    assert moved < 1e-5
    with pytest.raises(InputError, match="right hands"):
        refine_hand(net, right_hand, HandParams.zeros(1, "left"), _sphere(), uTo)


@pytest.mark.slow
def test_training_lowers_vertex_error(tiny_prepared, tmp_path):
    """30 steps on 4 records: the refined hands of perturbed training grasps (draws the run never
    saw) are clearly closer to the ground truth than the perturbed inputs."""
    from hoitool.refine.task import RefineTask, vertex_error
    from hoitool.train.loop import TrainConfig, train

    task = RefineTask(tiny_prepared, RefineConfig(surface_points=32, width=128))
    res = train(task, TrainConfig(out=str(tmp_path / "run"), steps=30, batch_size=16, lr=3e-3, warmup=5, device="cpu"))
    assert res.step == 30
    net, info = load_refinenet(tmp_path / "run")
    assert info["kind"] == "refinenet" and info["config"]["surface_points"] == 32
    idx = torch.arange(task.size()).repeat(4)
    x, gt, sdf, uTo = task.pairs(idx, [(123, 0, i) for i in range(len(idx))])
    before = vertex_error(task.hand, x, gt).mean()
    after = vertex_error(task.hand, refine_hand(net, task.hand, x, sdf, uTo).params, gt).mean()
    assert before > 0.01  # the perturbation is real (metres)
    assert after < 0.85 * before, (float(before), float(after))
    from hoitool.hand.model import hand_fingerprint

    assert net.hand_sha == hand_fingerprint(task.hand)  # kept from the model file: refine_hand checks the hand against it
    net.hand_sha = "0" * 16
    with pytest.raises(InputError, match="trained with"):
        refine_hand(net, task.hand, x, sdf, uTo)


@pytest.mark.slow
def test_cli_train_refinenet(tiny_prepared, tmp_path):
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", "refinenet", "--data", str(tiny_prepared), "--out", str(out), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "perturbation" in r.output and not out.exists()
    r = runner.invoke(app, ["train", "refinenet", "--data", str(tiny_prepared), "--out", str(out), "--steps", "2",
                            "--batch-size", "4", "--surface-points", "16", "--width", "32", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert (out / "model.pt").is_file() and (out / "config.yaml").is_file()
    flat = re.sub(r"[\s│╭╮╰╯─]", "", r.output)  # the panel wraps and truncates with the terminal's width
    assert "refinenet" in flat and "model.pt" in flat, r.output
    d = torch.load(out / "model.pt", weights_only=False)
    assert d["kind"] == "refinenet" and d["step"] == 2


def test_model_of_another_kind_is_refused(tiny_prepared, tmp_path):
    vq = default_model_path("vqvae")
    with pytest.raises(InputError, match="holds a vqvae model, not refinenet"):
        load_refinenet(vq)
    r = runner.invoke(app, ["train", "refinenet", "--data", str(tiny_prepared), "--out", str(tmp_path / "run"), "--steps", "1",
                            "--batch-size", "2", "--width", "16", "--device", "cpu", "--resume", str(vq)])
    assert r.exit_code == 2, r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "vqvae" in lines[0], r.output
    assert not (tmp_path / "run").exists(), "nothing may be written"


@pytest.mark.slow
def test_left_records_match_their_right_twins(tiny_prepared, tmp_path):
    """A left record (the mirrored hand on the mirrored mesh) becomes a right hand on an object
    frame whose SDF it reads exactly as its right twin does."""
    import trimesh

    from hoitool.data.prepare import PrepareConfig, prepare
    from hoitool.data.records import HOIRecord, read_manifest, write_manifest
    from hoitool.hand.mirror import mirror_params
    from hoitool.refine.data import RefineData
    from hoitool.train.tasks import prepared_hand

    rec = read_manifest(tiny_prepared / "manifest.jsonl")[0]
    mesh = trimesh.load(rec.object_mesh, force="mesh")
    mesh.apply_transform(np.diag([-1.0, 1, 1, 1]))
    mesh.export(tmp_path / "mirror.obj")
    lp = mirror_params(rec.hand_params())
    left = HOIRecord(str(tmp_path / "mirror.obj"), rec.category, "left",
                     *(lp.numpy()[k][0] for k in ("global_orient", "hand_pose", "betas", "transl")), id=rec.id + "-L")
    write_manifest(tmp_path / "m.jsonl", [rec, left], relative_to=tmp_path)
    prepare(PrepareConfig(out=tmp_path / "prep", manifest=tmp_path / "m.jsonl", workers=1, preview=False))
    data = RefineData(tmp_path / "prep")
    hand = prepared_hand(tmp_path / "prep")
    gt, sdf, uTo = data.batch(torch.arange(2))
    assert torch.linalg.det(uTo[:, :3, :3]).sign().tolist() == [1.0, -1.0]
    pts = hand(gt).vertices
    assert (pts[0] - pts[1]).abs().max() < 1e-5  # both right hands, in the same place
    f = [sdf_features(sdf[i:i + 1], uTo[i], pts[i:i + 1]) for i in range(2)]
    assert (f[0].distance - f[1].distance).abs().max() < 5e-4
    assert (f[0].distance.abs() < 0.003).any()  # the grasp touches the object


def test_directions_fade_where_the_sdf_is_flat():
    """Beyond a truncated grid's cap the SDF is constant: no direction (zero), not rounding noise,
    so the features stay continuous in the hand's pose there."""
    sphere = _sphere().clamp_max(0.3)  # truncated 0.3 u (3 cm) outside a 5 cm sphere
    uTo = make_transform(torch.eye(3), torch.zeros(3), 10.0)
    far = torch.tensor([[[0.0, 0.0, 0.095], [0.06, 0.06, 0.0]]])  # 4.5 and 3.5 cm beyond the surface
    near = torch.tensor([[[0.0, 0.0, 0.06]]])
    f = sdf_features(sphere[None, None], uTo, far)
    assert f.direction.norm(dim=-1).max() < 1e-3
    assert torch.allclose(f.distance, torch.full((1, 2), 0.03), atol=1e-6)
    fn = sdf_features(sphere[None, None], uTo, near)
    assert torch.allclose(fn.direction[0, 0], torch.tensor([0.0, 0.0, 1.0]), atol=1e-3)
