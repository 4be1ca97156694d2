"""`hoitool reconstruct CLIP`: the ray-marched silhouettes, the clip hand fit, the object stage,
an end-to-end run on a rendered clip with known truth, and bad input."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hoitool.cli.main import app
from hoitool.geometry.camera import Camera
from hoitool.geometry.sdf import grid_points
from hoitool.pipelines.video_recon import (
    ClipInputs, ObjectModel, VideoConfig, _Crops, fit_clip_hand, reconstruct_clip, render_silhouettes,
)

runner = CliRunner()
FRAMES = 6


@pytest.fixture(scope="module")
def clip(right_hand):
    """A rendered clip of a planned grasp of a can (one dropped frame of keypoints)."""
    from hoitool.data.synthetic.clips import make_clip
    from hoitool.data.synthetic.objects import make_object
    from hoitool.data.synthetic.planner import GraspPlanner
    from hoitool.geometry.grid import SDFVolume, canonical_sdf

    mesh = make_object("can", np.random.default_rng(3))
    batch = GraspPlanner(right_hand).plan(mesh, SDFVolume(*canonical_sdf(mesh)), 1, seed=0, key="can")
    return make_clip(right_hand, mesh, batch.params, "can", np.random.default_rng(0), frames=FRAMES, size=128, drop=0.2)


@pytest.fixture(scope="module")
def clip_dir(clip, tmp_path_factory):
    from hoitool.data.synthetic.clips import write_clip

    d = tmp_path_factory.mktemp("clip")
    write_clip(clip, d)
    return d


def _inputs(clip) -> ClipInputs:
    return ClipInputs(clip.frames, clip.hand_masks, clip.object_masks, np.nan_to_num(clip.keypoints), clip.confidence)


def _sphere_model(radius_u: float, T: int, hTo: np.ndarray, res: int = 32) -> ObjectModel:
    g = np.linalg.norm(grid_points(res), axis=-1).reshape(res, res, res) - radius_u
    return ObjectModel(g.astype(np.float32), np.eye(4), hTo, T)


def test_ray_marched_silhouette_of_a_sphere_has_the_projected_area():
    """A sphere of radius r at depth z covers pi (f r / z)^2 pixels (r << z), wherever it is."""
    S, f = 64, 60.0
    cam = Camera(f, f, (S - 1) / 2, (S - 1) / 2, S, S)
    inputs = ClipInputs(np.zeros((2, S, S, 3), np.uint8), np.zeros((2, S, S), bool), np.zeros((2, S, S), bool),
                        np.zeros((2, 21, 2)), np.zeros((2, 21)))
    crops = _Crops(inputs, cam, S, torch.device("cpu"))
    r_m, z = 0.05, 0.6
    hTo = np.eye(4)
    hTo[:3, :3] *= r_m / 0.5  # the grid's sphere of radius 0.5 u becomes 5 cm
    obj = _sphere_model(0.5, 2, hTo)
    cTh = torch.eye(4).repeat(2, 1, 1)
    cTh[0, :3, 3] = torch.tensor([0.0, 0.0, z])
    cTh[1, :3, 3] = torch.tensor([0.08, -0.05, z])  # off-centre: the same disc, moved
    with torch.no_grad():
        sil = render_silhouettes(obj, crops, obj.uTc(cTh), torch.arange(2), sigma=0.5, samples=64)
    cc = crops.cams[0]  # the crop's camera (a window around the whole frame when no mask shows anything)
    expected = np.pi * (cc.fx * r_m / z) ** 2
    for k in range(2):
        assert float(sil[k].sum()) == pytest.approx(expected, rel=0.08)
    ys, xs = torch.meshgrid(torch.arange(S).float(), torch.arange(S).float(), indexing="ij")
    cy, cx = float((sil[1] * ys).sum() / sil[1].sum()), float((sil[1] * xs).sum() / sil[1].sum())
    assert cx == pytest.approx(cc.cx + cc.fx * 0.08 / z, abs=0.5) and cy == pytest.approx(cc.cy - cc.fy * 0.05 / z, abs=0.5)


def test_object_model_pose_and_mesh():
    hTo = np.eye(4)
    hTo[:3, :3] = 0.1 * np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]])
    hTo[:3, 3] = [0.01, 0.02, 0.03]
    obj = _sphere_model(0.6, 3, hTo)
    assert np.allclose(obj.hTo().detach().numpy(), hTo[None], atol=1e-6)
    m = obj.mesh()  # template frame scaled by s = 0.1: radius 0.06 m
    r = np.linalg.norm(m.vertices - m.vertices.mean(0), axis=1)
    assert r.mean() == pytest.approx(0.06, rel=0.03)
    assert m.volume == pytest.approx(4 / 3 * np.pi * 0.06 ** 3, rel=0.05)  # positive: faces point outwards
    cTh = torch.eye(4).repeat(3, 1, 1)
    cTo = obj.output_poses(cTh)
    assert np.allclose(cTo[:, :3, :3] @ cTo[:, :3, :3].transpose(0, 2, 1), np.eye(3), atol=1e-5)  # rigid
    assert np.allclose(cTo[:, :3, 3], hTo[:3, 3], atol=1e-6)


def test_clip_hand_fit_fills_dropped_frames_and_is_smooth(clip, right_hand):
    cfg = VideoConfig(smooth_steps=80, hand_iters=30, fit_every=2)
    per_frame, fitted, have = fit_clip_hand(right_hand, _inputs(clip), clip.camera, cfg)
    assert have.tolist() == [t not in clip.dropped for t in range(FRAMES)]
    with torch.no_grad():
        kp = right_hand(fitted).keypoints.numpy()
    err = np.linalg.norm((kp - kp[:, 5:6]) - (clip.keypoints3d - clip.keypoints3d[:, 5:6]), axis=-1).mean(1)  # index-MCP centred
    assert err.max() < 0.025, err  # dropped frames included
    uv = clip.camera.project(torch.as_tensor(kp, dtype=torch.float32)).numpy()
    px = np.linalg.norm(uv - clip.camera.project(torch.as_tensor(clip.keypoints3d, dtype=torch.float32)).numpy(), axis=-1)
    assert np.median(px) < 6.0


@pytest.mark.slow
def test_object_stage_explains_the_masks_better_than_the_start(clip, right_hand):
    cfg = VideoConfig(use_prior=False, steps=40, init_rotations=100, init_refine_steps=10, smooth_steps=40, hand_iters=20)
    res = reconstruct_clip(_inputs(clip), clip.mesh, clip.camera, "can", cfg, template=True, hand=right_hand)
    assert list(res.stages) == ["hand", "init", "object"]
    a, b = res.stages["init"].metrics, res.stages["object"].metrics
    assert b["object_iou"] > a["object_iou"] - 0.01 and b["object_iou"] > 0.6, (a, b)
    assert len(res.final.frames) == FRAMES and len(res.losses) == 40
    # one object for the clip: its pose relative to the hand barely changes over a rigid grasp
    with torch.no_grad():
        cTh = torch.stack([right_hand.frame_from_hand(f.hand)[0] for f in res.final.frames]).double().numpy()
    hTo = np.linalg.inv(cTh) @ np.stack([f.cTo for f in res.final.frames])
    assert np.abs(hTo[:, :3, 3] - hTo[:1, :3, 3]).max() < 0.01


def test_silhouettes_do_not_depend_on_which_frames_are_rendered_together():
    S, f = 48, 50.0
    cam = Camera(f, f, (S - 1) / 2, (S - 1) / 2, S, S)
    T = 3
    inputs = ClipInputs(np.zeros((T, S, S, 3), np.uint8), np.zeros((T, S, S), bool), np.zeros((T, S, S), bool),
                        np.zeros((T, 21, 2)), np.zeros((T, 21)))
    crops = _Crops(inputs, cam, S, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    box = np.abs(grid_points(24)).reshape(24, 24, 24, 3) - np.array([0.6, 0.3, 0.4])  # a box: not symmetric under rotation
    grid = (np.linalg.norm(np.maximum(box, 0), axis=-1) + np.minimum(box.max(-1), 0)).astype(np.float32)
    hTo = np.eye(4)
    hTo[:3, :3] = 0.08 * np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]
    uTo = np.diag([1.2, 1.2, 1.2, 1.0])
    obj = ObjectModel(grid, uTo, hTo, T)
    cTh = torch.eye(4).repeat(T, 1, 1)
    cTh[:, :3, 3] = torch.tensor([0.0, 0.0, 0.5]) + 0.03 * torch.randn(T, 3, generator=g)
    with torch.no_grad():
        uTc = obj.uTc(cTh)
        together = render_silhouettes(obj, crops, uTc, torch.tensor([2, 0, 1]), 0.5, 24)
        for i, t in enumerate([2, 0, 1]):
            alone = render_silhouettes(obj, crops, uTc, torch.tensor([t]), 0.5, 24)[0]
            assert torch.allclose(together[i], alone, atol=1e-6)
    assert together.sum() > 20


@pytest.mark.slow
def test_reconstruct_clip_end_to_end_with_the_prior(tmp_path, clip, clip_dir, monkeypatch):
    """The whole command on a folder of frames, keypoints from the detector (stood in for by the
    clip's own keypoints: the real one needs .venv-detect)."""
    from hoitool.hand import detect

    seen = {}

    def fake_detect(images, side="right", video=False):
        seen.update(n=len(images), video=video, side=side)
        return np.nan_to_num(clip.keypoints), clip.confidence

    monkeypatch.setattr(detect, "detect_keypoints", fake_detect)
    info = json.loads((clip_dir / "clip.json").read_text())
    out = tmp_path / "out"
    r = runner.invoke(app, ["reconstruct", str(clip_dir / "frames"), "--hand-masks", str(clip_dir / "hand_masks"),
                            "--object-masks", str(clip_dir / "object_masks"), "--detect",
                            "--category", "can", "--focal", str(info["focal"]), "--steps", "6", "--frames", "0:6",
                            "--video-format", "gif", "--save-stages", "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert seen == {"n": FRAMES, "video": True, "side": "right"}
    for f in ("object.obj", "params.json", "losses.jsonl", "overlay.gif", "turntable.gif", "config.yaml"):
        assert (out / f).is_file(), f
    assert sorted(p.name for p in (out / "stages").iterdir()) == ["0_hand", "1_init", "2_object"]
    assert len(list((out / "meshes").glob("hand_*.obj"))) == FRAMES == len(list((out / "meshes").glob("object_*.obj")))
    p = json.loads((out / "params.json").read_text())
    assert len(p["frames"]) == FRAMES and p["camera"]["fx"] == pytest.approx(info["focal"]) and p["prior"]
    assert {"sds", "mask"} <= set().union(*(json.loads(x) for x in (out / "losses.jsonl").read_text().splitlines()))
    # the per-frame object file is object.obj under that frame's cTo
    import trimesh

    obj = trimesh.load(out / "object.obj", process=False)
    assert obj.volume > 0
    assert p["metrics"]["object_iou"] > 0.5  # the object, posed per frame, covers its masks
    f3 = p["frames"][3]
    posed = trimesh.load(out / "meshes" / f"object_{f3['stem']}.obj", process=False)
    cTo = np.array(f3["cTo"])
    assert np.allclose(np.asarray(obj.vertices) @ cTo[:3, :3].T + cTo[:3, 3], posed.vertices, atol=1e-4)
    from hoitool.data.video_inputs import load_clip

    assert load_clip(out / "overlay.gif").frames.shape[:3] == (FRAMES, 128, 128)
    assert not list(tmp_path.glob(".out.*"))  # no partial folder left


def _clip_args(d, out, *extra):
    return ["reconstruct", str(d / "frames"), "--hand-masks", str(d / "hand_masks"), "--object-masks", str(d / "object_masks"),
            "--keypoints", str(d / "keypoints.json"), "--category", "can", "--out", str(out), *extra]


def _one_line_error(r, *words):
    assert r.exit_code == 2, r.output
    lines = [x for x in r.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.output
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_clip_bad_input_one_line_and_nothing_written(tmp_path, clip_dir):
    out = tmp_path / "out"
    # --frames outside the clip
    _one_line_error(runner.invoke(app, _clip_args(clip_dir, out, "--frames", "100:120")), "--frames")
    # a mask folder missing frames
    import shutil

    masks = tmp_path / "m"
    shutil.copytree(clip_dir / "object_masks", masks)
    sorted(masks.iterdir())[-1].unlink()
    args = _clip_args(clip_dir, out)
    args[args.index("--object-masks") + 1] = str(masks)
    _one_line_error(runner.invoke(app, args), f"frame {FRAMES - 1}")
    # more masks than frames: another clip's folder
    extra = tmp_path / "extra"
    shutil.copytree(clip_dir / "object_masks", extra)
    for t in range(FRAMES, FRAMES + 3):
        shutil.copy(extra / "00000.png", extra / f"{t:05d}.png")
    args[args.index("--object-masks") + 1] = str(extra)
    _one_line_error(runner.invoke(app, args), f"{FRAMES + 3} object masks")
    # --frames running past the clip's end, and --hand-box (a photo's option)
    _one_line_error(runner.invoke(app, _clip_args(clip_dir, out, "--frames", f"0:{FRAMES + 5}")), "--frames", "outside")
    _one_line_error(runner.invoke(app, _clip_args(clip_dir, out, "--hand-box", "1,2,3,4")), "--hand-box")
    # masks of another size
    from PIL import Image

    args[args.index("--object-masks") + 1] = str(masks)
    for p in masks.iterdir():
        Image.open(p).resize((64, 64)).save(p)
    Image.new("L", (64, 64)).save(masks / f"{FRAMES - 1:05d}.png")
    _one_line_error(runner.invoke(app, args), "64")
    # no frame has a hand
    kp = tmp_path / "none.json"
    kp.write_text(json.dumps([None] * FRAMES))
    args = _clip_args(clip_dir, out)
    args[args.index("--keypoints") + 1] = str(kp)
    _one_line_error(runner.invoke(app, args), "hand")
    # a video that does not exist, an unreadable one, an empty one
    _one_line_error(runner.invoke(app, ["reconstruct", str(tmp_path / "nope.mp4"), "--category", "can", "--keypoints", str(kp),
                                        "--frames", "0:4", "--out", str(out)]), "nope.mp4", "not found")
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"not a video at all")
    _one_line_error(runner.invoke(app, ["reconstruct", str(bad), "--category", "can", "--keypoints", str(kp), "--out", str(out)]), "clip.mp4")
    bad.write_bytes(b"")
    _one_line_error(runner.invoke(app, ["reconstruct", str(bad), "--category", "can", "--keypoints", str(kp), "--out", str(out)]), "clip.mp4")
    # --frames on a still image
    img = tmp_path / "photo.png"
    Image.new("RGB", (32, 32)).save(img)
    _one_line_error(runner.invoke(app, ["reconstruct", str(img), "--category", "can", "--frames", "0:4", "--out", str(out)]), "--frames")
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_clip_masks_from_sam_follow_the_previous_box(tmp_path, clip, clip_dir, monkeypatch):
    """SAM prompted on the first frame by --object-box, then by the previous mask's box; the hand by its keypoints' box."""
    from hoitool.pipelines import segment

    calls = []

    class FakeSam:
        def __init__(self, checkpoint, device="cpu"):
            self.t = -1

        def set_image(self, image):
            self.t += 1

        def segment(self, box=None, points=None):
            calls.append((self.t, None if box is None else np.asarray(box, float).round(1).tolist()))
            m = np.zeros(clip.frames.shape[1:3], bool)
            if box is not None:
                x0, y0, x1, y1 = np.clip(np.asarray(box, float), 0, 127).astype(int)
                m[y0 + 2:y1 - 1, x0 + 2:x1 - 1] = True
            return m

    monkeypatch.setattr(segment, "SamSegmenter", FakeSam)
    from hoitool.cli.reconstruct import _sam_clip_masks
    from hoitool.data.video_inputs import load_clip

    c = load_clip(clip_dir / "frames")
    kp = np.nan_to_num(clip.keypoints)
    out = _sam_clip_masks(c, kp, clip.confidence, ["hand", "object"], {}, tmp_path / "sam.pth", "30,30,90,90", None, "cpu")
    assert out["hand"].shape == out["object"].shape == (FRAMES, 128, 128)
    assert len(calls) == 2 * FRAMES  # per frame: the hand, then the object
    assert calls[1] == (0, [30.0, 30.0, 90.0, 90.0])  # first frame: the user's prompt
    # next frame: the previous object mask's box (pixels 32..88) padded by 10 % of its side
    assert calls[3] == (1, [26.4, 26.4, 93.6, 93.6])
    assert not (out["hand"] & out["object"]).any()  # the hand is cut out of the object
