"""GRAB converter: a miniature release (per-sequence .npz of dicts in the world frame, 24 PCA
coefficients with a flat mean, per-subject hand templates instead of betas, contact labels, PLY
meshes under tools/) built from known grasps, both hands; converted records must pose the same
hand meshes in the object frame."""

import json

import numpy as np
import torch
import trimesh
from scipy.spatial.transform import Rotation
from typer.testing import CliRunner

from dataset_fixtures import assert_round_trip, grasps, left_grasp, move, random_pose, to_pca, pca_and_mean, vertices
from hoitool.cli.main import app
from hoitool.data.records import read_manifest
from hoitool.hand import HandModel

runner = CliRunner()
NCOMPS = 24


def _template(hand, betas, offset):
    """A subject's hand template: MANO's template with these betas, moved rigidly by `offset`
    (so that the converter has to fit an offset and correct the wrist)."""
    with torch.no_grad():
        v = hand.layer.v_template + torch.einsum("l,vcl->vc", betas, hand.layer.shapedirs)
    return v.double().numpy() + offset


def _hand_seq(hand, mano_dir, p, wTos, offset, side):
    """GRAB's rhand/lhand dict for the grasp p (object frame) seen with the object at wTos."""
    comps, _ = pca_and_mean(mano_dir, side)
    coeffs = to_pca(mano_dir, side, p.hand_pose[0], flat_mean=True)[:NCOMPS]
    out = {"global_orient": [], "hand_pose": [], "transl": [], "fullpose": []}
    for T in wTos:
        pw = move(hand, p, T)
        out["global_orient"].append(pw.global_orient[0].numpy())
        out["hand_pose"].append(coeffs)
        out["fullpose"].append(coeffs @ comps[:NCOMPS])
        out["transl"].append(pw.transl[0].numpy() - offset)  # smplx with v_template = the template
    return {k: np.asarray(v, np.float32) for k, v in out.items()}


def _grab(root, tiny_prepared, mano_dir, T=4, seed=0):
    rng = np.random.default_rng(seed)
    gs = grasps(tiny_prepared)
    hands = {s: HandModel(s, mano_dir) for s in ("right", "left")}
    betas = {"right": gs[1].params.betas[0], "left": gs[3].params.betas[0]}
    offsets = {"right": np.array([0.01, -0.02, 0.005]), "left": np.array([-0.004, 0.012, 0.02])}
    vtemp = {}
    for side, tag in (("right", "rhand"), ("left", "lhand")):
        vtemp[side] = f"tools/subject_meshes/male/s1_{tag}.ply"
        path = root / vtemp[side]
        path.parent.mkdir(parents=True, exist_ok=True)
        trimesh.Trimesh(_template(hands[side], betas[side], offsets[side]), hands[side].faces.numpy(), process=False).export(path)
    expected = {}
    # (object, grasp, hand that holds it)
    plan = [("cubesmall", "lift", gs[0], "right"), ("spheresmall", "pass_1", left_grasp(gs[2]), "left")]
    for obj, intent, g, side in plan:
        mesh_rel = f"tools/object_meshes/contact_meshes/{obj}.ply"
        (root / mesh_rel).parent.mkdir(parents=True, exist_ok=True)
        g.mesh.export(root / mesh_rel)
        wTos = [random_pose(rng) for _ in range(T)]
        seq = {}
        for s in ("right", "left"):
            # the hand that holds the object, or an idle one (mirrored if need be)
            p = (g.params if s == side else left_grasp(g).params if s == "left" else gs[0].params).clone()
            p.betas = betas[s].reshape(1, 10).clone()
            coeffs = to_pca(mano_dir, s, p.hand_pose[0], flat_mean=True)[:NCOMPS]
            p.hand_pose = torch.as_tensor(coeffs @ pca_and_mean(mano_dir, s)[0][:NCOMPS], dtype=torch.float32).reshape(1, 45)
            if s != side:
                p.transl = p.transl + torch.tensor([[0.0, 0.0, 1.0]])  # the idle hand, far away
            seq[s] = {"params": _hand_seq(hands[s], mano_dir, p, wTos, offsets[s], s), "vtemp": vtemp[s]}
            if s == side:
                for f in range(T):
                    if not (obj == "cubesmall" and f == 2):
                        expected[f"grab-s1-{obj}_{intent}-{f:05d}-{side}"] = vertices(hands[s], p)
        labels = np.zeros((T, len(g.mesh.vertices)), np.int8)
        labels[:, :7] = 22 if side == "right" else 21
        labels[:, 7:9] = 43 if side == "right" else 38
        if obj == "cubesmall":
            labels[2] = 0  # frame 2: nothing touches the object
        obj_params = {"global_orient": np.asarray([Rotation.from_matrix(T_[:3, :3].T).as_rotvec() for T_ in wTos], np.float32),
                      "transl": np.asarray([T_[:3, 3] for T_ in wTos], np.float32)}
        path = root / "grab" / "s1" / f"{obj}_{intent}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, gender="male", sbj_id="s1", obj_name=obj, motion_intent=intent.split("_")[0], framerate=120.0,
                 n_frames=T, n_comps=NCOMPS, rhand=seq["right"], lhand=seq["left"],
                 body={"params": {"transl": np.zeros((T, 3), np.float32)}, "vtemp": "tools/subject_meshes/male/s1.ply"},
                 object={"params": obj_params, "object_mesh": mesh_rel},
                 table={"params": {"transl": np.zeros((T, 3), np.float32)}, "table_mesh": "tools/object_meshes/contact_meshes/table.ply"},
                 contact={"body": np.zeros((T, 12), np.int8), "object": labels})
    return expected


