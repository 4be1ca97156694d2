"""`hoitool evaluate reconstruction`: the metrics of a reconstruction against its truth (geometric
facts: a perfect prediction, analytic offsets, scaled copies, invariance to moving the whole
scene), prediction folders written by reconstruct's own writers, and bad input."""

import json

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial.transform import Rotation
from typer.testing import CliRunner

from hoitool.cli.main import app
from hoitool.geometry.camera import Camera
from hoitool.hand.model import HandParams, transform_params
from hoitool.metrics.recon_scene import EvalConfig, ReconScene, evaluate_scenes
from hoitool.pipelines.evaluate_recon import scene_from_hand
from test_reconstruct import _args, scene  # noqa: F401 - its synthetic photograph (a fixture) and command line

runner = CliRunner()
TRUE_ORIENT = [2.2, 0.4, -0.3]


def _rigid(rotvec, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    T[:3, 3] = t
    return T


def _moved(mesh: trimesh.Trimesh, T: np.ndarray) -> trimesh.Trimesh:
    return mesh.copy().apply_transform(T)


@pytest.fixture(scope="module")
def truth(right_hand):
    """A hand in the camera frame and a box (its own frame, posed by cTo) pressed 8 mm into its palm."""
    p = HandParams.zeros(1)
    p.global_orient = torch.tensor([TRUE_ORIENT])
    p.transl = torch.tensor([[0.02, -0.01, 0.5]])
    with torch.no_grad():
        cTh = right_hand.frame_from_hand(p)[0].double().numpy()
        v_h = right_hand(HandParams.zeros(1)).vertices[0].double().numpy()
    palm = v_h[right_hand.metadata.contact_zones["palm"]].mean(0)
    box = trimesh.creation.box((0.08, 0.05, 0.03))
    hTo = _rigid([0.0, 0.3, 0.0], palm + np.array([0.0, -(0.015 - 0.008), 0.0]))  # palm faces -y in the hand frame
    return p, box, cTh @ hTo


def _scene(hand, params, mesh, cTo, camera_frame: bool, scale: float = 1.0) -> ReconScene:
    if camera_frame:  # a photograph's output: the object in the camera frame
        return scene_from_hand(hand, params, _moved(mesh, cTo), np.eye(4)[None], [scale])
    return scene_from_hand(hand, params, mesh, cTo[None], [scale])


def test_identical_prediction_scores_perfectly(right_hand, truth):
    p, box, cTo = truth
    for camera_frame in (True, False):
        sc = _scene(right_hand, p, box, cTo, camera_frame)
        for align in ("none", "translation-scale", "similarity"):
            m = evaluate_scenes(sc, sc, EvalConfig(align=align, points=3000)).metrics
            assert m["chamfer_mm"] == pytest.approx(0, abs=1e-9) and m["f5"] == 1.0 and m["f10"] == 1.0
            assert m["scale"] == pytest.approx(1.0, abs=1e-6)
            assert m["camera_chamfer_mm"] == pytest.approx(0, abs=1e-9) and m["cd_h_cm2"] == pytest.approx(0, abs=1e-12)
            assert m["mpjpe_mm"] == m["mpjpe_abs_mm"] == m["mpjpe_index_mcp_mm"] == 0.0 and m["auc"] == 1.0
        assert m["contact"] == 1.0 and m["intersection_cm3"] > 0 and m["max_depth_cm"] > 0.5


def test_offset_sphere_gives_the_analytic_chamfer_and_scaled_icp_undoes_it(right_hand, truth):
    p, _, cTo = truth
    r = 0.04
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=r)
    gt = scene_from_hand(right_hand, p, sphere, cTo[None], meshes=False)
    for d_mm in (3.0, 7.0):  # every surface point of one is d from the other
        big = trimesh.creation.icosphere(subdivisions=5, radius=r + d_mm / 1000)
        pred = scene_from_hand(right_hand, p, big, cTo[None], meshes=False)
        m = evaluate_scenes(pred, gt, EvalConfig(align="translation-scale", points=4000)).metrics
        assert m["camera_chamfer_mm"] == pytest.approx(d_mm, abs=0.05)
        assert m["camera_cd_cm2"] == pytest.approx(2 * (d_mm / 10) ** 2, rel=0.03)
        assert m["camera_f5"] == (1.0 if d_mm < 5 else 0.0) and m["camera_f10"] == 1.0
        assert m["cd_h_cm2"] == pytest.approx(m["camera_cd_cm2"], rel=1e-6)  # same hand: no hand-frame change
        assert m["scale"] == pytest.approx(r / (r + d_mm / 1000), rel=2e-3) and m["chamfer_mm"] < 0.2 and m["f5"] == 1.0


