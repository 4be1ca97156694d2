"""`hoitool prepare-data --two-hands N` and two-hand manifests: prepared two-hand folders.

Folder layout:
    config.yaml        the resolved options (and the hand model)
    records.jsonl      the records in the two-hand manifest format (hands in their own frame)
    chunks/            synthetic mode: one .npz + .json per planned chunk (resume unit)
    objects/meshes/    synthetic mode: the bimanual objects
    twohands.npz       x_a, x_b (N, 64) vectors, interaction type ids and names, object ids
                       (-1: none), object points (M, P, 3) in the reference frame; written last:
                       its presence marks the folder complete
    stats.json         planner acceptance and quality of the kept pairs
    preview.png        a contact sheet of a few records
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import trimesh

from hoitool.data.synthetic.twohands import BIMANUAL_OBJECTS, HAND_TYPES, INTERACTION_TYPES, OBJECT_TYPE, TwoHandConfig
from hoitool.errors import HoiError, InputError
from hoitool.twohands.records import TwoHandRecord, read_twohand_manifest, write_twohand_manifest
from hoitool.utils.io import atomic_path, save_npz, write_json, write_text
from hoitool.utils.pool import run_tasks

log = logging.getLogger(__name__)

#: Largest object (bounding box diagonal, metres) two hands can hold.
MAX_OBJECT_M = 0.8
OBJECT_POINTS = 1024


def _bimanual_gates():
    from hoitool.data.synthetic.planner import PlannerConfig

    # one hand on a two-hand object need not oppose its own thumb: the other hand does
    return PlannerConfig(min_fingers=2, opposition_cos=1.01)


BIMANUAL_GATES = None


@dataclass
class TwoHandPrepareConfig:
    out: Path
    two_hands: int = 0
    """Synthetic pairs to generate."""
    manifest: Path | None = None
    """A two-hand JSONL manifest to convert instead."""
    scale: float = 1.0
    """Multiplies every manifest mesh's coordinates."""
    object_share: float = 0.15
    """Share of synthetic pairs that are bimanual grasps of an object."""
    per_chunk: int = 16
    """Synthetic pairs per chunk (the unit of parallel and resumable work)."""
    pairs_per_object: int = 6
    workers: int = 2
    seed: int = 0
    preview: bool = True
    mano_dir: str | None = None
    planner: TwoHandConfig = field(default_factory=TwoHandConfig)


@dataclass
class TwoHandPrepareResult:
    out: Path
    records: int
    seconds: float
    stats: dict
    written: list[Path]


def _object_frame(mesh) -> np.ndarray:
    """rTo: the object frame moved to its bounding box centre (no rotation)."""
    T = np.eye(4, dtype=np.float32)
    T[:3, 3] = -(mesh.bounds[0] + mesh.bounds[1]) / 2
    return T


def check_object_size(mesh, where: str) -> None:
    diag = float(np.linalg.norm(mesh.extents))
    if diag > MAX_OBJECT_M:
        raise InputError(f"{where} is {diag:.2f} m across, too large for two hands (at most {MAX_OBJECT_M} m): "
                         "check its units (--scale 0.001 for millimetres)")


# -- synthetic chunks ------------------------------------------------------------------------------

_W: dict = {}


def _init_worker(mano_dir, planner_cfg: dict, threads: int = 1, worker: bool = False) -> None:
    import signal

    if worker:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    from hoitool.data.synthetic.planner import GraspPlanner
    from hoitool.data.synthetic.twohands import TwoHandPlanner
    from hoitool.hand.model import HandModel

    global BIMANUAL_GATES
    BIMANUAL_GATES = _bimanual_gates()
    hands = {s: HandModel(s, mano_dir) for s in ("right", "left")}
    cfg = dict(planner_cfg)
    cfg["gap_m"], cfg["near_gap_m"] = tuple(cfg["gap_m"]), tuple(cfg["near_gap_m"])
    _W.update(hands=hands, planner=TwoHandPlanner(hands["right"], hands["left"], TwoHandConfig(**cfg)),
              grasp=GraspPlanner(hands["right"], BIMANUAL_GATES))


