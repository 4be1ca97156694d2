"""InterHand2.6M (Moon et al., ECCV 2020): two interacting hands, no object; MANO fits by
NeuralAnnot (Moon et al. 2022).

Layout read (the authors' InterHand2.6M repository: README, DATASET.md, tool/MANO_render and
tool/MANO_world_to_camera):
    ROOT/annotations/<SPLIT>/InterHand2.6M_<SPLIT>_MANO_NeuralAnnot.json   (v1.0, 5 or 30 fps)
    ROOT/annotations/all/InterHand2.6M_<SPLIT>_MANO_NeuralAnnot.json       (v0.0; read when the
                                                                            v1.0 file is absent)
    {"<capture>": {"<frame>": {"right": {"pose": 48, "shape": 10, "trans": 3} or null,
                               "left": ... the same}}}
SPLIT is train, val and test, each read when present. `pose` is the root rotation (3) then the
15 finger joints (45), axis-angle.

Conventions: the toolkit poses these with smplx `MANO(use_pca=False)`, whose default is
`flat_hand_mean=False`: the 45 finger numbers are relative to MANO's mean pose (hoitool adds the
MANO file's `hands_mean`: --mano-dir is required). Parameters are fitted in the capture's world
frame (one per frame, independent of the cameras: no duplicate records across the views), and
`trans` is in metres (the toolkit multiplies the posed vertices by 1000 to reach the world's
millimetres). Both hands of a frame are written as they are, in that world frame, metres. Left
hands are left MANO hands; like hoitool, the toolkit fixes the left model's shape directions.

Skipped: frames where only one hand (or none) is annotated (two-hand records need both), and
entries with missing or non-finite numbers. There is no object: --categories does not apply.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hoitool.data.datasets.base import Context, Dataset, Skip, missing, params_of
from hoitool.errors import InputError

SPLITS = ("train", "val", "test")
SIDES = ("right", "left")


def _annotation_files(root: Path) -> list[tuple[str, Path]]:
    """(split, file) for each split present: annotations/<split>/ first, else annotations/all/."""
    out = []
    for split in SPLITS:
        name = f"InterHand2.6M_{split}_MANO_NeuralAnnot.json"
        for folder in (split, "all"):
            if (root / "annotations" / folder / name).is_file():
                out.append((split, root / "annotations" / folder / name))
                break
    return out


def _check(root: Path) -> str | None:
    gone = missing(root, "annotations/*/InterHand2.6M_*_MANO_NeuralAnnot.json")
    if gone is None and not _annotation_files(root):
        return str(root / "annotations" / "<train|val|test>" / "InterHand2.6M_<train|val|test>_MANO_NeuralAnnot.json")
    return gone


def _hand(entry, side: str) -> dict | None:
    """The three arrays of one hand, or None when missing, malformed or non-finite."""
    try:
        h = {k: np.asarray(entry[k], np.float64).reshape(-1) for k in ("pose", "shape", "trans")}
    except (KeyError, TypeError, ValueError):
        return None
    if h["pose"].size != 48 or h["shape"].size != 10 or h["trans"].size != 3:
        return None
    if not all(np.isfinite(a).all() for a in h.values()):
        return None
    return h


def _frame_key(k: str):
    return (0, int(k), k) if str(k).isdigit() else (1, 0, str(k))


def _read(ctx: Context):
    from hoitool.twohands.records import TwoHandRecord

    if ctx.opts.categories:
        raise InputError("InterHand2.6M has no objects: drop --categories")
    for split, path in _annotation_files(ctx.root):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read InterHand2.6M annotation file {path}: {e}") from e
        if not isinstance(data, dict):
            raise InputError(f"{path}: expected {{capture: {{frame: {{'right': ..., 'left': ...}}}}}}")
        for capture in sorted(data, key=_frame_key):
            frames = data[capture] if isinstance(data[capture], dict) else {}
            for frame in ctx.frames(sorted(frames, key=_frame_key)):
                rid = f"interhand-{split}-Capture{capture}-{frame}"
                entry = frames[frame] if isinstance(frames[frame], dict) else {}
                given = [s for s in SIDES if entry.get(s) is not None]
                if len(given) < 2:
                    why = f"only the {given[0]} hand annotated" if given else "no hand annotated"
                    yield Skip(f"{why} (two-hand records need both)", rid)
                    continue
                hands = {s: _hand(entry[s], s) for s in SIDES}
                if any(h is None for h in hands.values()):
                    yield Skip("malformed or non-finite MANO parameters", rid)
                    continue
                out = {}
                for s, h in hands.items():
                    p = params_of(h["pose"][:3], ctx.full_pose(s, h["pose"][3:], flat_mean=False), h["shape"], h["trans"], s)
                    out[s] = {k: v.reshape(-1) for k, v in p.numpy().items()}
                yield TwoHandRecord(out["right"], out["left"], id=rid, source="interhand")


DATASET = Dataset(
    name="interhand", title="InterHand2.6M", hands="two",
    source="Moon et al. ECCV 2020 and the InterHand2.6M repository (DATASET.md, tool/MANO_render)",
    layout="annotations/<train|val|test>/InterHand2.6M_<split>_MANO_NeuralAnnot.json (v1.0; or annotations/all/ for v0.0)",
    mano="required", read=_read, check=_check,
)
