"""`hoitool prepare-data`: turn a manifest or the synthetic corpus into prepared shards.

Layout of a prepared folder (all writes atomic; re-running with the same options skips
finished work; `index.jsonl` is written last, so a folder without it is unfinished):

    config.yaml             resolved options
    objects/<id>.npz        per object: canonical SDF grid `sdf` (R, R, R) float32 in its
                            unit-ball frame (u units), `uTo` (4, 4), `mesh` path (relative
                            to the folder when the mesh is inside it), `category`
    objects/meshes/*.obj    the synthetic corpus's meshes
    manifest.jsonl          the synthetic corpus as a generic manifest (synthetic mode)
    shards/shard-NNNNN.npz  per record: `object_grid` (N, 64, 64, 64) float16 in [-1, 1]
                            (hand-centric frame n of a right hand; left records mirrored),
                            `hTo`, `nTh` (N, 4, 4), hand parameters in the object frame
                            (`global_orient`, `hand_pose`, `betas`, `transl`), `mirrored`
    shards/shard-NNNNN.json per record: id, category, object id, side, source, quality
    index.jsonl             one line per record: id, category, object, shard, row, side
    stats.json              counts and grasp-quality figures
    preview.png             a few hands with their objects

Read it back with `hoitool.data.prepared.load_record` or `PreparedDataset`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import yaml

from hoitool.data.records import HOIRecord, read_manifest, write_manifest
from hoitool.data.synthetic.planner import PlannerConfig
from hoitool.data.vocab import canonical_category
from hoitool.errors import HoiError, InputError
from hoitool.utils.config import to_dict
from hoitool.utils.io import atomic_path, save_npz, write_json, write_text
from hoitool.utils.pool import run_tasks

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass
class PrepareConfig:
    """Options of `hoitool prepare-data`."""

    out: Path
    """Output folder."""
    manifest: Path | None = None
    """JSONL manifest of HOI records to convert."""
    synthetic: int = 0
    """Number of records of the procedural synthetic corpus to generate (instead of a manifest)."""
    categories: list[str] | None = None
    """Synthetic categories to use (default: all of them)."""
    grasps_per_object: int = 8
    """Synthetic grasps planned per object."""
    objects_per_shard: int = 4
    """Synthetic objects per shard (the unit of parallel and resumable work)."""
    records_per_shard: int = 32
    """Manifest records per shard."""
    scale: float = 1.0
    """Multiplies every manifest mesh's coordinates (on top of a record's own `scale`)."""
    resolution: int = 64
    """Grid points per axis, for the canonical and the hand-centric grids."""
    truncation_m: float = 0.06
    """Canonical SDFs are exact up to this distance (the object channel clamps at 4 cm)."""
    workers: int = 2
    """Parallel worker processes."""
    seed: int = 0
    """Seed of the synthetic corpus (objects, grasp initialisations, hand shapes)."""
    preview: bool = True
    """Render preview.png (needs the [render] extra)."""
    mano_dir: str | None = None
    """Folder with MANO_RIGHT.pkl / MANO_LEFT.pkl (default: the open hand)."""
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    """Grasp planner settings (synthetic mode)."""


@dataclass
class PrepareResult:
    out: Path
    records: int
    objects: int
    shards: int
    skipped_shards: int
    seconds: float
    stats: dict
    written: list[Path]


# ----------------------------------------------------------------------------------------
# worker side
# ----------------------------------------------------------------------------------------

_W: dict = {}


def _init_worker(mano_dir: str | None, planner_cfg: dict | None, threads: int = 1, worker: bool = False) -> None:
    if worker:  # Ctrl-C is the main process's business: it stops the pool
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    from hoitool.hand import HandModel

    _W["hands"] = {s: HandModel(s, mano_dir) for s in ("right", "left")}
    if planner_cfg is not None:
        from hoitool.data.synthetic.planner import GraspPlanner

        _W["planner"] = GraspPlanner(_W["hands"]["right"], PlannerConfig(**planner_cfg))


def _canonical(mesh, res: int, truncation_m: float):
    from hoitool.geometry.grid import canonical_sdf

    return canonical_sdf(mesh, res, truncation_m)


def _save_object(out: Path, oid: str, sdf: np.ndarray, uTo: np.ndarray, mesh_path: str, category: str, scale: float) -> None:
    save_npz(out / "objects" / f"{oid}.npz", sdf=sdf.astype(np.float32), uTo=uTo, mesh=np.array(mesh_path),
             category=np.array(category), scale=np.array(scale))


def _grids_for(out: Path, oid: str, params, res: int):
    from hoitool.data.interaction import record_grids

    with np.load(out / "objects" / f"{oid}.npz") as z:
        sdf = torch.as_tensor(z["sdf"])[None, None]
        uTo = torch.as_tensor(z["uTo"], dtype=torch.float32)
    with torch.no_grad():
        return record_grids(_W["hands"]["right"], sdf, uTo, params, res)


def _write_shard(out: Path, shard: int, arrays: dict[str, list], meta: list[dict]) -> None:
    stem = out / "shards" / f"shard-{shard:05d}"
    save_npz(stem.with_suffix(".npz"), **{k: np.concatenate(v) if v else np.zeros(0) for k, v in arrays.items()})
    write_json(stem.with_suffix(".json"), meta)  # written last: marks the shard complete


def _add(arrays: dict, grids, params, mirrored: np.ndarray) -> None:
    arrays.setdefault("object_grid", []).append(grids.object_grid.numpy().astype(np.float16))
    arrays.setdefault("hTo", []).append(grids.hTo.numpy())
    arrays.setdefault("nTh", []).append(grids.nTh.numpy())
    for k, v in params.numpy().items():
        arrays.setdefault(k, []).append(v)
    arrays.setdefault("mirrored", []).append(mirrored)


def _quality_meta(q, i: int) -> dict:
    return {"penetration_mm": round(float(q.penetration_m[i]) * 1000, 3),
            "object_in_hand_mm": round(float(q.object_in_hand_m[i]) * 1000, 3),
            "fingers_in_contact": [bool(x) for x in q.fingers[i]], "palm_contact": bool(q.palm[i]),
            "opposed": bool(q.opposed[i])}


def _synthetic_shard(task: dict) -> dict:
    """Generate the objects of one shard, plan their grasps, write the shard."""
    from hoitool.data.synthetic.objects import make_object
    from hoitool.geometry.grid import SDFVolume
    from hoitool.utils.seeding import numpy_rng

    out, cfg = Path(task["out"]), task["cfg"]
    planner = _W["planner"]
    arrays: dict[str, list] = {}
    meta, summary = [], {"candidates": 0, "accepted": 0, "rejected": {}, "objects": []}
    for j, cat in task["objects"]:
        oid = f"{cat}-{j:05d}"
        mesh = make_object(cat, numpy_rng(cfg["seed"], "object", j))
        mesh_path = out / "objects" / "meshes" / f"{oid}.obj"
        mesh_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(mesh_path) as tmp:
            mesh.export(tmp, file_type="obj")
        sdf, uTo = _canonical(mesh, cfg["resolution"], cfg["truncation_m"])
        rel_mesh = str(mesh_path.relative_to(out))  # inside OUT: stored relative, so OUT can move
        _save_object(out, oid, sdf, uTo, rel_mesh, cat, 1.0)
        vol = SDFVolume(sdf, uTo)
        gb = planner.plan(mesh, vol, cfg["grasps_per_object"], cfg["seed"], oid)
        summary["candidates"] += gb.candidates
        summary["accepted"] += gb.passed  # every grasp that passed the gates, kept or not
        summary["kept"] = summary.get("kept", 0) + gb.params.batch_size
        for k, v in gb.rejected.items():
            summary["rejected"][k] = summary["rejected"].get(k, 0) + v
        summary["objects"].append(oid)
        if gb.params.batch_size == 0:
            continue
        q = gb.quality
        grids = _grids_for(out, oid, gb.params, cfg["resolution"])
        _add(arrays, grids, gb.params, np.zeros(gb.params.batch_size, bool))
        for i in range(gb.params.batch_size):
            meta.append({"id": f"{oid}-g{i:02d}", "category": cat, "object_id": oid, "side": "right",
                         "source": "synthetic", "object_mesh": rel_mesh, "scale": 1.0, **_quality_meta(q, i)})
    summary["records"] = len(meta)
    write_json(out / "shards" / f"shard-{task['shard']:05d}.planner.json", summary)
    _write_shard(out, task["shard"], arrays, meta)
    return summary


def _object_task(task: dict) -> str:
    """Manifest mode, phase 1: validate one mesh and store its canonical SDF."""
    from hoitool.geometry.mesh import load_mesh

    out = Path(task["out"])
    mesh, report = load_mesh(task["mesh"], task["scale"])
    sdf, uTo = _canonical(mesh, task["resolution"], task["truncation_m"])
    # relative to the folder, so a dataset moved together with its prepared folder still resolves
    _save_object(out, task["oid"], sdf, uTo, os.path.relpath(task["mesh"], out), task["category"], task["scale"])
    return task["oid"]


def _manifest_shard(task: dict) -> dict:
    """Manifest mode, phase 2: hand-centric grids and quality of a chunk of records."""
    from hoitool.geometry.mesh import load_mesh
    from hoitool.hand.model import HandParams
    from hoitool.metrics.grasp import contact_quality

    out, cfg = Path(task["out"]), task["cfg"]
    (out / "shards" / f"shard-{task['shard']:05d}.key").unlink(missing_ok=True)  # being redone: not done
    arrays: dict[str, list] = {}
    meta = []
    by_object: dict[str, list[dict]] = {}
    for r in task["records"]:
        by_object.setdefault(r["object_id"], []).append(r)
    for oid, recs in by_object.items():
        mesh, _ = load_mesh(recs[0]["object_mesh"], recs[0]["scale"])
        for side in ("right", "left"):
            rs = [r for r in recs if r["side"] == side]
            if not rs:
                continue
            params = HandParams.cat([HandParams.from_numpy(r, side=side) for r in rs])
            grids = _grids_for(out, oid, params, cfg["resolution"])
            q = contact_quality(_W["hands"][side], mesh, params)
            _add(arrays, grids, params, np.full(len(rs), side == "left"))
            for i, r in enumerate(rs):
                meta.append({"id": r["id"], "category": r["category"], "object_id": oid, "side": side,
                             "source": r["source"], "object_mesh": os.path.relpath(r["object_mesh"], out), "scale": r["scale"],
                             "line": r["line"], **_quality_meta(q, i)})
    _write_shard(out, task["shard"], arrays, meta)
    # the key goes last: a redo cut short leaves an old .json with no key, which is redone
    write_text(out / "shards" / f"shard-{task['shard']:05d}.key", task["key"] + "\n")
    return {"records": len(meta)}


# ----------------------------------------------------------------------------------------
# main process
# ----------------------------------------------------------------------------------------

#: Options that only the synthetic corpus uses.
SYNTHETIC_ONLY = ("synthetic", "categories", "grasps_per_object", "objects_per_shard", "seed", "planner")


def _config_fingerprint(cfg: PrepareConfig) -> str:
    """A hash of the options that decide the output. A manifest's path is left out: its
    records are checked shard by shard, by content (see `_record_key`)."""
    d = to_dict(cfg)
    for k in ("out", "workers", "preview"):
        d.pop(k, None)
    if d.get("mano_dir"):  # the same folder by another path is the same hand (its fingerprint is checked too)
        d["mano_dir"] = str(Path(d["mano_dir"]).resolve())
    if cfg.manifest is not None:
        for k in ("manifest", *SYNTHETIC_ONLY):
            d.pop(k, None)
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


_HANDS: dict = {}


def hand_record(mano_dir: str | None) -> dict:
    """Which right hand the grids are made with: its source, fingerprint and MANO folder
    (checked here, in the main process, so a bad --mano-dir fails in one line)."""
    from hoitool.hand.model import HandModel, hand_fingerprint

    key = (mano_dir, os.environ.get("HOITOOL_MANO_DIR"))
    if key not in _HANDS:
        hand = HandModel("right", mano_dir)
        _HANDS[key] = {"source": hand.source, "fingerprint": hand_fingerprint(hand),
                       "mano_dir": str(Path(mano_dir).resolve()) if mano_dir else None}
    return _HANDS[key]


def _has_work(out: Path) -> bool:
    """Whether a folder holds finished shards or objects (not just a config)."""
    return any(out.glob("shards/shard-*.json")) or any(out.glob("objects/*.npz"))


def _config_conflict(cfg: PrepareConfig) -> str | None:
    """Why the folder's finished work cannot be continued with `cfg` (None: it can)."""
    path = cfg.out / "config.yaml"
    if not path.exists() or not _has_work(cfg.out):
        return None  # a run that failed before finishing anything does not bind the folder
    old = yaml.safe_load(path.read_text()) or {}
    if old.get("fingerprint") != _config_fingerprint(cfg):
        return "other options"
    hand = old.get("hand")
    if hand is not None and hand.get("fingerprint") != hand_record(cfg.mano_dir)["fingerprint"]:
        return f"another hand model ({hand.get('source')})"
    return None


