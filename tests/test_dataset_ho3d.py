"""HO-3D converter: a miniature release (meta pickles in the camera frame, YCB-layout models)
built from known grasps; converted records must pose the same hand meshes in the object frame."""

import pickle

import numpy as np
from typer.testing import CliRunner

from dataset_fixtures import assert_round_trip, grasps, move, random_pose, vertices, write_obj
from hoitool.cli.main import app
from hoitool.hand import HandModel

runner = CliRunner()


def _ho3d(root, tiny_prepared, mano_dir, seed=0):
    rng = np.random.default_rng(seed)
    hand = HandModel("right", mano_dir)
    expected = {}
    for i, g in enumerate(grasps(tiny_prepared)[:3]):
        name = ["006_mustard_bottle", "025_mug", "003_cracker_box"][i]
        write_obj(root / "models" / name / "textured_simple.obj", g.mesh)
        seq = root / "train" / f"SEQ{i}"
        for f in range(2):
            cTo = random_pose(rng)
            pc = move(hand, g.params, cTo)
            from scipy.spatial.transform import Rotation

            meta = {"handPose": np.concatenate([pc.global_orient[0].numpy(), g.params.hand_pose[0].numpy()]).astype(np.float64),
                    "handTrans": pc.transl[0].numpy().astype(np.float64), "handBeta": g.params.betas[0].numpy().astype(np.float64),
                    "objRot": Rotation.from_matrix(cTo[:3, :3]).as_rotvec().reshape(3, 1), "objTrans": cTo[:3, 3],
                    "objName": name, "camMat": np.eye(3)}
            (seq / "meta").mkdir(parents=True, exist_ok=True)
            with open(seq / "meta" / f"{f:04d}.pkl", "wb") as fh:
                pickle.dump(meta, fh, protocol=2)
            expected[f"ho3d-SEQ{i}-{f:04d}"] = vertices(hand, g.params)
    # an evaluation-style frame without hand pose
    with open(root / "train" / "SEQ0" / "meta" / "0002.pkl", "wb") as fh:
        pickle.dump({"handPose": None, "objRot": None, "objName": "006_mustard_bottle"}, fh)
    return expected


def test_ho3d_round_trip_and_summary(tmp_path, tiny_prepared, fake_mano):
    root = tmp_path / "HO3D_v3"
    expected = _ho3d(root, tiny_prepared, fake_mano)
    out = tmp_path / "prep"
    res = runner.invoke(app, ["prepare-data", "--dataset", "ho3d", "--root", str(root), "--mano-dir", str(fake_mano),
                              "--out", str(out), "-j", "1", "--no-preview"])
    assert res.exit_code == 0, res.output
    assert_round_trip(out, expected, fake_mano)
    assert "skipped 1: no hand or object pose" in res.output
    assert (out / "index.jsonl").exists()
    assert len((out / "index.jsonl").read_text().splitlines()) == 6
    # stride keeps every 2nd frame of each sequence; --categories filters
    out2 = tmp_path / "prep2"
    res = runner.invoke(app, ["prepare-data", "--dataset", "ho3d", "--root", str(root), "--mano-dir", str(fake_mano), "--out", str(out2),
                              "--stride", "2", "--categories", "bottle", "-j", "1", "--no-preview"])
    assert res.exit_code == 0, res.output
    ids = [line for line in (out2 / "dataset" / "records.jsonl").read_text().splitlines()]
    assert len(ids) == 1 and "ho3d-SEQ0-0000" in ids[0]


