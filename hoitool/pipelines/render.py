"""`hoitool render`: grasps -> approach trajectories rendered with exact 3D labels (HOIDiffusion's stage 1).

    jobs = collect_jobs(source, out, options)              # one job per grasp: hand, object, category
    res = render_dataset(jobs, out, options, progress)      # trajectories/ID/..., index.jsonl, sheets

A job carries everything its trajectory needs (hand parameters in the object frame, the
object's vertices and faces, the seed): workers, local or on a Ray cluster, read no files and
return the trajectory's files as bytes, which this process writes. A trajectory's look and
camera depend only on (seed, job index), so a local run, a run with more workers and a Ray run
write the same bytes. The index line of a trajectory is appended once its files are on disk;
a run that stops keeps its finished trajectories, and the same command resumes. At the end
the index is rewritten in job order, then the contact sheet and `render.json` are written.

Layout: see hoitool.render.dataset.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import trimesh
import yaml

from hoitool.errors import InputError
from hoitool.render.dataset import INDEX, TRAJECTORIES
from hoitool.utils.io import atomic_path, write_json, write_text

log = logging.getLogger(__name__)

HAND_KEYS = ("global_orient", "hand_pose", "betas", "transl")


@dataclass
class RenderOptions:
    """Options of `hoitool render`."""

    frames: int = 8
    """Frames per trajectory, from the open hand 0.3 m back to the grasp (the last frame)."""
    size: int = 256
    """Image side in pixels."""
    seed: int = 0
    """Seed of cameras and looks: trajectory i depends only on (seed, i)."""
    vary: bool = True
    """Random backgrounds, colours and lights (else white background, fixed colours)."""
    workers: int = 2
    """Local worker processes (ignored with --ray)."""
    mano_dir: str | None = None
    """Folder with MANO_RIGHT.pkl / MANO_LEFT.pkl (default: the open hand)."""
    limit: int | None = None
    """Render only the first this many grasps of the source."""
    sheet: int = 16
    """Trajectories on the contact sheet (0: none)."""


@dataclass
class RenderJob:
    index: int
    id: str
    category: str
    side: str
    params: dict
    """Hand parameters (batch 1) in the object frame, metres."""
    vertices: np.ndarray
    """(N, 3) object vertices, metres, object frame."""
    faces: np.ndarray
    source: str
    """Where the grasp came from (path and row)."""


@dataclass
class RenderResult:
    out: Path
    trajectories: int
    rendered: int
    skipped: int
    frames: int
    seconds: float
    written: list[Path] = field(default_factory=list)


# ----------------------------------------------------------------------------------------
# sources
# ----------------------------------------------------------------------------------------

def _mesh_arrays(mesh: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)


def _row(d: dict, i: int) -> dict:
    return {k: np.asarray(d[k][i : i + 1], dtype=np.float32) for k in HAND_KEYS}


def source_kind(source: Path) -> str:
    """'grasps', 'samples' or 'prepared', from the files a folder holds."""
    from hoitool.data.grasps import GRASPS_FILE

    if not source.exists():
        raise InputError(f"{source} does not exist: pass a grasp folder (hoitool grasp), a samples folder (hoitool sample), a prepared folder (hoitool prepare-data), or --synthetic N")
    if source.is_dir() and (source / GRASPS_FILE).is_file():
        return "grasps"
    if source.is_dir() and (source / "samples.npz").is_file():
        return "samples"
    if source.is_dir() and (source / "index.jsonl").is_file() and (source / "shards").is_dir():
        return "prepared"
    raise InputError(f"{source} is not a grasp, samples or prepared folder (no grasps.npz, samples.npz, or index.jsonl with shards/): "
                     "pass the output of hoitool grasp, hoitool sample or hoitool prepare-data")


def _grasp_jobs(source: Path) -> list[RenderJob]:
    from hoitool.data.grasps import grasp_object, read_grasps

    gs = read_grasps(source)
    mesh, _ = grasp_object(source, None, None, gs.mesh_scale)
    v, f = _mesh_arrays(mesh)
    d = gs.params.numpy()
    order = np.asarray(gs.order)  # best first when the set is scored, else as stored
    cat = gs.category or "object"
    return [RenderJob(k, f"{k:06d}", cat, gs.params.side, _row(d, int(i)), v, f, f"{source}#{int(i)}") for k, i in enumerate(order)]


def _samples_jobs(source: Path) -> list[RenderJob]:
    from hoitool.geometry.mesh import load_mesh

    try:
        with np.load(source / "samples.npz", allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{source / 'samples.npz'} is unreadable ({type(e).__name__}): sample again with hoitool sample") from None
    if any(k not in d for k in HAND_KEYS):
        raise InputError(f"{source / 'samples.npz'} has no hand parameters: pass a folder written by hoitool sample")
    cats = [str(c) for c in d.get("category", np.array(["object"] * len(d["transl"])))]
    jobs = []
    for i in range(len(d["transl"])):
        obj = source / f"{i:03d}" / "object.obj"
        if not obj.is_file():  # a sample without an object surface has nothing to grasp
            continue
        mesh, _ = load_mesh(obj)
        v, f = _mesh_arrays(mesh)
        jobs.append(RenderJob(len(jobs), f"{len(jobs):06d}", cats[i], "right", _row(d, i), v, f, f"{source}#{i}"))
    if not jobs:
        raise InputError(f"no sample in {source} has an object surface: sample more (hoitool sample CATEGORY --n 16)")
    return jobs


def _prepared_jobs(source: Path, mano_dir: str | None, limit: int | None) -> list[RenderJob]:
    from hoitool.data.prepared import load_record, read_index
    from hoitool.geometry.mesh import load_mesh

    from hoitool.train.tasks import prepared_hand

    prepared_hand(source, mano_dir)  # the hand the folder was made with, or one clear line
    index = read_index(source)
    if not index:
        raise InputError(f"{source} holds no records: prepare data first (hoitool prepare-data)")
    meshes: dict[tuple[str, float], tuple[np.ndarray, np.ndarray]] = {}
    jobs = []
    for k, entry in enumerate(index[:limit] if limit else index):
        rec = load_record(source, k, index=index)
        key = (rec.object_mesh, rec.scale)
        if key not in meshes:
            mesh, _ = load_mesh(rec.object_mesh, scale=rec.scale)
            meshes[key] = _mesh_arrays(mesh)
        v, f = meshes[key]
        jobs.append(RenderJob(k, f"{k:06d}", rec.category, rec.side, {k2: np.asarray(v2, np.float32).reshape(1, -1) for k2, v2 in rec.hand.numpy().items() if k2 in HAND_KEYS},
                              v, f, f"{source}#{rec.id}"))
    return jobs


def synthetic_corpus(out: Path, n: int, seed: int, workers: int, mano_dir: str | None, progress=None) -> Path:
    """A prepared folder of `n` synthetic grasps in OUT/corpus (objects and grasps from the
    corpus planner; resumable like prepare-data)."""
    from hoitool.data.prepare import PrepareConfig, prepare

    corpus = out / "corpus"
    # two grasps per object: more objects (and categories) per trajectory count than prepare-data's 8
    prepare(PrepareConfig(out=corpus, synthetic=n, seed=seed, workers=workers, preview=False, mano_dir=mano_dir, grasps_per_object=2),
            progress=progress)
    return corpus


def collect_jobs(source: Path | None, opts: RenderOptions, synthetic_folder: Path | None = None) -> tuple[list[RenderJob], str]:
    """The jobs of a source folder (or of the synthetic corpus folder) and the source's kind."""
    if source is None:
        assert synthetic_folder is not None
        return _prepared_jobs(synthetic_folder, opts.mano_dir, opts.limit), "synthetic"
    kind = source_kind(source)
    jobs = {"grasps": lambda: _grasp_jobs(source), "samples": lambda: _samples_jobs(source),
            "prepared": lambda: _prepared_jobs(source, opts.mano_dir, opts.limit)}[kind]()
    return (jobs[: opts.limit] if opts.limit else jobs), kind