def _check_or_write_config(cfg: PrepareConfig) -> Path:
    path = cfg.out / "config.yaml"
    fp = _config_fingerprint(cfg)
    why = _config_conflict(cfg)
    if why:
        raise HoiError(f"{cfg.out} holds data prepared with {why}: use another --out, or delete it to start over")
    cfg.out.mkdir(parents=True, exist_ok=True)
    d = {"format_version": FORMAT_VERSION, "fingerprint": fp, "hand": hand_record(cfg.mano_dir), **to_dict(cfg)}
    if cfg.manifest is not None:
        d["manifest"] = str(Path(cfg.manifest).resolve())
    write_text(path, yaml.safe_dump(d, sort_keys=False))
    return path


def _shard_done(out: Path, shard: int, key: str | None = None) -> bool:
    """Whether a shard is finished (and, given `key`, was made from the same records)."""
    stem = out / "shards" / f"shard-{shard:05d}"
    if not stem.with_suffix(".json").exists():
        return False
    if key is None:
        return True
    k = stem.with_suffix(".key")
    return k.exists() and k.read_text().strip() == key


def _mesh_stamp(path: str) -> str:
    """A hash of the mesh file's bytes (a copy that keeps size and time, as `cp -p` or rsync
    make, is still told apart)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _record_key(records: list[dict], stamps: dict[str, str]) -> str:
    """What a manifest shard was made from: its records (in order) and their meshes' contents."""
    h = hashlib.sha1()
    for r in records:
        h.update(json.dumps({k: v for k, v in r.items() if k != "line"}, sort_keys=True).encode())
        h.update(stamps[r["object_mesh"]].encode())
    return h.hexdigest()[:16]


