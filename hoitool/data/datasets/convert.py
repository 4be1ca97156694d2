"""Run one dataset converter: records in the object frame, the contact filter, the tally, and
the generic manifest (`OUT/dataset/records.jsonl`) that `prepare-data` turns into shards.

The manifest keeps the dataset's own mesh files (absolute paths); meshes a converter derives
(e.g. an articulated object at one frame's angle) go to `OUT/dataset/meshes/`. A one-hand record
whose nearest hand vertex is farther than `max_gap_mm` from the object's surface is skipped as
"not in contact" (approach and release frames of a video): G-HOP's prior is of grasps.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from hoitool.data.datasets import dataset as get_dataset
from hoitool.data.datasets.base import Context, ConvertOptions, Skip
from hoitool.data.records import HOIRecord, write_manifest
from hoitool.errors import InputError
from hoitool.utils.io import write_json


#: Bumped when a converter's output changes for the same files: an earlier conversion is then redone.
CONVERTER_VERSION = 1


@dataclass
class Tally:
    """Counts of what a conversion read, kept and skipped (with a first example per reason)."""

    looked_at: int = 0
    kept: int = 0
    skipped: dict = field(default_factory=dict)
    """reason -> {"count": n, "example": where}"""

    def skip(self, s: Skip) -> None:
        """A converter's skip: frames not counted before."""
        self.looked_at += s.count
        self.drop(s.reason, s.where, s.count)

    def drop(self, reason: str, where: str, count: int = 1) -> None:
        """Frames already counted as read, not kept (a filter's decision)."""
        d = self.skipped.setdefault(reason, {"count": 0, "example": where})
        d["count"] += count

    def summary_lines(self) -> list[str]:
        lines = [f"read {self.looked_at} annotated frames: kept {self.kept}, skipped {self.looked_at - self.kept}"]
        for reason, d in sorted(self.skipped.items(), key=lambda kv: -kv[1]["count"]):
            lines.append(f"  skipped {d['count']}: {reason}" + (f" (e.g. {d['example']})" if d["example"] else ""))
        return lines


@dataclass
class ConvertResult:
    manifest: Path
    hands: str
    """'one' or 'two'."""
    tally: Tally
    seconds: float
    written: list[Path]
    reused: bool = False
    """True when an earlier conversion with the same options was kept."""


class _ContactFilter:
    """Distance from a posed hand to an object's surface (dense surface samples, cached per mesh)."""

    def __init__(self, ctx: Context, max_gap_m: float):
        self.ctx, self.max_gap_m = ctx, max_gap_m
        self._trees: dict[tuple[str, float], object] = {}

    def _tree(self, mesh_path: str, scale: float):
        key = (mesh_path, scale)
        if key not in self._trees:
            from scipy.spatial import cKDTree

            from hoitool.geometry.mesh import load_mesh

            mesh, _ = load_mesh(mesh_path, scale)
            pts, _ = mesh.sample(20000, return_index=True) if len(mesh.faces) else (mesh.vertices, None)
            self._trees[key] = cKDTree(np.concatenate([np.asarray(pts), mesh.vertices]))
        return self._trees[key]

    def gap_m(self, r: HOIRecord) -> float:
        with torch.no_grad():
            v = self.ctx.hand(r.side)(r.hand_params()).vertices[0].numpy()
        d, _ = self._tree(r.object_mesh, r.scale).query(v, k=1)
        return float(d.min())


def check_root(opts: ConvertOptions):
    """The dataset, after checking the root, the objects folder and the hand model (one line each)."""
    ds = get_dataset(opts.dataset)
    root = opts.root = Path(opts.root).expanduser().resolve()  # converters write absolute mesh paths
    if opts.objects is not None:
        opts.objects = Path(opts.objects).expanduser().resolve()
    if not root.is_dir():
        raise InputError(f"--root {root} is not a folder: point it at the {ds.title} root ({ds.layout})")
    gone = ds.check(root)
    if gone:
        raise InputError(f"{root} does not look like {ds.title}: missing {gone}; expected {ds.layout} (see {ds.source})")
    if opts.objects is not None and not Path(opts.objects).expanduser().is_dir():
        raise InputError(f"--objects {opts.objects} is not a folder: {ds.objects_help or 'drop it, this dataset ships its meshes'}")
    if ds.mano == "required" and not (opts.mano_dir or os.environ.get("HOITOOL_MANO_DIR")):
        raise InputError(f"{ds.title} stores MANO parameters that only the MANO model reads correctly: "
                         "pass --mano-dir FOLDER (with MANO_RIGHT.pkl and MANO_LEFT.pkl)")
    if not (np.isfinite(opts.max_gap_mm) and opts.max_gap_mm >= 0):
        raise InputError(f"--max-gap-mm must be 0 (keep all) or a positive distance, got {opts.max_gap_mm}")
    if opts.stride < 1:
        raise InputError(f"--stride must be 1 or more, got {opts.stride}")
    if opts.max_records is not None and opts.max_records < 1:
        raise InputError(f"--max-records must be 1 or more, got {opts.max_records}")
    return ds


