"""Training G-HOP on several prepared folders at once (real and synthetic), with weights."""

import pytest
import torch
import yaml
from typer.testing import CliRunner

from hoitool.cli.main import app
from hoitool.prior.data import InteractionData

runner = CliRunner()


@pytest.fixture(scope="module")
def second(tiny_prepared, tmp_path_factory):
    """The tiny corpus prepared again from its manifest: another folder with the same hand."""
    out = tmp_path_factory.mktemp("second") / "data"
    r = runner.invoke(app, ["prepare-data", "--manifest", str(tiny_prepared / "manifest.jsonl"), "--out", str(out), "-j", "1", "--no-preview"])
    assert r.exit_code == 0, r.output
    return out


def test_folders_concatenate_and_weights_set_shares(tiny_prepared, second):
    a, b = InteractionData(tiny_prepared), InteractionData(second)
    both = InteractionData([tiny_prepared, second])
    assert len(both) == len(a) + len(b) and both.folder.tolist() == [0] * len(a) + [1] * len(b)
    idx = torch.tensor([0, len(a) + 1])
    want = torch.cat([a.object_grids(torch.tensor([0])), b.object_grids(torch.tensor([1]))])
    assert torch.allclose(both.object_grids(idx), want)
    assert torch.equal(both.sampling_table(None), torch.arange(len(both)))
    table = both.sampling_table([3, 1])
    folder = both.folder[table]
    assert len(table) == len(both) and (folder == 0).sum() == 6 and (folder == 1).sum() == 2
    counts = torch.bincount(table[folder == 0], minlength=len(a))[: len(a)]
    assert counts.max() - counts.min() <= 1  # every record of a folder about equally often
    assert set(both.sampling_table([0, 1]).tolist()) == set(range(len(a), len(both)))


def test_train_ghop_on_two_folders(tiny_prepared, second, tmp_path):
    vq = tmp_path / "vq"
    r = runner.invoke(app, ["train", "vqvae", "--data", str(tiny_prepared), "--data", str(second), "--out", str(vq), "--steps", "2",
                            "--batch-size", "2", "--channels", "4", "--codebook-size", "16", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    run = tmp_path / "ghop"
    r = runner.invoke(app, ["train", "ghop", "--data", str(tiny_prepared), "--data", str(second), "--data-weights", "1,3", "--vqvae", str(vq),
                            "--out", str(run), "--steps", "2", "--batch-size", "2", "--channels", "8", "--copies", "1", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    text = yaml.safe_dump(cfg)
    assert str(second) in text and "data_weights" in text
    for bad, why in ((["--data-weights", "1"], "one per folder"), (["--data-weights", "1,x"], "numbers"), (["--data-weights", "0,0"], "not all zero")):
        r = runner.invoke(app, ["train", "ghop", "--data", str(tiny_prepared), "--data", str(second), *bad, "--vqvae", str(vq),
                                "--out", str(tmp_path / "bad"), "--steps", "1"])
        assert r.exit_code == 2 and why in r.output, r.output
        assert not (tmp_path / "bad").exists()