def _run(tasks: list, fn, cfg: PrepareConfig, planner: bool, on_done: Callable[[dict], None]) -> None:
    """Run tasks in worker processes (or inline with one worker). Before shards change, the
    index goes: the folder reads as unfinished until `prepare` writes it again."""
    if tasks and fn is not _object_task:
        (cfg.out / "index.jsonl").unlink(missing_ok=True)
    pcfg = dataclasses.asdict(cfg.planner) if planner else None
    if cfg.workers <= 1 or len(tasks) <= 1:
        key = (cfg.mano_dir, json.dumps(pcfg, sort_keys=True))
        if _W.get("key") != key:  # (re)build the hand models and planner for these options
            _W.clear()
            _init_worker(cfg.mano_dir, pcfg, threads=torch.get_num_threads())
            _W["key"] = key
        for t in tasks:
            on_done(fn(t))
        return
    # on an error or Ctrl-C the pool stops at once: finished shards are on disk, unfinished ones left only .part files
    run_tasks(tasks, fn, cfg.workers, on_done, initializer=_init_worker, initargs=(cfg.mano_dir, pcfg, 1, True), inline_init=False)


def _resolve_categories(names: list[str] | None) -> list[str]:
    from hoitool.data.synthetic.objects import GENERATORS

    if not names:
        return list(GENERATORS)
    out = []
    for n in names:
        c = canonical_category(n)
        if c not in GENERATORS:
            raise InputError(f"no synthetic objects for category {n!r}; choose from: {', '.join(GENERATORS)}")
        out.append(c)
    return out