def test_scaled_and_turned_copies_are_recovered(right_hand, truth):
    p, box, cTo = truth
    gt = _scene(right_hand, p, box, cTo, camera_frame=True)
    centre = cTo[:3, 3]
    S = np.eye(4)
    S[:3, :3] *= 1.3
    S[:3, 3] = (1 - 1.3) * centre + np.array([0.01, -0.02, 0.03])  # 1.3 x about the box, then shifted
    pred = scene_from_hand(right_hand, p, _moved(gt.object_mesh, S), np.eye(4)[None], meshes=False)
    m = evaluate_scenes(pred, gt, EvalConfig(align="translation-scale", points=4000)).metrics
    assert m["f5"] > 0.99 and m["chamfer_mm"] < 1.0 and m["scale"] == pytest.approx(1 / 1.3, rel=0.01)
    assert m["camera_f10"] < 0.5
    # the object frames of a clip need not agree: similarity finds the rotation too
    turned = _moved(box, _rigid([0.4, -1.9, 0.7], [0.05, 0.0, -0.02]) @ np.diag([0.8, 0.8, 0.8, 1.0]))
    pred = scene_from_hand(right_hand, p, turned, cTo[None], meshes=False)
    gt_o = scene_from_hand(right_hand, p, box, cTo[None], meshes=False)
    m = evaluate_scenes(pred, gt_o, EvalConfig(align="similarity", points=4000)).metrics
    assert m["f5"] > 0.98 and m["scale"] == pytest.approx(1.25, rel=0.02)
    assert evaluate_scenes(pred, gt_o, EvalConfig(align="translation-scale", points=4000)).metrics["f5"] < 0.6


def test_hand_offset_moves_absolute_error_only_and_cd_h_follows_the_hand(right_hand, truth):
    p, box, cTo = truth
    gt = _scene(right_hand, p, box, cTo, camera_frame=False)
    q = p.clone()
    q.transl = q.transl + torch.tensor([[0.012, 0.0, 0.0]])
    shift = _rigid([0, 0, 0], [0.012, 0.0, 0.0])
    # hand and object moved together by 12 mm: the arrangement is right, the placement is not
    m = evaluate_scenes(_scene(right_hand, q, box, shift @ cTo, False), gt, EvalConfig(points=3000)).metrics
    assert m["mpjpe_mm"] == pytest.approx(0, abs=1e-3) and m["mpjpe_abs_mm"] == pytest.approx(12.0, abs=1e-3)
    assert m["auc"] == pytest.approx(1.0, abs=0.006) and m["cd_h_cm2"] == pytest.approx(0, abs=1e-8)  # 0 mm: the first PCK step
    assert m["camera_chamfer_mm"] > 3 and m["f5"] == 1.0  # translation-scale alignment removes the shift
    # the hand moved, the object not: CD_h sees the object 12 mm off in the hand's frame
    m = evaluate_scenes(_scene(right_hand, q, box, cTo, False), gt, EvalConfig(points=3000)).metrics
    ref = evaluate_scenes(_scene(right_hand, p, box, np.linalg.inv(shift) @ cTo, False), gt, EvalConfig(points=3000)).metrics
    assert m["cd_h_cm2"] == pytest.approx(ref["camera_cd_cm2"], rel=1e-4) and m["cd_h_cm2"] > 0.1


def test_keypoint_truth_gives_the_same_cd_h_as_parameters(right_hand, truth):
    p, box, cTo = truth
    gt = _scene(right_hand, p, box, cTo, camera_frame=False)
    q = transform_params(right_hand, p, torch.as_tensor(_rigid([0.1, -0.2, 0.05], [0.01, 0.0, -0.01]), dtype=torch.float32))
    q.hand_pose = q.hand_pose + 0.2  # the fingers differ; the palm does not
    pred = _scene(right_hand, q, box, _rigid([0, 0.2, 0], [0.0, 0.005, 0.0]) @ cTo, camera_frame=False)
    kp_only = ReconScene(gt.object_mesh, gt.cTo, gt.keypoints)
    a = evaluate_scenes(pred, gt, EvalConfig(points=3000))
    b = evaluate_scenes(pred, kp_only, EvalConfig(points=3000))
    assert a.cd_h_frame == "hand parameters" and b.cd_h_frame == "palm keypoints"
    assert b.metrics["cd_h_cm2"] == pytest.approx(a.metrics["cd_h_cm2"], rel=1e-3) and a.metrics["cd_h_cm2"] > 0.05


