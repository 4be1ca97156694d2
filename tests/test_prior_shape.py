"""Object shapes from the prior for a given hand (`reconstruct --category NAME --shape prior`):
the hand channels stay the given hand's, per-sample seeds, placement with the hand, the CLI."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hoitool.cli.main import app
from hoitool.errors import InputError
from hoitool.hand.field import hand_field
from hoitool.hand.model import HandParams
from hoitool.hand.prior import PosePrior

runner = CliRunner()


@pytest.fixture(scope="module")
def prior():
    from hoitool.prior.checkpoint import load_prior

    return load_prior()


@pytest.fixture(scope="module")
def grasp_hand(right_hand):
    p = HandParams.zeros(1)
    p.hand_pose = PosePrior.from_hand(right_hand).sample(1, torch.Generator().manual_seed(0), closure=torch.tensor([0.5]))
    p.betas = torch.full((1, 10), 0.3)
    return p


@pytest.fixture(scope="module")
def drawn(prior, right_hand, grasp_hand):
    from hoitool.prior.shape import ShapeConfig, sample_shapes_for_hand

    return sample_shapes_for_hand(prior, "mug", right_hand, grasp_hand, ShapeConfig(samples=3, steps=8, batch_size=3))


def test_hand_channels_are_the_given_hand(prior, right_hand, grasp_hand, drawn):
    field = hand_field(right_hand, grasp_hand)
    _, f = prior.unpack(drawn.x)
    assert f.shape == (3, 20, 16, 16, 16)
    assert torch.allclose(f, field.expand_as(f), atol=1e-6)
    # the object channels were sampled: the three samples differ
    z, _ = prior.unpack(drawn.x)
    assert (z[0] - z[1]).abs().max() > 1e-2


def test_samples_depend_only_on_their_seed(prior, drawn):
    from hoitool.prior.shape import inpaint_hand_sample

    one_by_one = inpaint_hand_sample(prior, "mug", drawn.field, 2, steps=8, seed=0, batch_size=1)
    assert torch.allclose(one_by_one, drawn.x[:2], atol=1e-4)
    other = inpaint_hand_sample(prior, "mug", drawn.field, 1, steps=8, seed=1)
    assert (other[0, :3] - drawn.x[0, :3]).abs().max() > 1e-2


def test_shapes_sit_at_the_hand_and_move_with_it(right_hand, grasp_hand, drawn):
    from hoitool.geometry.rotations import axis_angle_to_matrix

    objs = [o for o in drawn.objects if o is not None]
    assert objs, "no sample has a surface"
    with torch.no_grad():
        hv = right_hand(grasp_hand).vertices[0].numpy()
    for o in objs:  # in the hand frame: the object is within the interaction grid around the palm
        assert np.linalg.norm(o.vertices.mean(0) - hv.mean(0)) < 0.15
    moved = grasp_hand.clone()
    moved.global_orient = torch.tensor([[0.3, -1.2, 2.0]])
    moved.transl = torch.tensor([[0.05, -0.02, 0.5]])
    placed = drawn.placed(right_hand, moved)
    with torch.no_grad():
        hv_c = right_hand(moved).vertices[0].numpy()
    # a rigid motion of hand and object together: distances from the object to the hand are kept
    i = next(k for k, o in enumerate(drawn.objects) if o is not None)
    d_h = np.linalg.norm(drawn.objects[i].vertices[:50, None] - hv[None, ::40], axis=-1)
    d_c = np.linalg.norm(placed[i].vertices[:50, None] - hv_c[None, ::40], axis=-1)
    assert np.allclose(d_h, d_c, atol=1e-5)
    R = axis_angle_to_matrix(moved.global_orient)[0].numpy()
    assert np.allclose(np.asarray(placed[i].vertices[:1] - placed[i].vertices[1:2]),
                       (drawn.objects[i].vertices[:1] - drawn.objects[i].vertices[1:2]) @ R.T, atol=1e-6)


def test_unknown_category_names_known_and_nearest(prior):
    from hoitool.prior.shape import prior_category

    assert prior_category(prior, "coffee mug") == "mug"
    with pytest.raises(InputError) as e:
        prior_category(prior, "giraffe")
    msg = str(e.value)
    assert "nearest:" in msg and all(c in msg for c in prior.categories)


@pytest.fixture(scope="module")
def can_view(right_hand):
    """A small synthetic photograph of a planned grasp of a can: (the can's mesh, the view)."""
    from hoitool.data.synthetic.images import random_view
    from hoitool.data.synthetic.objects import make_object
    from hoitool.data.synthetic.planner import GraspPlanner
    from hoitool.geometry.grid import SDFVolume, canonical_sdf

    mesh = make_object("can", np.random.default_rng(3))
    batch = GraspPlanner(right_hand).plan(mesh, SDFVolume(*canonical_sdf(mesh)), 1, seed=0, key="can")
    return mesh, random_view(right_hand, mesh, batch.params, np.random.default_rng(0), size=160)


@pytest.fixture(scope="module")
def scene(tmp_path_factory, can_view):
    """The photograph of `can_view`, written as files."""
    from PIL import Image

    _, view = can_view
    d = tmp_path_factory.mktemp("scene")
    Image.fromarray(view.inputs.image).save(d / "image.png")
    Image.fromarray((view.inputs.hand_mask * 255).astype(np.uint8)).save(d / "hand.png")
    Image.fromarray((view.inputs.object_mask * 255).astype(np.uint8)).save(d / "object.png")
    (d / "keypoints.json").write_text(json.dumps({"keypoints": view.inputs.keypoints.tolist()}))
    return d, view


def _args(d, view, out, *extra):
    return ["reconstruct", str(d / "image.png"), "--hand-mask", str(d / "hand.png"), "--object-mask", str(d / "object.png"),
            "--keypoints", str(d / "keypoints.json"), "--focal", str(view.camera.fx), "--out", str(out),
            "--rotations", "100", "--top-k", "1", "--refine-steps", "5", "--device", "cpu", *extra]


@pytest.mark.slow
def test_cli_prior_shape_end_to_end(tmp_path, scene):
    d, view = scene
    out = tmp_path / "out"
    r = runner.invoke(app, _args(d, view, out, "--category", "can", "--shape", "prior", "--shape-samples", "3",
                                 "--shape-steps", "5", "--shape-keep", "2"), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    for f in ("hand.obj", "object.obj", "params.json", "config.yaml"):
        assert (out / f).is_file(), f
    p = json.loads((out / "params.json").read_text())
    s = p["shape"]
    assert s["source"] == "prior" and s["samples"] == 3 and s["ddim_steps"] == 5 and len(s["mask_iou"]) == 3
    assert s["kept"] == np.argsort(-np.array(s["mask_iou"]), kind="stable")[:2].tolist()  # the 2 best by IoU, best first
    assert s["chosen_sample"] == s["kept"][int(np.argmin(s["kept_scores"]))]
    assert "placement" in s["pose_search_start"]  # the prior's placement was a start of the pose search
    assert p["template"] == "category can" and set(p["stages"]) == {"pose", "contact", "refine"}


def test_cli_prior_shape_refuses_unknown_category_and_mesh(tmp_path, scene):
    d, view = scene
    r = runner.invoke(app, _args(d, view, tmp_path / "a", "--category", "giraffe", "--shape", "prior"))
    assert r.exit_code == 2
    assert "giraffe" in r.output and "nearest" in r.output and "mug" in r.output
    assert not (tmp_path / "a").exists()
    r = runner.invoke(app, _args(d, view, tmp_path / "b", "--object-mesh", str(d / "image.png"), "--shape", "prior"))
    assert r.exit_code == 2 and "--category" in r.output
    r = runner.invoke(app, _args(d, view, tmp_path / "c", "--category", "can", "--shape", "sketch"))
    assert r.exit_code == 2 and "--shape" in r.output


def test_every_step_sees_the_hand_noised_to_its_level(prior, right_hand, grasp_hand, monkeypatch):
    """The denoiser's input at each DDIM step holds, in the hand channels, the given hand noised to
    that step's level with the sample's own noise, recomputed here from its generator: the start
    noise, then one draw per step, taken as the step is (not all steps' noise drawn up front)."""
    from hoitool.prior.shape import OBJECT_CHANNELS, inpaint_hand_sample
    from hoitool.utils.seeding import torch_generator

    field = hand_field(right_hand, grasp_hand)
    seen = []
    real = prior.guided_eps

    def record(x, t, *a, **k):
        seen.append((x[:, OBJECT_CHANNELS:].clone(), t.clone()))
        return real(x, t, *a, **k)

    monkeypatch.setattr(prior, "guided_eps", record)
    steps = 4
    inpaint_hand_sample(prior, "mug", field, 2, steps=steps, seed=3, batch_size=2)
    r = field.shape[-1]
    C = prior.unet.config.in_channels
    known = prior.pack(torch.zeros(1, OBJECT_CHANNELS, r, r, r), field.float())[:, OBJECT_CHANNELS:]
    abar = prior.alphas_cumprod()
    assert len(seen) == steps
    assert [int(t[0]) for _, t in seen] == sorted({int(t[0]) for _, t in seen}, reverse=True)  # distinct levels, in order
    for i in range(2):  # each sample from its own generator, in the same batch
        g = torch_generator(3, "shape", i)
        eps = torch.randn((C, r, r, r), generator=g)[OBJECT_CHANNELS:]
        for k, (x, t) in enumerate(seen):
            if k > 0:
                eps = torch.randn((C - OBJECT_CHANNELS, r, r, r), generator=g)
            a = abar[int(t[i])]
            want = a.sqrt() * known[0] + (1 - a).sqrt() * eps
            assert torch.allclose(x[i], want, atol=1e-4), (i, k)
            if k > 0:  # the level of another step (e.g. the previous one) does not match
                b = abar[int(seen[k - 1][1][i])]
                assert not torch.allclose(x[i], b.sqrt() * known[0] + (1 - b).sqrt() * eps, atol=1e-3), (i, k)


def test_initial_pose_is_among_the_hypotheses(can_view, right_hand):
    """A pose given to reconstruct_image is optimised whatever the random rotations: with one
    random start (rotations=1, candidates=1), the true pose given ends as the pose stage's answer.
    The pose is of the mesh's own origin, not its vertex mean: the mesh is moved 20 cm off its
    origin (as a prior shape placed in the camera frame is) and the pose given accounts for that."""
    from hoitool.pipelines.image_recon import ReconstructConfig, reconstruct_image

    mesh, view = can_view
    off = np.array([0.2, -0.1, 0.3])
    moved = mesh.copy()
    moved.apply_translation(off)
    cfg = ReconstructConfig(rotations=1, candidates=1, top_k=1, pose_steps=15, hand_steps=5, icp_iters=2, refine_steps=0, seed=1)

    def run(init=None):
        return reconstruct_image(view.inputs, moved, view.camera, cfg, template=True, hand=right_hand, hand_params=view.hand,
                                 init_pose=init).stages["pose"]

    def err(st) -> float:  # metres, the farthest vertex from its true place
        return float(np.abs(st.object_vertices(moved) - view.object_vertices).max())

    R, t = view.cTo[:3, :3], view.cTo[:3, 3] - view.cTo[:3, :3] @ off
    random_only, given = run(), run((R, t, 1.0))
    assert given.metrics["object_iou"] > 0.9 and given.metrics["object_iou"] > random_only.metrics["object_iou"] + 0.1
    assert err(given) < 0.015 and err(random_only) > 0.04
    nudged = run((R, t + np.array([0.01, 0.0, 0.0]), 1.0))  # a start 1 cm off is pulled back onto the mask
    assert nudged.metrics["object_iou"] > 0.85 and err(nudged) < 0.025


def test_the_best_of_several_shapes_is_kept(can_view, right_hand):
    """--shape-keep: each shape runs through the stages from where it was placed; the can itself
    beats a box and a ball of the can's size at the same place (the can wins whatever its order)."""
    import trimesh

    from hoitool.pipelines.image_recon import PriorShapes, ReconstructConfig, final_score, reconstruct_with_shapes

    mesh, view = can_view
    can = trimesh.Trimesh(view.object_vertices, mesh.faces)  # camera frame, as placed prior shapes are
    size = can.extents
    centre = can.bounds.mean(0)
    box = trimesh.creation.box(extents=size * np.array([1.6, 0.5, 1.6]))
    ball = trimesh.creation.icosphere(subdivisions=3, radius=float(size.min()) * 0.35)
    for m in (box, ball):
        m.apply_translation(centre)
    cfg = ReconstructConfig(rotations=1, candidates=1, top_k=1, pose_steps=10, hand_steps=5, icp_iters=2, refine_steps=5, seed=1)
    for order in ([box, can, ball], [can, ball, box]):
        shapes = PriorShapes(order, [0, 1, 2], np.zeros(3), view.hand, "can")
        res, best, scores = reconstruct_with_shapes(view.inputs, shapes, view.camera, cfg, right_hand)
        assert order[best] is can, scores
        assert len(scores) == 3 and scores[best] == min(scores) == final_score(res.final, cfg)
        assert res.mesh is can


def test_prior_shapes_init_pose_is_where_they_were_placed():
    from hoitool.pipelines.image_recon import PriorShapes

    R, t, s = PriorShapes([], [], np.zeros(0), HandParams.zeros(1), "mug").init_pose
    assert np.allclose(R, np.eye(3)) and np.allclose(t, 0) and s == 1.0


def test_prior_of_another_hand_model_is_refused(prior, right_hand, fake_mano, monkeypatch):
    from hoitool.hand.model import HandModel, hand_fingerprint
    from hoitool.prior.shape import check_shape_prior, prior_hand_record

    assert prior_hand_record(prior).get("source") == right_hand.source  # the shipped prior records its hand
    check_shape_prior(prior, right_hand)
    mano = HandModel("right", fake_mano)
    with pytest.raises(InputError, match="HOITOOL_MANO_DIR"):
        check_shape_prior(prior, mano)
    # a recorded fingerprint (models exported since it was added) decides, whatever the sources say
    monkeypatch.setattr(prior, "hand", {"source": right_hand.source, "fingerprint": "0123456789abcdef"})
    with pytest.raises(InputError, match="was trained with the hand model"):
        check_shape_prior(prior, right_hand)
    monkeypatch.setattr(prior, "hand", {"source": "MANO (--mano-dir: /elsewhere)", "fingerprint": hand_fingerprint(right_hand)})
    check_shape_prior(prior, right_hand)


def test_cli_prior_shape_refuses_another_hand_model(tmp_path, scene, fake_mano, monkeypatch):
    d, view = scene
    monkeypatch.setenv("HOITOOL_MANO_DIR", str(fake_mano))
    r = runner.invoke(app, _args(d, view, tmp_path / "a", "--category", "can", "--shape", "prior"))
    assert r.exit_code == 2, r.output
    assert "HOITOOL_MANO_DIR" in r.output and "open hand" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "a").exists()


def test_cli_shape_options_need_shape_prior(tmp_path):
    img = tmp_path / "image.png"
    for extra in (["--shape-samples", "8"], ["--shape-steps", "10", "--shape", "template"], ["--shape-samples", "2", "--shape-steps", "5"],
                  ["--shape-keep", "2"]):
        r = runner.invoke(app, ["reconstruct", str(img), "--category", "mug", "--out", str(tmp_path / "o"), *extra])
        assert r.exit_code == 2, r.output
        assert "--shape prior" in r.output and extra[0] in r.output and len(r.output.strip().splitlines()) == 1
    r = runner.invoke(app, ["reconstruct", str(img), "--two-hands", "--shape-steps", "10"])
    assert r.exit_code == 2 and "--shape-steps" in r.output


def test_no_surface_is_a_user_error(prior, scene, right_hand, monkeypatch):
    """When no drawn shape has a surface the message says so and what to do, as an InputError."""
    from hoitool.pipelines import image_recon

    d, view = scene
    monkeypatch.setattr("hoitool.prior.sample.grid_to_mesh", lambda *a, **k: None)
    monkeypatch.setattr("hoitool.prior.shape.grid_to_mesh", lambda *a, **k: None)
    from hoitool.prior.shape import ShapeConfig

    with pytest.raises(InputError, match="no zero crossing.*--shape-samples"):
        image_recon.prior_object_shapes(view.inputs, view.camera, prior, "can", ShapeConfig(samples=1, steps=2), hand=right_hand,
                                        hand_params=view.hand)