def _prepare_synthetic(cfg: PrepareConfig, progress) -> tuple[int, int]:
    cats = _resolve_categories(cfg.categories)
    G, K = cfg.grasps_per_object, cfg.objects_per_shard
    base = {"seed": cfg.seed, "resolution": cfg.resolution, "truncation_m": cfg.truncation_m, "grasps_per_object": G}
    total = cfg.synthetic
    n_objects = math.ceil(total / G)
    shard, skipped, next_object = 0, 0, 0
    written = 0
    # first pass: the planned number of shards; up to three more passes add objects when
    # some objects yielded fewer grasps than asked for
    for attempt in range(4):
        tasks = []
        need = total - written
        n_new = n_objects if attempt == 0 else math.ceil(need / max(G * 0.5, 1))
        objs = list(range(next_object, next_object + n_new))
        next_object += n_new
        for s in range(0, len(objs), K):
            chunk = objs[s:s + K]
            task = {"out": str(cfg.out), "cfg": base, "shard": shard, "objects": [(j, cats[j % len(cats)]) for j in chunk]}
            if _shard_done(cfg.out, shard):
                skipped += 1
                written += len(json.loads((cfg.out / "shards" / f"shard-{shard:05d}.json").read_text()))
                progress(written, total)
            else:
                tasks.append(task)
            shard += 1

        def done(summary: dict) -> None:
            nonlocal written
            written += summary["records"]
            progress(min(written, total), total)

        _run(tasks, _synthetic_shard, cfg, True, done)
        if written >= total:
            break
    return shard, skipped


