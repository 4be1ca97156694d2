"""`hoitool sample`: interactions of a category from the G-HOP prior."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hoitool.cli.common import progress_bar, setup_logging, summary, user_errors


def sample(
    category: str = typer.Argument(..., help="Object category or free-text name (e.g. mug, 'coffee mug', kettle)."),
    n: int = typer.Option(16, "--n", "-n", min=1, help="Number of interactions."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    model: Optional[Path] = typer.Option(None, "--model", help="Prior run folder or model.pt (default: the shipped prior)."),
    steps: int = typer.Option(100, "--steps", min=1, max=1000, help="DDIM steps."),
    guidance: float = typer.Option(4.0, "--guidance", min=0.0, help="Classifier-free guidance scale (1 = none)."),
    seed: int = typer.Option(0, "--seed", help="Sample i depends only on (seed, i)."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Samples denoised together."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda, cuda:N."),
    no_sheet: bool = typer.Option(False, "--no-sheet", help="Do not render contact_sheet.png."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Sample hand-object interactions: per-sample hand and object meshes (hand frame, metres) and a .glb scene,
    samples.npz with all parameters, and a contact sheet."""
    from hoitool.data.grasps import staged_folder
    from hoitool.data.vocab import category_or_text
    from hoitool.errors import InputError
    from hoitool.prior.checkpoint import load_prior
    from hoitool.prior.sample import sample_interactions, write_samples
    from hoitool.train.loop import resolve_device

    setup_logging(verbose)
    with user_errors():
        name = category_or_text(category)
        if not name:
            raise InputError("the category is empty: name an object, e.g. hoitool sample mug --n 8 --out samples/")
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise InputError(f"{out} already exists and is not empty: choose another --out or delete it")
        dev = resolve_device(device)
        prior = load_prior(model, dev)
        known = name in prior.categories
        with progress_bar(f"sampling {n} x {name!r} ({steps} DDIM steps)") as update:
            res = sample_interactions(prior, name, n, steps=steps, guidance=guidance, seed=seed, batch_size=batch_size,
                                      progress=update)
        with staged_folder(out) as tmp:  # a hidden sibling, named OUT only once complete
            staged = write_samples(res, tmp, sheet=not no_sheet, meta={"model": prior.source, "steps": steps, "guidance": guidance})
        written = [out / p.relative_to(tmp) for p in staged]
        has = [o is not None for o in res.objects]
        lines = [f"model: {prior.source} (step {prior.step})",
                 f"category: {name}" + ("" if known else f" (not a training category: nearest by text; known: {', '.join(prior.categories)})")]
        k = sum(has)
        lines.append(f"{k} of {n} samples have an object surface")
        if k:
            import numpy as np

            pen = res.penetration_mm[np.array(has)]
            lines.append(f"hand-object contact: {int(res.contact.sum())} of {k}; penetration median {np.median(pen):.1f} mm")
        summary("sample", written, lines)
