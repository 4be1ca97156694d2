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
def scene(tmp_path_factory, right_hand):
    """A small synthetic photograph of a planned grasp of a can, written as files."""
    from PIL import Image

    from hoitool.data.synthetic.images import random_view
    from hoitool.data.synthetic.objects import make_object
    from hoitool.data.synthetic.planner import GraspPlanner
    from hoitool.geometry.grid import SDFVolume, canonical_sdf

    mesh = make_object("can", np.random.default_rng(3))
    batch = GraspPlanner(right_hand).plan(mesh, SDFVolume(*canonical_sdf(mesh)), 1, seed=0, key="can")
    view = random_view(right_hand, mesh, batch.params, np.random.default_rng(0), size=160)
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
    r = runner.invoke(app, _args(d, view, out, "--category", "can", "--shape", "prior", "--shape-samples", "2",
                                 "--shape-steps", "5"), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    for f in ("hand.obj", "object.obj", "params.json", "config.yaml"):
        assert (out / f).is_file(), f
    p = json.loads((out / "params.json").read_text())
    s = p["shape"]
    assert s["source"] == "prior" and s["samples"] == 2 and s["ddim_steps"] == 5 and len(s["mask_iou"]) == 2
    assert s["mask_iou"][s["chosen_sample"]] == max(s["mask_iou"])
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
    that step's level with the sample's own noise (recomputed here from its generator)."""
    from hoitool.prior.shape import OBJECT_CHANNELS, inpaint_hand_sample
    from hoitool.utils.seeding import torch_generator

    field = hand_field(right_hand, grasp_hand)
    seen = []
    real = prior.guided_eps

    def record(x, t, *a, **k):
        seen.append((x[:, OBJECT_CHANNELS:].clone(), int(t[0])))
        return real(x, t, *a, **k)

    monkeypatch.setattr(prior, "guided_eps", record)
    steps = 4
    inpaint_hand_sample(prior, "mug", field, 1, steps=steps, seed=3, batch_size=1)
    r = field.shape[-1]
    C = prior.unet.config.in_channels
    known = prior.pack(torch.zeros(1, OBJECT_CHANNELS, r, r, r), field.float())[:, OBJECT_CHANNELS:]
    g = torch_generator(3, "shape", 0)
    start = torch.randn((C, r, r, r), generator=g)[OBJECT_CHANNELS:]
    hn = torch.randn((steps, C - OBJECT_CHANNELS, r, r, r), generator=g)
    abar = prior.alphas_cumprod()
    assert len(seen) == steps
    for k, (x, t) in enumerate(seen):
        eps = start if k == 0 else hn[k - 1]
        want = abar[t].sqrt() * known[0] + (1 - abar[t]).sqrt() * eps
        assert torch.allclose(x[0], want, atol=1e-4), k
