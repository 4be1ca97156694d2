"""DexYCB converter: a miniature release (meta.yml, per-camera labels with PCA hand poses relative
to MANO's mean pose, calibration betas, YCB-layout models) built from known grasps, right and
left; converted records must pose the same hand meshes in the object frame."""

import numpy as np
import yaml
from typer.testing import CliRunner

from dataset_fixtures import assert_round_trip, grasps, left_grasp, move, random_pose, to_pca, vertices, write_obj
from hoitool.cli.main import app
from hoitool.data.datasets.dexycb import YCB_CLASSES
from hoitool.hand import HandModel

runner = CliRunner()
SERIALS = ["836212060125", "839512060362"]


def _write_yaml(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(obj))


def _dexycb(root, tiny_prepared, mano_dir, seed=0):
    """Three sequences (right, left, right), two cameras each, three frames each; the third
    frame has no hand pose, and one frame of the last sequence no pose of the grasped object."""
    rng = np.random.default_rng(seed)
    gs = grasps(tiny_prepared)
    specs = [("20200709-subject-01", "20200709_141754", gs[0], 5),
             ("20200709-subject-01", "20200709_142123", left_grasp(gs[1]), 14),
             ("20200820-subject-03", "20200820_135508", gs[2], 3)]
    expected = {}
    for k, (subject, name, g, ycb) in enumerate(specs):
        side = g.params.side
        hand = HandModel(side, mano_dir)
        write_obj(root / "models" / YCB_CLASSES[ycb] / "textured_simple.obj", g.mesh)
        calib = f"{subject}_{side}"
        _write_yaml(root / "calibration" / f"mano_{calib}" / "mano.yml",
                    {"betas": g.params.betas[0].double().numpy().tolist()})
        seq = root / subject / name
        _write_yaml(seq / "meta.yml", {"serials": SERIALS, "num_frames": 3, "ycb_ids": [10, ycb], "ycb_grasp_ind": 1,
                                       "mano_sides": [side], "mano_calib": [calib], "extrinsics": "20200702_151821"})
        coeffs = to_pca(mano_dir, side, g.params.hand_pose, flat_mean=False)
        world = [random_pose(rng) for _ in range(3)]  # object poses in the world, shared by the cameras
        for serial in SERIALS:
            cTw = random_pose(rng, 0.1)
            for f, wTo in enumerate(world):
                cTo = cTw @ wTo
                pc = move(hand, g.params, cTo)
                pose_m = np.concatenate([pc.global_orient[0].numpy(), coeffs, pc.transl[0].numpy()]).reshape(1, 51)
                pose_y = np.stack([random_pose(rng)[:3], cTo[:3]]).astype(np.float32)
                if f == 2:
                    pose_m[:] = 0
                if k == 2 and f == 1:
                    pose_y[1] = 0
                (seq / serial).mkdir(parents=True, exist_ok=True)
                np.savez(seq / serial / f"labels_{f:06d}.npz", pose_y=pose_y, pose_m=pose_m.astype(np.float32),
                         joint_3d=np.zeros((1, 21, 3), np.float32))
                if serial == SERIALS[0] and f < 2 and not (k == 2 and f == 1):
                    expected[f"dexycb-{subject}-{name}-{f:06d}"] = vertices(hand, g.params)
    return expected


def test_dexycb_round_trip_and_summary(tmp_path, tiny_prepared, fake_mano):
    root = tmp_path / "dex-ycb"
    expected = _dexycb(root, tiny_prepared, fake_mano)
    out = tmp_path / "prep"
    res = runner.invoke(app, ["prepare-data", "--dataset", "dexycb", "--root", str(root), "--mano-dir", str(fake_mano),
                              "--out", str(out), "-j", "1", "--no-preview"])
    assert res.exit_code == 0, res.output
    assert_round_trip(out, expected, fake_mano)
    lines = (out / "dataset" / "records.jsonl").read_text().splitlines()
    assert len(lines) == 5  # one camera per sequence: no duplicates from the second camera
    assert sum('"side": "left"' in line for line in lines) == 2
    assert all(SERIALS[0] in line for line in lines)
    assert "skipped 3: hand not annotated" in res.output
    assert "skipped 1: grasped object not annotated" in res.output
    # --stride 2 keeps frames 0 and 2; --categories keeps the mustard bottle's sequence
    out2 = tmp_path / "prep2"
    res = runner.invoke(app, ["prepare-data", "--dataset", "dexycb", "--root", str(root), "--mano-dir", str(fake_mano),
                              "--out", str(out2), "--stride", "2", "--categories", "bottle", "-j", "1", "--no-preview"])
    assert res.exit_code == 0, res.output
    lines = (out2 / "dataset" / "records.jsonl").read_text().splitlines()
    assert len(lines) == 1 and "dexycb-20200709-subject-01-20200709_141754-000000" in lines[0]


def test_dexycb_bad_roots(tmp_path, fake_mano):
    res = runner.invoke(app, ["prepare-data", "--dataset", "dexycb", "--root", str(tmp_path), "--mano-dir", str(fake_mano),
                              "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "does not look like DexYCB" in res.output and "*/*/meta.yml" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    _write_yaml(tmp_path / "S" / "SEQ" / "meta.yml", {"ycb_ids": [1]})
    _write_yaml(tmp_path / "calibration" / "mano_x" / "mano.yml", {"betas": [0.0] * 10})
    res = runner.invoke(app, ["prepare-data", "--dataset", "dexycb", "--root", str(tmp_path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--mano-dir" in res.output
    assert not (tmp_path / "o").exists()
    # the layout is there but the meta.yml is incomplete: nothing converted, one line, exit 2
    res = runner.invoke(app, ["prepare-data", "--dataset", "dexycb", "--root", str(tmp_path), "--mano-dir", str(fake_mano),
                              "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "meta.yml lacks" in res.output, res.output
