"""`hoitool render`: approach trajectories to grasps, rendered with exact 3D labels (HOIDiffusion's stage 1)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from hoitool.cli.common import progress_bar, setup_logging, summary, user_errors


def render(
    source: Optional[Path] = typer.Argument(None, help="A grasp folder (hoitool grasp), a samples folder (hoitool sample) or a prepared folder (hoitool prepare-data)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (re-running the same command resumes)."),
    synthetic: int = typer.Option(0, "--synthetic", min=0, help="Instead of SOURCE: this many grasps planned on the synthetic corpus (kept in OUT/corpus)."),
    frames: int = typer.Option(8, "--frames", min=2, max=100, help="Frames per trajectory, open hand 0.3 m back -> grasp."),
    size: int = typer.Option(256, "--size", min=32, max=2048, help="Image side, pixels."),
    seed: int = typer.Option(0, "--seed", help="Cameras and looks: trajectory i depends only on (seed, i)."),
    plain_look: bool = typer.Option(False, "--plain", help="White background and fixed colours instead of random looks."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Render only the first this many grasps of SOURCE."),
    workers: int = typer.Option(max(1, min(os.cpu_count() or 1, 8)), "--workers", "-j", min=1, help="Parallel worker processes."),
    ray: Optional[str] = typer.Option(None, "--ray", help="Run trajectories as tasks on a Ray cluster: its address (host:port, ray://..., auto) or 'local' (needs hoitool\\[ray])."),
    mano_dir: Optional[Path] = typer.Option(None, "--mano-dir", help="Folder with MANO_RIGHT.pkl / MANO_LEFT.pkl (default: the open hand)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved options and exit (nothing is planned or written)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log more."),
) -> None:
    """Render approach trajectories to grasps: per frame colour, depth, masks, segmentation, normals, the 2D skeleton
    and labels.json (3D/2D keypoints, hand parameters, object pose, intrinsics); a GIF per trajectory and a contact sheet."""
    from hoitool.errors import InputError
    from hoitool.pipelines.render import RenderOptions, check_or_write_config, collect_jobs, render_dataset, settings, synthetic_corpus

    setup_logging(verbose)
    with user_errors():
        if (source is None) == (synthetic == 0):
            raise InputError("give either SOURCE (a grasp, samples or prepared folder) or --synthetic N, not both" if source is not None
                             else "nothing to render: give SOURCE (a grasp, samples or prepared folder) or --synthetic N")
        opts = RenderOptions(frames=frames, size=size, seed=seed, vary=not plain_look, workers=workers,
                             mano_dir=str(mano_dir) if mano_dir else None, limit=limit)
        if dry_run:
            from hoitool.cli.common import console, plain
            from hoitool.utils.config import dump_yaml

            console.print(plain(dump_yaml({"source": str(source) if source else f"synthetic:{synthetic}", "out": str(out),
                                           "ray": ray, "options": opts})))
            return
        if ray is not None:
            from hoitool.errors import require

            require("ray", "ray", "render --ray")
        corpus = None
        name = f"synthetic:{synthetic}" if synthetic else str(source.resolve())
        if synthetic:
            check_or_write_config(out, settings(name, opts))  # a wrong --out is refused before planning
            with progress_bar(f"planning {synthetic} synthetic grasps") as update:
                corpus = synthetic_corpus(out, synthetic, seed, workers, opts.mano_dir, progress=update)
        jobs, kind = collect_jobs(source, opts, corpus)
        check_or_write_config(out, settings(name, opts))  # a wrong --out is refused before the progress bar
        where = f" on Ray ({ray})" if ray else ""
        with progress_bar(f"rendering {len(jobs)} trajectories x {frames} frames{where}") as update:
            res = render_dataset(jobs, out, opts, name, ray_address=ray, progress=update)
        lines = [f"{res.trajectories} trajectories ({res.rendered} rendered now, {res.skipped} already done), {res.frames} frames "
                 f"at {size}x{size}, from a {kind} source, in {res.seconds:.1f} s"]
        if res.rendered:
            lines.append(f"{res.rendered * frames / res.seconds:.1f} frames/s, all maps and labels")
        lines.append("read a frame back: hoitool.render.hoi_frame.read_frame(OUT/trajectories/ID, '007')")
        summary("render", res.written + ([corpus] if corpus else []), lines)