#: A manifest hand whose wrist is farther than this from its object's bounding sphere is refused.
MAX_WRIST_DISTANCE_M = 0.3


def _check_meshes(records: list[HOIRecord]) -> dict[str, str]:
    """Every mesh path exists and is a file (before any work): {resolved path: content hash}."""
    stamps: dict[str, str] = {}
    for r in records:
        p = str(Path(r.object_mesh).resolve())
        if p in stamps:
            continue
        if not Path(p).is_file():
            raise InputError(f"{r.where}: object mesh not found: {r.object_mesh} (paths are relative to the manifest's folder)")
        stamps[p] = _mesh_stamp(p)
    return stamps


def _check_hands_near_objects(cfg: PrepareConfig, recs: list[dict], records: list[HOIRecord]) -> None:
    """Refuse records whose wrist is far from the object (wrong units or frame), naming them."""
    from hoitool.geometry.grid import UNIT_BALL_RADIUS
    from hoitool.hand.model import HandModel, HandParams

    wheres = {r.id: r.where for r in records}
    far = []
    hands = {}
    bounds: dict[str, tuple[np.ndarray, float]] = {}  # object id -> bounding sphere (centre, radius)
    for side in ("right", "left"):
        rs = [r for r in recs if r["side"] == side]
        if not rs:
            continue
        hand = hands.setdefault(side, HandModel(side, cfg.mano_dir))
        for i in range(0, len(rs), 2048):
            chunk = rs[i:i + 2048]
            params = HandParams.cat([HandParams.from_numpy(r, side=side) for r in chunk])
            with torch.no_grad():
                wrist = hand(params).joints[:, 0].double().numpy()
            for r, w in zip(chunk, wrist):
                oid = r["object_id"]
                if oid not in bounds:
                    with np.load(cfg.out / "objects" / f"{oid}.npz") as z:
                        uTo = z["uTo"]
                    bounds[oid] = (-uTo[:3, 3] / uTo[0, 0], UNIT_BALL_RADIUS / uTo[0, 0])
                centre, radius = bounds[oid]
                d = float(np.linalg.norm(w - centre) - radius)
                if d > MAX_WRIST_DISTANCE_M:
                    far.append((r["id"], d))
    if far:
        first = ", ".join(f"{wheres[i]} ({d:.2f} m)" for i, d in far[:3])
        raise InputError(f"{len(far)} record(s) put the wrist more than {MAX_WRIST_DISTANCE_M} m from the object, e.g. {first}: "
                         "hand parameters must be in metres, in the mesh's frame after `scale` (transl in millimetres?)")


