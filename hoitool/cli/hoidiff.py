"""`hoitool train hoidiff` and `hoitool synthesize`: HOIDiffusion's image model on rendered HOI frames."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hoitool.cli.common import console, plain, progress_bar, setup_logging, summary, user_errors

CONDITIONS_HELP = "Comma-separated condition maps: skeleton, normals, segmentation."


def train_hoidiff(
    data: Path = typer.Option(..., "--data", help="Render folder (hoitool render): frames, condition maps, backgrounds."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder."),
    base: Optional[Path] = typer.Option(None, "--base", help="Local Stable Diffusion 1.x folder (diffusers layout) to fine-tune: "
                                        "only the condition encoders and the UNet decoder half learn. Default: a small "
                                        "pixel-space model (64 px) trained from scratch."),
    steps: int = typer.Option(3000, "--steps", min=1, help="Optimiser steps in all."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Global batch (split over torchrun processes)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate (cosine decay to lr/10); default 2e-4, "
                                       "or 1e-5 with --base (the paper's)."),
    resolution: Optional[int] = typer.Option(None, "--resolution", min=8, help="Image side in pixels; default 64, or the base's own (512 for SD 1.x)."),
    conditions: str = typer.Option("skeleton,normals,segmentation", "--conditions", help=CONDITIONS_HELP),
    prompt_dropout: float = typer.Option(0.1, "--prompt-dropout", min=0.0, max=1.0, help="Share of samples trained with the empty prompt."),
    background_prob: float = typer.Option(0.1, "--background-prob", min=0.0, max=1.0,
                                          help="Probability that a step trains on background images with empty conditions."),
    channels: str = typer.Option("32,48,64,96", "--channels", help="Default model: UNet widths per level (multiples of 8)."),
    text_tokens: int = typer.Option(4, "--text-tokens", min=1, help="Default model: cross-attention tokens made from the sentence embedding."),
    no_checkpointing: bool = typer.Option(False, "--no-gradient-checkpointing", help="With --base: keep activations (faster, more memory)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda, cuda:N."),
    resume: str = typer.Option("auto", "--resume", help="'auto' continues RUN's last checkpoint if there is one; 'never' refuses "
                               "a RUN that has one; or a checkpoint to start from."),
    seed: int = typer.Option(0, "--seed"),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every", min=1, help="Steps between checkpoints."),
    log_every: int = typer.Option(10, "--log-every", min=1, help="Steps between metrics.jsonl / tensorboard entries."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved options and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train HOIDiffusion's image model: condition encoders for skeleton, normals and segmentation (T2I-Adapter style)
    steering a text-conditioned diffusion UNet, with prompt dropout and background regularisation."""
    from hoitool.cli.train import _report, _train_config, _train_progress
    from hoitool.errors import InputError
    from hoitool.hoidiff.data import parse_conditions
    from hoitool.hoidiff.train import HoiDiffOptions, HoiDiffTask
    from hoitool.train.loop import train
    from hoitool.utils.config import dump_yaml

    setup_logging(verbose)
    with user_errors():
        try:
            widths = [int(c) for c in channels.split(",") if c.strip()]
        except ValueError:
            raise InputError(f"--channels must be comma-separated integers, got {channels!r}") from None
        if not widths or any(c < 8 or c % 8 for c in widths):
            raise InputError(f"--channels must be positive multiples of 8, got {channels!r}")
        opts = HoiDiffOptions(base=str(base) if base else None, resolution=resolution, conditions=parse_conditions(conditions),
                              prompt_dropout=prompt_dropout, background_prob=background_prob, channels=widths,
                              text_tokens=text_tokens, gradient_checkpointing=not no_checkpointing)
        cfg = _train_config(out, steps, batch_size, lr if lr is not None else (1e-5 if base else 2e-4), device, resume, seed,
                            checkpoint_every, log_every, weight_decay=0.01)
        if dry_run:
            console.print(plain(dump_yaml({"train": cfg, "options": opts, "data": str(data)})))
            return
        if Path(out).exists() and not Path(out).is_dir():
            raise InputError(f"--out {out} is a file: pass a folder for the run")
        task = HoiDiffTask(data, opts)  # checks the render folder and the base before anything is written
        with _train_progress("hoidiff") as update:
            res = train(task, cfg, update)
        _report("hoidiff", res, cfg)


