"""HOI4D converter: a miniature release (per-frame hand pose pickles for both hands and per-frame
object poses in the camera frame, CAD models) built from known grasps; converted records must pose
the same hand meshes in the object frame."""

import json
import pickle

import numpy as np
from scipy.spatial.transform import Rotation
from typer.testing import CliRunner

from dataset_fixtures import assert_round_trip, grasps, left_grasp, move, random_pose, vertices, write_obj
from hoitool.cli.main import app
from hoitool.hand import HandModel

runner = CliRunner()


def _hand_file(path, params):
    path.parent.mkdir(parents=True, exist_ok=True)
    p = params.numpy()
    with open(path, "wb") as f:
        pickle.dump({"poseCoeff": np.concatenate([p["global_orient"][0], p["hand_pose"][0]]).astype(np.float32),
                     "beta": p["betas"][0], "trans": p["transl"][0], "kps2D": np.zeros((21, 2), np.float32)}, f, protocol=2)


def _pose_file(path, cTo, literal=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    x, y, z = Rotation.from_matrix(cTo[:3, :3]).as_euler("XYZ")
    data = {"dataList": [{"label": "object", "center": dict(zip("xyz", map(float, cTo[:3, 3]))),
                          "rotation": {"x": float(x), "y": float(y), "z": float(z)},
                          "dimensions": {"length": 0.1, "width": 0.1, "height": 0.1}}]}
    path.write_text(repr(data) if literal else json.dumps(data))


def _hoi4d(root, tiny_prepared, mano_dir, seed=0):
    rng = np.random.default_rng(seed)
    gs = grasps(tiny_prepared)
    hands = {s: HandModel(s, mano_dir) for s in ("right", "left")}
    hp, ann, cad = root / "handpose", root / "HOI4D_annotations", root / "HOI4D_CAD_Model_for_release" / "rigid"
    expected = {}
    # a mug (C2, instance N05), right hand, frames 0-2; frame 2 has no object pose
    seq = "ZY20210800001/H1/C2/N05/S100/s01/T1"
    write_obj(cad / "Mug" / "005.obj", gs[0].mesh)
    for f in range(3):
        cTo = random_pose(rng)
        _hand_file(hp / "refinehandpose_right" / seq / f"{f}.pickle", move(hands["right"], gs[0].params, cTo))
        if f < 2:
            _pose_file(ann / seq / "objpose" / f"{f}.json", cTo)
            expected[f"hoi4d-{seq.replace('/', '-')}-{f:05d}-right"] = vertices(hands["right"], gs[0].params)
    # frame 3: the hand pose file is damaged
    (hp / "refinehandpose_right" / seq / "3.pickle").write_bytes(b"not a pickle")
    _pose_file(ann / seq / "objpose" / "3.json", random_pose(rng))
    # a bottle (C5, N12) held by the left hand; in frame 1 the right hand is in the picture, 30 cm away
    seq = "ZY20210800002/H2/C5/N12/S50/s02/T3"
    g = left_grasp(gs[1])
    write_obj(cad / "Bottle" / "012.obj", g.mesh)
    away = np.eye(4)
    away[:3, 3] = [0.3, 0.0, 0.0]
    for f in range(2):
        cTo = random_pose(rng)
        _hand_file(hp / "refinehandpose_left" / seq / f"{f}.pickle", move(hands["left"], g.params, cTo))
        _pose_file(ann / seq / "objpose" / f"{f}.json", cTo, literal=True)
        expected[f"hoi4d-{seq.replace('/', '-')}-{f:05d}-left"] = vertices(hands["left"], g.params)
        if f == 1:
            _hand_file(hp / "refinehandpose_right" / seq / f"{f}.pickle", move(hands["right"], gs[0].params, cTo @ away))
    # a laptop (C3, articulated): skipped
    seq = "ZY20210800001/H1/C3/N01/S10/s01/T1"
    for f in range(2):
        cTo = random_pose(rng)
        _hand_file(hp / "refinehandpose_right" / seq / f"{f}.pickle", move(hands["right"], gs[0].params, cTo))
        _pose_file(ann / seq / "objpose" / f"{f}.json", cTo)
    return expected


def test_hoi4d_round_trip_and_summary(tmp_path, tiny_prepared, fake_mano, monkeypatch):
    root = tmp_path / "HOI4D"
    expected = _hoi4d(root, tiny_prepared, fake_mano)
    out = tmp_path / "prep"
    res = runner.invoke(app, ["prepare-data", "--dataset", "hoi4d", "--root", str(root), "--mano-dir", str(fake_mano),
                              "--out", str(out), "-j", "1", "--no-preview"])
    assert res.exit_code == 0, res.output
    assert_round_trip(out, expected, fake_mano)
    lines = (out / "dataset" / "records.jsonl").read_text().splitlines()
    assert len(lines) == 4
    assert "skipped 2: articulated object" in res.output
    assert "skipped 1: no object pose for the frame" in res.output
    assert "skipped 1: unreadable hand pose file" in res.output
    assert "skipped 1: hand more than 10 mm from the object" in res.output  # the right hand 30 cm away
    # --stride 2 keeps frames 0 and 2 of each sequence; --categories keeps the mug; a relative
    # --root still gives absolute mesh paths
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["prepare-data", "--dataset", "hoi4d", "--root", "HOI4D", "--mano-dir", str(fake_mano),
                              "--out", "prep2", "--stride", "2", "--categories", "mug", "-j", "1", "--no-preview"])
    assert res.exit_code == 0, res.output
    lines = (tmp_path / "prep2" / "dataset" / "records.jsonl").read_text().splitlines()
    assert len(lines) == 1 and "hoi4d-ZY20210800001-H1-C2-N05-S100-s01-T1-00000-right" in lines[0]
    assert json.loads(lines[0])["object_mesh"] == str(root / "HOI4D_CAD_Model_for_release" / "rigid" / "Mug" / "005.obj")


def test_hoi4d_bad_roots(tmp_path, fake_mano):
    res = runner.invoke(app, ["prepare-data", "--dataset", "hoi4d", "--root", str(tmp_path), "--mano-dir", str(fake_mano),
                              "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "does not look like HOI4D" in res.output and "refinehandpose_right" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    # hand poses without object poses
    p = tmp_path / "handpose" / "refinehandpose_right" / "ZY20210800001/H1/C2/N05/S100/s01/T1" / "0.pickle"
    p.parent.mkdir(parents=True)
    p.write_bytes(b"x")
    res = runner.invoke(app, ["prepare-data", "--dataset", "hoi4d", "--root", str(tmp_path), "--mano-dir", str(fake_mano),
                              "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    gone = res.output.split(" missing ", 1)[1].split("; expected", 1)[0]
    assert "objpose" in gone and "handpose" not in gone
    assert not (tmp_path / "o").exists()
