"""Shared CLI plumbing: user errors -> one line and exit code 2, progress bars, summaries."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.panel import Panel
from rich.text import Text
from rich.progress import (
    BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn,
    TimeRemainingColumn,
)

from hoitool.errors import HoiError
from hoitool.utils import signals

console = Console()
err_console = Console(stderr=True)


def plain(value) -> str:
    """`value` as text that Rich prints as it is: brackets such as `hoitool[build]` or `[3, 64]` survive."""
    return escape(str(value))


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err_console, show_time=False, show_path=False)], force=True)


def error_line(markup: str) -> None:
    """Print one line to stderr in a single write, so the lines of several processes never interleave mid-line."""
    with err_console.capture() as cap:
        err_console.print(markup, soft_wrap=True)
    stream = err_console.file
    stream.write(cap.get())
    stream.flush()


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn HoiError into one red line and exit code 2; Ctrl-C into a resume hint."""
    try:
        yield
    except HoiError as e:
        error_line(f"[bold red]error:[/] {plain(e)}")
        raise typer.Exit(2) from None
    except KeyboardInterrupt as e:
        name = plain(e.args[0]) if isinstance(e, signals.Interrupted) else "Ctrl-C"
        error_line(f"[yellow]interrupted[/] ({name}): finished work is kept; run the same command again to resume")
        raise typer.Exit(signals.exit_code(e)) from None


@contextlib.contextmanager
def progress_bar(description: str) -> Iterator:
    """Yield a callback(done, total) driving a Rich progress bar with rate and time left."""
    with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TaskProgressColumn(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                  console=err_console, transient=False) as prog:
        task = prog.add_task(plain(description), total=None)

        def update(done: int, total: int) -> None:
            prog.update(task, completed=done, total=total)

        yield update


def summary(title: str, written: list[Path], lines: list[str] | None = None) -> None:
    """End of a command: a panel listing what was written; `lines` and paths are printed as plain text."""
    body = [plain(line) for line in lines or []]
    if written:
        body.append("[bold]wrote[/]")
        cwd = Path.cwd()
        for p in written:
            try:
                rel = os.path.relpath(p, cwd)
            except ValueError:
                rel = str(p)
            body.append(f"  {plain(rel)}{'/' if Path(p).is_dir() else ''}")
    # fold, never crop: a long path wraps onto the next line instead of ending in "..."
    console.print(Panel(Text.from_markup("\n".join(body), overflow="fold"), title=plain(title), expand=False))
