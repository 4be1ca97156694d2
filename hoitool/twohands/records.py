"""Two-hand records and their JSONL manifest: what real two-hand datasets can be exported to.

One record per line:
    {"id": "optional", "right": {"global_orient": [3], "hand_pose": [45], "betas": [10], "transl": [3]},
     "left": {... the same four ...}, "object_mesh": "optional/path.obj", "category": "optional",
     "scale": 1.0, "interaction": "optional label", "source": "optional"}
Hand parameters follow the MANO convention (45-d axis-angle, flat hand at zero, left hands with
the left model) and put both hands in one frame, metres: the object mesh's frame (after
multiplying its coordinates by `scale`) when there is an object, any frame otherwise (a camera,
the world). Relative mesh paths are resolved against the manifest's folder.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hoitool.data.records import VECTOR_FIELDS, read_records
from hoitool.errors import InputError
from hoitool.hand.model import HandParams

KNOWN = {"id", "right", "left", "object_mesh", "category", "scale", "interaction", "source"}


@dataclass
class TwoHandRecord:
    right: dict
    """The right hand's four parameter arrays."""
    left: dict
    id: str = ""
    object_mesh: str | None = None
    category: str = ""
    scale: float = 1.0
    interaction: str = ""
    source: str = ""
    extra: dict = field(default_factory=dict)
    where: str = ""

    def hand_params(self, side: str) -> HandParams:
        return HandParams.from_numpy(self.right if side == "right" else self.left, side=side)

    def to_json(self) -> dict:
        d = {"id": self.id}
        for side in ("right", "left"):
            h = self.right if side == "right" else self.left
            d[side] = {k: [round(float(x), 7) for x in np.asarray(h[k]).reshape(-1)] for k in VECTOR_FIELDS}
        if self.object_mesh:
            d.update(object_mesh=self.object_mesh, category=self.category, scale=self.scale)
        d.update(interaction=self.interaction, source=self.source)
        d.update(self.extra)
        return d


def is_twohand_entry(obj) -> bool:
    return isinstance(obj, dict) and "right" in obj and "left" in obj


def _hand(obj, where: str, side: str) -> dict:
    if not isinstance(obj, dict):
        raise InputError(f"{where}: {side} must be an object with global_orient, hand_pose, betas and transl")
    out = {}
    for k, n in VECTOR_FIELDS.items():
        if k not in obj:
            raise InputError(f"{where}: {side}.{k} is missing (see README, 'Two-hand records')")
        try:
            a = np.asarray(obj[k], dtype=np.float32).reshape(-1)
        except (TypeError, ValueError):
            raise InputError(f"{where}: {side}.{k} must be a list of {n} numbers") from None
        if a.shape != (n,):
            raise InputError(f"{where}: {side}.{k} has {a.size} values, expected {n}")
        if not np.isfinite(a).all():
            raise InputError(f"{where}: {side}.{k} contains NaN or infinity")
        out[k] = a
    return out


def parse_twohand(obj, where: str, base: Path | None = None) -> TwoHandRecord:
    """Validate one two-hand manifest entry; `where` names it in messages (file:line)."""
    if not is_twohand_entry(obj):
        raise InputError(f"{where}: not a two-hand record: it needs 'right' and 'left' hand parameters (see README, 'Two-hand records')")
    right, left = _hand(obj["right"], where, "right"), _hand(obj["left"], where, "left")
    scale = obj.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise InputError(f"{where}: scale must be a positive number, got {json.dumps(scale)}")
    mesh = obj.get("object_mesh")
    category = ""
    if mesh:
        from hoitool.data.vocab import category_or_text

        p = Path(os.path.expanduser(str(mesh)))
        if base is not None and not p.is_absolute():
            p = base / p
        mesh = str(p)
        category = category_or_text(str(obj.get("category") or p.stem))
    return TwoHandRecord(right, left, id=str(obj.get("id", "")), object_mesh=mesh or None, category=category,
                         scale=float(scale), interaction=str(obj.get("interaction", "")), source=str(obj.get("source", "")),
                         extra={k: v for k, v in obj.items() if k not in KNOWN}, where=where)


def read_twohand_manifest(path: str | os.PathLike) -> list[TwoHandRecord]:
    """Read and validate a two-hand JSONL manifest (see hoitool.data.records.read_records)."""
    return read_records(path, parse_twohand)


def manifest_is_twohand(path: str | os.PathLike) -> bool:
    """Whether a manifest's first record is a two-hand record (False when unreadable: the
    one-hand reader reports what is wrong)."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    return is_twohand_entry(json.loads(line))
    except (OSError, ValueError):
        return False
    return False


def write_twohand_manifest(path: str | os.PathLike, records: list[TwoHandRecord], relative_to: Path | None = None) -> Path:
    from hoitool.utils.io import write_text

    lines = []
    for r in records:
        d = r.to_json()
        if relative_to is not None and r.object_mesh:
            d["object_mesh"] = os.path.relpath(r.object_mesh, relative_to)
        lines.append(json.dumps(d))
    return write_text(path, "\n".join(lines) + "\n")