def test_grab_round_trip_and_summary(tmp_path, tiny_prepared, fake_mano):
    root = tmp_path / "GRAB"
    expected = _grab(root, tiny_prepared, fake_mano)
    out = tmp_path / "prep"
    res = runner.invoke(app, ["prepare-data", "--dataset", "grab", "--root", str(root), "--mano-dir", str(fake_mano),
                              "--out", str(out), "-j", "1", "--no-preview"])
    assert res.exit_code == 0, res.output
    assert_round_trip(out, expected, fake_mano)
    # the idle hand of each sequence (4 frames each) and frame 2 of the first one
    assert "skipped 9: hand not touching the object (GRAB contact labels)" in res.output
    recs = read_manifest(out / "dataset" / "records.jsonl")
    assert len(recs) == 7 and {r.side for r in recs} == {"right", "left"}
    r = next(r for r in recs if r.side == "left")
    assert r.category == "ball" and r.extra["intent"] == "pass" and r.extra["split"] == "train"
    assert r.extra["betas_fit_rms_mm"] < 1e-3 and r.object_mesh.endswith("contact_meshes/spheresmall.ply")
    # --stride on each sequence's frames, --categories by object
    out2 = tmp_path / "prep2"
    res = runner.invoke(app, ["prepare-data", "--dataset", "grab", "--root", str(root), "--mano-dir", str(fake_mano), "--out", str(out2),
                              "--stride", "2", "--categories", "ball", "-j", "1", "--no-preview"])
    assert res.exit_code == 0, res.output
    ids = [json.loads(line)["id"] for line in (out2 / "dataset" / "records.jsonl").read_text().splitlines()]
    assert ids == ["grab-s1-spheresmall_pass_1-00000-left", "grab-s1-spheresmall_pass_1-00002-left"]
    assert "skipped 4: category not in --categories" in res.output


def test_grab_bad_root(tmp_path, fake_mano):
    (tmp_path / "grab" / "s1").mkdir(parents=True)  # sequences not unzipped
    res = runner.invoke(app, ["prepare-data", "--dataset", "grab", "--root", str(tmp_path), "--mano-dir", str(fake_mano),
                              "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "does not look like GRAB" in res.output and "grab/*/*.npz" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
