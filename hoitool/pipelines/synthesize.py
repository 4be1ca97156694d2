"""`hoitool synthesize`: an image for every rendered frame, with its 3D labels beside it.

    res = synthesize(SynthesizeConfig(renders="RENDERS", out="IMAGES", model="runs/hoidiff"))

    IMAGES/trajectories/ID/STEM_image.png    DDIM (50 steps), classifier-free guidance 7.5
    IMAGES/trajectories/ID/STEM_labels.json  the rendered frame's labels, byte for byte
    IMAGES/images.jsonl                      one line per trajectory: id, dir, category, stems, prompt, negative
    IMAGES/contact_sheet.png                 up to 8 trajectories x 8 frames
    IMAGES/config.yaml                       the resolved options, model file and base folder

Images are written at the rendered frames' own size (the model's output resized), so the labels'
pixel coordinates and intrinsics hold for them unchanged. Everything is written in a hidden
sibling folder that becomes IMAGES only when complete.

Guidance: eps = eps(negative prompt) + w (eps(prompt) - eps(negative prompt)), the condition
features added in both branches; w = 1 runs the prompt branch alone. The prompt of a
trajectory is "A hand is grasping a {category}", the user's --prompt appended after a comma,
or, when --prompt holds "{category}", --prompt itself with the category put in.

Seeds: the starting noise of frame STEM of trajectory ID comes from its own generator keyed by
(seed, ID, STEM), and DDIM runs with eta = 0, so an image depends on its frame alone, not on
which other frames or trajectories are processed with it (with --video it also depends on the
anchor frame of its trajectory, by design).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from hoitool.errors import InputError
from hoitool.hoidiff.data import open_renders, parse_conditions, prompt_for, trajectory_conditions
from hoitool.hoidiff.sample import HoiDiffusion, load_hoidiff


@dataclass
class SynthesizeConfig:
    """Options of `hoitool synthesize`."""

    renders: str
    """Render folder (`hoitool render`)."""
    out: str
    """Output folder (must not exist, or be empty)."""
    model: str | None = None
    """Run folder or model.pt of `hoitool train hoidiff`; None: the shipped default."""
    base: str | None = None
    """The model's Stable Diffusion folder, when it moved since training."""
    prompt: str | None = None
    """Free text appended to "A hand is grasping a {category}", or a whole prompt holding {category}."""
    negative: str = ""
    """The unconditional branch's prompt."""
    steps: int = 50
    """DDIM steps."""
    guidance: float = 7.5
    """Classifier-free guidance weight (1: none)."""
    seed: int = 0
    """Frame STEM of trajectory ID starts from the noise of (seed, ID, STEM)."""
    video: bool = False
    """Denoise each trajectory's frames together, attending to its middle frame."""
    conditions: list[str] | None = None
    """Condition maps to use (None: all the model has); the others count as empty."""
    device: str = "auto"
    """'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'."""
    limit: int = 0
    """Only the first this many trajectories (0: all)."""
    sheet: bool = True
    """Write contact_sheet.png."""


@dataclass
class SynthesizeResult:
    out: Path
    images: int
    trajectories: int
    seconds: float
    sampling_seconds: float
    model: str
    base: str | None
    written: list[Path] = field(default_factory=list)


def _to_uint8(x: torch.Tensor, size: int) -> np.ndarray:
    """(3, R, R) in [-1, 1] -> (size, size, 3) uint8 (resized with a bicubic / Lanczos filter)."""
    from PIL import Image

    a = ((x.float().cpu().permute(1, 2, 0).numpy() + 1.0) * 127.5).round().clip(0, 255).astype(np.uint8)
    if a.shape[0] != size:
        a = np.asarray(Image.fromarray(a).resize((size, size), Image.BICUBIC if size > a.shape[0] else Image.LANCZOS))
    return a


def contact_sheet(rows: list[list[np.ndarray]], path: Path, thumb: int = 128) -> Path:
    """A grid of uint8 images, one row per trajectory."""
    from PIL import Image

    cols = max(len(r) for r in rows)
    sheet = Image.new("RGB", (cols * thumb, len(rows) * thumb), (0, 0, 0))
    for i, row in enumerate(rows):
        for j, a in enumerate(row):
            sheet.paste(Image.fromarray(a).resize((thumb, thumb), Image.LANCZOS), (j * thumb, i * thumb))
    from hoitool.utils.io import atomic_path

    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path


