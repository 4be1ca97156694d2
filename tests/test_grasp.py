"""Grasp synthesis, ranking and evaluation: engine invariants, analytic metrics, the commands end to end."""

import json

import numpy as np
import pytest
import torch
import trimesh
from typer.testing import CliRunner

from hoitool.cli.main import app
from hoitool.data.grasps import GraspSet, read_grasps, write_grasps
from hoitool.geometry.transforms import apply_transform, invert_transform
from hoitool.metrics.grasp import grasp_metrics
from hoitool.pipelines.grasp import GraspConfig, GraspObject, GraspSynthesiser, infer_category, synthesise_grasps
from hoitool.prior.checkpoint import load_prior
from hoitool.prior.guidance import GuidanceConfig, SDSTarget, likelihood_score, max_step, multiscale_mse, sds_loss
from hoitool.prior.model import field_to_x

runner = CliRunner()
TINY = ["--steps", "4", "--query-every", "2", "--refine-steps", "3", "--rank-steps", "1", "--no-sheet"]


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def prior():
    return load_prior()


@pytest.fixture(scope="module")
def box_obj():
    return GraspObject.from_mesh(trimesh.creation.box((0.05, 0.07, 0.12)))


# -- guidance -------------------------------------------------------------------------------
def test_multiscale_mse_of_a_constant_offset_is_scales_times_its_square():
    a = torch.zeros(2, 1, 16, 16, 16)
    assert torch.allclose(multiscale_mse(a, a + 0.5, 3), torch.full((2,), 3 * 0.25))
    assert torch.allclose(multiscale_mse(a, a), torch.zeros(2))


def test_sds_loss_vanishes_at_the_target_and_scales_with_the_weight():
    grid = torch.rand(2, 1, 8, 8, 8) * 2 - 1
    field = torch.rand(2, 20, 4, 4, 4) * 0.12
    t = SDSTarget(grid.clone(), field_to_x(field), torch.tensor([0.3, 0.5]), torch.tensor([300, 500]))
    assert torch.allclose(sds_loss(grid, field, t), torch.zeros(2), atol=1e-7)
    off = SDSTarget(grid + 0.1, field_to_x(field), t.weight, t.t)
    loss = sds_loss(grid, field, off, GuidanceConfig(scales=2))
    assert torch.allclose(loss, t.weight * 2 * 0.01, rtol=1e-4)


def test_sds_noise_level_follows_how_solid_the_object_is():
    empty = torch.ones(1, 1, 8, 8, 8)
    solid = empty.clone()
    solid[..., 4, 4, 4] = -1
    assert max_step(empty, GuidanceConfig()).item() == 25
    assert max_step(solid, GuidanceConfig()).item() == 75


def test_likelihood_score_does_not_depend_on_the_batch(prior):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 23, 16, 16, 16, generator=g)
    together = likelihood_score(prior, x, ["mug"] * 3, steps=2)
    alone = likelihood_score(prior, x[1:2], ["mug"], steps=2)
    assert torch.allclose(together[1:2], alone, rtol=1e-4)
    # noise-free grids of the training distribution score better than pure noise
    assert likelihood_score(prior, torch.zeros(1, 23, 16, 16, 16), ["mug"], steps=2) < together.min()


# -- synthesis ------------------------------------------------------------------------------
def test_hand_parameters_reproduce_the_optimised_pose(prior, box_obj):
    syn = GraspSynthesiser(prior, box_obj, "box", GraspConfig(seed=3))
    var = syn.initial([0, 1])
    with torch.no_grad():
        var.q.add_(0.2)
        expected = apply_transform(invert_transform(var.hTo()), syn.hand_out(var.q).vertices)
        got = syn.hand(syn.params(var)).vertices
    assert torch.allclose(got, expected, atol=1e-5)


