"""User text that goes through Rich (errors, hints, paths, YAML) reaches the terminal unchanged."""

import pytest
import typer
from typer.testing import CliRunner

from hoitool.cli import common, doctor
from hoitool.cli.main import app
from hoitool.errors import InputError

runner = CliRunner()


def test_error_line_keeps_brackets(capsys):
    msg = "mesh [extra] at /data/[v2]/mug.obj has shape [3, 64]"
    with pytest.raises(typer.Exit) as e:
        with common.user_errors():
            raise InputError(msg)
    assert e.value.exit_code == 2
    assert msg in capsys.readouterr().err.replace("\n", "")


def test_summary_keeps_brackets_in_lines_and_paths(capsys, tmp_path):
    p = tmp_path / "run[1]" / "samples.npz"
    p.parent.mkdir()
    p.write_bytes(b"")
    common.summary("t", [p], ["category: [mug]"])
    out = capsys.readouterr().out
    assert "category: [mug]" in out and "run[1]" in out


def test_doctor_install_hint_keeps_the_extra(monkeypatch):
    # a module that is never installed, so the hint is always printed
    monkeypatch.setattr(doctor, "OPTIONAL", [("hoitool_no_such_module", "no-such-dist", "build", "nothing")])
    r = runner.invoke(app, ["doctor", "--no-render"], terminal_width=200)
    assert r.exit_code == 0, r.output
    assert "pip install 'hoitool[build]'" in r.output


def test_dry_run_yaml_keeps_brackets_in_paths(tmp_path):
    data = tmp_path / "corpus[v2]"
    r = runner.invoke(app, ["train", "vqvae", "--data", str(data), "--out", str(tmp_path / "run"), "--dry-run"],
                      terminal_width=400)
    assert r.exit_code == 0, r.output
    assert f"data: {data}" in r.output