def synthesize(cfg: SynthesizeConfig, progress: Callable[[int, int], None] | None = None,
               model: HoiDiffusion | None = None) -> SynthesizeResult:
    """See the module docstring. `progress(done, total)` counts images."""
    import json

    from PIL import Image

    from hoitool.data.grasps import staged_folder
    from hoitool.train.loop import resolve_device
    from hoitool.utils.config import save_config
    from hoitool.utils.io import atomic_path, write_text

    t0 = time.time()
    out = Path(cfg.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} already exists and is not empty: choose another --out or delete it")
    if cfg.steps < 1:
        raise InputError(f"--steps must be at least 1, got {cfg.steps}")
    names = parse_conditions(cfg.conditions) if cfg.conditions is not None else None
    trajs = open_renders(cfg.renders, names or ["skeleton", "normals", "segmentation"])
    if cfg.limit > 0:
        trajs = trajs[:cfg.limit]
    hd = model or load_hoidiff(cfg.model, cfg.base, resolve_device(cfg.device))
    if names is None:
        names = list(hd.cfg.conditions)
    missing = [n for n in names if n not in hd.cfg.conditions]
    if missing:
        raise InputError(f"--conditions {','.join(missing)}: {hd.source} has no encoder for it (it has {', '.join(hd.cfg.conditions)})")
    R = hd.cfg.resolution
    total = sum(len(tr.stems) for tr in trajs)
    done, sampling = 0, 0.0
    records, sheet_rows = [], []
    root = Path(cfg.renders)
    with staged_folder(out) as tmp:
        for tr in trajs:
            cond = trajectory_conditions(tr, names, R)
            prompt = prompt_for(tr.category, cfg.prompt)
            F = len(tr.stems)
            noise = hd.initial_noise(cfg.seed, [(tr.id, s) for s in tr.stems])
            ts = time.time()
            # within a trajectory the bar moves by DDIM step (in fractions of its F images)
            tick = (lambda i, n, d=done, f=F: progress(d + f * i / n, total)) if progress is not None else None
            imgs = hd.sample(cond, [prompt] * F, [cfg.negative] * F, noise, cfg.steps, cfg.guidance, cfg.video, tick)
            sampling += time.time() - ts
            try:
                rel = tr.dir.relative_to(root)
            except ValueError:
                rel = Path("trajectories") / tr.id
            d = tmp / rel
            d.mkdir(parents=True, exist_ok=True)
            row = []
            for s, x in zip(tr.stems, imgs):
                with Image.open(tr.dir / f"{s}_{names[0]}.png") as im:
                    size = im.size[0]
                a = _to_uint8(x, size)
                with atomic_path(d / f"{s}_image.png") as p:
                    Image.fromarray(a).save(p, format="PNG")
                with atomic_path(d / f"{s}_labels.json") as p:
                    shutil.copyfile(tr.dir / f"{s}_labels.json", p)
                row.append(a)
            done += F
            if progress is not None:
                progress(done, total)
            records.append({"id": tr.id, "dir": rel.as_posix(), "category": tr.category, "stems": tr.stems, "prompt": prompt,
                            "negative": cfg.negative, "source": str(tr.dir.resolve())})
            if len(sheet_rows) < 8:
                sheet_rows.append(row[:8])
        write_text(tmp / "images.jsonl", "".join(json.dumps(r) + "\n" for r in records))
        if cfg.sheet and sheet_rows:
            contact_sheet(sheet_rows, tmp / "contact_sheet.png")
        save_config({**asdict(cfg), "conditions": names, "model_file": hd.source, "model_step": hd.step, "base_folder": hd.cfg.base,
                     "model_resolution": R, "images": done}, tmp / "config.yaml")
        top = sorted(p.name for p in tmp.iterdir())
    written = [out / n for n in top]
    return SynthesizeResult(out, done, len(trajs), time.time() - t0, sampling, hd.source, hd.cfg.base, written)

