"""`hoitool reconstruct`: hand fitting to 2D keypoints, input parsing, end-to-end runs on a
synthetic photograph with known truth, and bad input."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from hoitool.cli.main import app
from hoitool.errors import InputError
from hoitool.geometry.camera import Camera
from hoitool.hand.fitting import fit_to_2d_keypoints
from hoitool.hand.model import HandParams
from hoitool.hand.prior import PosePrior
from hoitool.data.image_inputs import parse_keypoints

runner = CliRunner()
FAST = ["--rotations", "200", "--top-k", "2", "--refine-steps", "20", "--device", "cpu"]


def test_hand_fit_to_2d_keypoints_recovers_pose_and_place(right_hand):
    prior = PosePrior.from_hand(right_hand)
    g = torch.Generator().manual_seed(1)
    cam = Camera.default(640, 480)
    p = HandParams.zeros(1)
    p.hand_pose = prior.sample(1, g, closure=torch.tensor([0.4]))
    p.global_orient = torch.tensor([[2.2, 0.4, -0.3]])
    p.transl = torch.tensor([[0.03, -0.02, 0.45]])
    true = right_hand(p)
    uv = cam.project(true.keypoints[0])
    fit = fit_to_2d_keypoints(right_hand, uv, cam)
    out = right_hand(fit.params)
    assert fit.reprojection_px.item() < 4.0
    rel = (out.keypoints - out.keypoints[:, :1]) - (true.keypoints - true.keypoints[:, :1])
    assert rel.norm(dim=-1).mean().item() < 0.025
    assert abs(out.keypoints[0, 0, 2] - true.keypoints[0, 0, 2]).item() < 0.03  # depth from the average hand size


def test_keypoint_formats_and_no_hand():
    pts = [[10.0 + i, 20.0 + i] for i in range(21)]
    uv, c = parse_keypoints(pts, "x")
    assert uv.shape == (21, 2) and c.tolist() == [1.0] * 21
    flat = [v for i in range(21) for v in (float(i), 2.0 * i, 0.0 if i < 3 else 0.9)]
    uv, c = parse_keypoints({"people": [{"hand_right_keypoints_2d": flat}]}, "x")
    assert uv[5].tolist() == [5.0, 10.0] and c[:3].tolist() == [0, 0, 0] and c[3] == pytest.approx(0.9)
    uv, c = parse_keypoints({"keypoints": [[1.0, 2.0, 1.0]] * 21}, "x")
    assert uv.shape == (21, 2)
    for bad in ([], {"people": []}, [[1.0, 2.0, 0.0]] * 21, [[1.0, 2.0]] * 20, {"people": [{"hand_right_keypoints_2d": []}]}):
        with pytest.raises(InputError):
            parse_keypoints(bad, "x")


@pytest.fixture(scope="module")
def scene(tmp_path_factory, right_hand):
    """A synthetic photograph of a planned grasp of a can, written as files."""
    from hoitool.data.synthetic.images import random_view
    from hoitool.data.synthetic.objects import make_object
    from hoitool.data.synthetic.planner import GraspPlanner
    from hoitool.geometry.grid import SDFVolume, canonical_sdf

    mesh = make_object("can", np.random.default_rng(3))
    batch = GraspPlanner(right_hand).plan(mesh, SDFVolume(*canonical_sdf(mesh)), 1, seed=0, key="can")
    assert batch.params.batch_size == 1
    view = random_view(right_hand, mesh, batch.params, np.random.default_rng(0), size=240)
    d = tmp_path_factory.mktemp("scene")
    Image.fromarray(view.inputs.image).save(d / "image.png")
    Image.fromarray((view.inputs.hand_mask * 255).astype(np.uint8)).save(d / "hand.png")
    Image.fromarray((view.inputs.object_mask * 255).astype(np.uint8)).save(d / "object.png")
    (d / "keypoints.json").write_text(json.dumps({"keypoints": view.inputs.keypoints.tolist()}))
    mesh.export(d / "can.obj")
    return d, view, mesh


def _args(d, view, out, *extra):
    return ["reconstruct", str(d / "image.png"), "--hand-mask", str(d / "hand.png"), "--object-mask", str(d / "object.png"),
            "--keypoints", str(d / "keypoints.json"), "--focal", str(view.camera.fx), "--out", str(out), *FAST, *extra]


@pytest.mark.slow
def test_reconstruct_template_end_to_end(tmp_path, scene):
    from hoitool.metrics.reconstruction import aligned_chamfer_fscore, chamfer_fscore, sample_surface

    d, view, mesh = scene
    out = tmp_path / "out"
    r = runner.invoke(app, _args(d, view, out, "--object-mesh", str(d / "can.obj"), "--save-stages"), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    for f in ("hand.obj", "object.obj", "params.json", "overlay.png", "side.png", "config.yaml"):
        assert (out / f).is_file(), f
    assert sorted(p.name for p in (out / "stages").iterdir()) == ["0_pose", "1_contact", "2_refine"]
    assert Image.open(out / "overlay.png").size == (240, 240)
    p = json.loads((out / "params.json").read_text())
    assert set(p["stages"]) == {"pose", "contact", "refine"} and p["camera"]["fx"] == pytest.approx(view.camera.fx)
    # the object file is the mesh under the reported pose, in the camera frame
    import trimesh

    obj = trimesh.load(out / "object.obj", process=False)
    R, t, s = np.array(p["object"]["rotation"]), np.array(p["object"]["translation"]), p["object"]["scale"]
    assert np.allclose(obj.vertices, s * mesh.vertices @ R.T + t, atol=1e-5)
    hand = trimesh.load(out / "hand.obj", process=False)
    assert hand.vertices.shape == (778, 3) or hand.vertices.shape[1] == 3
    # object recovered: shape after alignment, and place in the camera frame within a couple of cm
    gt = sample_surface(trimesh.Trimesh(view.object_vertices, mesh.faces), 3000)
    pred = sample_surface(obj, 3000)
    assert aligned_chamfer_fscore(pred, gt)["f@10mm"] > 0.8
    assert chamfer_fscore(pred, gt)["chamfer_mm"] < 25
    assert p["metrics"]["object_iou"] > 0.7 and p["metrics"]["hand_iou"] > 0.6 and p["metrics"]["keypoint_error_px"] < 8


@pytest.mark.slow
def test_reconstruct_category_and_cao(tmp_path, scene):
    d, view, _ = scene
    r = runner.invoke(app, _args(d, view, tmp_path / "cat", "--category", "tin can"), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    p = json.loads((tmp_path / "cat" / "params.json").read_text())
    assert p["template"] == "category can" and set(p["stages"]) == {"pose", "contact", "refine"}
    r = runner.invoke(app, _args(d, view, tmp_path / "cao0", "--object-mesh", str(d / "can.obj"), "--method", "cao"),
                      catch_exceptions=False)
    assert r.exit_code == 0, r.output
    p = json.loads((tmp_path / "cao0" / "params.json").read_text())
    assert list(p["stages"]) == ["pose", "joint"] and p["method"] == "cao" and p["refinenet"] is None
    # the shipped refinement network, asked for, follows the joint optimisation as a stage of its own
    r = runner.invoke(app, _args(d, view, tmp_path / "cao", "--object-mesh", str(d / "can.obj"), "--method", "cao",
                                 "--refinenet", "default", "--save-stages"), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    p = json.loads((tmp_path / "cao" / "params.json").read_text())
    assert list(p["stages"]) == ["pose", "joint", "refinenet"]
    assert p["refinenet"].endswith("refinenet.pt")
    joint = json.loads((tmp_path / "cao" / "stages" / "1_joint" / "params.json").read_text())
    final = json.loads((tmp_path / "cao" / "stages" / "2_refinenet" / "params.json").read_text())
    assert final["object"] == joint["object"] and final["hand"]["scale"] == joint["hand"]["scale"]  # only the hand's pose moves
    assert final["hand"]["hand_pose"] != joint["hand"]["hand_pose"]


def test_reconstruct_refuses_a_refinenet_of_another_kind(tmp_path, scene):
    d, view, _ = scene
    from hoitool.utils.modelfile import default_model_path

    for bad, why in ((default_model_path("vqvae"), "holds a vqvae model, not refinenet"),
                     (tmp_path / "nope", "is not a refinenet model")):
        r = runner.invoke(app, _args(d, view, tmp_path / "o", "--object-mesh", str(d / "can.obj"), "--method", "cao",
                                     "--refinenet", str(bad)))
        lines = [line for line in r.output.splitlines() if line.strip()]
        assert r.exit_code == 2 and why in r.output and len(lines) == 1, r.output
        assert not (tmp_path / "o").exists()


def test_reconstruct_refuses_bad_input(tmp_path, scene):
    d, view, _ = scene
    white = tmp_path / "white.png"
    Image.fromarray(np.full((240, 240), 255, np.uint8)).save(white)
    black = tmp_path / "black.png"
    Image.fromarray(np.zeros((240, 240), np.uint8)).save(black)
    small = tmp_path / "small.png"
    Image.fromarray(np.full((100, 120), 255, np.uint8)).save(small)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image")
    nohand = tmp_path / "nohand.json"
    nohand.write_text(json.dumps({"people": []}))
    zero = tmp_path / "zero.json"
    zero.write_text(json.dumps([[1.0, 1.0, 0.0]] * 21))
    mesh = ["--object-mesh", str(d / "can.obj")]
    base = ["--hand-mask", str(d / "hand.png"), "--object-mask", str(d / "object.png"), "--keypoints", str(d / "keypoints.json")]
    cases = {
        "cannot read image": ["reconstruct", str(junk), *base, *mesh],
        "is empty": ["reconstruct", str(d / "image.png"), "--hand-mask", str(black), "--object-mask", str(d / "object.png"), "--keypoints", str(d / "keypoints.json"), *mesh],
        "covers the whole image": ["reconstruct", str(d / "image.png"), "--hand-mask", str(d / "hand.png"), "--object-mask", str(white), "--keypoints", str(d / "keypoints.json"), *mesh],
        "masks must have the image's size": ["reconstruct", str(d / "image.png"), "--hand-mask", str(small), "--object-mask", str(d / "object.png"), "--keypoints", str(d / "keypoints.json"), *mesh],
        "no hand": ["reconstruct", str(d / "image.png"), "--hand-mask", str(d / "hand.png"), "--object-mask", str(d / "object.png"), "--keypoints", str(nohand), *mesh],
        "only 0 of 21": ["reconstruct", str(d / "image.png"), "--hand-mask", str(d / "hand.png"), "--object-mask", str(d / "object.png"), "--keypoints", str(zero), *mesh],
        "--object-mesh PATH": ["reconstruct", str(d / "image.png"), *base],
        "no object mask": ["reconstruct", str(d / "image.png"), "--hand-mask", str(d / "hand.png"), "--keypoints", str(d / "keypoints.json"), *mesh],
        "no object template": ["reconstruct", str(d / "image.png"), *base, "--category", "giraffe"],
        "--focal must be": ["reconstruct", str(d / "image.png"), *base, *mesh, "--focal", "-3"],
    }
    for i, (msg, args) in enumerate(cases.items()):
        out = tmp_path / f"out{i}"
        r = runner.invoke(app, [*args, "--out", str(out)])
        assert r.exit_code == 2, (msg, r.output)
        assert msg in " ".join(r.output.split()), (msg, r.output)
        assert not out.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".out{i}")]


@pytest.mark.slow
def test_sam_segmenter_from_a_local_checkpoint(tmp_path):
    from hoitool.pipelines.segment import SamSegmenter, _install_torchvision_helpers

    _install_torchvision_helpers()
    sa = pytest.importorskip("segment_anything", reason="the 'sam' extra (segment-anything) is not installed")

    torch.manual_seed(0)
    ck = tmp_path / "sam_vit_b.pth"
    torch.save(sa.sam_model_registry["vit_b"]().state_dict(), ck)  # random weights: shapes are what matter
    seg = SamSegmenter(ck)
    assert seg.kind == "vit_b"
    img = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    seg.set_image(img)
    m = seg.segment(box=np.array([20, 20, 80, 70], np.float32), points=[np.array([50.0, 45.0], np.float32)])
    assert m.shape == (96, 128) and m.dtype == bool
    bad = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, bad)
    with pytest.raises(InputError, match="not a Segment Anything checkpoint"):
        SamSegmenter(bad)
