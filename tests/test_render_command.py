"""`hoitool render`: sources, the written frames and labels, resuming, workers and Ray giving the same bytes, bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from typer.testing import CliRunner

from hoitool.cli.main import app

runner = CliRunner()


def _grasp_folder(folder: Path, right_hand, n: int = 3) -> Path:
    """A grasp set on a 6 cm box: the palm 2 cm off one face, three different finger closures."""
    import torch

    from hoitool.data.grasps import GraspSet, write_grasps
    from hoitool.hand.model import HandParams

    folder.mkdir(parents=True)
    box = trimesh.creation.box((0.06, 0.06, 0.06))
    box.export(folder / "object.obj")
    pose = torch.zeros(n, 45)
    pose[:, 2::3] = torch.linspace(0.0, 0.4, n)[:, None]
    params = HandParams(torch.zeros(n, 3), pose, torch.zeros(n, 10), torch.tensor([[0.0, 0.0, 0.1]]).repeat(n, 1), "right")
    # scored (lower is better), best last in the file: a render lists the best first
    write_grasps(folder, GraspSet(params, 1.0, np.arange(n, dtype=np.float64)[::-1].copy(), "box", {}))
    return folder


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under the trajectories and the index, by relative path."""
    files = {str(p.relative_to(root)): p.read_bytes() for p in (root / "trajectories").rglob("*") if p.is_file()}
    files["index.jsonl"] = (root / "index.jsonl").read_bytes()
    return files


@pytest.fixture(scope="module")
def grasps(tmp_path_factory, right_hand):
    return _grasp_folder(tmp_path_factory.mktemp("g") / "grasps", right_hand)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, grasps):
    out = tmp_path_factory.mktemp("r") / "renders"
    r = runner.invoke(app, ["render", str(grasps), "--out", str(out), "--frames", "4", "--size", "96", "-j", "1"])
    assert r.exit_code == 0, r.output
    return out


def test_render_a_grasp_folder_writes_every_map_and_labels_that_agree(rendered, right_hand):
    import torch
    from PIL import Image

    from hoitool.hand.model import HandParams
    from hoitool.render.dataset import read_index
    from hoitool.render.hoi_frame import read_frame

    trajs = read_index(rendered)
    assert [t.id for t in trajs] == ["000000", "000001", "000002"] and all(t.category == "box" for t in trajs)
    assert (rendered / "contact_sheet.png").is_file() and (rendered / "maps.png").is_file()
    for t in trajs:
        assert t.stems == ["000", "001", "002", "003"]
        gif = Image.open(t.dir / "approach.gif")  # GIF merges identical frames (hand not yet in view), adding their times
        total = 0
        for k in range(gif.n_frames):
            gif.seek(k)
            total += gif.info["duration"]
        assert 1 <= gif.n_frames <= 4 and total == 4 * 120
        assert np.asarray(Image.open(t.background)).shape == (96, 96, 3)
    t = trajs[1]
    last = read_frame(t.dir, t.stems[-1])
    lab = last.labels
    assert lab["category"] == "box" and lab["frame"] == 3 and lab["approach_fraction"] == 1.0
    # the last frame is the grasp itself: the second best of the source (scores 2, 1, 0: grasp 1)
    src = np.asarray(lab["hand_object_frame"]["hand_pose"])
    assert np.allclose(src[2::3], 0.2, atol=1e-5) and np.allclose(src[0::3], 0.0)
    best = read_frame(trajs[0].dir, "003").labels["hand_object_frame"]["hand_pose"]
    assert np.allclose(np.asarray(best)[2::3], 0.4, atol=1e-5)
    # the camera sees the whole approach: every keypoint well in front, the grasp frame in the image
    for tr in trajs:
        for s in tr.stems:
            fl = read_frame(tr.dir, s).labels
            assert min(z for _, _, z in fl["keypoints_3d_camera_m"]) >= 0.15
        assert all(read_frame(tr.dir, tr.stems[-1]).labels["keypoints_in_image"])
    # the labelled 3D keypoints are the hand model's, in the camera frame given by cTo
    cTo = np.asarray(lab["cTo"])
    p = HandParams.from_numpy({k: np.asarray(v, np.float32)[None] for k, v in lab["hand_object_frame"].items()}, side="right")
    kp_o = right_hand(p).keypoints[0].detach().numpy()
    kp_c = kp_o @ cTo[:3, :3].T + cTo[:3, 3]
    assert np.allclose(kp_c, np.asarray(lab["keypoints_3d_camera_m"]), atol=1e-5)
    # the first frame is the open hand, 0.3 m back
    first = read_frame(t.dir, t.stems[0])
    t_first = np.asarray(first.labels["hand_object_frame"]["transl"])
    t_last = np.asarray(lab["hand_object_frame"]["transl"])
    assert abs(np.linalg.norm(t_first - t_last) - 0.3) < 1e-5
    assert np.allclose(first.labels["hand_object_frame"]["hand_pose"], 0.0)
    # every map is there and consistent: depth only on the masks, the object fixed across frames
    assert last.depth.dtype == np.float32 and ((last.depth > 0) == (last.hand_mask | last.object_mask)).all()
    assert last.object_mask.any() and last.hand_mask.any()
    both = first.object_mask & last.object_mask & ~first.hand_mask & ~last.hand_mask
    assert np.array_equal(first.depth[both], last.depth[both])


