"""A folder of rendered HOI trajectories (`hoitool render`'s output), listed and read back.

    RENDERS/index.jsonl              one line per finished trajectory (appended when its files are complete)
    RENDERS/trajectories/ID/         000_rgb.png 000_depth.npz 000_normals.png 000_segmentation.png
                                     000_skeleton.png 000_labels.json ... 007_*, background.png,
                                     object.obj (object frame), approach.gif

    for traj in read_index("RENDERS"):
        frame = read_frame(traj.dir, traj.stems[-1])            # the grasp itself
        prompt = f"A hand is grasping a {traj.category}"

`background.png` is the trajectory's background alone (no hand, no object): the images the
image model's background regularisation trains on, with empty conditions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from hoitool.errors import InputError

INDEX = "index.jsonl"
TRAJECTORIES = "trajectories"


@dataclass
class RenderedTrajectory:
    id: str
    dir: Path
    category: str
    stems: list[str]
    background: Path
    meta: dict = field(default_factory=dict)

    def frame_paths(self, stem: str, name: str) -> Path:
        """The file of one map of a frame: STEM_NAME.png, STEM_depth.npz, STEM_labels.json."""
        ext = {"depth": "npz", "labels": "json"}.get(name, "png")
        return self.dir / f"{stem}_{name}.{ext}"


def is_render_folder(root: str | Path) -> bool:
    return (Path(root) / INDEX).is_file() and (Path(root) / TRAJECTORIES).is_dir()


def read_index(root: str | Path) -> list[RenderedTrajectory]:
    """The finished trajectories of a render folder, in index order (a trajectory whose files are
    incomplete is never listed: its index line is written last)."""
    root = Path(root)
    if not is_render_folder(root):
        raise InputError(f"{root} is not a render folder (no {INDEX} and {TRAJECTORIES}/): make one with `hoitool render SOURCE --out {root}`")
    out = []
    for n, line in enumerate((root / INDEX).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            d = root / rec["dir"]
            out.append(RenderedTrajectory(str(rec["id"]), d, str(rec["category"]), [str(s) for s in rec["stems"]],
                                          d / rec.get("background", "background.png"), rec))
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{root / INDEX} line {n} is not a trajectory record ({e}): render the folder again") from None
    if not out:
        raise InputError(f"{root} holds no finished trajectory: run `hoitool render` into it first")
    return out
