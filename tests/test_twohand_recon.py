"""`hoitool reconstruct --two-hands`: both hands from 2D keypoints (with and without the two-hand
prior), missing keypoints, the score-distillation direction, and bad input."""

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from hoitool.cli.main import app
from hoitool.errors import InputError
from hoitool.geometry.camera import Camera
from hoitool.geometry.rotations import axis_angle_to_matrix
from hoitool.geometry.transforms import make_transform
from hoitool.hand.model import HandParams
from hoitool.hand.prior import PosePrior
from hoitool.pipelines.twohand_recon import TwoHandReconConfig, reconstruct_two_hands
from hoitool.twohands.params import transform_params

runner = CliRunner()
W, H = 320, 240


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Batch-1 hand fits are many tiny ops: a second intra-op thread gains nothing, and on a busy
    machine its spin-waits made these tests several times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _pair_in_camera(right_hand, left_hand):
    """A right and a left hand facing each other 8 cm apart (palm to palm), 0.5 m in front of
    the camera and fully in view; (params per side in the camera frame, keypoints (2, 21, 2) px)."""
    g = torch.Generator().manual_seed(0)
    r, l = HandParams.zeros(1, "right"), HandParams.zeros(1, "left")
    r.hand_pose = PosePrior.from_hand(right_hand).sample(1, g, closure=torch.tensor([0.3]))
    l.hand_pose = PosePrior.from_hand(left_hand).sample(1, g, closure=torch.tensor([0.3]))
    n = torch.as_tensor(right_hand.metadata.palm_normal, dtype=torch.float32)
    l.global_orient = torch.tensor([[0.0, 0.0, np.pi]])
    l.transl = 0.08 * n[None]
    T = make_transform(axis_angle_to_matrix(torch.tensor([[2.0, 0.3, 0.2]])), torch.tensor([[0.05, 0.0, 0.55]]))
    cam = Camera.default(W, H)
    params = {"right": transform_params(right_hand, r, T), "left": transform_params(left_hand, l, T)}
    with torch.no_grad():
        uv = torch.stack([cam.project(h(params[s]).keypoints[0]) for s, h in (("right", right_hand), ("left", left_hand))])
    assert (uv[..., 0] > 5).all() and (uv[..., 0] < W - 5).all() and (uv[..., 1] > 5).all() and (uv[..., 1] < H - 5).all()
    return params, uv.numpy(), cam


@pytest.fixture(scope="module")
def scene(tmp_path_factory, right_hand, left_hand):
    d = tmp_path_factory.mktemp("twohand_scene")
    params, uv, cam = _pair_in_camera(right_hand, left_hand)
    Image.fromarray(np.full((H, W, 3), 200, np.uint8)).save(d / "image.png")
    kp = {s: np.concatenate([uv[i], np.ones((21, 1))], 1).tolist() for i, s in enumerate(("right", "left"))}
    (d / "kp.json").write_text(json.dumps(kp))
    (d / "right_only.json").write_text(json.dumps({"right": kp["right"]}))
    flat = lambda a: [float(v) for row in a for v in row]  # noqa: E731
    (d / "openpose.json").write_text(json.dumps({"people": [{"hand_right_keypoints_2d": flat(kp["right"]),
                                                              "hand_left_keypoints_2d": flat(kp["left"])}]}))
    return {"dir": d, "params": params, "uv": uv, "camera": cam}


