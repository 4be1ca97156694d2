"""ARCTIC converters: a miniature release (world-frame MANO relative to the mean pose, object
poses with millimetre translations, articulated templates in millimetres) built from known
grasps; converted records must pose the same hand meshes in the object's canonical frame, one
hand per record (`arctic`) or both (`arctic-two-hands`)."""

import json

import numpy as np
import torch
import trimesh
from scipy.spatial.transform import Rotation
from typer.testing import CliRunner

from dataset_fixtures import assert_round_trip, assert_twohand_round_trip, grasps, left_grasp, move, pca_and_mean, random_pose, vertices, write_obj
from hoitool.cli.main import app
from hoitool.hand import HandModel
from hoitool.twohands.records import read_twohand_manifest

runner = CliRunner()
SIDES = ("right", "left")
#: The left hand grasps a mirrored copy of the object placed this far along y (metres).
OFFSET = np.array([0.0, 0.25, 0.0])
FAR = np.array([0.0, 0.0, 1.0])


def _t(a):
    return torch.as_tensor(np.asarray(a, np.float32))


def _parts(g):
    """(bottom, top) in metres: the grasped object with a mirrored copy for the left hand, and
    a small lid off to the side that the articulation turns."""
    lg = left_grasp(g)
    copy = lg.mesh.copy()
    copy.apply_translation(OFFSET)
    bottom = trimesh.util.concatenate([g.mesh, copy])
    top = trimesh.creation.box(extents=(0.03, 0.03, 0.03))
    top.apply_translation((0.0, -0.2, 0.0))
    return bottom, top


def _arctic(root, tiny_prepared, mano_dir, seed=0):
    """Writes the miniature release; returns (one-hand expected, two-hand expected, parts)."""
    rng = np.random.default_rng(seed)
    hands = {s: HandModel(s, mano_dir) for s in SIDES}
    mean = {s: pca_and_mean(mano_dir, s)[1] for s in SIDES}
    gs = grasps(tiny_prepared)
    box = next(g for g in gs if g.category == "box")
    ball = next(g for g in gs if g.category == "ball")
    one, two, parts = {}, {}, {}
    templates = root / "meta" / "object_vtemplates"
    # 'box': top.obj + bottom.obj; 'ketchup': mesh.obj + parts.json (top vertices first, marked 0 as the toolkit's object_tensors.py reads them)
    for name, g in (("box", box), ("ketchup", ball)):
        bottom, top = _parts(g)
        parts[name] = (bottom, top)
        if name == "box":
            write_obj(templates / name / "bottom.obj", bottom, 1000)
            write_obj(templates / name / "top.obj", top, 1000)
        else:
            write_obj(templates / name / "mesh.obj", trimesh.util.concatenate([top, bottom]), 1000)
            (templates / name / "parts.json").write_text(json.dumps([0] * len(top.vertices) + [1] * len(bottom.vertices)))
    seqs = {
        # (subject, seq): grasp, articulation angles, per-frame moves of the left hand
        ("s01", "box_grab_01"): (box, [0.10, 0.40, 0.1005], [None, None, None]),
        ("s01", "ketchup_use_01"): (ball, [0.0, 0.2, 0.3, 0.3], [None, FAR, None, FAR]),
        ("s02", "phone_grab_01"): (box, [0.0, 0.0, 0.0], [None, None, None]),  # no template
    }
    for (subject, seq), (g, angles, left_moves) in seqs.items():
        right_o = g.params
        left_o = left_grasp(g).params.clone()
        left_o.transl += _t(OFFSET)
        mano = {s: {"rot": [], "pose": [], "trans": [], "shape": None, "fitting_err": []} for s in SIDES}
        obj = []
        for f, (angle, far) in enumerate(zip(angles, left_moves)):
            wTo = random_pose(rng)
            lo = left_o.clone()
            if far is not None:
                lo.transl += _t(far)
            per_side = {"right": right_o, "left": lo}
            if seq == "ketchup_use_01" and f == 3:  # neither hand touches
                per_side["right"] = right_o.clone()
                per_side["right"].transl -= _t(FAR)
            for s in SIDES:
                pw = move(hands[s], per_side[s], wTo)
                mano[s]["rot"].append(pw.global_orient[0].numpy())
                mano[s]["pose"].append(pw.hand_pose[0].numpy() - mean[s])  # flat_hand_mean=False
                mano[s]["trans"].append(pw.transl[0].numpy())
                mano[s]["shape"] = pw.betas[0].numpy()
                mano[s]["fitting_err"].append(0.001)
            obj.append(np.concatenate([[angle], Rotation.from_matrix(wTo[:3, :3]).as_rotvec(), wTo[:3, 3] * 1000]))
            if seq == "ketchup_use_01" and f == 2:
                obj[-1][4] = np.nan  # a frame with a broken object pose
                continue
            if subject == "s02":
                continue
            key = f"arctic-{subject}-{seq}-{f:05d}"
            verts = {s: vertices(hands[s], per_side[s]) for s in SIDES}
            contact = {"right": not (seq == "ketchup_use_01" and f == 3), "left": far is None}
            for s in SIDES:
                if contact[s]:
                    one[f"{key}-{s}"] = verts[s]
            if any(contact.values()):
                two[key] = verts
        folder = root / "raw_seqs" / subject
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{seq}.mano.npy", {s: {k: np.asarray(v, np.float64) for k, v in d.items()} for s, d in mano.items()},
                allow_pickle=True)
        np.save(folder / f"{seq}.object.npy", np.asarray(obj, np.float64))
    return one, two, parts


def _run(*args):
    return runner.invoke(app, ["prepare-data", *map(str, args)])