def _chunk(task: dict) -> dict:
    """Plan one chunk and write chunks/<key>.npz then .json (the marker)."""
    from hoitool.data.synthetic.twohands import bimanual_object, plan_bimanual
    from hoitool.utils.seeding import numpy_rng

    out, key, seed = Path(task["out"]), task["key"], task["seed"]
    meta: dict = {"key": key, "type": task["type"]}
    if task["type"] == OBJECT_TYPE:
        cat = task["category"]
        mesh = bimanual_object(cat, numpy_rng(seed, "object", key))
        mesh_path = out / "objects" / "meshes" / f"{key}.obj"
        mesh_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(mesh_path) as tmp:
            mesh.export(tmp, file_type="obj")
        right, left, st = plan_bimanual(_W["grasp"], _W["hands"]["left"], mesh, task["n"], seed, key)
        meta.update(candidates=st["candidates"], accepted=st["passed"], kept=int(right.batch_size), rejected={}, category=cat,
                    object_mesh=str(mesh_path.relative_to(out)), grasps=st["grasps"])
        quality = {}
    else:
        b = _W["planner"].plan(task["type"], task["n"], seed, key)
        right, left, quality = b.right, b.left, b.quality
        meta.update(candidates=b.candidates, accepted=b.passed, kept=int(right.batch_size), rejected=b.rejected)
    arrays = {f"right_{k}": v for k, v in right.numpy().items()}
    arrays.update({f"left_{k}": v for k, v in left.numpy().items()})
    arrays.update({k: np.asarray(v, dtype=np.float32) for k, v in quality.items()})
    save_npz(out / "chunks" / f"{key}.npz", **arrays)
    write_json(out / "chunks" / f"{key}.json", meta)
    return meta


