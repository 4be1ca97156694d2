"""MOW converter: a miniature release (poses.json with the object posed on its normalised,
y-flipped model and the hand as a mean-relative MANO pose placed by hand_R/hand_t/hand_s,
models/ and images/) built from known grasps; converted records must pose the same hand meshes on
the derived object mesh, and keep the photograph and a camera that maps them into it."""

import json

import numpy as np
import torch
import trimesh
from PIL import Image
from scipy.spatial.transform import Rotation
from typer.testing import CliRunner

from dataset_fixtures import assert_round_trip, dump_json, grasps, move, pca_and_mean, vertices
from hoitool.cli.main import app
from hoitool.data.records import read_manifest
from hoitool.hand import HandModel

runner = CliRunner()
FLIP = np.array([1.0, -1.0, 1.0])


def _mow(root, tiny_prepared, mano_dir, seed=0):
    """poses.json entries for three grasps; returns, per record id, the expected hand vertices
    in the record's frame, MOW's own camera-frame hand vertices divided by hand_s, and the
    object's vertices in the record's frame (metres)."""
    rng = np.random.default_rng(seed)
    hand = HandModel("right", mano_dir)
    _, mean = pca_and_mean(mano_dir, "right")
    expected, camera_hands, objects, annos = {}, {}, {}, []
    for i, (g, name) in enumerate(zip(grasps(tiny_prepared)[:3], ["cup_1", "pen", "box"])):
        iid = f"kitchen_v_abc{i}_frame{100 * i:06d}"
        v_o = np.asarray(g.mesh.vertices, np.float64)
        m, ext = v_o.mean(0), float((v_o.max(0) - v_o.min(0)).max())
        # the model file: the object mirrored in y (MOW negates y after loading), in other units, elsewhere
        a, b = 3.7 + i, rng.normal(0, 5, 3)
        model = trimesh.Trimesh(a * v_o * FLIP + b, np.asarray(g.mesh.faces)[:, ::-1], process=False)
        (root / "models").mkdir(parents=True, exist_ok=True)
        model.export(root / "models" / f"{iid}.obj")
        (root / "images").mkdir(exist_ok=True)
        Image.new("RGB", (64 + 16 * i, 48), (90, 120, 150)).save(root / "images" / f"{iid}.jpg")
        R = Rotation.random(random_state=int(rng.integers(1 << 31))).as_matrix()
        hR = Rotation.random(random_state=int(rng.integers(1 << 31))).as_matrix()
        hs = 1.5 + rng.random()
        k = ext / 2  # metres per normalised unit, so that s / hand_s = k
        s = hs * k
        t = np.array([0.1, -0.2, 3.0]) / k + rng.normal(0, 0.2, 3)
        ht = rng.normal(0, 0.3, 3) + np.array([0, 0, 2.0])
        # MANO frame of the hand: v_h = hR (R^T (x_o - m) + k t - ht)
        T = np.eye(4)
        T[:3, :3] = hR @ R.T
        T[:3, 3] = hR @ (k * t - ht) - hR @ R.T @ m
        p = g.params.clone()
        p.betas = torch.zeros_like(p.betas)  # MOW's hands have MANO's mean shape
        ph = move(hand, p, T)
        pose = np.concatenate([ph.global_orient[0].numpy(), ph.hand_pose[0].numpy() - mean])  # flat_hand_mean=False
        annos.append({"state": "done", "queue_id": "queue-0", "image_id": iid, "obj_name": name, "obj_url": f"http://x/models/{iid}.obj",
                      "R": R.reshape(-1).tolist(), "t": t.tolist(), "s": s, "hand_pose": pose.tolist(), "trans": ph.transl[0].tolist(),
                      "hand_R": hR.reshape(-1).tolist(), "hand_t": ht.tolist(), "hand_s": hs})
        expected[f"mow-{iid}"] = vertices(hand, p) - m
        camera_hands[f"mow-{iid}"] = vertices(hand, ph) @ hR + ht  # hand_s * this = MOW's camera frame
        objects[f"mow-{iid}"] = v_o - m
    annos.append(dict(annos[0], image_id="missing_model_frame000001"))
    annos.append(dict(annos[1], state="pending", image_id="pending_frame000002"))
    dump_json(root / "poses.json", annos)
    return expected, camera_hands, objects


def test_mow_round_trip_camera_and_summary(tmp_path, tiny_prepared, fake_mano):
    root = tmp_path / "mow"
    expected, camera_hands, objects = _mow(root, tiny_prepared, fake_mano)
    out = tmp_path / "prep"
    res = runner.invoke(app, ["prepare-data", "--dataset", "mow", "--root", str(tmp_path), "--mano-dir", str(fake_mano),
                              "--out", str(out), "-j", "1", "--no-preview"])
    assert res.exit_code == 0, res.output
    assert_round_trip(out, expected, fake_mano)
    assert "skipped 1: object model missing" in res.output and "skipped 1: annotation not finished" in res.output
    recs = {r.id: r for r in read_manifest(out / "dataset" / "records.jsonl")}
    assert [recs[r].category for r in sorted(recs)] == ["cup", "pen", "box"]
    hand = HandModel("right", fake_mano)
    for rid, want in camera_hands.items():
        r = recs[rid]
        assert r.object_mesh.startswith(str(out / "dataset" / "meshes")) and r.scale > 0
        # the derived mesh in metres is the grasp's object centred at its vertex mean
        mesh = trimesh.load(r.object_mesh, force="mesh", process=False)
        # (vertex by vertex: the y negation cannot hide behind a symmetric object)
        assert np.abs(np.asarray(mesh.vertices) * r.scale - objects[rid]).max() < 1e-6
        assert mesh.is_winding_consistent and mesh.volume > 0  # faces reversed with the y negation
        cTo = np.asarray(r.extra["cTo"])
        v = vertices(hand, r.hand_params())
        assert np.abs(v @ cTo[:3, :3].T + cTo[:3, 3] - want).max() < 2e-4
        W, H = Image.open(r.extra["image"]).size
        cam = r.extra["camera"]
        assert (cam["width"], cam["height"]) == (W, H) and cam["fx"] == max(W, H) and cam["cx"] == max(W, H) / 2 - 0.5
    # --categories
    out2 = tmp_path / "prep2"
    res = runner.invoke(app, ["prepare-data", "--dataset", "mow", "--root", str(root), "--mano-dir", str(fake_mano), "--out", str(out2),
                              "--categories", "pen", "-j", "1", "--no-preview"])
    assert res.exit_code == 0, res.output
    ids = [json.loads(line)["id"] for line in (out2 / "dataset" / "records.jsonl").read_text().splitlines()]
    assert ids == ["mow-kitchen_v_abc1_frame000100"]


def test_mow_bad_root(tmp_path, fake_mano):
    dump_json(tmp_path / "poses.json", [])
    res = runner.invoke(app, ["prepare-data", "--dataset", "mow", "--root", str(tmp_path), "--mano-dir", str(fake_mano),
                              "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "does not look like MOW" in res.output and "models/*.obj" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