# ----------------------------------------------------------------------------------------
# worker side
# ----------------------------------------------------------------------------------------

_HANDS: dict = {}


def _hand(side: str, mano_dir: str | None):
    from hoitool.hand import HandModel

    key = (side, mano_dir)
    if key not in _HANDS:
        _HANDS[key] = HandModel(side, mano_dir)
    return _HANDS[key]


def _gif_bytes(images: list[np.ndarray], ms: int = 120) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    frames = [Image.fromarray(im) for im in images]
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=ms, loop=0)
    return buf.getvalue()


def _obj_bytes(v: np.ndarray, f: np.ndarray) -> bytes:
    lines = [f"v {x:.7g} {y:.7g} {z:.7g}" for x, y, z in v] + [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in f]
    return ("\n".join(lines) + "\n").encode()


MIN_DEPTH_M = 0.15
"""Every keypoint of every frame stays at least this far in front of the camera."""
CAMERA_DRAWS = 100


def _camera_for(centre: np.ndarray, kp_o: np.ndarray, frames: int, rng: np.random.Generator, size: int):
    """A look-at camera (hoitool.render.trajectory.look_at_camera) redrawn from `rng` until the
    whole approach is usable: every keypoint of every frame at least MIN_DEPTH_M in front of the
    camera, and the grasp frame's keypoints all inside the image. After CAMERA_DRAWS draws the
    last one is kept (its labels say which keypoints are in view)."""
    from hoitool.render.trajectory import look_at_camera

    last = kp_o[-(len(kp_o) // frames):]
    for tries in range(1, CAMERA_DRAWS + 1):
        camera, cTo = look_at_camera(centre, rng, size=size)
        p = kp_o @ cTo[:3, :3].T + cTo[:3, 3]
        q = last @ cTo[:3, :3].T + cTo[:3, 3]
        if p[:, 2].min() < MIN_DEPTH_M or q[:, 2].min() <= 0:
            continue
        u = camera.fx * q[:, 0] / q[:, 2] + camera.cx
        v = camera.fy * q[:, 1] / q[:, 2] + camera.cy
        if (u >= 0).all() and (u <= size - 1).all() and (v >= 0).all() and (v <= size - 1).all():
            break
    return camera, cTo, tries


def render_job(job: RenderJob, opts: dict) -> tuple[dict, dict[str, bytes]]:
    """Render one trajectory; returns its index record and its files {name: bytes}, labels of
    every frame after its maps. Depends only on the job and the options."""
    import torch

    from hoitool.hand.model import HandParams
    from hoitool.render.appearance import random_appearance
    from hoitool.render.hoi_frame import _png_bytes, encode_frame, render_frame
    from hoitool.render.trajectory import grasp_trajectory

    hand = _hand(job.side, opts["mano_dir"])
    mesh = trimesh.Trimesh(job.vertices, job.faces, process=False)
    rng = np.random.default_rng([int(opts["seed"]), int(job.index)])
    size, frames = int(opts["size"]), int(opts["frames"])
    centre = (np.asarray(mesh.bounds[0]) + np.asarray(mesh.bounds[1])) / 2
    grasp = HandParams.from_numpy(job.params, side=job.side)
    traj = grasp_trajectory(hand, grasp, frames)
    with torch.no_grad():
        kp_o = hand(traj).keypoints.numpy().reshape(-1, 3)  # every frame's keypoints, object frame
    camera, cTo, tries = _camera_for(centre, kp_o, frames, rng, size)
    look = random_appearance(rng, size) if opts["vary"] else None
    files: dict[str, bytes] = {}
    rgbs = []
    cache: dict = {}
    stems = [f"{k:03d}" for k in range(frames)]
    for k, stem in enumerate(stems):
        fr = render_frame(hand, traj[k], mesh, camera, cTo, look, cache)
        uv, z = np.asarray(fr.labels["keypoints_2d_px"]), np.asarray(fr.labels["keypoints_3d_camera_m"])[:, 2]
        inside = (z > 0) & (uv[:, 0] >= -0.5) & (uv[:, 0] <= size - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] <= size - 0.5)
        fr.labels.update({"category": job.category, "trajectory": job.id, "frame": k, "frames": frames,
                          "approach_fraction": k / (frames - 1), "keypoints_in_image": inside.tolist(),
                          "camera_draws": tries})
        files.update(encode_frame(fr, stem))
        rgbs.append(fr.rgb)
    bg = look.background if look is not None else np.full((size, size, 3), 255, np.uint8)
    files["background.png"] = _png_bytes(bg)
    files["object.obj"] = _obj_bytes(job.vertices, job.faces)
    files["approach.gif"] = _gif_bytes(rgbs)
    record = {"id": job.id, "dir": f"{TRAJECTORIES}/{job.id}", "category": job.category, "stems": stems,
              "background": "background.png", "side": job.side, "source": job.source, "index": job.index, "job": job_key(job)}
    return record, files


def job_key(job: RenderJob) -> str:
    """A digest of what a trajectory is made from (grasp, side, category, object mesh): a resumed
    run redoes a trajectory whose source changed under the same path."""
    import hashlib

    h = hashlib.sha256(f"{job.index}|{job.side}|{job.category}".encode())
    for k in HAND_KEYS:
        h.update(np.ascontiguousarray(job.params[k], dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(job.vertices, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(job.faces, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core


def _render_task(args: tuple) -> tuple[dict, dict[str, bytes]]:
    job, opts = args
    return render_job(job, opts)


def _ray_task(job: RenderJob, opts: dict, vertices: np.ndarray, faces: np.ndarray) -> tuple[dict, dict[str, bytes]]:
    import dataclasses

    _worker_init()
    return render_job(dataclasses.replace(job, vertices=vertices, faces=faces), opts)


# ----------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------

def settings(source: str, opts: RenderOptions) -> dict:
    d = asdict(opts)
    for k in ("workers", "limit", "sheet"):  # how the work is done, not what it makes
        d.pop(k)
    return {"source": source, **d}


def check_or_write_config(out: Path, wanted: dict) -> dict[str, str | None]:
    """Refuse an output folder holding another render (or anything else); write config.yaml for
    a fresh one. Returns the trajectories already finished: id -> job key."""
    cfg_path = out / "config.yaml"
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file: pass a folder to --out")
    if cfg_path.is_file():
        old = yaml.safe_load(cfg_path.read_text()) or {}
        diff = sorted(k for k in set(old) | set(wanted) if old.get(k) != wanted.get(k))
        if diff:
            raise InputError(f"{out} holds a render with other settings ({', '.join(diff)}): choose another --out, or run with the same options to resume")
    elif out.exists() and any(p.name != "corpus" for p in out.iterdir()):
        raise InputError(f"{out} already exists and is not a render folder: choose another --out or delete it")
    out.mkdir(parents=True, exist_ok=True)
    if not cfg_path.is_file():
        write_text(cfg_path, yaml.safe_dump(wanted, sort_keys=False))
    done, lines = {}, []
    if (out / INDEX).is_file():
        for line in (out / INDEX).read_text().splitlines():
            try:
                r = json.loads(line)
                done[r["id"]] = r.get("job")
                lines.append(line)
            except (ValueError, KeyError):  # a line cut by a crash mid-write: that trajectory is redone
                continue
        write_text(out / INDEX, "".join(ln + "\n" for ln in lines))  # appends start on a fresh line
    return done


def _write_trajectory(out: Path, record: dict, files: dict[str, bytes]) -> None:
    from hoitool.render.hoi_frame import write_files

    write_files(out / record["dir"], files)
    with open(out / INDEX, "a") as fh:  # the trajectory counts once this line is there
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _finish_index(out: Path) -> None:
    """Rewrite index.jsonl in job order (one line per id, the last written wins; trajectories of
    an earlier run with a larger --limit are kept)."""
    recs = {}
    for line in (out / INDEX).read_text().splitlines():
        try:
            r = json.loads(line)
            recs[r["id"]] = r
        except (ValueError, KeyError):
            continue
    order = sorted(recs, key=lambda i: (int(recs[i].get("index", 0)), i))
    write_text(out / INDEX, "".join(json.dumps(recs[i]) + "\n" for i in order))


def _sheets(out: Path, n: int) -> list[Path]:
    """contact_sheet.png (the grasp frame of the first n trajectories) and maps.png (every map of
    the first trajectory's grasp frame)."""
    from PIL import Image

    from hoitool.render.dataset import read_index
    from hoitool.render.hoi_frame import read_frame
    from hoitool.render.offscreen import contact_sheet

    trajs = read_index(out)[:n]
    written = []
    images = [np.asarray(Image.open(t.frame_paths(t.stems[-1], "rgb")).convert("RGB")) for t in trajs]
    sheet = contact_sheet(images, cols=min(4, len(images)), labels=[f"{t.id} {t.category}" for t in trajs])
    with atomic_path(out / "contact_sheet.png") as tmp:
        sheet.save(tmp, format="PNG")
    written.append(out / "contact_sheet.png")
    t = trajs[0]
    fr = read_frame(t.dir, t.stems[-1])
    d = fr.depth
    fg = d > 0
    dv = np.zeros(d.shape, np.uint8)
    if fg.any():
        lo, hi = d[fg].min(), d[fg].max()
        dv[fg] = (255 - 200 * (d[fg] - lo) / max(hi - lo, 1e-6)).astype(np.uint8)
    normals = np.where(fg[..., None], np.round((fr.normals + 1) * 127.5), 0).astype(np.uint8)
    maps = [fr.rgb, np.repeat(dv[..., None], 3, 2), normals, fr.segmentation, fr.skeleton]
    sheet = contact_sheet(maps, cols=5, labels=["rgb", "depth", "normals", "segmentation", "skeleton"])
    with atomic_path(out / "maps.png") as tmp:
        sheet.save(tmp, format="PNG")
    written.append(out / "maps.png")
    return written


def _ray_map(jobs: list[RenderJob], job_opts: dict, address: str, workers: int, on_done: Callable, in_flight: int = 64) -> None:
    """Each job a Ray task; every distinct object mesh is put in the object store once, and at
    most `in_flight` tasks wait at a time (a million jobs never sit in memory as tasks)."""
    import dataclasses

    from hoitool.errors import require

    ray = require("ray", "ray", "render --ray")
    env = {"env_vars": {"PYOPENGL_PLATFORM": os.environ.get("PYOPENGL_PLATFORM", "egl")}}
    started = False
    if not ray.is_initialized():
        kw = {"num_cpus": max(workers, 1)} if address == "local" else {"address": address}
        try:
            ray.init(**kw, runtime_env=env, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except Exception as e:  # noqa: BLE001 - no cluster at the address, version clash, ...
            raise InputError(f"cannot connect to Ray at {address!r} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}): "
                             "start a cluster (ray start --head) or pass --ray local") from None
        started = True
    try:
        remote = ray.remote(num_cpus=1, max_retries=2)(_ray_task)
        meshes: dict[int, tuple] = {}
        pending: list = []
        queue = iter(jobs)
        while True:
            for job in queue:
                key = id(job.vertices)
                if key not in meshes:
                    meshes[key] = (ray.put(job.vertices), ray.put(job.faces), job.vertices)  # keep the array alive: ids stay unique
                v, f, _ = meshes[key]
                pending.append(remote.remote(dataclasses.replace(job, vertices=None, faces=None), job_opts, v, f))
                if len(pending) >= in_flight:
                    break
            if not pending:
                break
            ready, pending = ray.wait(pending, num_returns=1)
            on_done(ray.get(ready[0]))
    finally:
        if started:
            ray.shutdown()


def render_dataset(jobs: list[RenderJob], out: Path, opts: RenderOptions, source: str, ray_address: str | None = None,
                   progress: Callable[[int, int], None] | None = None) -> RenderResult:
    from hoitool.utils.pool import run_tasks

    t0 = time.perf_counter()
    if not jobs:
        raise InputError(f"{source} has no grasp to render")
    done = check_or_write_config(out, settings(source, opts))
    todo = [j for j in jobs if j.id not in done or done[j.id] != job_key(j)]
    job_opts = {"seed": opts.seed, "size": opts.size, "frames": opts.frames, "vary": opts.vary, "mano_dir": opts.mano_dir}
    count = [len(jobs) - len(todo)]
    if progress:
        progress(count[0], len(jobs))

    def on_done(result) -> None:
        record, files = result
        _write_trajectory(out, record, files)
        count[0] += 1
        if progress:
            progress(count[0], len(jobs))

    if ray_address:
        _ray_map(todo, job_opts, ray_address, opts.workers, on_done)
    else:
        run_tasks([(j, job_opts) for j in todo], _render_task, opts.workers, on_done, initializer=_worker_init, inline_init=False)
    _finish_index(out)
    written = [out / "config.yaml", out / INDEX, out / TRAJECTORIES]
    if opts.sheet:
        try:
            written += _sheets(out, opts.sheet)
        except Exception as e:  # noqa: BLE001 - the sheets are a view; the frames are the result
            log.warning("contact sheets not written (%s: %s)", type(e).__name__, e)
    seconds = time.perf_counter() - t0
    summary = {"trajectories": len(jobs), "rendered": len(todo), "skipped": len(jobs) - len(todo), "frames": len(jobs) * opts.frames,
               "seconds": round(seconds, 2), "frames_per_second_this_run": round(len(todo) * opts.frames / max(seconds, 1e-9), 2),
               "categories": sorted({j.category for j in jobs})}
    write_json(out / "render.json", summary)
    written.append(out / "render.json")
    return RenderResult(out, len(jobs), len(todo), len(jobs) - len(todo), len(jobs) * opts.frames, seconds, written)
