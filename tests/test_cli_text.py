"""User text that goes through Rich (errors, hints, paths, YAML) reaches the terminal unchanged."""

import os
from pathlib import Path

import pytest
import typer
from rich.console import Console
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


def _panel_text(out: str) -> str:
    """The panel's content with its borders and line breaks removed (long lines fold)."""
    return "".join(line.strip().strip("│╭╮╰╯─").strip() for line in out.splitlines())


@pytest.mark.parametrize("width", [40, 80, 200])
def test_summary_keeps_brackets_in_lines_and_paths(capsys, tmp_path, monkeypatch, width):
    # CI's terminal is 80 columns: a path longer than that was cropped to "..." and lost "run[1]"
    monkeypatch.setattr(common, "console", Console(width=width, force_terminal=False))
    p = tmp_path / "run[1]" / "samples.npz"
    p.parent.mkdir()
    p.write_bytes(b"")
    common.summary("t [x]", [p], ["category: [mug]"])
    out = capsys.readouterr().out
    text = _panel_text(out)
    assert "category:[mug]" in text.replace(" ", "")
    assert "t [x]" in out
    assert os.path.relpath(p, Path.cwd()).replace(" ", "") in text.replace(" ", "")
    assert "..." not in out and "…" not in out


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


def test_every_help_text_keeps_its_brackets():
    """Typer renders help as Rich markup: `hoitool[ray]`, `[u, v, c]` or `[default: 8]` written
    plainly vanish. Every bracketed part of every command's help must reach the terminal."""
    import re

    def walk(c, path):
        if hasattr(c, "commands"):
            for name, sub in c.commands.items():
                yield from walk(sub, path + [name])
        else:
            yield path, c

    flat = lambda t: re.sub(r"[\s│╭╮╰╯─]", "", t)  # noqa: E731 - wrapping and panel borders
    checked = 0
    for path, cmd in walk(typer.main.get_command(app), []):
        texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
        parts = [m for t in texts for m in re.findall(r"\[[^\[\]]*\]", t.replace("\\[", "["))]
        if not parts:
            continue
        r = runner.invoke(app, [*path, "--help"])
        assert r.exit_code == 0, r.output
        for part in parts:
            assert flat(part) in flat(r.output), (path, part)
            checked += 1
    assert checked >= 3  # hoitool[ray], the two-hand keypoint format, train ghop's grid layout