def test_workers_and_a_resumed_run_write_the_same_bytes(tmp_path, grasps, rendered):
    out2 = tmp_path / "two"
    r = runner.invoke(app, ["render", str(grasps), "--out", str(out2), "--frames", "4", "--size", "96", "-j", "2"])
    assert r.exit_code == 0, r.output
    assert _tree(out2) == _tree(rendered)
    # one trajectory first, then the rest; a torn index line and a half-written trajectory are redone
    out3 = tmp_path / "resumed"
    r = runner.invoke(app, ["render", str(grasps), "--out", str(out3), "--frames", "4", "--size", "96", "-j", "1", "--limit", "1"])
    assert r.exit_code == 0, r.output
    assert len((out3 / "index.jsonl").read_text().splitlines()) == 1
    with open(out3 / "index.jsonl", "a") as fh:
        fh.write('{"id": "000001", "dir": "traj')  # a crash mid-line
    (out3 / "trajectories" / "000002").mkdir()
    (out3 / "trajectories" / "000002" / "000_rgb.png").write_bytes(b"half")
    r = runner.invoke(app, ["render", str(grasps), "--out", str(out3), "--frames", "4", "--size", "96", "-j", "1"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.replace("│", " ").split())
    assert "2 rendered now, 1 already done" in text, text
    assert _tree(out3) == _tree(rendered)
    # a smaller --limit later keeps what is there
    r = runner.invoke(app, ["render", str(grasps), "--out", str(out3), "--frames", "4", "--size", "96", "-j", "1", "--limit", "1"])
    assert r.exit_code == 0, r.output
    assert _tree(out3) == _tree(rendered)


def test_a_changed_source_is_rendered_again(tmp_path, grasps):
    """Resuming over a grasp set rewritten under the same path redoes the trajectories whose grasp changed."""
    import shutil

    src = tmp_path / "g"
    shutil.copytree(grasps, src)
    out = tmp_path / "o"
    args = ["render", str(src), "--out", str(out), "--frames", "2", "--size", "48", "-j", "1", "--plain"]
    assert runner.invoke(app, args).exit_code == 0
    before = _tree(out)
    with np.load(src / "grasps.npz") as z:
        d = {k: z[k] for k in z.files}
    d["transl"][2, 2] += 0.01  # grasp 2 is the best: trajectory 000000
    np.savez(src / "grasps.npz", **d)
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.replace("│", " ").split())
    assert "1 rendered now, 2 already done" in text, text
    after = _tree(out)
    assert after["trajectories/000001/001_rgb.png"] == before["trajectories/000001/001_rgb.png"]
    assert after["trajectories/000000/001_labels.json"] != before["trajectories/000000/001_labels.json"]


def test_ray_tasks_write_the_same_files_as_a_local_run(tmp_path, grasps, rendered):
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'hoitool[ray]')")
    out = tmp_path / "ray"
    r = runner.invoke(app, ["render", str(grasps), "--out", str(out), "--frames", "4", "--size", "96", "--ray", "local", "-j", "2"])
    assert r.exit_code == 0, r.output
    assert _tree(out) == _tree(rendered)


def test_prepared_and_samples_folders_are_sources(tmp_path, tiny_prepared):
    from hoitool.data.prepared import load_record
    from hoitool.render.dataset import read_index
    from hoitool.render.hoi_frame import read_frame

    out = tmp_path / "p"
    r = runner.invoke(app, ["render", str(tiny_prepared), "--out", str(out), "--frames", "2", "--size", "64", "-j", "1", "--limit", "2"])
    assert r.exit_code == 0, r.output
    trajs = read_index(out)
    assert len(trajs) == 2
    rec = load_record(tiny_prepared, 1)
    lab = read_frame(trajs[1].dir, "001").labels
    assert lab["category"] == rec.category
    assert np.allclose(lab["hand_object_frame"]["transl"], rec.hand.transl[0].numpy(), atol=1e-6)
    # a samples folder: samples.npz with right hands in their frame, NNN/object.obj where there is an object
    samples = tmp_path / "samples"
    (samples / "001").mkdir(parents=True)
    trimesh.creation.icosphere(radius=0.04).apply_translation([0, 0, 0.06]).export(samples / "001" / "object.obj")
    np.savez(samples / "samples.npz", category=np.array(["ball", "ball"]), global_orient=np.zeros((2, 3)), hand_pose=np.zeros((2, 45)),
             betas=np.zeros((2, 10)), transl=np.zeros((2, 3)))
    out = tmp_path / "s"
    r = runner.invoke(app, ["render", str(samples), "--out", str(out), "--frames", "2", "--size", "64", "-j", "1"])
    assert r.exit_code == 0, r.output
    trajs = read_index(out)
    assert len(trajs) == 1 and trajs[0].category == "ball" and trajs[0].meta["source"].endswith("#1")