def test_metrics_unchanged_when_the_whole_scene_moves(right_hand, truth):
    p, box, cTo = truth
    q = p.clone()
    q.hand_pose = q.hand_pose + 0.15
    q.transl = q.transl + torch.tensor([[0.004, -0.006, 0.01]])
    pred_cTo = _rigid([0.1, 0.0, -0.1], [0.006, 0.004, -0.01]) @ cTo
    big = _moved(box, np.diag([1.1, 1.1, 1.1, 1.0]))
    W = _rigid([0.7, -1.2, 0.4], [0.3, -0.2, 0.1])  # the whole scene, prediction and truth together
    Wt = torch.as_tensor(W, dtype=torch.float32)
    for camera_frame, align in ((False, "translation-scale"), (False, "similarity"), (True, "translation-scale")):
        cfg = EvalConfig(align=align, points=3000)
        a = evaluate_scenes(_scene(right_hand, q, big, pred_cTo, camera_frame, 1.04), _scene(right_hand, p, box, cTo, camera_frame), cfg).metrics
        # the predicted hand is scaled by 1.04 about the camera: move it by W with W's translation / 1.04
        Wq = W.copy()
        Wq[:3, 3] /= 1.04
        b = evaluate_scenes(_scene(right_hand, transform_params(right_hand, q, torch.as_tensor(Wq, dtype=torch.float32)), big, W @ pred_cTo,
                                   camera_frame, 1.04),
                            _scene(right_hand, transform_params(right_hand, p, Wt), box, W @ cTo, camera_frame), cfg).metrics
        assert a["mpjpe_abs_mm"] > 5 and a["cd_h_cm2"] > 0.05 and a["camera_chamfer_mm"] > 3
        for k in a:
            if k == "intersection_cm3" and camera_frame:  # 5 mm voxels on axes that turned with the scene
                assert b[k] == pytest.approx(a[k], abs=1.0), k
            else:
                assert b[k] == pytest.approx(a[k], rel=2e-3, abs=2e-4), (k, align, camera_frame)


# -- the command on folders written by reconstruct's own writers -------------------------------
def _write_truth_image(d, params, mesh_cam):
    """The truth of a photograph: object.obj in the camera frame, hand.json with MANO-convention parameters."""
    d.mkdir(parents=True)
    mesh_cam.export(d / "object.obj")
    (d / "hand.json").write_text(json.dumps({"side": params.side, **{k: v[0].tolist() for k, v in params.numpy().items()}}))
    return d


def _write_pred_image(d, hand, params, mesh, R, t, s, hand_scale=1.0):
    from hoitool.pipelines.image_recon import ReconResult, SceneState
    from hoitool.pipelines.image_report import write_outputs

    st = SceneState(params, hand_scale, np.asarray(R, float), np.asarray(t, float), s, {"object_iou": 1.0})
    d.mkdir(parents=True)
    write_outputs(d, ReconResult({"refine": st}, Camera.default(64, 64), mesh, []), hand, np.zeros((64, 64, 3), np.uint8),
                  {"method": "easyhoi"})
    return d


@pytest.fixture(scope="module")
def image_case(tmp_path_factory, right_hand, truth):
    """A photograph's prediction (the truth with the hand 5 mm further right) and its truth."""
    p, box, cTo = truth
    root = tmp_path_factory.mktemp("evalimg")
    tdir = _write_truth_image(root / "truth", p, _moved(box, cTo))
    q = p.clone()
    q.transl = q.transl + torch.tensor([[0.005, 0.0, 0.0]])
    pred = _write_pred_image(root / "pred", right_hand, q, box, cTo[:3, :3], cTo[:3, 3], 1.0)
    return root, pred, tdir


