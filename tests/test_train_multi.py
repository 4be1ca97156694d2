"""Training G-HOP on several prepared folders at once (real and synthetic), with weights."""

import pytest
import torch
import yaml
from typer.testing import CliRunner

from hoitool.cli.main import app
from hoitool.prior.data import InteractionData
from hoitool.utils.seeding import torch_generator

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
    pos = torch.arange(len(both))
    assert torch.equal(both.draw(pos, None, []), pos)  # no weights: the positions are the records
    gens = [torch_generator(0, i, "record") for i in range(4000)]
    got = both.draw(torch.zeros(4000, dtype=torch.long), both.folder_shares([3, 1]), gens)
    share = (both.folder[got] == 0).double().mean().item()
    assert abs(share - 0.75) < 0.03
    assert set(got.tolist()) == set(range(len(both)))  # every record reachable
    # a tiny share is still drawn; a zero share never
    tiny = both.draw(torch.zeros(4000, dtype=torch.long), both.folder_shares([1, 400]), gens)
    assert 0 < (both.folder[tiny] == 0).sum() < 60
    none = both.draw(torch.zeros(4000, dtype=torch.long), both.folder_shares([0, 1]), gens)
    assert (both.folder[none] == 1).all()
    # the same generators give the same records (resumable, batch-split independent)
    again = both.draw(torch.zeros(4000, dtype=torch.long), both.folder_shares([3, 1]), [torch_generator(0, i, "record") for i in range(4000)])
    assert torch.equal(got, again)


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