def test_initial_object_centre_is_at_the_grid_origin_within_the_offset(prior, box_obj):
    cfg = GraspConfig(seed=1, offset_m=0.05)
    syn = GraspSynthesiser(prior, box_obj, "box", cfg)
    var = syn.initial(list(range(8)))
    c = torch.as_tensor(box_obj.centroid, dtype=torch.float32)
    with torch.no_grad():
        c_h = apply_transform(var.hTo(), c.expand(8, 1, 3))[:, 0]
    off = c_h - syn.hTn[:3, 3]
    assert off.abs().max() <= 0.05 + 1e-5 and off.abs().max() > 0.01


def test_grasps_do_not_depend_on_the_batch_size(prior, box_obj):
    cfg = dict(n=3, steps=4, query_every=2, refine_steps=3, rank_steps=1, seed=5)
    a = synthesise_grasps(prior, box_obj, "box", GraspConfig(batch_size=3, **cfg))
    b = synthesise_grasps(prior, box_obj, "box", GraspConfig(batch_size=1, **cfg))
    for k in ("global_orient", "hand_pose", "transl"):
        assert torch.allclose(getattr(a.params, k), getattr(b.params, k), atol=1e-4), k
    assert np.allclose(a.score, b.score, rtol=1e-4)
    assert list(a.order) == list(np.argsort(a.score))


def test_refinement_pushes_a_penetrating_hand_out(prior, box_obj):
    syn = GraspSynthesiser(prior, box_obj, "box", GraspConfig(seed=0, offset_m=0.0, refine_steps=60, refine_lr=3e-3))
    var = syn.initial([0, 1])
    with torch.no_grad():  # move the box onto the palm's middle: deep penetration
        palm = syn.hand_out(var.q).vertices[:, syn.zones[5]].mean(1)
        shift = palm - apply_transform(var.hTo(), torch.as_tensor(box_obj.centroid, dtype=torch.float32).expand(2, 1, 3))[:, 0]
        var.t_n.add_(shift / 0.2)

    def depth():
        with torch.no_grad():
            return (-box_obj.sdf_m(syn._vertices_o(var))).clamp_min(0).sum(1)

    before = depth()
    syn.refine(var)
    after = depth()
    assert (before > 0.05).all() and (after < 0.6 * before).all()


def test_category_comes_from_the_path_or_is_left_empty():
    assert infer_category("ycb/YcbMustardBottle/textured.obj", ["bottle"])[0] == "bottle"
    assert infer_category("meshes/mug.obj", ["mug"]) == ("mug", "from the name 'mug'")
    name, why = infer_category("scans/thing_0042.ply", ["mug"])
    assert name == "" and "--category" in why


# -- metrics --------------------------------------------------------------------------------
def test_metrics_of_overlapping_boxes_match_the_analytic_answer():
    obj = trimesh.creation.box((0.04, 0.04, 0.04))
    half_in = trimesh.creation.box((0.02, 0.02, 0.02))
    half_in.apply_translation([0.02, 0, 0])  # half of a 2 cm cube inside: 4 cm^3, 1 cm deep
    away = half_in.copy()
    away.apply_translation([0.3, 0.3, 0.3])  # out of the way of a fall along any axis
    m = grasp_metrics(np.stack([half_in.vertices, away.vertices]), half_in.faces, obj)
    assert np.allclose(m.intersection_cm3, [4.0, 0.0])
    assert np.allclose(m.max_depth_cm, [1.0, 0.0], atol=1e-6) and np.allclose(m.mean_depth_cm, [1.0, 0.0], atol=1e-6)
    assert list(m.contact) == [True, False] and np.allclose(m.contact_area, [0.5, 0.0])
    # nothing holds the second object: free fall for 35 steps of 1/240 s (semi-implicit Euler: g dt^2 35*36/2)
    assert m.displacement_cm[1] == pytest.approx(100 * 9.8 * 630 / 240**2, rel=0.02)
    # and the same free fall along each of the six directions
    assert m.displacement6_cm[1] == pytest.approx(100 * 9.8 * 630 / 240**2, rel=0.02)
    agg = m.aggregate()
    assert agg["contact_ratio"] == 0.5 and agg["intersection_cm3"] == pytest.approx(2.0)