def _prepare_manifest(cfg: PrepareConfig, progress) -> tuple[int, int]:
    records = read_manifest(cfg.manifest)
    stamps = _check_meshes(records)
    objects: dict[tuple[str, float], str] = {}
    first: dict[str, dict] = {}  # object id -> its first record
    rec_dicts = []
    for r in records:
        key = (str(Path(r.object_mesh).resolve()), r.scale * cfg.scale)
        if key not in objects:  # a mesh file with other contents is another object
            h = hashlib.sha1(f"{key[0]}|{key[1]!r}|{stamps[key[0]]}".encode()).hexdigest()[:8]
            objects[key] = f"{Path(key[0]).stem}-{h}"
        d = r.to_json()
        d.update(object_mesh=key[0], scale=key[1], object_id=objects[key], line=r.where)
        first.setdefault(d["object_id"], d)
        rec_dicts.append(d)
    obj_tasks = [{"out": str(cfg.out), "oid": oid, "mesh": d["object_mesh"], "scale": d["scale"], "category": d["category"],
                  "resolution": cfg.resolution, "truncation_m": cfg.truncation_m}
                 for oid, d in first.items() if not (cfg.out / "objects" / f"{oid}.npz").exists()]
    total = len(rec_dicts) + len(objects)
    done_n = len(objects) - len(obj_tasks)
    progress(done_n, total)

    def obj_done(_):
        nonlocal done_n
        done_n += 1
        progress(done_n, total)

    _run(obj_tasks, _object_task, cfg, False, obj_done)
    _check_hands_near_objects(cfg, rec_dicts, records)
    base = {"resolution": cfg.resolution}
    tasks, skipped = [], 0
    R = cfg.records_per_shard
    n_shards = math.ceil(len(rec_dicts) / R)
    for s in range(n_shards):
        chunk = rec_dicts[s * R:(s + 1) * R]
        key = _record_key(chunk, stamps)
        if _shard_done(cfg.out, s, key):
            skipped += 1
            done_n += len(chunk)
        else:  # new, or made from other records (a changed manifest or mesh): (re)done
            tasks.append({"out": str(cfg.out), "cfg": base, "shard": s, "records": chunk, "key": key})
    progress(done_n, total)

    def shard_done(summary):
        nonlocal done_n
        done_n += summary["records"]
        progress(done_n, total)

    _run(tasks, _manifest_shard, cfg, False, shard_done)
    _remove_stale(cfg.out, n_shards, set(objects.values()))
    return n_shards, skipped


def _remove_stale(out: Path, n_shards: int, objects: set[str]) -> None:
    """Shards past the last one and objects no record uses (left by an earlier, longer or
    different manifest)."""
    for p in out.glob("shards/shard-*.*"):
        try:
            num = int(p.name.split(".")[0].split("-")[1])
        except (IndexError, ValueError):
            continue
        if num >= n_shards:
            (out / "index.jsonl").unlink(missing_ok=True)
            p.unlink()
    for p in out.glob("objects/*.npz"):
        if p.stem not in objects:
            p.unlink()