def test_ho3d_bad_roots(tmp_path, fake_mano):
    res = runner.invoke(app, ["prepare-data", "--dataset", "ho3d", "--root", str(tmp_path), "--mano-dir", str(fake_mano), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "does not look like HO-3D" in res.output and "train/*/meta/*.pkl" in res.output
    assert not (tmp_path / "o").exists()
    (tmp_path / "train" / "S" / "meta").mkdir(parents=True)
    (tmp_path / "train" / "S" / "meta" / "0000.pkl").write_bytes(b"x")
    res = runner.invoke(app, ["prepare-data", "--dataset", "ho3d", "--root", str(tmp_path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--mano-dir" in res.output
    res = runner.invoke(app, ["prepare-data", "--dataset", "nope", "--root", str(tmp_path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "unknown dataset" in res.output


def test_ho3d_conversion_is_reused_and_redone_on_new_options(tmp_path, tiny_prepared, fake_mano):
    root = tmp_path / "HO3D_v3"
    _ho3d(root, tiny_prepared, fake_mano)
    out = tmp_path / "prep"
    args = ["prepare-data", "--dataset", "ho3d", "--root", str(root), "--mano-dir", str(fake_mano), "--out", str(out), "-j", "1", "--no-preview"]
    assert runner.invoke(app, args).exit_code == 0
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and "earlier conversion" in res.output
    res = runner.invoke(app, args + ["--max-records", "2"])
    assert res.exit_code == 0 and "earlier conversion" not in res.output
    assert len((out / "dataset" / "records.jsonl").read_text().splitlines()) == 2
    assert len((out / "index.jsonl").read_text().splitlines()) == 2


def test_ho3d_relative_root_gives_absolute_mesh_paths(tmp_path, tiny_prepared, fake_mano, monkeypatch):
    import json

    _ho3d(tmp_path / "HO3D_v3", tiny_prepared, fake_mano)
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["prepare-data", "--dataset", "ho3d", "--root", "HO3D_v3", "--mano-dir", str(fake_mano), "--out", "prep",
                              "--max-records", "1", "-j", "1", "--no-preview"])
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "prep" / "dataset" / "records.jsonl").read_text().splitlines()[0])
    assert rec["object_mesh"].startswith(str(tmp_path))


def test_ho3d_reads_one_camera_of_multi_camera_sequences_and_skips_malformed_files(tmp_path, tiny_prepared, fake_mano):
    import shutil

    root = tmp_path / "HO3D_v3"
    _ho3d(root, tiny_prepared, fake_mano)
    (root / "train" / "SEQ0" / "meta" / "0002.pkl").unlink()
    shutil.copytree(root / "train" / "SEQ0", root / "train" / "ABF10")
    shutil.copytree(root / "train" / "SEQ0", root / "train" / "ABF11")
    with open(root / "train" / "SEQ1" / "meta" / "0005.pkl", "wb") as fh:
        pickle.dump([1, 2, 3], fh)
    with open(root / "train" / "SEQ1" / "meta" / "0006.pkl", "wb") as fh:
        pickle.dump({"handPose": np.zeros(40), "handTrans": np.zeros(3), "handBeta": np.zeros(10), "objRot": np.zeros(3),
                     "objTrans": np.zeros(3), "objName": "025_mug"}, fh)
    out = tmp_path / "prep"
    res = runner.invoke(app, ["prepare-data", "--dataset", "ho3d", "--root", str(root), "--mano-dir", str(fake_mano), "--out", str(out),
                              "-j", "1", "--no-preview"])
    assert res.exit_code == 0, res.output
    assert "skipped 2: same frames as another camera" in res.output
    assert "skipped 1: annotation file is not a dict" in res.output
    assert "skipped 1: annotation arrays have unexpected sizes" in res.output
    ids = (out / "dataset" / "records.jsonl").read_text()
    assert "ho3d-ABF10-0000" in ids and "ABF11" not in ids


def test_dataset_option_errors(tmp_path, tiny_prepared, fake_mano):
    root = tmp_path / "HO3D_v3"
    _ho3d(root, tiny_prepared, fake_mano)
    base = ["prepare-data", "--dataset", "ho3d", "--root", str(root), "--mano-dir", str(fake_mano), "--out", str(tmp_path / "o")]
    for extra, why in ((["--scale", "0.001"], "--scale applies to --manifest"), (["--max-gap-mm", "-5"], "--max-gap-mm must be"),
                       (["--max-gap-mm", "nan"], "--max-gap-mm must be"), (["--synthetic", "4"], "drop --synthetic")):
        res = runner.invoke(app, base + extra)
        assert res.exit_code == 2 and why in res.output, res.output
        assert not (tmp_path / "o").exists()