def synthesize(
    renders: Path = typer.Argument(..., help="Render folder (hoitool render)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (must not exist, or be empty)."),
    model: Optional[Path] = typer.Option(None, "--model", help="Run folder or model.pt of hoitool train hoidiff (default: the shipped model)."),
    base: Optional[Path] = typer.Option(None, "--base", help="The model's Stable Diffusion folder, when it moved since training."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Free text appended to 'A hand is grasping a {category}' after a comma; "
                                         "text holding {category} is the whole prompt, with the category put in."),
    negative: str = typer.Option("", "--negative", help="Negative prompt: the unconditional branch of guidance."),
    steps: int = typer.Option(50, "--steps", min=1, max=1000, help="DDIM steps."),
    guidance: float = typer.Option(7.5, "--guidance", min=0.0, help="Classifier-free guidance weight (1: none)."),
    seed: int = typer.Option(0, "--seed", help="Frame STEM of trajectory ID starts from the noise of (seed, ID, STEM)."),
    video: bool = typer.Option(False, "--video", help="Denoise each trajectory's frames together, all attending to its middle frame."),
    conditions: Optional[str] = typer.Option(None, "--conditions", help=CONDITIONS_HELP + " Default: all the model has; the others count as empty."),
    limit: int = typer.Option(0, "--limit", min=0, help="Only the first this many trajectories (0: all)."),
    no_sheet: bool = typer.Option(False, "--no-sheet", help="Do not write contact_sheet.png."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda, cuda:N."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved options and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Draw a realistic image for every rendered frame (HOIDiffusion): DDIM with classifier-free guidance, steered by the
    frame's skeleton, normals and segmentation; each image gets its frame's 3D labels beside it."""
    from hoitool.errors import InputError
    from hoitool.hoidiff.data import open_renders, parse_conditions
    from hoitool.hoidiff.sample import load_hoidiff
    from hoitool.pipelines.synthesize import SynthesizeConfig, synthesize as run_synthesis
    from hoitool.train.loop import resolve_device
    from hoitool.utils.config import dump_yaml

    setup_logging(verbose)
    with user_errors():
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise InputError(f"{out} already exists and is not empty: choose another --out or delete it")
        names = parse_conditions(conditions) if conditions is not None else None
        cfg = SynthesizeConfig(renders=str(renders), out=str(out), model=str(model) if model else None, base=str(base) if base else None,
                               prompt=prompt, negative=negative, steps=steps, guidance=guidance, seed=seed, video=video,
                               conditions=names, device=device, limit=limit, sheet=not no_sheet)
        if dry_run:
            console.print(plain(dump_yaml(cfg)))
            return
        # everything that can be wrong fails here, in one line, before any work
        trajs = open_renders(renders, names or ["skeleton", "normals", "segmentation"])
        hd = load_hoidiff(model, base, resolve_device(device))
        n = sum(len(t.stems) for t in (trajs[:limit] if limit else trajs))
        with progress_bar(f"synthesizing {n} images ({steps} DDIM steps{', video' if video else ''})") as update:
            res = run_synthesis(cfg, progress=update, model=hd)
        lines = [f"model: {res.model}" + (f" on {res.base}" if res.base else ""),
                 f"{res.images} images of {res.trajectories} trajectories in {res.sampling_seconds:.1f} s of sampling "
                 f"({res.sampling_seconds / max(res.images, 1):.2f} s per image; {res.seconds:.1f} s in all)"]
        summary("synthesize", res.written, lines)
