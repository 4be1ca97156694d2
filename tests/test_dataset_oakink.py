"""OakInk-Shape converter: a miniature release (hand_param.pkl grasps in each object's
bounding-box-centred frame, manotorch's wrist-centred translation, real and virtual objects)
built from known grasps; converted records must pose the same hand meshes on the model files."""

import json
import pickle

import numpy as np
import torch
from typer.testing import CliRunner

from dataset_fixtures import assert_round_trip, dump_json, grasps, vertices, write_obj
from hoitool.cli.main import app
from hoitool.data.records import read_manifest
from hoitool.hand import HandModel

runner = CliRunner()


def _hand_param(hand, params, centre, quat=False):
    """What oikit stores for a grasp given in the model file's frame: manotorch (center_idx=0)
    pose and betas, and the translation of the wrist in the bounding-box-centred frame."""
    pose = np.concatenate([params.global_orient[0].numpy(), params.hand_pose[0].numpy()]).astype(np.float64)
    if quat:
        from scipy.spatial.transform import Rotation

        xyzw = Rotation.from_rotvec(pose.reshape(16, 3)).as_quat()
        pose = xyzw[:, [3, 0, 1, 2]].astype(np.float32)  # (16, 4), w first
    with torch.no_grad():
        j0 = hand.rest_joints(params.betas)[0, 0].double().numpy()
    tsl = params.transl[0].double().numpy() + j0 - np.asarray(centre, np.float64)
    return {"pose": pose, "shape": params.betas[0].numpy(), "tsl": tsl.astype(np.float32)}


def _write_param(path, d):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(d, f)


def _oakink(root, tiny_prepared, mano_dir):
    hand = HandModel("right", mano_dir)
    shape = root / "shape"
    gs = grasps(tiny_prepared)
    real = {"A01001": "bottle_a", "A02001": "mug_b"}
    virtual = {"s01001": "bottle_virtual_0"}
    dump_json(shape / "metaV2" / "object_id.json", {k: {"name": v, "attr": []} for k, v in real.items()})
    dump_json(shape / "metaV2" / "virtual_object_id.json", {k: {"name": v} for k, v in virtual.items()})
    dump_json(shape / "metaV2" / "yodaobject_cat.json", {})
    expected = {}
    # (category folder, source object, grasp id, target object or None, grasp, model offset, quaternion pose)
    plan = [("cylinder_bottle", "A01001", "0cc013118e", None, gs[0], np.array([0.3, -0.1, 0.05]), False),
            ("cylinder_bottle", "A01001", "1ab2c3d4e5", None, gs[1], np.array([0.3, -0.1, 0.05]), True),
            ("cylinder_bottle", "A01001", "0cc013118e", "s01001", gs[2], np.array([-0.2, 0.0, 0.4]), False),
            ("mug", "A02001", "9f8e7d6c5b", None, gs[3], np.array([0.0, 0.25, -0.1]), False)]
    for cat, src, gid, target, g, offset, quat in plan:
        oid = target or src
        name = (virtual if target else real)[oid]
        kind = "OakInkVirtualObjectsV2" if target else "OakInkObjectsV2"
        mesh = g.mesh.copy()
        mesh.vertices = mesh.vertices + offset  # the model file's frame is not the canonical one
        write_obj(shape / kind / name / "align" / f"{name}.obj", mesh)
        centre = (np.asarray(mesh.vertices).min(0) + np.asarray(mesh.vertices).max(0)) / 2
        p = g.params.clone()
        p.transl = p.transl + torch.as_tensor(offset, dtype=torch.float32)  # the grasp on the file's frame
        folder = shape / "oakink_shape_v2" / cat / src / gid
        _write_param(folder / (f"{target}/hand_param.pkl" if target else "hand_param.pkl"), _hand_param(hand, p, centre, quat))
        (folder / "source.txt").write_text(f"pass1/{src}_0002_0003/2021-10-04-15-40-12")
        expected[f"oakink-{gid}-{oid}"] = vertices(hand, p)
    # a grasp on an object id that metaV2 does not list
    _write_param(shape / "oakink_shape_v2" / "mug" / "A09999" / "aaaaaaaaaa" / "hand_param.pkl",
                 _hand_param(hand, gs[0].params, np.zeros(3)))
    return expected


def test_oakink_round_trip_and_summary(tmp_path, tiny_prepared, fake_mano):
    root = tmp_path / "OakInk"
    expected = _oakink(root, tiny_prepared, fake_mano)
    out = tmp_path / "prep"
    res = runner.invoke(app, ["prepare-data", "--dataset", "oakink", "--root", str(root), "--mano-dir", str(fake_mano),
                              "--out", str(out), "-j", "1", "--no-preview"])
    assert res.exit_code == 0, res.output
    assert_round_trip(out, expected, fake_mano)
    assert "skipped 1: object id in neither metaV2" in res.output
    recs = {r.id: r for r in read_manifest(out / "dataset" / "records.jsonl")}
    assert len(recs) == 4
    r = recs["oakink-0cc013118e-s01001"]
    assert r.category == "bottle" and r.extra["virtual"] is True and r.extra["intent"] == "hold"
    assert r.object_mesh.endswith("OakInkVirtualObjectsV2/bottle_virtual_0/align/bottle_virtual_0.obj")
    assert recs["oakink-9f8e7d6c5b-A02001"].category == "mug"
    assert {x.extra["split"] for x in recs.values()} <= {"train", "val", "test"}
    # --categories filters whole category folders; --root may also be the shape/ folder itself
    out2 = tmp_path / "prep2"
    res = runner.invoke(app, ["prepare-data", "--dataset", "oakink", "--root", str(root / "shape"), "--mano-dir", str(fake_mano),
                              "--out", str(out2), "--categories", "mug", "-j", "1", "--no-preview"])
    assert res.exit_code == 0, res.output
    ids = [json.loads(line)["id"] for line in (out2 / "dataset" / "records.jsonl").read_text().splitlines()]
    assert ids == ["oakink-9f8e7d6c5b-A02001"]
    assert "skipped 3: category not in --categories" in res.output


def test_oakink_bad_root(tmp_path, fake_mano):
    (tmp_path / "image" / "anno").mkdir(parents=True)  # OakInk-Image only: not what is read
    res = runner.invoke(app, ["prepare-data", "--dataset", "oakink", "--root", str(tmp_path), "--mano-dir", str(fake_mano),
                              "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "does not look like OakInk-Shape" in res.output
    assert "oakink_shape_v2/*/*/*/hand_param.pkl" in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
