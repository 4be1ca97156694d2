"""ObMan converter: a miniature release (meta pickles with PCA articulation, world-frame hand
vertices and a scaled affine object transform; ShapeNet-layout models elsewhere) built from
known grasps; converted records must pose the same hand meshes in the (scaled) object frame."""

import json
import pickle

import numpy as np
import torch
from typer.testing import CliRunner

from dataset_fixtures import assert_round_trip, grasps, move, random_pose, to_pca, vertices, write_obj
from hoitool.cli.main import app
from hoitool.hand import HandModel
from hoitool.hand.model import HandParams

runner = CliRunner()
CLASSES = ["02876657", "03797390", "02946921"]  # bottle, mug, can


def _meta(path, **meta):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(meta, f, protocol=2)


def _obman(root, shapenet, tiny_prepared, mano_dir, seed=0):
    rng = np.random.default_rng(seed)
    hand = HandModel("right", mano_dir)
    expected = {}

    def sample(split, idx, g, cls, write_model=True, verts_scale=1.0):
        p0 = HandParams(g.params.global_orient, g.params.hand_pose, torch.zeros_like(g.params.betas), g.params.transl, "right")
        s = float(rng.uniform(0.1, 0.3))
        sample_id = f"{split}{idx:04d}{cls}"
        if write_model:  # ShapeNet's normalised model: metres / s
            write_obj(shapenet / cls / sample_id / "models" / "model_normalized.obj", g.mesh, scale=1 / s)
        wTo = random_pose(rng)
        affine = wTo.copy()
        affine[:3, :3] *= s
        verts = vertices(hand, move(hand, p0, wTo))
        verts = (verts - verts.mean(0)) * verts_scale + verts.mean(0)
        _meta(root / split / "meta" / f"{idx:08d}.pkl", side="right", verts_3d=verts.astype(np.float32),
              coords_3d=np.zeros((21, 3), np.float32), pca_pose=to_pca(mano_dir, "right", p0.hand_pose, flat_mean=True),
              hand_pose=p0.hand_pose[0].numpy(), affine_transform=affine.astype(np.float32), obj_scale=s,
              class_id=cls, sample_id=sample_id, shape=np.zeros(10, np.float32), pose=np.zeros(156, np.float32),
              trans=np.zeros(3, np.float32),
              obj_path=f"/sequoia/data2/dataset/shapenet/ShapeNetCore.v2/{cls}/{sample_id}/models/model_normalized.obj")
        return f"obman-{split}-{idx:08d}", vertices(hand, p0)

    gs = grasps(tiny_prepared)
    for i in range(3):
        rid, v = sample("train", i, gs[i], CLASSES[i])
        expected[rid] = v
    sample("val", 0, gs[3], CLASSES[0], write_model=False)  # its ShapeNet model is not there
    sample("test", 0, gs[3], CLASSES[1], verts_scale=2.0)  # vertices of no MANO hand with this articulation
    return expected


def test_obman_round_trip_and_summary(tmp_path, tiny_prepared, fake_mano):
    root, shapenet = tmp_path / "obman", tmp_path / "ShapeNetCore.v2"
    expected = _obman(root, shapenet, tiny_prepared, fake_mano)
    out = tmp_path / "prep"
    args = ["prepare-data", "--dataset", "obman", "--root", str(root), "--mano-dir", str(fake_mano), "-j", "1", "--no-preview"]
    res = runner.invoke(app, args + ["--objects", str(shapenet), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert_round_trip(out, expected, fake_mano)
    recs = [json.loads(line) for line in (out / "dataset" / "records.jsonl").read_text().splitlines()]
    assert len(recs) == 3 and {r["category"] for r in recs} == {"bottle", "mug", "can"}
    assert all(0.1 <= r["scale"] <= 0.3 and r["fit_mm"] < 0.1 for r in recs)
    assert all(r["object_mesh"].startswith(str(shapenet)) for r in recs)
    assert "skipped 1: ShapeNet model missing" in res.output
    assert "skipped 1: hand vertices do not fit" in res.output
    # --stride 2 keeps samples 0 and 2 of each split; --categories keeps the can
    out2 = tmp_path / "prep2"
    res = runner.invoke(app, args + ["--objects", str(shapenet), "--out", str(out2), "--stride", "2", "--categories", "can"])
    assert res.exit_code == 0, res.output
    lines = (out2 / "dataset" / "records.jsonl").read_text().splitlines()
    assert len(lines) == 1 and "obman-train-00000002" in lines[0]
    # without --objects (and no ShapeNetCore.v2 in the root) nothing converts: one line, exit 2
    res = runner.invoke(app, args + ["--out", str(tmp_path / "prep3")])
    assert res.exit_code == 2
    error = res.output.strip().splitlines()[-1]  # (after the progress line)
    assert error.startswith("error: no ObMan records were converted") and "--objects" in error


def test_obman_bad_roots(tmp_path, fake_mano):
    res = runner.invoke(app, ["prepare-data", "--dataset", "obman", "--root", str(tmp_path), "--mano-dir", str(fake_mano),
                              "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "does not look like ObMan" in res.output and "*/meta/*.pkl" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    _meta(tmp_path / "train" / "meta" / "00000000.pkl", side="right")
    res = runner.invoke(app, ["prepare-data", "--dataset", "obman", "--root", str(tmp_path), "--mano-dir", str(fake_mano),
                              "--objects", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--objects" in res.output and "ShapeNetCore.v2" in res.output
    assert not (tmp_path / "o").exists()