def _collect(cfg: PrepareConfig, n_shards: int, limit: int | None) -> tuple[list[dict], dict]:
    index = []
    for s in range(n_shards):
        meta = json.loads((cfg.out / "shards" / f"shard-{s:05d}.json").read_text())
        for row, m in enumerate(meta):
            index.append({"id": m["id"], "category": m["category"], "object_id": m["object_id"], "shard": s,
                          "row": row, "side": m["side"], "source": m["source"]})
            index[-1]["_q"] = m
    if limit is not None:
        index = index[:limit]
    q = [r.pop("_q") for r in index]
    pen = np.array([m["penetration_mm"] for m in q]) if q else np.zeros(0)
    fingers = np.array([m["fingers_in_contact"] for m in q]) if q else np.zeros((0, 5))
    stats = {
        "records": len(index),
        "objects": len({r["object_id"] for r in index}),
        "categories": {c: sum(r["category"] == c for r in index) for c in sorted({r["category"] for r in index})},
        "penetration_mm": {"mean": float(pen.mean()) if len(pen) else None, "max": float(pen.max()) if len(pen) else None},
        "fingers_in_contact_mean": float(fingers.sum(1).mean()) if len(fingers) else None,
        "thumb_contact_share": float(fingers[:, 0].mean()) if len(fingers) else None,
        "opposed_share": float(np.mean([m["opposed"] for m in q])) if q else None,
        "touching_nothing": [m.get("line") or m["id"] for m in q if not any(m["fingers_in_contact"]) and not m["palm_contact"]],
    }
    return index, stats


def check_config(cfg: PrepareConfig) -> None:
    """Raise InputError/HoiError for options that cannot work (before any work starts)."""
    if (cfg.manifest is None) == (cfg.synthetic <= 0):
        raise InputError("give either --manifest FILE or --synthetic N (N > 0)")
    if cfg.manifest is not None and not Path(cfg.manifest).is_file():
        raise InputError(f"manifest not found: {cfg.manifest}")
    if not (math.isfinite(cfg.scale) and cfg.scale > 0):
        raise InputError(f"--scale must be a positive number, got {cfg.scale}")
    cfg.out = Path(cfg.out)
    if cfg.out.exists() and not cfg.out.is_dir():
        raise InputError(f"--out {cfg.out} exists and is not a folder")
    if cfg.synthetic > 0:
        _resolve_categories(cfg.categories)
    hand_record(cfg.mano_dir)  # a bad --mano-dir fails here, in one line, not in every worker
    why = _config_conflict(cfg)
    if why:
        raise HoiError(f"{cfg.out} holds data prepared with {why}: use another --out, or delete it to start over")


def prepare(cfg: PrepareConfig, progress: Callable[[int, int], None] | None = None) -> PrepareResult:
    """Prepare a manifest or the synthetic corpus into `cfg.out` (see the module docstring)."""
    t0 = time.time()
    check_config(cfg)
    progress = progress or (lambda done, total: None)
    _check_or_write_config(cfg)
    for stale in list(cfg.out.glob("**/.*.part")):  # temporaries of an interrupted run
        stale.unlink()
    written = [cfg.out / "config.yaml"]
    if cfg.synthetic > 0:
        n_shards, skipped = _prepare_synthetic(cfg, progress)
        index, stats = _collect(cfg, n_shards, cfg.synthetic)
        synth = _synthetic_stats(cfg, n_shards)
        stats["planner"] = synth
        recs = _index_to_records(cfg, index)
        write_manifest(cfg.out / "manifest.jsonl", recs, relative_to=cfg.out)
        written.append(cfg.out / "manifest.jsonl")
    else:
        n_shards, skipped = _prepare_manifest(cfg, progress)
        index, stats = _collect(cfg, n_shards, None)
    written.append(write_json(cfg.out / "stats.json", stats))
    if cfg.preview and index:
        p = _preview(cfg, index)
        if p is not None:
            written.append(p)
    # the index goes last: its presence marks the folder complete
    write_text(cfg.out / "index.jsonl", "".join(json.dumps(r) + "\n" for r in index))
    written.append(cfg.out / "index.jsonl")
    written += [cfg.out / "objects", cfg.out / "shards"]
    return PrepareResult(cfg.out, len(index), stats["objects"], n_shards, skipped, time.time() - t0, stats, written)