@pytest.fixture(scope="module")
def tiny_twohand_model(tmp_path_factory):
    """A two-hand model trained for a few steps on 8 pairs (its predictions are noise: the test is the plumbing)."""
    base = tmp_path_factory.mktemp("tiny_twohand")
    g = torch.Generator().manual_seed(7)
    lines = []
    for i in range(8):
        right = {k: v[0].tolist() for k, v in HandParams.zeros(1).numpy().items()}
        right["hand_pose"] = (0.2 * torch.randn(45, generator=g)).tolist()
        left = {"global_orient": [0.0, 0.0, 3.1], "hand_pose": (0.2 * torch.randn(45, generator=g)).tolist(),
                "betas": torch.randn(10, generator=g).tolist(), "transl": [0.01 * i, -0.04, 0.0]}
        lines.append(json.dumps({"id": f"r{i}", "right": right, "left": left, "interaction": "palms_pressed"}))
    (base / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    r = runner.invoke(app, ["prepare-data", "--manifest", str(base / "pairs.jsonl"), "--out", str(base / "data"), "-j", "1", "--no-preview"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["train", "twohands", "--data", str(base / "data"), "--out", str(base / "run"), "--steps", "4",
                            "--batch-size", "4", "--width", "32", "--token-dim", "16", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    return base / "run"


@pytest.fixture
def quick_fits(monkeypatch):
    """The CLI with shorter one-hand fits (40 L-BFGS iterations per start instead of 150): the tests
    check the plumbing and a reprojection within a few pixels, not the last pixel."""
    import functools

    import hoitool.pipelines.twohand_recon as tr

    monkeypatch.setattr(tr, "TwoHandReconConfig", functools.partial(tr.TwoHandReconConfig, fit_iters=40))


def _reprojection_px(out, scene):
    p = json.loads((out / "params.json").read_text())
    cam = Camera(**p["camera"])
    err = [(cam.project(torch.tensor(p[s]["keypoints_3d"])) - torch.as_tensor(scene["uv"][i])).norm(dim=-1).mean().item()
           for i, s in enumerate(("right", "left"))]
    return p, err


def test_cli_two_hands_without_prior(scene, tmp_path, quick_fits):
    d = scene["dir"]
    out = tmp_path / "out"
    r = runner.invoke(app, ["reconstruct", str(d / "image.png"), "--two-hands", "--keypoints", str(d / "kp.json"), "--no-prior",
                            "--steps", "40", "--out", str(out), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    for f in ("right_hand.obj", "left_hand.obj", "scene.glb", "params.json", "config.yaml"):
        assert (out / f).is_file(), f
    p, err = _reprojection_px(out, scene)
    assert max(err) < 3.0, err  # the fitted hands reproject onto their keypoints
    assert p["prior"] is None and set(p["stages"]) == {"single", "joint"}
    assert yaml.safe_load((out / "config.yaml").read_text())["fit_iters"] == 40
    assert all(np.isfinite(v) for v in p["losses"].values())
    assert not [q for q in tmp_path.iterdir() if q.name.startswith(".out")]


def test_cli_two_hands_with_prior_from_openpose(scene, tiny_twohand_model, tmp_path, quick_fits):
    d = scene["dir"]
    out = tmp_path / "out"
    r = runner.invoke(app, ["reconstruct", str(d / "image.png"), "--two-hands", "--keypoints", str(d / "openpose.json"),
                            "--model", str(tiny_twohand_model), "--steps", "20", "--out", str(out), "--device", "cpu", "--save-stages"])
    assert r.exit_code == 0, r.output
    p, err = _reprojection_px(out, scene)
    assert max(err) < 4.0, err
    assert p["prior"].endswith("model.pt") and "sds" in p["losses"]
    assert (out / "stages" / "0_single" / "left_hand.obj").is_file()


def test_missing_keypoints_give_no_nan_and_too_few_are_refused(scene, right_hand, left_hand):
    uv = scene["uv"].copy()
    conf = np.ones((2, 21), np.float32)
    conf[0, [4, 8]] = 0.0  # two right fingertips missing
    uv[1, 12] = np.nan  # a left fingertip's pixel unknown
    conf[1, 16] = np.nan
    cfg = TwoHandReconConfig(steps=5, fit_iters=20, use_prior=False)
    hands = {"right": right_hand, "left": left_hand}
    res = reconstruct_two_hands(cfg, None, uv, conf, scene["camera"], hands=hands)
    for s in ("right", "left"):
        for k in HandParams.TENSORS:
            assert torch.isfinite(getattr(getattr(res, s), k)).all()
    assert all(np.isfinite(v) for h in res.history for v in h.values())
    few = np.ones((2, 21), np.float32)
    few[1, 5:] = 0.0  # the left hand keeps 5 keypoints
    with pytest.raises(InputError, match="left hand has 5 of 21"):
        reconstruct_two_hands(cfg, None, uv, few, scene["camera"], hands=hands)


class _TargetModel(torch.nn.Module):
    """A stand-in 'prior' whose x0 prediction for the left hand is the current vector with the relative
    position replaced by a target (identity normalisation): SDS must pull the left hand there."""

    def __init__(self, target_rel):
        super().__init__()
        from hoitool.twohands.model import TwoHandSchedule
        from hoitool.twohands.params import VectorNormaliser

        self.norm = VectorNormaliser(torch.zeros(64), torch.ones(64), torch.zeros(64), torch.ones(64))
        self.schedule, self.joint, self.target = TwoHandSchedule(), False, target_rel

    def encode_object(self, points, batch):
        return None, None

    def predict(self, x, t, cond, obj, obj_mask):
        from hoitool.twohands.model import train_scheduler

        abar = train_scheduler(self.schedule).alphas_cumprod[t].to(x)[:, None]
        if cond is None:  # anchor: an unbiased estimate of x0 would need the clean z; return x_t's scaled mean
            return x / abar.sqrt()
        out = x / abar.sqrt()
        out[:, 61:] = self.target
        return out


def test_score_distillation_pulls_towards_the_prior(scene, right_hand, left_hand):
    """With a 'prior' that wants the left middle knuckle 3 cm further along the right hand's x axis,
    SDS moves the relative position that way (the reprojection alone does not)."""
    from hoitool.twohands.params import to_vectors

    hands = {"right": right_hand, "left": left_hand}
    gt = scene["params"]
    _, xb = to_vectors(right_hand, left_hand, gt["right"], gt["left"])
    target = xb[0, 61:] + torch.tensor([0.03, 0.0, 0.0])
    base = dict(steps=60, fit_iters=20, sds_t=(0.02, 0.05), seed=1)
    res = {}
    for w in (0.0, 50.0):
        cfg = TwoHandReconConfig(use_prior=w > 0, w_sds=w, **base)
        r = reconstruct_two_hands(cfg, None, scene["uv"], None, scene["camera"], model=_TargetModel(target), hands=hands)
        _, xb_fit = to_vectors(right_hand, left_hand, r.right, r.left)
        res[w] = (xb_fit[0, 61:] - target).norm().item()
    assert res[50.0] < res[0.0] - 0.005, res


def test_bad_two_hand_input_is_one_line_and_writes_nothing(scene, tmp_path):
    d = scene["dir"]
    img = str(d / "image.png")
    clip = tmp_path / "frames"
    clip.mkdir()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(clip / "000.png")
    cases = {
        "has no left hand": [img, "--keypoints", str(d / "right_only.json")],
        "is a clip": [str(clip), "--keypoints", str(d / "kp.json")],
        "--object-mask does not apply to --two-hands": [img, "--keypoints", str(d / "kp.json"), "--object-mask", img],
        "--two-hands needs --keypoints": [img],
        "--model names the two-hand prior": [img, "--keypoints", str(d / "kp.json"), "--no-prior", "--model", str(tmp_path)],
    }
    for i, (msg, args) in enumerate(cases.items()):
        out = tmp_path / f"out{i}"
        r = runner.invoke(app, ["reconstruct", *args, "--two-hands", "--no-prior" if "--no-prior" not in args else "--two-hands",
                                "--out", str(out)])
        assert r.exit_code == 2, (msg, r.output)
        assert len(r.output.strip().splitlines()) == 1, r.output
        assert msg in r.output, (msg, r.output)
        assert not out.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".out{i}")]