def _key(opts: ConvertOptions) -> dict:
    """What a conversion's output depends on (besides the dataset's files)."""
    from hoitool.data.prepare import hand_record

    return {"version": CONVERTER_VERSION, "dataset": opts.dataset, "root": str(Path(opts.root).resolve()),
            "objects": str(Path(opts.objects).resolve()) if opts.objects else None, "stride": opts.stride,
            "categories": opts.categories, "max_records": opts.max_records, "max_gap_mm": opts.max_gap_mm,
            "hand": hand_record(opts.mano_dir)["fingerprint"]}


def convert(opts: ConvertOptions, progress: Callable[[int, int], None] | None = None, reuse: bool = True) -> ConvertResult:
    """Convert a dataset into `opts.work/records.jsonl` (written atomically, only when it changed).

    With `reuse`, a finished conversion with the same options (`conversion.json`) is kept as it
    is: re-running an interrupted `prepare-data --dataset` goes straight back to the shards."""
    t0 = time.time()
    ds = check_root(opts)
    opts.work = Path(opts.work)
    manifest, report = opts.work / "records.jsonl", opts.work / "conversion.json"
    key = _key(opts)
    if reuse and manifest.is_file() and report.is_file():
        try:
            old = json.loads(report.read_text())
        except (OSError, json.JSONDecodeError):
            old = {}
        if old.get("key") == key:
            tally = Tally(old["looked_at"], old["kept"], old["skipped"])
            return ConvertResult(manifest, ds.hands, tally, time.time() - t0, [manifest, report], reused=True)
    ctx = Context(opts)
    tally = Tally()
    keep = _ContactFilter(ctx, opts.max_gap_mm / 1000) if ds.hands == "one" and opts.max_gap_mm > 0 else None
    records, seen = [], set()
    for item in _guarded(ds, ctx):
        if isinstance(item, Skip):
            tally.skip(item)
            continue
        tally.looked_at += 1
        if not _finite(item):
            tally.drop("NaN or infinite hand parameters", item.id)
            continue
        if ds.hands == "one" and not ctx.want(item.category):
            tally.drop("category not in --categories", item.id)
            continue
        if keep is not None:
            gap = keep.gap_m(item)
            if gap > keep.max_gap_m:
                tally.drop(f"hand more than {opts.max_gap_mm:g} mm from the object (not in contact)", item.id)
                continue
        if item.id in seen:
            raise InputError(f"{ds.title}: two records with the id {item.id!r} (a converter defect: please report it)")
        seen.add(item.id)
        records.append(item)
        tally.kept += 1
        if progress is not None:
            progress(tally.kept, opts.max_records)
        if opts.max_records is not None and tally.kept >= opts.max_records:
            break
    if not records:
        why = "; ".join(tally.summary_lines()[1:]).strip() or "nothing was found"
        raise InputError(f"no {ds.title} records were converted from {opts.root} ({why.strip()}): check --root, --categories and --stride")
    opts.work.mkdir(parents=True, exist_ok=True)  # only now: a conversion that stops early leaves nothing
    _write_if_changed(manifest, records, ds.hands)
    write_json(report, {"key": key, "dataset": ds.name, "title": ds.title, "root": str(Path(opts.root).resolve()), "source": ds.source,
                        "stride": opts.stride, "categories": opts.categories, "max_records": opts.max_records,
                        "max_gap_mm": opts.max_gap_mm, "looked_at": tally.looked_at, "kept": tally.kept,
                        "skipped": tally.skipped})
    return ConvertResult(manifest, ds.hands, tally, time.time() - t0, [manifest, report])


def _guarded(ds, ctx: Context):
    """The converter's items; an annotation of unexpected content ends the run in one line
    (naming the last frame read) instead of a traceback."""
    where = "the first frame"
    it = ds.read(ctx)
    while True:
        try:
            item = next(it)
        except StopIteration:
            return
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
            raise InputError(f"{ds.title}: unexpected annotation content after {where} ({type(e).__name__}: {e}): "
                             f"is --root the release as its authors ship it? ({ds.layout})") from None
        where = item.where if isinstance(item, Skip) else item.id
        yield item


def _finite(item) -> bool:
    hands = [item.right, item.left] if hasattr(item, "right") else [{k: getattr(item, k) for k in ("global_orient", "hand_pose", "betas", "transl")}]
    return all(np.isfinite(np.asarray(v, np.float64)).all() for h in hands for v in h.values())


def _write_if_changed(path: Path, records: list, hands: str) -> None:
    """Atomic write; an unchanged manifest keeps its file (and so its time stamp)."""
    if hands == "two":
        from hoitool.twohands.records import write_twohand_manifest as write
    else:
        write = write_manifest
    tmp = path.with_name(".records.new.jsonl")
    write(tmp, records)
    if path.exists() and path.read_bytes() == tmp.read_bytes():
        tmp.unlink()
        return
    os.replace(tmp, path)


def describe(name: str) -> dict:
    """A dataset's converter facts, for --help and the README table."""
    ds = get_dataset(name)
    return {"name": ds.name, "title": ds.title, "hands": ds.hands, "source": ds.source, "layout": ds.layout,
            "mano": ds.mano, "objects": ds.objects_help}

