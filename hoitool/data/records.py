"""HOI records and JSONL manifests: the generic input any dataset can be exported to.

One record per line:
    {"object_mesh": "meshes/mug_01.obj", "category": "mug", "side": "right",
     "global_orient": [3], "hand_pose": [45], "betas": [10], "transl": [3],
     "id": "optional", "source": "optional", "scale": 1.0}
Hand parameters are MANO-convention (45-d axis-angle, flat hand at zero) and put the hand in
the object mesh's frame in metres, i.e. after multiplying mesh coordinates by `scale`.
Relative mesh paths are resolved against the manifest's folder.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hoitool.data.vocab import category_or_text
from hoitool.errors import InputError
from hoitool.hand.model import HandParams

VECTOR_FIELDS = {"global_orient": 3, "hand_pose": 45, "betas": 10, "transl": 3}
REQUIRED = ["object_mesh", "category", "side", *VECTOR_FIELDS]


@dataclass
class HOIRecord:
    """One hand grasping one object: hand parameters in the object mesh's (metric) frame."""

    object_mesh: str
    """Path of the object mesh (absolute once read from a manifest)."""
    category: str
    """Canonical category (or normalised free text for names outside the vocabulary)."""
    side: str
    """'right' or 'left'."""
    global_orient: np.ndarray
    hand_pose: np.ndarray
    betas: np.ndarray
    transl: np.ndarray
    id: str = ""
    source: str = ""
    scale: float = 1.0
    """Multiplies mesh coordinates to get metres."""
    extra: dict = field(default_factory=dict)
    """Anything else the record carried (kept when written back)."""
    where: str = ""
    """Where it was read from ('manifest.jsonl:12'), for messages; not written back."""

    def hand_params(self) -> HandParams:
        return HandParams.from_numpy({k: getattr(self, k) for k in VECTOR_FIELDS}, side=self.side)

    def to_json(self) -> dict:
        d = {"id": self.id, "object_mesh": self.object_mesh, "category": self.category, "side": self.side}
        d.update({k: [round(float(x), 7) for x in getattr(self, k)] for k in VECTOR_FIELDS})
        d.update({"source": self.source, "scale": self.scale})
        d.update(self.extra)
        return d


def parse_record(obj: dict, where: str, base: Path | None = None) -> HOIRecord:
    """Validate one manifest entry; `where` names it in error messages (file:line)."""
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object per line")
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        raise InputError(f"{where}: missing field(s) {', '.join(missing)} (see README, 'Manifest format')")
    vec = {}
    for k, n in VECTOR_FIELDS.items():
        try:
            a = np.asarray(obj[k], dtype=np.float32).reshape(-1)
        except (TypeError, ValueError):
            raise InputError(f"{where}: {k} must be a list of {n} numbers") from None
        if a.shape != (n,):
            raise InputError(f"{where}: {k} has {a.size} values, expected {n}")
        if not np.isfinite(a).all():
            raise InputError(f"{where}: {k} contains NaN or infinity")
        vec[k] = a
    side = str(obj["side"]).lower()
    if side not in ("right", "left"):
        raise InputError(f"{where}: side must be 'right' or 'left', got {obj['side']!r}")
    scale = obj.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise InputError(f"{where}: scale must be a positive number, got {json.dumps(scale)}")
    category = category_or_text(str(obj["category"])) if obj["category"] is not None else ""
    if not category:
        raise InputError(f"{where}: category is empty: name the object (e.g. \"mug\")")
    if not str(obj["object_mesh"]).strip():
        raise InputError(f"{where}: object_mesh is empty: give the mesh file's path")
    mesh = Path(os.path.expanduser(str(obj["object_mesh"])))
    if base is not None and not mesh.is_absolute():
        mesh = base / mesh
    known = set(REQUIRED) | {"id", "source", "scale"}
    return HOIRecord(
        object_mesh=str(mesh), category=category, side=side, **vec,
        id=str(obj.get("id", "")), source=str(obj.get("source", "")), scale=float(scale),
        extra={k: v for k, v in obj.items() if k not in known}, where=where,
    )


def read_records(path: str | os.PathLike, parse) -> list:
    """Read and validate a JSONL manifest with `parse(obj, where, base)` per line (any record type
    with `id`). Records without an id get '<file stem>-<line>'; duplicates and empty files stop."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest not found: {path}")
    records, seen = [], set()
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            r = parse(obj, f"{path}:{n}", path.parent)
            r.id = r.id or f"{path.stem}-{n:06d}"
            if r.id in seen:
                raise InputError(f"{path}:{n}: duplicate id {r.id!r}")
            seen.add(r.id)
            records.append(r)
    if not records:
        raise InputError(f"manifest {path} has no records")
    return records


def read_manifest(path: str | os.PathLike) -> list[HOIRecord]:
    """Read and validate a one-hand JSONL manifest (see `read_records`)."""
    return read_records(path, parse_record)


def write_manifest(path: str | os.PathLike, records: list[HOIRecord], relative_to: Path | None = None) -> Path:
    """Write records as JSONL (atomically); mesh paths relative to `relative_to` when given."""
    from hoitool.utils.io import write_text

    lines = []
    for r in records:
        d = r.to_json()
        if relative_to is not None:
            d["object_mesh"] = os.path.relpath(r.object_mesh, relative_to)
        lines.append(json.dumps(d))
    return write_text(path, "\n".join(lines) + "\n")