def test_evaluate_reconstruction_command_on_a_photograph(image_case):
    root, pred, tdir = image_case
    r = runner.invoke(app, ["evaluate", "reconstruction", str(pred), "--truth", str(tdir), "--points", "3000"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "cd_h_cm2" in text and "mpjpe_abs_mm" in text and "wrote" in text and "metrics.json" in text
    rep = json.loads((pred / "metrics.json").read_text())
    m = rep["metrics"]
    assert rep["kind"] == "image" and rep["settings"]["align"] == "translation-scale" and rep["truth_hand"] == "parameters"
    assert m["chamfer_mm"] < 1e-3 and m["camera_chamfer_mm"] < 1e-3 and m["f5"] == 1.0 and m["camera_f10"] == 1.0
    assert m["mpjpe_mm"] == pytest.approx(0, abs=0.01) and m["mpjpe_abs_mm"] == pytest.approx(5.0, abs=0.01)
    assert m["cd_h_cm2"] > 0 and m["contact"] == 1.0 and m["intersection_cm3"] >= 0
    assert set(rep["units"]) == set(m) and rep["per_frame"][0]["frame"] == "image"
    # --out, keypoints as the truth's hand, the hand.json file as TRUTH
    kp = json.loads((pred / "params.json").read_text())["hand"]["keypoints_3d"]
    kdir = root / "truth_kp"
    kdir.mkdir()
    (kdir / "object.obj").write_bytes((tdir / "object.obj").read_bytes())
    (kdir / "hand.json").write_text(json.dumps({"side": "right", "keypoints_3d": kp}))
    out = root / "res" / "kp.json"
    r = runner.invoke(app, ["evaluate", "reconstruction", str(pred), "--truth", str(kdir / "hand.json"), "--out", str(out),
                            "--points", "3000", "--align", "none", "--no-interaction"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    rep = json.loads(out.read_text())
    assert rep["truth_hand"] == "keypoints" and rep["cd_h_frame"] == "palm keypoints" and rep["settings"]["align"] == "none"
    assert rep["metrics"]["mpjpe_abs_mm"] == pytest.approx(0, abs=1e-3) and "contact" not in rep["metrics"]


def test_evaluate_reconstruction_command_on_a_clip(tmp_path, right_hand, truth):
    from hoitool.pipelines.video_recon import FrameState, StageResult, VideoResult
    from hoitool.pipelines.video_report import write_outputs

    p, box, cTo = truth
    T = 3
    moves = [_rigid([0.0, 0.1 * t, 0.0], [0.01 * t, 0.0, 0.0]) for t in range(T)]
    params = [transform_params(right_hand, p, torch.as_tensor(M, dtype=torch.float32)) for M in moves]
    # the prediction's object frame is another than the truth's (turned and shifted), 10 % too big
    oTp = _rigid([0.3, 2.0, -0.5], [0.01, 0.02, 0.0])
    pred_mesh = _moved(box, np.linalg.inv(oTp) @ np.diag([1.1, 1.1, 1.1, 1.0]))
    frames = [FrameState(params[t], moves[t] @ cTo @ oTp) for t in range(T)]
    stage = StageResult(frames, pred_mesh, {"object_iou": 1.0}, 1.0)
    result = VideoResult({"object": stage}, Camera.default(48, 48), "box", 0, [])
    pred = tmp_path / "clip"
    pred.mkdir()
    write_outputs(pred, result, right_hand, np.zeros((T, 48, 48, 3), np.uint8), [0, 2, 4], ["f0", "f2", "f4"], 5.0, {},
                  video_format="gif")
    tdir = tmp_path / "truth"
    tdir.mkdir()
    box.export(tdir / "object.obj")
    lines = [{"index": 2 * t, "hand": {"side": "right", **{k: v[0].tolist() for k, v in params[t].numpy().items()}},
              "cTo": (moves[t] @ cTo).tolist()} for t in range(T)]
    lines.append({"index": 6, "hand": lines[0]["hand"], "cTo": lines[0]["cTo"]})  # a frame the clip does not have
    lines[1] = {"stem": "f2", **{k: v for k, v in lines[1].items() if k != "index"}}
    (tdir / "truth.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    r = runner.invoke(app, ["evaluate", "reconstruction", str(pred), "--truth", str(tdir), "--points", "3000"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    rep = json.loads((pred / "metrics.json").read_text())
    m = rep["metrics"]
    assert rep["kind"] == "clip" and rep["settings"]["align"] == "similarity" and rep["frames"] == ["f0", "f2", "f4"]
    assert rep["frames_not_predicted"] == [6] and len(rep["per_frame"]) == 3
    assert m["f5"] > 0.98 and m["scale"] == pytest.approx(1 / 1.1, rel=0.01)
    assert m["mpjpe_abs_mm"] == pytest.approx(0, abs=0.01) and m["auc"] == pytest.approx(1.0, abs=0.006)
    assert m["camera_chamfer_mm"] > 1 and m["cd_h_cm2"] == pytest.approx(m["camera_cd_cm2"], rel=1e-3)  # hands exact: CD_h = placement
    assert m["contact"] == 1.0
    # a stages/ folder has no per-frame meshes: the hands are posed from the written parameters
    import shutil

    shutil.rmtree(pred / "meshes")
    out = tmp_path / "stage.json"
    r = runner.invoke(app, ["evaluate", "reconstruction", str(pred), "--truth", str(tdir), "--points", "3000", "--out", str(out)],
                      catch_exceptions=False)
    assert r.exit_code == 0, r.output
    m2 = json.loads(out.read_text())["metrics"]
    assert m2["intersection_cm3"] == pytest.approx(m["intersection_cm3"], abs=0.2) and m2["f5"] == m["f5"]


def test_evaluate_reconstruction_refuses_bad_input(tmp_path, image_case):
    _, pred0, tdir = image_case

    def copy(src, name, files, edit=None):
        d = tmp_path / name
        d.mkdir()
        for f in files:
            (d / f).write_bytes((src / f).read_bytes())
        if edit:
            edit(d)
        return d

    def edit_json(name, change):
        def edit(d):
            q = json.loads((d / name).read_text())
            change(q)
            (d / name).write_text(json.dumps(q))
        return edit

    pred = copy(pred0, "pred", ("hand.obj", "object.obj", "params.json"))
    truth = lambda name, edit: copy(tdir, name, ("object.obj", "hand.json"), edit)  # noqa: E731
    twohand = tmp_path / "twohand"
    twohand.mkdir()
    (twohand / "params.json").write_text(json.dumps({"right": {}, "left": {}}))
    (tmp_path / "empty").mkdir()
    (tmp_path / "truth.jsonl").write_text("{}\n")
    cases = {
        "not a folder written by hoitool reconstruct": (tmp_path / "empty", tdir),
        "two-hand reconstruction": (twohand, tdir),
        "transl: NaN or infinite": (copy(pred0, "nanpred", ("hand.obj", "object.obj", "params.json"),
                                         edit_json("params.json", lambda q: q["hand"]["transl"].__setitem__(1, float("nan")))), tdir),
        "predicted hand": (copy(pred0, "nohandobj", ("object.obj", "params.json")), tdir),
        "has no hand.json": (pred, truth("nohand", lambda d: (d / "hand.json").unlink())),
        "has no object mesh": (pred, truth("noobj", lambda d: (d / "object.obj").unlink())),
        "mesh file is empty": (pred, truth("emptymesh", lambda d: (d / "object.obj").write_text(""))),
        "hand_pose: NaN": (pred, truth("nantruth", edit_json("hand.json", lambda h: h.update(hand_pose=[float("nan")] * 45)))),
        "keypoints_3d: expected 21 x 3": (pred, truth("shortkp", lambda d: (d / "hand.json").write_text(json.dumps({"keypoints_3d": [[0, 0, 0]] * 20})))),
        "a left hand": (pred, truth("left", edit_json("hand.json", lambda h: h.update(side="left")))),
        "without betas": (pred, truth("nobetas", edit_json("hand.json", lambda h: h.pop("betas")))),
        "its truth is a hand.json": (pred, tmp_path / "truth.jsonl"),
        "does not exist": (pred, tmp_path / "nowhere"),
        "--align must be": (pred, tdir, "--align", "rigid"),
        "is a folder": (pred, tdir, "--out", str(tmp_path)),
    }
    for i, (msg, (pr, tr, *extra)) in enumerate(cases.items()):
        out = tmp_path / f"res{i}.json"
        r = runner.invoke(app, ["evaluate", "reconstruction", str(pr), "--truth", str(tr), "--points", "500",
                                *(extra or ["--out", str(out)])])
        assert r.exit_code == 2, (msg, r.output)
        assert r.output.startswith("error:") and len(r.output.strip().splitlines()) == 1, (msg, r.output)
        assert msg in r.output, (msg, r.output)
        assert not out.exists() and not (pr / "metrics.json").exists(), msg
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no half-written files


@pytest.mark.slow
def test_evaluate_a_real_reconstruction(tmp_path, right_hand, scene):
    """reconstruct on test_reconstruct's synthetic photograph (a planned grasp of a can), then evaluate it against
    the true scene."""
    d, view, mesh = scene
    out = tmp_path / "recon"
    r = runner.invoke(app, _args(d, view, out, "--object-mesh", str(d / "can.obj")), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    tdir = _write_truth_image(tmp_path / "truth", view.hand, _moved(mesh, view.cTo))
    r = runner.invoke(app, ["evaluate", "reconstruction", str(out), "--truth", str(tdir)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())["metrics"]
    assert m["f10"] > 0.8 and m["camera_chamfer_mm"] < 25 and m["mpjpe_mm"] < 25 and 0 < m["auc"] <= 1
    assert np.isfinite([m["cd_h_cm2"], m["intersection_cm3"], m["mpjpe_abs_mm"]]).all()
