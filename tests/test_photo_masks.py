"""Masks of a photograph without learned weights (hoitool.pipelines.grabcut) and `hoitool reconstruct IMAGE
--object-box`: GrabCut against the truth of a rendered grasp composited over a real photograph, the rasterised
hand silhouette against pyrender, the hand kept out of the object mask, provenance in params.json, bad boxes."""

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from hoitool.cli.main import app
from hoitool.pipelines import grabcut as gc

runner = CliRunner()
SIZE = 160


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.fixture(scope="module")
def photo(tmp_path_factory, right_hand):
    """A planned grasp of a can rendered at 160 px, composited over scikit-image's coffee photograph; its
    truth masks, the keypoints (files) and a box around the visible object."""
    import cv2
    import skimage.data

    from hoitool.data.synthetic.images import random_view
    from hoitool.data.synthetic.objects import make_object
    from hoitool.data.synthetic.planner import GraspPlanner
    from hoitool.geometry.grid import SDFVolume, canonical_sdf

    mesh = make_object("can", np.random.default_rng(3))
    batch = GraspPlanner(right_hand).plan(mesh, SDFVolume(*canonical_sdf(mesh)), 1, seed=0, key="can")
    view = random_view(right_hand, mesh, batch.params, np.random.default_rng(0), size=SIZE)
    hm, om = view.inputs.hand_mask, view.inputs.object_mask
    bg = cv2.resize(skimage.data.coffee()[:, 100:500], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    image = np.where((hm | om)[..., None], view.inputs.image, bg).astype(np.uint8)
    ys, xs = np.nonzero(om)
    box = np.array([xs.min() - 3, ys.min() - 3, xs.max() + 3, ys.max() + 3], np.float32).clip(0, SIZE - 1)
    d = tmp_path_factory.mktemp("photo")
    Image.fromarray(image).save(d / "image.png")
    Image.fromarray((hm * 255).astype(np.uint8)).save(d / "hand.png")
    (d / "keypoints.json").write_text(json.dumps({"keypoints": view.inputs.keypoints.tolist()}))
    masks = gc.derive_masks(image, view.camera, right_hand, view.inputs.keypoints, view.inputs.confidence, box)
    return d, view, image, box, masks


def test_silhouette_rasteriser_matches_pyrender(photo, right_hand):
    """The hand's rasterised silhouette (OpenCV, pixel centres at integers) against pyrender's render of the same
    mesh: they differ only on the outline."""
    from scipy import ndimage

    from hoitool.render.offscreen import RenderMesh, render_camera

    _, view, _, _, masks = photo
    verts = right_hand(masks.hand_params).vertices[0].detach()
    sil = gc.silhouette(verts, right_hand.faces, view.camera)
    ref = render_camera([RenderMesh(verts.double().numpy(), right_hand.faces.numpy())], view.camera).labels == 0
    assert sil.shape == (SIZE, SIZE) and ref.sum() > 200
    assert _iou(sil, ref) > 0.95
    edge = ndimage.binary_dilation(ref) & ~ndimage.binary_erosion(ref)
    assert not ((sil ^ ref) & ~edge).any()


def test_grabcut_object_from_a_box_matches_the_truth(photo, right_hand):
    """Over a real photograph: the object from its box and the hand from its fitted silhouette agree with the
    rendered truth, and the object stays inside its box."""
    _, view, image, box, masks = photo
    hm, om = view.inputs.hand_mask, view.inputs.object_mask
    assert _iou(masks.object, om) > 0.85
    assert _iou(masks.hand, hm) > 0.8
    assert _iou(masks.hand_silhouette, hm) < _iou(masks.hand, hm)  # GrabCut refines the render
    # a point given on the object (its pixel farthest from the outline) is object, with or without the hand as not object
    from scipy import ndimage

    v, u = np.unravel_index(np.argmax(ndimage.distance_transform_edt(om & ~masks.hand)), om.shape)
    for not_object in (None, masks.hand):
        assert gc.object_mask_from_box(image, box, not_object=not_object, points=[np.array([u, v], np.float32)])[v, u]
    # nothing outside the box
    x0, y0, x1, y1 = box.astype(int)
    outside = np.ones_like(om)
    outside[y0:y1 + 1, x0:x1 + 1] = False
    assert not (masks.object & outside).any()


def test_hand_pixels_are_never_object(photo, right_hand):
    _, view, image, box, masks = photo
    assert masks.hand.any() and masks.object.any()
    assert not (masks.hand & masks.object).any()
    # "not object" pixels stay out exactly, though GrabCut works on a shrunk window
    obj = gc.object_mask_from_box(image, box, not_object=masks.hand, cfg=gc.GrabCutConfig(max_side=50))
    assert _iou(obj, view.inputs.object_mask) > 0.8 and not (obj & masks.hand).any()
    # a given hand mask is kept as it is and cut out of the derived object
    given = view.inputs.hand_mask
    m = gc.derive_masks(image, view.camera, right_hand, view.inputs.keypoints, view.inputs.confidence, box, hand_mask=given)
    assert m.hand is given and m.hand_silhouette is None and not (m.object & given).any()


def test_grabcut_needs_background():
    image = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    seeds = np.full((40, 50), 3, np.uint8)  # all probably foreground
    with pytest.raises(ValueError, match="no background"):
        gc.grabcut(image, seeds)


@pytest.fixture
def quick_pipeline(monkeypatch):
    """The reconstruction's optimisation cut to a few steps (the CLI's path and files are what is tested)."""
    from hoitool.pipelines import image_recon

    real = image_recon.reconstruct_image

    def quick(inputs, mesh, camera, cfg, **kw):
        cfg = dataclasses.replace(cfg, candidates=2, pose_steps=4, hand_steps=4, icp_iters=3, render_size=48)
        return real(inputs, mesh, camera, cfg, **kw)

    monkeypatch.setattr(image_recon, "reconstruct_image", quick)


def test_cli_object_box_without_sam_derives_and_records_the_masks(tmp_path, photo, quick_pipeline):
    d, view, _, box, _ = photo
    out = tmp_path / "out"
    b = ",".join(f"{v:g}" for v in box)
    r = runner.invoke(app, ["reconstruct", str(d / "image.png"), "--category", "can", "--keypoints", str(d / "keypoints.json"),
                            "--object-box", b, "--out", str(out), "--rotations", "20", "--top-k", "1", "--refine-steps", "2",
                            "--device", "cpu"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.replace("│", " ").split())
    for said in ("inputs: keypoints given", "hand mask derived-grabcut", "object mask derived-grabcut", "focal default"):
        assert said in text, text
    for f in ("hand_mask.png", "object_mask.png", "masks.png", "params.json", "overlay.png"):
        assert (out / f).is_file(), f
    p = json.loads((out / "params.json").read_text())
    inp = p["inputs"]
    assert {k: inp[k] for k in ("keypoints", "hand_mask", "object_mask", "focal")} == {
        "keypoints": "given", "hand_mask": "derived-grabcut", "object_mask": "derived-grabcut", "focal": "default"}
    assert inp["object_box"] == pytest.approx(box.tolist()) and inp["grabcut"]["iterations"] == gc.GrabCutConfig().iterations
    hand = np.asarray(Image.open(out / "hand_mask.png")) > 127
    obj = np.asarray(Image.open(out / "object_mask.png")) > 127
    assert not (hand & obj).any()
    assert _iou(obj, view.inputs.object_mask) > 0.85 and _iou(hand, view.inputs.hand_mask) > 0.8
    # a hand mask given as a file wins; the object is still derived from the box
    out2 = tmp_path / "out2"
    r = runner.invoke(app, ["reconstruct", str(d / "image.png"), "--category", "can", "--keypoints", str(d / "keypoints.json"),
                            "--hand-mask", str(d / "hand.png"), "--object-box", b, "--focal", str(view.camera.fx),
                            "--out", str(out2), "--rotations", "20", "--top-k", "1", "--refine-steps", "2", "--device", "cpu"],
                       catch_exceptions=False)
    assert r.exit_code == 0, r.output
    inp = json.loads((out2 / "params.json").read_text())["inputs"]
    assert (inp["hand_mask"], inp["object_mask"], inp["focal"]) == ("given", "derived-grabcut", "given")
    assert inp["files"]["hand_mask"] == str(d / "hand.png")
    assert np.array_equal(np.asarray(Image.open(out2 / "hand_mask.png")) > 127, view.inputs.hand_mask)


def _one_line_refusal(r, expected, out):
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2, r.output
    assert len(lines) == 1 and expected in lines[0], r.output
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.*"))


@pytest.mark.parametrize("box, expected", [
    ("200,10,260,60", "is not inside the 160x160 image"),        # wholly outside
    ("-5,10,60,60", "is not inside the 160x160 image"),          # partly outside
    ("10,10,10,60", "with x1 > x0 and y1 > y0"),                 # zero area
    ("60,10,20,60", "with x1 > x0 and y1 > y0"),                 # x1 < x0
    ("10,10,12,60", "too small to segment"),
    ("10,10,60", "must be x0,y0,x1,y1"),
])
def test_bad_boxes_exit_2_with_one_line_and_nothing_written(tmp_path, photo, box, expected):
    d, *_ = photo
    out = tmp_path / "out"
    r = runner.invoke(app, ["reconstruct", str(d / "image.png"), "--category", "can", "--keypoints", str(d / "keypoints.json"),
                            "--object-box", box, "--out", str(out)])
    _one_line_refusal(r, expected, out)


def test_other_refusals_and_escaped_names(tmp_path, photo, monkeypatch):
    d, *_ = photo
    out = tmp_path / "out"
    kp = ["--category", "can", "--keypoints", str(d / "keypoints.json"), "--out", str(out)]
    # no mask, no box, no SAM
    _one_line_refusal(runner.invoke(app, ["reconstruct", str(d / "image.png"), *kp]), "no object mask: pass --object-box", out)
    # --hand-box is SAM's prompt
    r = runner.invoke(app, ["reconstruct", str(d / "image.png"), *kp, "--object-box", "10,10,60,60", "--hand-box", "1,1,50,50"])
    _one_line_refusal(r, "--hand-box is SAM's prompt", out)
    # an object point outside the image
    r = runner.invoke(app, ["reconstruct", str(d / "image.png"), *kp, "--object-box", "10,10,60,60", "--object-point", "500,5"])
    _one_line_refusal(r, "--object-point 500,5 is not inside", out)
    # a photograph in which the detector finds no hand; brackets in the name are printed as they are
    import hoitool.hand.detect as det

    monkeypatch.setattr(det, "detect_keypoints", lambda images, side="right", **kw: (np.zeros((1, 21, 2), np.float32),
                                                                                      np.zeros((1, 21), np.float32)))
    odd = tmp_path / "photo [red].png"
    odd.write_bytes((d / "image.png").read_bytes())
    r = runner.invoke(app, ["reconstruct", str(odd), "--detect", "--category", "mug", "--object-box", "10,10,60,60",
                            "--out", str(out)])
    _one_line_refusal(r, f"the detector found no right hand in {odd}", out)


def test_a_near_empty_first_object_mask_falls_back_to_the_box_alone(monkeypatch):
    """When the box + silhouette pass keeps next to nothing, the box-alone pass is used if it finds
    clearly more (else the hand's GrabCut would take the object)."""
    H = W = 100
    box = np.array([20.0, 20.0, 80.0, 80.0])
    tiny = np.zeros((H, W), bool)
    tiny[50, 50:54] = True
    full = np.zeros((H, W), bool)
    full[25:75, 25:75] = True
    calls = []

    def fake_box(image, box, hand_mask, points, cfg, probably_not_object=None):
        calls.append(probably_not_object is not None)
        return tiny if probably_not_object is not None else full

    monkeypatch.setattr(gc, "fit_hand", lambda *a, **k: _Params())
    monkeypatch.setattr(gc, "silhouette", lambda *a, **k: np.zeros((H, W), bool))
    monkeypatch.setattr(gc, "object_mask_from_box", fake_box)
    monkeypatch.setattr(gc, "hand_mask_from_silhouette", lambda image, sil, obj, cfg: np.zeros((H, W), bool))
    out = gc.derive_masks(np.zeros((H, W, 3), np.uint8), None, _Hand(), np.zeros((21, 2)), np.ones(21), box)
    assert calls == [True, False] and out.object.sum() == full.sum()
    # a first mask that is big enough is kept without the second pass
    calls.clear()
    tiny = full.copy()
    out = gc.derive_masks(np.zeros((H, W, 3), np.uint8), None, _Hand(), np.zeros((21, 2)), np.ones(21), box)
    assert calls == [True]


class _Params:
    def to(self, device):
        return self


class _Hand:
    device = "cpu"
    faces = None

    def __call__(self, params):
        import torch

        return type("O", (), {"vertices": torch.zeros(1, 778, 3)})()