def test_arctic_one_hand_round_trip_meshes_and_summary(tmp_path, tiny_prepared, fake_mano):
    root = tmp_path / "arctic_data" / "data"
    one, _, parts = _arctic(root, tiny_prepared, fake_mano)
    out = tmp_path / "prep"
    res = _run("--dataset", "arctic", "--root", root, "--mano-dir", fake_mano, "--out", out, "-j", "1", "--no-preview")
    assert res.exit_code == 0, res.output
    assert_round_trip(out, one, fake_mano)
    lines = (out / "dataset" / "records.jsonl").read_text().splitlines()
    recs = {r["id"]: r for r in map(json.loads, lines)}
    assert set(recs) == set(one)  # the far hands and the broken frame are gone
    assert "skipped 6: object template missing" in res.output
    assert "skipped 3: hand more than 10 mm from the object" in res.output
    assert "skipped 2: non-finite MANO or object parameters" in res.output
    assert (out / "index.jsonl").exists() and len((out / "index.jsonl").read_text().splitlines()) == len(one)
    # categories: ARCTIC's ketchup is a bottle
    assert recs["arctic-s01-ketchup_use_01-00000-right"]["category"] == "bottle"
    assert recs["arctic-s01-box_grab_01-00000-left"]["side"] == "left"
    # the articulated object: written once per whole degree, in metres, top part turned about -z
    m0 = recs["arctic-s01-box_grab_01-00000-right"]["object_mesh"]
    assert m0 == recs["arctic-s01-box_grab_01-00002-left"]["object_mesh"]  # 0.1 and 0.1005 rad: both 6 degrees
    assert m0 != recs["arctic-s01-box_grab_01-00001-right"]["object_mesh"]
    assert abs(recs["arctic-s01-box_grab_01-00002-left"]["articulation_rad"] - 0.1005) < 1e-6
    for mesh_path, name, deg in ((m0, "box", 6), (recs["arctic-s01-ketchup_use_01-00001-right"]["object_mesh"], "ketchup", 11)):
        got = trimesh.load(mesh_path, force="mesh", process=False)
        bottom, top = parts[name]
        R = Rotation.from_rotvec([0, 0, -np.radians(deg)]).as_matrix()
        want = np.concatenate([bottom.vertices, top.vertices @ R.T])
        assert got.vertices.shape == want.shape and len(got.faces) == len(bottom.faces) + len(top.faces)
        assert np.abs(got.vertices - want).max() < 1e-6
    assert len(list((out / "dataset" / "meshes").glob("*.obj"))) == 4  # box 6, 23; ketchup 0, 11 degrees

    # --stride 2 keeps frames 0 and 2; --categories bottle keeps the ketchup
    out2 = tmp_path / "prep2"
    res = _run("--dataset", "arctic", "--root", root, "--mano-dir", fake_mano, "--out", out2, "--stride", "2",
               "--categories", "bottle", "-j", "1", "--no-preview")
    assert res.exit_code == 0, res.output
    ids = {json.loads(line)["id"] for line in (out2 / "dataset" / "records.jsonl").read_text().splitlines()}
    assert ids == {"arctic-s01-ketchup_use_01-00000-right", "arctic-s01-ketchup_use_01-00000-left"}


def test_arctic_two_hands_round_trip_and_prepare(tmp_path, tiny_prepared, fake_mano):
    root = tmp_path / "arctic"
    _, two, _ = _arctic(root, tiny_prepared, fake_mano, seed=1)
    out = tmp_path / "prep"
    res = _run("--dataset", "arctic-two-hands", "--root", root, "--mano-dir", fake_mano, "--out", out, "-j", "1", "--no-preview")
    assert res.exit_code == 0, res.output
    assert_twohand_round_trip(out, two, fake_mano)
    recs = {r.id: r for r in read_twohand_manifest(out / "dataset" / "records.jsonl")}
    assert set(recs) == set(two)
    assert "skipped 1: neither hand within 10 mm of the object" in res.output
    both, right_only = recs["arctic-s01-box_grab_01-00001"], recs["arctic-s01-ketchup_use_01-00001"]
    assert both.interaction == "bimanual_grasp" and both.extra["contact"] == "both" and both.category == "box"
    assert right_only.interaction == "" and right_only.extra["contact"] == "right" and right_only.category == "bottle"
    assert both.object_mesh and both.object_mesh.endswith(".obj")
    # the two-hand preparation ran on the converted records
    assert (out / "twohands.npz").is_file() and (out / "records.jsonl").is_file()
    assert len((out / "records.jsonl").read_text().splitlines()) == len(two)
    z = np.load(out / "twohands.npz")
    assert (z["object"] >= 0).all()


def test_arctic_bad_roots(tmp_path, fake_mano):
    res = _run("--dataset", "arctic", "--root", tmp_path, "--mano-dir", fake_mano, "--out", tmp_path / "o")
    assert res.exit_code == 2 and "does not look like ARCTIC" in res.output and "raw_seqs/*/*.mano.npy" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    (tmp_path / "raw_seqs" / "s01").mkdir(parents=True)
    np.save(tmp_path / "raw_seqs" / "s01" / "box_grab_01.mano.npy", {"right": {}}, allow_pickle=True)
    res = _run("--dataset", "arctic-two-hands", "--root", tmp_path, "--mano-dir", fake_mano, "--out", tmp_path / "o")
    assert res.exit_code == 2 and "meta/object_vtemplates" in res.output
    write_obj(tmp_path / "meta" / "object_vtemplates" / "box" / "bottom.obj", trimesh.creation.box(extents=(50, 50, 50)))
    res = _run("--dataset", "arctic", "--root", tmp_path, "--out", tmp_path / "o")
    assert res.exit_code == 2 and "--mano-dir" in res.output
    assert not (tmp_path / "o").exists()
