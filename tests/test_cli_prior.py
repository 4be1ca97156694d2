"""End to end on CPU, as a user types them: hoitool train vqvae, train ghop, sample."""

import numpy as np
import pytest
import torch
import trimesh
from typer.testing import CliRunner

from hoitool.cli.main import app
from hoitool.prior.checkpoint import default_model_path, load_prior

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def runs(tiny_prepared, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    r = _invoke("train", "vqvae", "--data", tiny_prepared, "--out", root / "vq", "--steps", "2", "--batch-size", "2",
                "--channels", "4", "--codebook-size", "16", "--device", "cpu")
    assert r.exit_code == 0, r.output
    r = _invoke("train", "ghop", "--data", tiny_prepared, "--vqvae", root / "vq", "--out", root / "ghop", "--steps", "2",
                "--batch-size", "2", "--channels", "8", "--copies", "2", "--device", "cpu")
    assert r.exit_code == 0, r.output
    return root


@pytest.mark.slow
def test_train_commands_write_their_runs(runs):
    for kind in ("vq", "ghop"):
        for f in ("model.pt", "config.yaml", "metrics.jsonl", "checkpoints/last.pt"):
            assert (runs / kind / f).exists(), f
        assert list((runs / kind / "tb").glob("events.out.tfevents.*"))
    prior = load_prior(runs / "ghop")
    assert prior.categories == ["ball", "box"]
    assert set(prior.text._known) >= {"", "an image of a hand grasping a box"}
    from hoitool.hand.model import HandModel, hand_fingerprint

    assert prior.hand["fingerprint"] == hand_fingerprint(HandModel("right"))  # what --shape prior checks the hand against


@pytest.mark.slow
def test_sample_writes_meshes_scenes_npz_and_sheet(runs, tmp_path):
    out = tmp_path / "s"
    r = _invoke("sample", "box", "--n", "2", "--out", out, "--model", runs / "ghop", "--steps", "3", "--seed", "1")
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output
    z = np.load(out / "samples.npz")
    assert z["hand_pose"].shape == (2, 45) and z["betas"].shape == (2, 10)
    assert z["object_grid"].shape == (2, 64, 64, 64) and z["x"].shape == (2, 23, 16, 16, 16)
    assert list(z["category"]) == ["box", "box"]
    assert np.abs(z["global_orient"]).max() == 0  # hand frame
    for i in range(2):
        scene = trimesh.load(out / f"{i:03d}" / "scene.glb")
        assert "hand" in scene.geometry
        hand = trimesh.load(out / f"{i:03d}" / "hand.obj", process=False)
        assert len(hand.vertices) == 778
        assert ("object" in scene.geometry) == (out / f"{i:03d}" / "object.obj").exists() == bool(z["has_object"][i])
    assert (out / "contact_sheet.png").exists()
    # the same seed gives the same samples
    again = _invoke("sample", "box", "--n", "1", "--out", tmp_path / "t", "--model", runs / "ghop", "--steps", "3", "--seed", "1",
                    "--no-sheet")
    assert again.exit_code == 0
    assert np.allclose(np.load(tmp_path / "t" / "samples.npz")["x"][0], z["x"][0], atol=1e-3)


@pytest.mark.slow
def test_bad_inputs_exit_2_with_one_line(runs, tmp_path, tiny_prepared):
    cases = [
        ("sample", "mug", "--n", "1", "--out", tmp_path / "a", "--model", tmp_path / "nothing"),
        ("sample", "mug", "--n", "1", "--out", tmp_path / "b", "--model", runs / "vq"),  # a VQ-VAE is not a prior
        ("train", "vqvae", "--data", tmp_path / "missing", "--out", tmp_path / "c"),
        ("train", "ghop", "--data", tiny_prepared, "--vqvae", runs / "ghop", "--out", tmp_path / "d"),
        ("train", "vqvae", "--data", tiny_prepared, "--out", runs / "vq", "--channels", "8", "--codebook-size", "16", "--steps", "3"),
    ]
    for args in cases:
        r = _invoke(*args)
        assert r.exit_code == 2, (args, r.output)
        err = [line for line in r.output.splitlines() if line.strip()]
        assert len(err) == 1 and err[0].startswith("error:"), r.output


@pytest.mark.skipif(not default_model_path("ghop").exists(), reason="no default prior in assets/models (scripts/train_default_prior.py --install makes it)")
def test_shipped_prior_loads_and_samples(tmp_path):
    prior = load_prior()
    assert len(prior.categories) >= 10
    x = prior.sample(["mug"], steps=2, seed=0)
    assert x.shape == (1, 23, 16, 16, 16) and torch.isfinite(x).all()
    size = sum(p.stat().st_size for p in default_model_path("ghop").parent.glob("*.pt"))
    assert size <= 40 * 2**20