def test_an_object_resting_on_a_static_hand_stays_put():
    obj = trimesh.creation.box((0.04, 0.04, 0.04))
    floor = trimesh.creation.box((0.3, 0.3, 0.02))
    floor.apply_translation([0, 0, -0.0301])
    m = grasp_metrics(floor.vertices[None], floor.faces, obj)
    assert m.displacement_cm[0] < 0.5
    # a floor holds against -z only: sideways and upwards the box slides or falls away
    assert m.displacement6_cm[0] > 1.0


# -- commands -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mug_mm(tmp_path_factory):
    from hoitool.data.synthetic.objects import make_object

    d = tmp_path_factory.mktemp("mesh")
    m = make_object("mug", np.random.default_rng(0))
    m.apply_scale(1000.0)
    m.export(d / "mug.obj")
    return d / "mug.obj"


@pytest.fixture(scope="module")
def grasped(mug_mm, tmp_path_factory):
    out = tmp_path_factory.mktemp("g") / "out"
    r = _invoke("grasp", mug_mm, "--scale", "0.001", "--n", "3", "--batch-size", "2", "--out", out, "--device", "cpu", *TINY)
    assert r.exit_code == 0, r.output
    return out


@pytest.mark.slow
def test_grasp_writes_everything_in_the_meshes_frame_and_units(grasped, mug_mm):
    for f in ("object.obj", "scene.glb", "summary.json", "grasps.npz", "hands/000.obj", "hands/002.obj"):
        assert (grasped / f).exists(), f
    assert not list(grasped.parent.glob("*.partial"))
    obj = trimesh.load(grasped / "object.obj", force="mesh")
    src = trimesh.load(mug_mm, force="mesh")
    assert np.allclose(obj.bounds, src.bounds, atol=1e-3)  # millimetres, as given
    gs = read_grasps(grasped)
    assert gs.mesh_scale == 0.001 and gs.category == "mug" and gs.params.batch_size == 3
    from hoitool.hand.model import HandModel

    with torch.no_grad():
        v = HandModel("right")(gs.params).vertices.numpy()
    for i in range(3):
        hand = trimesh.load(grasped / "hands" / f"{i:03d}.obj", process=False)
        assert np.allclose(hand.vertices, v[i] * 1000, atol=1e-2)
    s = json.loads((grasped / "summary.json").read_text())
    assert s["category"] == "mug" and set(s["metrics"]) == {"all", "top10", "bottom10"}
    assert [r["score"] for r in s["per_grasp"]] == pytest.approx(list(gs.score))
    scene = trimesh.load(grasped / "scene.glb")
    assert "object" in scene.geometry and f"grasp_{gs.order[0]:03d}" in scene.geometry


@pytest.mark.slow
def test_rank_reproduces_the_scores_of_grasp(grasped):
    before = read_grasps(grasped).score
    gs = read_grasps(grasped)
    write_grasps(grasped, GraspSet(gs.params, gs.mesh_scale, None, gs.category, gs.extra))  # drop the scores
    r = _invoke("rank", grasped, "--rank-steps", "1", "--device", "cpu")
    assert r.exit_code == 0, r.output
    after = read_grasps(grasped)
    assert np.allclose(after.score, before, rtol=1e-4)
    z = np.load(grasped / "grasps.npz")
    assert list(z["order"]) == list(np.argsort(after.score)) and sorted(z["rank"]) == [0, 1, 2]


