"""InterHand2.6M converter: a miniature NeuralAnnot MANO file per split (world frame, metres,
finger poses relative to MANO's mean pose) built from known grasps; converted two-hand records
must pose the same two hand meshes, and prepare-data must run them through the two-hand path."""

import json

import numpy as np
import torch
from typer.testing import CliRunner

from dataset_fixtures import assert_twohand_round_trip, dump_json, grasps, left_grasp, move, pca_and_mean, random_pose, vertices
from hoitool.cli.main import app
from hoitool.hand import HandModel
from hoitool.twohands.records import read_twohand_manifest

runner = CliRunner()
SIDES = ("right", "left")


def _entry(hand, mean, p):
    """One hand's NeuralAnnot entry: root + finger pose (relative to the mean pose), shape, trans."""
    return {"pose": np.concatenate([p.global_orient[0].numpy(), p.hand_pose[0].numpy() - mean]).tolist(),
            "shape": p.betas[0].numpy().tolist(), "trans": p.transl[0].numpy().tolist()}


def _interhand(root, tiny_prepared, mano_dir, seed=0):
    """annotations/train/ (v1.0 layout), annotations/all/ for val (v0.0 layout) plus a stale
    copy of train there (must not be read twice); returns the expected two-hand meshes."""
    rng = np.random.default_rng(seed)
    hands = {s: HandModel(s, mano_dir) for s in SIDES}
    mean = {s: pca_and_mean(mano_dir, s)[1] for s in SIDES}
    gs = grasps(tiny_prepared)
    expected = {}
    files = {"train": {}, "val": {}}
    for i, (split, capture, frame) in enumerate([("train", "0", "100"), ("train", "0", "101"), ("train", "0", "102"),
                                                 ("train", "3", "7"), ("val", "1", "5")]):
        wT = random_pose(rng, distance=1.0)
        right = move(hands["right"], gs[i % len(gs)].params, wT)
        left_o = left_grasp(gs[(i + 1) % len(gs)]).params.clone()
        left_o.transl += torch.tensor([0.0, 0.15, 0.0])  # beside the right hand
        left = move(hands["left"], left_o, wT)
        files[split].setdefault(capture, {})[frame] = {"right": _entry(hands["right"], mean["right"], right),
                                                       "left": _entry(hands["left"], mean["left"], left)}
        expected[f"interhand-{split}-Capture{capture}-{frame}"] = {"right": vertices(hands["right"], right),
                                                                   "left": vertices(hands["left"], left)}
    # one-hand and empty frames, and a malformed entry
    cap0 = files["train"]["0"]
    cap0["103"] = {"right": cap0["100"]["right"], "left": None}
    cap0["104"] = {"right": None, "left": cap0["100"]["left"]}
    cap0["105"] = {"right": None, "left": None}
    cap0["106"] = {"right": cap0["100"]["right"], "left": {"pose": [0.0] * 48, "shape": [0.0] * 10, "trans": [float("nan")] * 3}}
    dump_json(root / "annotations" / "train" / "InterHand2.6M_train_MANO_NeuralAnnot.json", files["train"])
    dump_json(root / "annotations" / "all" / "InterHand2.6M_train_MANO_NeuralAnnot.json", files["train"])
    dump_json(root / "annotations" / "all" / "InterHand2.6M_val_MANO_NeuralAnnot.json", files["val"])
    return expected


def _run(*args):
    return runner.invoke(app, ["prepare-data", *map(str, args)])


def test_interhand_round_trip_and_two_hand_prepare(tmp_path, tiny_prepared, fake_mano):
    root = tmp_path / "InterHand2.6M"
    expected = _interhand(root, tiny_prepared, fake_mano)
    out = tmp_path / "prep"
    res = _run("--dataset", "interhand", "--root", root, "--mano-dir", fake_mano, "--out", out, "-j", "1", "--no-preview")
    assert res.exit_code == 0, res.output
    assert_twohand_round_trip(out, expected, fake_mano)
    recs = read_twohand_manifest(out / "dataset" / "records.jsonl")
    assert sorted(r.id for r in recs) == sorted(expected)  # no one-hand frame, nothing read twice
    assert all(r.object_mesh is None and r.source == "interhand" for r in recs)
    for reason in ("only the right hand annotated", "only the left hand annotated", "no hand annotated",
                   "malformed or non-finite MANO parameters"):
        assert f"skipped 1: {reason}" in res.output, res.output
    # the two-hand preparation ran on the converted records (two-hand folders have twohands.npz, no index.jsonl)
    assert (out / "twohands.npz").is_file() and (out / "config.yaml").is_file()
    assert len((out / "records.jsonl").read_text().splitlines()) == len(expected)
    z = np.load(out / "twohands.npz")
    assert z["xa"].shape[0] == len(expected) and (z["object"] == -1).all()

    # --stride 2 over each capture's frames (sorted as numbers); --max-records
    out2 = tmp_path / "prep2"
    res = _run("--dataset", "interhand", "--root", root, "--mano-dir", fake_mano, "--out", out2, "--stride", "2",
               "--max-records", "2", "-j", "1", "--no-preview")
    assert res.exit_code == 0, res.output
    ids = [json.loads(line)["id"] for line in (out2 / "dataset" / "records.jsonl").read_text().splitlines()]
    assert ids == ["interhand-train-Capture0-100", "interhand-train-Capture0-102"]


def test_interhand_bad_input(tmp_path, fake_mano):
    res = _run("--dataset", "interhand", "--root", tmp_path, "--mano-dir", fake_mano, "--out", tmp_path / "o")
    assert res.exit_code == 2 and "does not look like InterHand2.6M" in res.output and "MANO_NeuralAnnot.json" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    dump_json(tmp_path / "annotations" / "train" / "InterHand2.6M_train_MANO_NeuralAnnot.json", {"0": {}})
    res = _run("--dataset", "interhand", "--root", tmp_path, "--out", tmp_path / "o")
    assert res.exit_code == 2 and "--mano-dir" in res.output
    res = _run("--dataset", "interhand", "--root", tmp_path, "--mano-dir", fake_mano, "--categories", "mug", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "no objects" in res.output
