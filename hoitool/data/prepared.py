"""Reading prepared data back (see hoitool.data.prepare for the layout).

    from hoitool.data.prepared import load_record, PreparedDataset
    rec = load_record("data/synth", 0)         # or by id: load_record("data/synth", "mug-00000-g00")
    rec.object_grid    # (64, 64, 64) float32 in [-1, 1], hand-centric frame n (right hand)
    rec.hand           # HandParams in the object frame, the record's own side
    rec.hTo, rec.nTh   # (4, 4) object -> hand frame, hand -> n
    ds = PreparedDataset("data/synth")        # torch Dataset of dicts of tensors
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hoitool.errors import InputError
from hoitool.hand.model import HandParams

HAND_KEYS = ("global_orient", "hand_pose", "betas", "transl")


@dataclass
class PreparedRecord:
    """One prepared record."""

    id: str
    category: str
    object_id: str
    side: str
    source: str
    object_mesh: str
    """Path of the object mesh; multiply its coordinates by `scale` for metres."""
    scale: float
    hand: HandParams
    """Hand parameters (batch of 1) in the object's metric frame, the record's own side."""
    object_grid: np.ndarray
    """(R, R, R) float32 in [-1, 1]: clamped SDF in the hand-centric frame n of a right hand."""
    hTo: np.ndarray
    """(4, 4) object frame -> hand frame h (includes the x-mirror for left records)."""
    nTh: np.ndarray
    """(4, 4) hand frame h -> grid frame n."""
    mirrored: bool
    """True for left-hand records (grid and hTo mirrored into a right hand's frame)."""
    quality: dict
    """penetration_mm, fingers_in_contact, palm_contact, opposed."""


def read_index(root: str | Path, require_complete: bool = True) -> list[dict]:
    """The records of a prepared folder (one dict per record: id, category, object_id, shard, row, side, source)."""
    root = Path(root)
    p = root / "index.jsonl"
    if not p.exists():
        if require_complete:
            raise InputError(f"{root} is not a finished prepared folder (no index.jsonl): re-run hoitool prepare-data with the same options to finish it")
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def load_object(root: str | Path, object_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Canonical SDF grid (R, R, R) in u units and uTo (4, 4) of one object."""
    with np.load(Path(root) / "objects" / f"{object_id}.npz") as z:
        return z["sdf"], z["uTo"]


def _row(root: Path, entry: dict) -> PreparedRecord:
    stem = root / "shards" / f"shard-{entry['shard']:05d}"
    meta = json.loads(stem.with_suffix(".json").read_text())[entry["row"]]
    with np.load(stem.with_suffix(".npz")) as z:
        r = entry["row"]
        arrays = {k: z[k][r] for k in ("object_grid", "hTo", "nTh", "mirrored", *HAND_KEYS)}
    return PreparedRecord(
        id=entry["id"], category=entry["category"], object_id=entry["object_id"], side=entry["side"],
        source=entry["source"], object_mesh=os.path.normpath(root / meta["object_mesh"]),  # absolute paths stay as they are
        scale=float(meta.get("scale", 1.0)),
        hand=HandParams.from_numpy({k: arrays[k] for k in HAND_KEYS}, side=entry["side"]),
        object_grid=arrays["object_grid"].astype(np.float32), hTo=arrays["hTo"], nTh=arrays["nTh"],
        mirrored=bool(arrays["mirrored"]),
        quality={k: meta[k] for k in ("penetration_mm", "object_in_hand_mm", "fingers_in_contact", "palm_contact", "opposed") if k in meta},
    )


def load_record(root: str | Path, key: int | str, *, require_complete: bool = True, index: list[dict] | None = None) -> PreparedRecord:
    """Read one prepared record by position in the index or by id."""
    root = Path(root)
    index = index if index is not None else read_index(root, require_complete)
    if isinstance(key, int):
        if not 0 <= key < len(index):
            raise InputError(f"record {key} out of range: {root} has {len(index)} records")
        entry = index[key]
    else:
        entry = next((e for e in index if e["id"] == key), None)
        if entry is None:
            raise InputError(f"no record with id {key!r} in {root}")
    return _row(root, entry)


class PreparedDataset(torch.utils.data.Dataset):
    """Prepared records as dicts of tensors: object_grid (1, R, R, R), hand_pose (45,), betas
    (10,), global_orient (3,), transl (3,), hTo (4, 4), nTh (4, 4), mirrored, category (str), id.

    Shards are read whole and kept in a small cache, so iterate in index order (or shuffle
    within shards) for speed.
    """

    def __init__(self, root: str | Path, cache_shards: int = 2):
        self.root = Path(root)
        self.index = read_index(self.root)
        self._cache: OrderedDict[int, dict] = OrderedDict()
        self._cache_size = cache_shards

    def __len__(self) -> int:
        return len(self.index)

    def _shard(self, s: int) -> dict:
        if s in self._cache:
            self._cache.move_to_end(s)
            return self._cache[s]
        with np.load(self.root / "shards" / f"shard-{s:05d}.npz") as z:
            data = {k: z[k] for k in z.files}
        self._cache[s] = data
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return data

    def __getitem__(self, i: int) -> dict:
        e = self.index[i]
        z = self._shard(e["shard"])
        r = e["row"]
        item = {k: torch.as_tensor(z[k][r].astype(np.float32)) for k in ("hTo", "nTh", *HAND_KEYS)}
        item["object_grid"] = torch.as_tensor(z["object_grid"][r].astype(np.float32))[None]
        item["mirrored"] = bool(z["mirrored"][r])
        item["category"] = e["category"]
        item["id"] = e["id"]
        return item
