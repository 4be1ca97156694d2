"""Render folders (`hoitool render`) as HOIDiffusion training frames and condition images.

    frames = RenderFrames("RENDERS", resolution=64, conditions=["skeleton", "normals", "segmentation"])
    b = frames.batch([0, 5, 9])            # FrameBatch: images (3, 3, 64, 64) in [-1, 1], conditions in [0, 1]
    b = frames.batch([0, 5, 9], background=True)   # the trajectories' background.png, conditions all zero

The condition images are the render's PNGs as they are (STEM_skeleton.png, STEM_normals.png =
(n + 1) 127.5 with 0 on the background, STEM_segmentation.png), scaled to [0, 1]. Every image is
resized to the model's square resolution (bilinear, antialiased when shrinking).

Prompts: "A hand is grasping a {category}"; free text (a trajectory's `caption` in index.jsonl,
or the user's --prompt) is appended after a comma, unless it holds "{category}", in which case
it is the whole prompt with the category put in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hoitool.errors import InputError
from hoitool.hoidiff.model import CONDITIONS
from hoitool.render.dataset import RenderedTrajectory, read_index

PROMPT = "A hand is grasping a {category}"
BACKGROUND_PROMPT = "an empty background, no hand and no object"
"""Prompt of a background image (a trajectory's own `background_prompt` in index.jsonl wins)."""


def prompt_for(category: str, text: str | None = None) -> str:
    """The prompt of a frame: the default sentence, free text appended after a comma, or a text
    holding "{category}" used as the whole prompt."""
    if text and "{category}" in text:
        return text.replace("{category}", category)
    base = PROMPT.replace("{category}", category)
    return f"{base}, {text}" if text else base


def parse_conditions(text: str | list[str]) -> list[str]:
    """'skeleton,normals' -> ['skeleton', 'normals'] (CONDITIONS order), or an InputError."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    bad = [n for n in names if n not in CONDITIONS]
    if bad:
        raise InputError(f"unknown condition {bad[0]!r}: choose from {', '.join(CONDITIONS)} (comma-separated)")
    if not names:
        raise InputError(f"no condition given: choose from {', '.join(CONDITIONS)} (comma-separated)")
    return [n for n in CONDITIONS if n in names]


def open_renders(root: str | Path, maps: list[str], background: bool = False) -> list[RenderedTrajectory]:
    """The trajectories of a render folder, after checking that every frame has STEM_{map}.png for
    `maps` and STEM_labels.json (and background.png if asked): an InputError names the first
    file missing."""
    trajs = read_index(root)
    for tr in trajs:
        if not tr.stems:
            raise InputError(f"trajectory {tr.id} in {root} lists no frames: render the folder again")
        need = [tr.dir / f"{s}_{m}.png" for s in tr.stems for m in maps] + [tr.dir / f"{s}_labels.json" for s in tr.stems]
        if background:
            need.append(tr.background)
        for p in need:
            if not p.is_file():
                raise InputError(f"{p} is missing: {root} is not a complete render folder (render it again)")
    first = trajs[0].dir / f"{trajs[0].stems[0]}_{maps[0]}.png"
    w, h = _size(first)
    if w != h:
        raise InputError(f"{first} is {w}x{h}: HOIDiffusion needs square frames (render with a square --size)")
    return trajs


def _size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except OSError as e:
        raise InputError(f"{path} is not a readable image ({e})") from None


def read_image(path: Path, resolution: int) -> np.ndarray:
    """(resolution, resolution, 3) uint8 RGB."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (resolution, resolution):
                im = im.resize((resolution, resolution), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except OSError as e:
        raise InputError(f"{path} is not a readable image ({e})") from None


def to_image_tensor(a: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(a)).movedim(-1, -3).float() / 127.5 - 1.0


def to_condition_tensor(a: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(a)).movedim(-1, -3).float() / 255.0


def trajectory_conditions(tr: RenderedTrajectory, names: list[str], resolution: int) -> dict[str, torch.Tensor]:
    """Condition images of every frame of a trajectory: name -> (F, 3, R, R) in [0, 1]."""
    return {n: to_condition_tensor(np.stack([read_image(tr.dir / f"{s}_{n}.png", resolution) for s in tr.stems])) for n in names}


@dataclass
class FrameBatch:
    images: torch.Tensor
    """(B, 3, R, R) in [-1, 1]."""
    conditions: dict[str, torch.Tensor]
    """name -> (B, 3, R, R) in [0, 1] (zeros for background images)."""
    prompts: list[str]


class RenderFrames:
    """Every frame of a render folder, read at one resolution; images kept in memory (uint8) as
    they are first read, up to `cache_mb`."""

    def __init__(self, root: str | Path, resolution: int, conditions: list[str], background_prompt: str = BACKGROUND_PROMPT,
                 cache_mb: int = 2048):
        self.root = Path(root)
        self.resolution = int(resolution)
        self.conditions = list(conditions)
        self.background_prompt = background_prompt
        self.trajectories = open_renders(root, ["rgb", *self.conditions], background=True)
        self.frames = [(i, s) for i, tr in enumerate(self.trajectories) for s in tr.stems]
        self._cache: dict[Path, np.ndarray] = {}
        self._budget = cache_mb * 2**20

    def __len__(self) -> int:
        return len(self.frames)

    def _read(self, path: Path) -> np.ndarray:
        a = self._cache.get(path)
        if a is None:
            a = read_image(path, self.resolution)
            if self._budget >= a.nbytes:
                self._cache[path] = a
                self._budget -= a.nbytes
        return a

    def prompt(self, k: int) -> str:
        tr = self.trajectories[self.frames[k][0]]
        return prompt_for(tr.category, tr.meta.get("caption"))

    def prompts(self) -> list[str]:
        """Every distinct prompt the data trains with ('' included, the unconditional)."""
        out = {"": None}
        out.update((prompt_for(tr.category, tr.meta.get("caption")), None) for tr in self.trajectories)
        out.update((tr.meta.get("background_prompt") or self.background_prompt, None) for tr in self.trajectories)
        return list(out)

    def batch(self, idx, background: bool = False) -> FrameBatch:
        R = self.resolution
        imgs, conds, prompts = [], {n: [] for n in self.conditions}, []
        for k in np.asarray(idx).tolist():
            i, s = self.frames[k]
            tr = self.trajectories[i]
            if background:
                imgs.append(self._read(tr.background))
                prompts.append(tr.meta.get("background_prompt") or self.background_prompt)
            else:
                imgs.append(self._read(tr.dir / f"{s}_rgb.png"))
                prompts.append(prompt_for(tr.category, tr.meta.get("caption")))
                for n in self.conditions:
                    conds[n].append(self._read(tr.dir / f"{s}_{n}.png"))
        B = len(imgs)
        cond = {n: torch.zeros(B, 3, R, R) if background else to_condition_tensor(np.stack(v)) for n, v in conds.items()}
        return FrameBatch(to_image_tensor(np.stack(imgs)), cond, prompts)