def _one_error_line(r) -> str:
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2, r.output
    assert len(lines) == 1, r.output
    return lines[0]


def test_bad_sources_and_outputs_end_in_one_line_and_write_nothing(tmp_path, grasps, rendered):
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "notes.txt").write_text("hello")
    out = tmp_path / "o"
    assert "not a grasp, samples or prepared folder" in _one_error_line(runner.invoke(app, ["render", str(wrong), "--out", str(out)]))
    assert not out.exists()
    assert "not both" in _one_error_line(runner.invoke(app, ["render", str(grasps), "--synthetic", "3", "--out", str(out)]))
    assert "nothing to render" in _one_error_line(runner.invoke(app, ["render", "--out", str(out)]))
    assert not out.exists()
    # a render folder made with other settings is refused, untouched
    before = _tree(rendered)
    line = _one_error_line(runner.invoke(app, ["render", str(grasps), "--out", str(rendered), "--frames", "5", "--size", "96"]))
    assert "other settings (frames)" in line
    assert _tree(rendered) == before
    # a folder that is not a render is refused
    assert "not a render folder" in _one_error_line(runner.invoke(app, ["render", str(grasps), "--out", str(wrong)]))
    # a grasp folder with NaN parameters: one line, no output
    import shutil

    bad = tmp_path / "nan"
    shutil.copytree(grasps, bad)
    with np.load(bad / "grasps.npz") as z:
        d = {k: z[k] for k in z.files}
    d["transl"][0, 0] = np.nan
    np.savez(bad / "grasps.npz", **d)
    assert "NaN" in _one_error_line(runner.invoke(app, ["render", str(bad), "--out", str(out)]))
    assert not out.exists()


def test_dry_run_prints_the_options_and_writes_nothing(tmp_path, grasps):
    import yaml

    out = tmp_path / "dry[x]"
    r = runner.invoke(app, ["render", str(grasps), "--out", str(out), "--frames", "5", "--dry-run"])
    assert r.exit_code == 0, r.output
    d = yaml.safe_load(r.output)
    assert d["options"]["frames"] == 5 and d["out"] == str(out) and not out.exists()


def test_render_dataset_reader_refuses_other_folders(tmp_path, rendered):
    from hoitool.errors import InputError
    from hoitool.render.dataset import read_index

    with pytest.raises(InputError, match="not a render folder"):
        read_index(tmp_path)
    # an index line that is not a record names its line
    bad = tmp_path / "bad"
    (bad / "trajectories").mkdir(parents=True)
    (bad / "index.jsonl").write_text('{"id": "1"}\n')
    with pytest.raises(InputError, match="line 1"):
        read_index(bad)
    assert json.loads((rendered / "render.json").read_text())["frames"] == 12


def test_renders_train_and_synthesize_end_to_end(tmp_path, rendered):
    """Real renders -> a 2-step default model at 32 px -> one image per frame at the render's size,
    each with its frame's labels byte for byte."""
    from PIL import Image

    from hoitool.render.dataset import read_index

    run = tmp_path / "run"
    r = runner.invoke(app, ["train", "hoidiff", "--data", str(rendered), "--out", str(run), "--steps", "2", "--batch-size", "4",
                            "--resolution", "32", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "images"
    r = runner.invoke(app, ["synthesize", str(rendered), "--model", str(run), "--out", str(out), "--steps", "2", "--limit", "2",
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    for t in read_index(rendered)[:2]:
        for s in t.stems:
            img = np.asarray(Image.open(out / "trajectories" / t.id / f"{s}_image.png"))
            assert img.shape == (96, 96, 3)
            assert (out / "trajectories" / t.id / f"{s}_labels.json").read_bytes() == (t.dir / f"{s}_labels.json").read_bytes()
    assert not (out / "trajectories" / "000002").exists()


@pytest.mark.slow
def test_render_synthetic_plans_grasps_then_renders(tmp_path):
    """--synthetic N: N grasps planned into OUT/corpus (a prepared folder), one trajectory each."""
    from hoitool.data.prepared import read_index as prepared_index
    from hoitool.render.dataset import read_index

    out = tmp_path / "syn"
    r = runner.invoke(app, ["render", "--synthetic", "2", "--out", str(out), "--frames", "2", "--size", "48", "-j", "1"])
    assert r.exit_code == 0, r.output
    trajs = read_index(out)
    assert len(trajs) == len(prepared_index(out / "corpus")) == 2
    assert trajs[0].category == prepared_index(out / "corpus")[0]["category"]
    # the same command again: nothing to do, nothing changed
    before = _tree(out)
    r = runner.invoke(app, ["render", "--synthetic", "2", "--out", str(out), "--frames", "2", "--size", "48", "-j", "1"])
    assert r.exit_code == 0, r.output
    assert _tree(out) == before