def _synthetic_stats(cfg: PrepareConfig, n_shards: int) -> dict:
    """Planner acceptance from the shards' records and the planner's own bookkeeping: every
    candidate that passed the gates counts as accepted, kept for the record count or not."""
    cand = acc = kept = 0
    rej: dict[str, int] = {}
    for s in range(n_shards):
        p = cfg.out / "shards" / f"shard-{s:05d}.planner.json"
        if p.exists():
            d = json.loads(p.read_text())
            cand += d["candidates"]
            acc += d["accepted"]
            kept += d.get("kept", d["records"])
            for k, v in d["rejected"].items():
                rej[k] = rej.get(k, 0) + v
    return {"candidates": cand, "accepted": acc, "acceptance_rate": acc / cand if cand else None, "rejected": rej,
            "kept": kept,
            "gates": {"max_penetration_mm": cfg.planner.max_penetration_m * 1000, "contact_threshold_mm": cfg.planner.contact_threshold_m * 1000,
                      "min_fingers_incl_thumb": cfg.planner.min_fingers, "opposition_cos_below": cfg.planner.opposition_cos}}


def _index_to_records(cfg: PrepareConfig, index: list[dict]) -> list[HOIRecord]:
    """The indexed records as HOIRecords (hand parameters read back from the shards)."""
    out, shard, arrays, meta = [], None, {}, []
    for r in index:
        if r["shard"] != shard:
            shard = r["shard"]
            stem = cfg.out / "shards" / f"shard-{shard:05d}"
            with np.load(stem.with_suffix(".npz")) as z:
                arrays = {k: z[k] for k in ("global_orient", "hand_pose", "betas", "transl")}
            meta = json.loads(stem.with_suffix(".json").read_text())
        i, m = r["row"], meta[r["row"]]
        out.append(HOIRecord(object_mesh=str(cfg.out / m["object_mesh"]), category=r["category"], side=r["side"],
                             global_orient=arrays["global_orient"][i], hand_pose=arrays["hand_pose"][i],
                             betas=arrays["betas"][i], transl=arrays["transl"][i], id=r["id"], source=r["source"]))
    return out


def _preview(cfg: PrepareConfig, index: list[dict], n: int = 8) -> Path | None:
    """Contact sheet of a few records (headless). Returns None when rendering is unavailable."""
    from hoitool.errors import MissingDependencyError

    try:
        from hoitool.data.prepared import load_record
        from hoitool.geometry.mesh import load_mesh
        from hoitool.hand import HandModel
        from hoitool.render.offscreen import OBJECT_COLOR, RenderMesh, contact_sheet, render

        hands = {}
        picks = np.unique(np.linspace(0, len(index) - 1, min(n, len(index))).round().astype(int))
        images, labels = [], []
        for i in picks:
            rec = load_record(cfg.out, int(i), require_complete=False, index=index)
            mesh, _ = load_mesh(rec.object_mesh, rec.scale)
            hand = hands.setdefault(rec.side, HandModel(rec.side, cfg.mano_dir))
            with torch.no_grad():
                v = hand(rec.hand).vertices[0].numpy()
            images.append(render([RenderMesh(mesh.vertices, mesh.faces, OBJECT_COLOR), RenderMesh(v, hand.faces.numpy())],
                                 direction=(1.0, -1.0, 1.0), up=(0.0, 0.0, 1.0), size=256))
            labels.append(f"{rec.category} {rec.id}")
        path = cfg.out / "preview.png"
        with atomic_path(path) as tmp:
            contact_sheet(images, cols=4, labels=labels).save(tmp, format="PNG")
        return path
    except MissingDependencyError as e:
        log.warning("preview skipped: %s", e)
    except Exception as e:  # a broken GL stack must not fail the data preparation
        log.warning("preview skipped: rendering failed (%s: %s); see `hoitool doctor`", type(e).__name__, e)
    return None
