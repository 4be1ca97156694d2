"""Grasp sets on disk: the format `hoitool grasp` writes and `rank`, `evaluate grasps` and `view` read.

A grasp set is a folder with
    grasps.npz    global_orient (K, 3), hand_pose (K, 45), betas (K, 10), transl (K, 3): hands in
                  the object's frame in metres (mesh coordinates x mesh_scale); side ('right' or
                  'left'); mesh_scale (metres per mesh unit, default 1); optional score (K,),
                  rank (K,) (0 = best), order (K,) (best first), category, and anything else
    object.obj    the object in its own frame and units (or pass --mesh to the readers)
Baselines and ground truth written in this format are evaluated like hoitool's own grasps.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import trimesh

from hoitool.errors import InputError
from hoitool.hand.model import HandParams
from hoitool.utils.io import save_npz

GRASPS_FILE = "grasps.npz"
OBJECT_FILE = "object.obj"
HAND_KEYS = ("global_orient", "hand_pose", "betas", "transl")


@dataclass
class GraspSet:
    params: HandParams
    mesh_scale: float = 1.0
    score: np.ndarray | None = None
    category: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def order(self) -> np.ndarray:
        """Grasp indices best first (by score when there is one, else as stored)."""
        if self.score is None:
            return np.arange(self.params.batch_size)
        return np.argsort(self.score, kind="stable")


def ranks(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rank, order): rank[i] = place of grasp i (0 = lowest score), order = indices best first."""
    order = np.argsort(score, kind="stable")
    rank = np.empty(len(score), dtype=np.int64)
    rank[order] = np.arange(len(score))
    return rank, order


def grasp_arrays(gs: GraspSet) -> dict:
    d = {**gs.params.numpy(), "side": np.array(gs.params.side), "mesh_scale": np.float64(gs.mesh_scale),
         "category": np.array(gs.category)}
    if gs.score is not None:
        rank, order = ranks(gs.score)
        d.update(score=np.asarray(gs.score, dtype=np.float64), rank=rank, order=order)
    d.update({k: np.asarray(v) for k, v in gs.extra.items()})
    return d


def write_grasps(folder: str | os.PathLike, gs: GraspSet) -> Path:
    return save_npz(Path(folder) / GRASPS_FILE, **grasp_arrays(gs))


def read_grasps(folder: str | os.PathLike) -> GraspSet:
    folder = Path(folder)
    path = folder / GRASPS_FILE if folder.is_dir() else folder
    if not path.is_file():
        raise InputError(f"no {GRASPS_FILE} in {folder}: pass a folder written by hoitool grasp (or in its format)")
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - any unreadable file
        raise InputError(f"{path} is unreadable ({type(e).__name__}): write it again with hoitool grasp") from None
    missing = [k for k in HAND_KEYS if k not in d]
    if missing:
        raise InputError(f"{path} lacks {', '.join(missing)}: a grasp set needs global_orient, hand_pose, betas, transl")
    side = str(d.get("side", "right"))
    params = HandParams.from_numpy(d, side=side)
    if params.batch_size == 0:
        raise InputError(f"{path} holds no grasps")
    for k in HAND_KEYS:
        if not np.isfinite(getattr(params, k).numpy()).all():
            raise InputError(f"{path} has NaN or infinite {k}: regenerate the grasps")
    score = d.get("score")
    extra = {k: v for k, v in d.items() if k not in (*HAND_KEYS, "side", "mesh_scale", "score", "rank", "order", "category")}
    return GraspSet(params, float(d.get("mesh_scale", 1.0)), None if score is None else score.astype(np.float64),
                    str(d.get("category", "")), extra)


def grasp_object(folder: str | os.PathLike, mesh: str | os.PathLike | None, scale: float | None, mesh_scale: float) -> tuple[trimesh.Trimesh, float]:
    """The object of a grasp set as a validated metric mesh, and its metres-per-unit scale:
    --mesh (with --scale, default the set's mesh_scale) or the set's object.obj."""
    from hoitool.geometry.mesh import load_mesh

    path = Path(mesh) if mesh is not None else Path(folder) / OBJECT_FILE
    if mesh is None and not path.is_file():
        raise InputError(f"no {OBJECT_FILE} in {folder}: pass the object with --mesh")
    s = mesh_scale if scale is None else scale
    m, _ = load_mesh(path, scale=s)
    return m, s


@contextlib.contextmanager
def staged_folder(out: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh sibling folder; it becomes `out` only when the block succeeds, so an
    interrupted run leaves no folder that looks complete. `out` must not exist or be empty."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} already exists and is not empty: choose another --out or delete it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
        os.chmod(out, 0o777 & ~_umask())
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