def _plan_tasks(cfg: TwoHandPrepareConfig) -> list[dict]:
    n_obj = int(round(cfg.two_hands * cfg.object_share))
    n_hand = cfg.two_hands - n_obj
    tasks = []
    per_type = [n_hand // len(HAND_TYPES) + (1 if i < n_hand % len(HAND_TYPES) else 0) for i in range(len(HAND_TYPES))]
    for kind, n in zip(HAND_TYPES, per_type):
        for c in range(math.ceil(n / cfg.per_chunk)):
            tasks.append({"type": kind, "n": min(cfg.per_chunk, n - c * cfg.per_chunk), "key": f"{kind}-{c:04d}"})
    cats = list(BIMANUAL_OBJECTS)
    for j in range(math.ceil(n_obj / cfg.pairs_per_object)):
        tasks.append({"type": OBJECT_TYPE, "category": cats[j % len(cats)], "key": f"{OBJECT_TYPE}-{cats[j % len(cats)]}-{j:04d}",
                      "n": min(cfg.pairs_per_object, n_obj - j * cfg.pairs_per_object)})
    by_type: dict[str, list] = {}
    for t in tasks:
        t.update(out=str(cfg.out), seed=cfg.seed)
        by_type.setdefault(t["type"], []).append(t)
    # round robin over the types, so every type is under way early (and an interrupted run has some of each)
    lists = list(by_type.values())
    return [lst[i] for i in range(max(map(len, lists), default=0)) for lst in lists if i < len(lst)]


def _run(tasks: list[dict], cfg: TwoHandPrepareConfig, on_done: Callable[[dict], None]) -> None:
    pcfg = dataclasses.asdict(cfg.planner)
    if cfg.workers <= 1 or len(tasks) <= 1:
        _init_worker(cfg.mano_dir, pcfg, threads=torch.get_num_threads())
        for t in tasks:
            on_done(_chunk(t))
        return
    run_tasks(tasks, _chunk, cfg.workers, on_done, initializer=_init_worker, initargs=(cfg.mano_dir, pcfg, 1, True), inline_init=False)


def _synthetic_records(cfg: TwoHandPrepareConfig, tasks: list[dict]) -> tuple[list[TwoHandRecord], dict]:
    records, cand, acc = [], {}, {}
    rejected: dict[str, int] = {}
    for t in tasks:
        stem = cfg.out / "chunks" / t["key"]
        meta = json.loads(stem.with_suffix(".json").read_text())
        with np.load(stem.with_suffix(".npz")) as z:
            arrays = {k: z[k] for k in z.files}
        kind = t["type"]
        cand[kind] = cand.get(kind, 0) + meta["candidates"]
        acc[kind] = acc.get(kind, 0) + meta["accepted"]
        for k, v in meta["rejected"].items():
            rejected[k] = rejected.get(k, 0) + v
        n = len(arrays["right_hand_pose"]) if "right_hand_pose" in arrays else 0
        for i in range(n):
            hand = lambda s: {k: arrays[f"{s}_{k}"][i] for k in ("global_orient", "hand_pose", "betas", "transl")}  # noqa: E731
            extra = {k: round(float(arrays[k][i]), 4) for k in ("penetration_volume_cm3", "penetration_depth_cm", "distance_cm") if k in arrays}
            r = TwoHandRecord(hand("right"), hand("left"), id=f"{t['key']}-{i:02d}", interaction=kind, source="synthetic", extra=extra)
            if kind == OBJECT_TYPE:
                r.object_mesh, r.category = str(cfg.out / meta["object_mesh"]), meta["category"]
            records.append(r)
    total_c, total_a = sum(cand.values()), sum(acc.values())
    stats = {"candidates": total_c, "accepted": total_a, "acceptance_rate": total_a / total_c if total_c else None,
             "per_type": {k: {"candidates": cand[k], "accepted": acc[k], "acceptance_rate": acc[k] / cand[k] if cand[k] else None} for k in cand},
             "rejected": rejected,
             "gates": {"max_volume_cm3": cfg.planner.max_volume_cm3, "max_depth_mm": cfg.planner.max_depth_m * 1000,
                       "contact_mm": cfg.planner.contact_m * 1000, "near_contact_gap_mm": [g * 1000 for g in cfg.planner.near_gap_m],
                       "bimanual": "each hand passes the one-hand planner's penetration gates with >= 2 fingers (thumb included) in contact; "
                                   "pairs overlap <= 0.5 cm^3 and the palms are >= 0.4 x the object's size apart"}}
    return records, stats


# -- vectors -----------------------------------------------------------------------------------------

def vectors_of(records: list[TwoHandRecord], mano_dir: str | None, scale: float = 1.0, seed: int = 0) -> dict:
    """x_a, x_b, types, object ids and object points (reference frame) of records."""
    from hoitool.geometry.mesh import load_mesh
    from hoitool.hand.model import HandModel, HandParams
    from hoitool.twohands.params import to_vectors

    hands = {s: HandModel(s, mano_dir) for s in ("right", "left")}
    objects: dict[str, int] = {}
    points, frames = [], []
    obj_id = np.full(len(records), -1, dtype=np.int64)
    rTw = np.tile(np.eye(4, dtype=np.float32), (len(records), 1, 1))
    for i, r in enumerate(records):
        if not r.object_mesh:
            continue
        if r.object_mesh not in objects:
            mesh, _ = load_mesh(r.object_mesh, r.scale * scale)
            check_object_size(mesh, r.where or r.object_mesh)
            T = _object_frame(mesh)
            pts, _ = trimesh.sample.sample_surface(mesh, OBJECT_POINTS, seed=seed)
            points.append((pts @ T[:3, :3].T + T[:3, 3]).astype(np.float32))
            frames.append(T)
            objects[r.object_mesh] = len(objects)
        obj_id[i] = objects[r.object_mesh]
        rTw[i] = frames[obj_id[i]]  # hands are in metres already: --scale scales the meshes only
    right = HandParams.cat([r.hand_params("right") for r in records])
    left = HandParams.cat([r.hand_params("left") for r in records])
    has = torch.as_tensor(obj_id >= 0)
    with torch.no_grad():
        xa0, xb = to_vectors(hands["right"], hands["left"], right, left, None)
        xa1, _ = to_vectors(hands["right"], hands["left"], right, left, torch.as_tensor(rTw))
        xa = torch.where(has[:, None], xa1, xa0)
    names = sorted({r.interaction or "unlabelled" for r in records}, key=lambda n: (INTERACTION_TYPES + [n]).index(n))
    types = np.array([names.index(r.interaction or "unlabelled") for r in records])
    return {"xa": xa.numpy(), "xb": xb.numpy(), "type": types, "type_names": np.array(names), "object": obj_id,
            "object_points": np.stack(points) if points else np.zeros((0, OBJECT_POINTS, 3), np.float32),
            "object_meshes": np.array(list(objects)), "ids": np.array([r.id for r in records])}


# -- main ---------------------------------------------------------------------------------------------

def check_config(cfg: TwoHandPrepareConfig) -> None:
    from hoitool.data.prepare import hand_record

    if (cfg.manifest is None) == (cfg.two_hands <= 0):
        raise InputError("give either --manifest FILE or --two-hands N (N > 0)")
    if cfg.manifest is not None and not Path(cfg.manifest).is_file():
        raise InputError(f"manifest not found: {cfg.manifest}")
    cfg.out = Path(cfg.out)
    if cfg.out.exists() and not cfg.out.is_dir():
        raise InputError(f"--out {cfg.out} exists and is not a folder")
    hand_record(cfg.mano_dir)
    p = cfg.out / "config.yaml"
    if p.exists():
        import yaml

        old = (yaml.safe_load(p.read_text()) or {})
        if old.get("kind") != "twohands":
            raise HoiError(f"{cfg.out} holds one-hand prepared data: use another --out for two-hand data")
        if old.get("fingerprint") != _fingerprint(cfg):
            raise HoiError(f"{cfg.out} holds two-hand data prepared with other options: use another --out, or delete it to start over")


def _fingerprint(cfg: TwoHandPrepareConfig) -> str:
    import hashlib

    d = dataclasses.asdict(cfg)
    for k in ("out", "workers", "preview"):
        d.pop(k)
    d["manifest"] = str(Path(cfg.manifest).resolve()) if cfg.manifest else None
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare_twohands(cfg: TwoHandPrepareConfig, progress: Callable[[int, int], None] | None = None) -> TwoHandPrepareResult:
    from hoitool.data.prepare import hand_record
    from hoitool.utils.config import to_dict
    import yaml

    t0 = time.time()
    check_config(cfg)
    progress = progress or (lambda d, t: None)
    arrays = None
    if cfg.manifest is not None:  # every record and mesh is checked before anything is written
        records = read_twohand_manifest(cfg.manifest)
        progress(0, 1)
        arrays = vectors_of(records, cfg.mano_dir, cfg.scale, cfg.seed)
        stats = {"source": str(cfg.manifest)}
    cfg.out.mkdir(parents=True, exist_ok=True)
    config = {"kind": "twohands", "fingerprint": _fingerprint(cfg), "hand": hand_record(cfg.mano_dir), **to_dict(cfg)}
    write_text(cfg.out / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    for stale in cfg.out.glob("**/.*.part"):
        stale.unlink()
    written = [cfg.out / "config.yaml"]
    if cfg.two_hands > 0:
        tasks = _plan_tasks(cfg)
        todo = [t for t in tasks if not (cfg.out / "chunks" / f"{t['key']}.json").exists()]
        if todo:
            (cfg.out / "twohands.npz").unlink(missing_ok=True)  # the folder reads unfinished until it is rewritten
        done = [len(tasks) - len(todo)]
        progress(done[0], len(tasks))

        def on_done(_):
            done[0] += 1
            progress(done[0], len(tasks))

        _run(todo, cfg, on_done)
        records, stats = _synthetic_records(cfg, tasks)
        written += [cfg.out / "chunks"]
        if (cfg.out / "objects").exists():
            written.append(cfg.out / "objects")
    if not records:
        raise HoiError("the planner kept no two-hand pairs: see stats.json's rejections, or ask for more (--two-hands)")
    write_twohand_manifest(cfg.out / "records.jsonl", records, relative_to=cfg.out)
    written.append(cfg.out / "records.jsonl")
    if arrays is None:
        arrays = vectors_of(records, cfg.mano_dir, 1.0, cfg.seed)
    stats["records"] = len(records)
    stats["types"] = {str(n): int((arrays["type"] == i).sum()) for i, n in enumerate(arrays["type_names"])}
    stats["with_object"] = int((arrays["object"] >= 0).sum())
    for k in ("penetration_volume_cm3", "penetration_depth_cm", "distance_cm"):
        vals = [r.extra[k] for r in records if k in r.extra]
        if vals:
            stats[k] = {"mean": float(np.mean(vals)), "max": float(np.max(vals))}
    written.append(write_json(cfg.out / "stats.json", stats))
    if cfg.preview:
        p = _preview(cfg, records, arrays)
        if p is not None:
            written.append(p)
    save_npz(cfg.out / "twohands.npz", **arrays)  # last: marks the folder complete
    written.append(cfg.out / "twohands.npz")
    if cfg.manifest:
        progress(1, 1)
    return TwoHandPrepareResult(cfg.out, len(records), time.time() - t0, stats, written)


def _preview(cfg: TwoHandPrepareConfig, records: list[TwoHandRecord], arrays: dict, n: int = 8) -> Path | None:
    try:
        from hoitool.twohands.scene import render_pairs

        picks = np.unique(np.linspace(0, len(records) - 1, min(n, len(records))).round().astype(int))
        path = cfg.out / "preview.png"
        render_pairs([records[i] for i in picks], path, cfg.mano_dir, scale=cfg.scale if cfg.manifest else 1.0)
        return path
    except Exception as e:  # noqa: BLE001 - a broken GL stack must not fail the preparation
        log.warning("preview skipped: %s: %s (see `hoitool doctor`)", type(e).__name__, e)
        return None


def read_prepared(root: str | Path) -> dict:
    """The arrays of a prepared two-hand folder (twohands.npz), or one clear error."""
    root = Path(root)
    p = root / "twohands.npz"
    if not p.is_file():
        if (root / "index.jsonl").is_file() or (root / "shards").is_dir():
            raise InputError(f"{root} holds one-hand data (prepare-data --synthetic/--manifest): "
                             "prepare two-hand data with hoitool prepare-data --two-hands N (or a two-hand manifest)")
        raise InputError(f"{root} has no two-hand records (twohands.npz is missing): run hoitool prepare-data --two-hands N --out {root}, "
                         "or let an interrupted run finish")
    with np.load(p, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