@pytest.mark.slow
def test_evaluate_grasps_agrees_with_the_summary_and_view_writes_html(grasped, tmp_path):
    r = _invoke("evaluate", "grasps", grasped, "--out", tmp_path / "e.json")
    assert r.exit_code == 0, r.output
    e = json.loads((tmp_path / "e.json").read_text())
    s = json.loads((grasped / "summary.json").read_text())
    for k in ("intersection_cm3", "max_depth_cm", "contact_ratio", "contact_area", "displacement_cm"):
        assert e["metrics"]["all"][k] == pytest.approx(s["metrics"]["all"][k], rel=1e-6, abs=1e-9), k
    r = _invoke("view", grasped, "--out", tmp_path / "v.html", "--top", "2")
    assert r.exit_code == 0, r.output
    html = (tmp_path / "v.html").read_text()
    assert len(html) > 100_000 and "three" in html.lower()


def test_grasp_refuses_bad_input_with_one_line(tmp_path, mug_mm, monkeypatch):
    def fails(*args, expect):
        r = runner.invoke(app, [str(a) for a in args])
        assert r.exit_code == 2, r.output
        assert expect in r.output, r.output
        assert not any(tmp_path.glob("out*")), "nothing may be written"

    fails("grasp", mug_mm, "--out", tmp_path / "out", expect="millimetres")
    big = trimesh.creation.box((0.6, 0.1, 0.1))
    big.export(tmp_path / "table.obj")
    fails("grasp", tmp_path / "table.obj", "--out", tmp_path / "out", expect="too large to hold")
    sheet = trimesh.creation.box((0.08, 0.08, 0.08))
    sheet.update_faces(np.arange(len(sheet.faces)) >= 4)  # two sides gone
    sheet.export(tmp_path / "open.obj")
    fails("grasp", tmp_path / "open.obj", "--out", tmp_path / "out", expect="not a closed surface")
    fails("grasp", mug_mm, "--scale", "0.001", "--out", tmp_path / "out", "--model", tmp_path / "nope", expect="not a ghop model")
    from hoitool.prior.checkpoint import default_model_path

    fails("grasp", mug_mm, "--scale", "0.001", "--out", tmp_path / "out", "--model", default_model_path("vqvae"),
          expect="holds a vqvae model")
    (tmp_path / "empty.obj").write_text("")
    fails("grasp", tmp_path / "empty.obj", "--out", tmp_path / "out", expect="empty")
    monkeypatch.setattr("hoitool.pipelines.grasp.MAX_FACES", 100)
    fails("grasp", mug_mm, "--scale", "0.001", "--out", tmp_path / "out", expect="simplify it")


def test_an_interrupted_grasp_run_leaves_nothing(tmp_path, mug_mm, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("hoitool.metrics.grasp.grasp_metrics", interrupted)
    r = runner.invoke(app, ["grasp", str(mug_mm), "--scale", "0.001", "--n", "1", "--out", str(tmp_path / "out"), *TINY])
    assert r.exit_code == 130
    assert list(tmp_path.iterdir()) == []


def test_rank_and_evaluate_refuse_bad_grasp_sets(tmp_path):
    (tmp_path / "a").mkdir()
    r = runner.invoke(app, ["evaluate", "grasps", str(tmp_path / "a")])
    assert r.exit_code == 2 and "no grasps.npz" in r.output
    (tmp_path / "a" / "grasps.npz").write_bytes(b"not a zip")
    r = runner.invoke(app, ["rank", str(tmp_path / "a")])
    assert r.exit_code == 2 and "unreadable" in r.output
    np.savez(tmp_path / "a" / "grasps.npz", global_orient=np.full((1, 3), np.nan), hand_pose=np.zeros((1, 45)),
             betas=np.zeros((1, 10)), transl=np.zeros((1, 3)))
    r = runner.invoke(app, ["evaluate", "grasps", str(tmp_path / "a")])
    assert r.exit_code == 2 and "NaN" in r.output
    np.savez(tmp_path / "a" / "grasps.npz", global_orient=np.zeros((1, 3)), hand_pose=np.zeros((1, 45)),
             betas=np.zeros((1, 10)), transl=np.zeros((1, 3)))
    r = runner.invoke(app, ["evaluate", "grasps", str(tmp_path / "a")])
    assert r.exit_code == 2 and "--mesh" in r.output
