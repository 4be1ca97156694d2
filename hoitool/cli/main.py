"""The `hoitool` command."""

from __future__ import annotations

import typer

from hoitool.cli.doctor import doctor
from hoitool.cli.evaluate_recon import evaluate_reconstruction_cmd
from hoitool.cli.grasp import evaluate_app, grasp, rank
from hoitool.cli.hoidiff import synthesize
from hoitool.cli.prepare_data import prepare_data
from hoitool.cli.reconstruct import reconstruct
from hoitool.cli.render import render
from hoitool.cli.sample import sample
from hoitool.cli.twohands import evaluate_twohands_cmd, twohands
from hoitool.cli.train import app as train_app
from hoitool.cli.view import view

app = typer.Typer(
    name="hoitool",
    help="hoitool: 3D hand-object interaction - data, priors, grasps, reconstruction, rendering.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("doctor")(doctor)
app.command("prepare-data")(prepare_data)
app.add_typer(train_app, name="train")
app.command("sample")(sample)
app.command("grasp")(grasp)
app.command("rank")(rank)
app.add_typer(evaluate_app, name="evaluate")
app.command("reconstruct")(reconstruct)
app.command("twohands")(twohands)
evaluate_app.command("twohands")(evaluate_twohands_cmd)
evaluate_app.command("reconstruction")(evaluate_reconstruction_cmd)
app.command("render")(render)
app.command("view")(view)
app.command("synthesize")(synthesize)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True)) -> None:
    from hoitool.utils import signals

    signals.install()  # SIGTERM / SIGHUP end a command as Ctrl-C does: work saved, workers stopped
    if version:
        import hoitool

        typer.echo(hoitool.__version__)
        raise typer.Exit()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
