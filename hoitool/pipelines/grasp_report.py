"""Files and figures of a grasp set: hand meshes, the scene, the contact sheet, metric summaries.

Meshes are written in the object's own frame and units (metric coordinates / mesh_scale).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import trimesh

from hoitool.data.grasps import GraspSet
from hoitool.hand.model import HandModel
from hoitool.metrics.grasp import GraspMetrics
from hoitool.utils.io import atomic_path

log = logging.getLogger(__name__)

HAND_RGBA = (224, 172, 150, 255)
OBJECT_RGBA = (110, 150, 200, 255)
#: Share of grasps in the "top" and "bottom" groups of a ranked set.
TAIL = 0.1


def hand_vertices(gs: GraspSet, hand: HandModel | None = None, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(K, V, 3) metric hand vertices in the object frame, and the faces."""
    hand = hand or HandModel(gs.params.side)
    out = []
    with torch.no_grad():
        for s in range(0, gs.params.batch_size, batch_size):
            out.append(hand(gs.params[s:s + batch_size]).vertices.numpy())
    return np.concatenate(out).astype(np.float64), hand.faces.numpy()


def write_hands(folder: Path, verts: np.ndarray, faces: np.ndarray, scale: float) -> Path:
    d = folder / "hands"
    d.mkdir(parents=True, exist_ok=True)
    for i, v in enumerate(verts):
        with atomic_path(d / f"{i:03d}.obj") as tmp:
            trimesh.Trimesh(v / scale, faces, process=False).export(tmp, file_type="obj")
    return d


def scene(mesh: trimesh.Trimesh, verts: np.ndarray, faces: np.ndarray, order: np.ndarray, top: int, scale: float) -> trimesh.Scene:
    """The object and the `top` best hands (nodes grasp_NNN, NNN the grasp index), input units."""
    sc = trimesh.Scene()
    o = trimesh.Trimesh(mesh.vertices / scale, mesh.faces, process=False)
    o.visual.face_colors = OBJECT_RGBA
    sc.add_geometry(o, node_name="object", geom_name="object")
    for i in order[:top]:
        h = trimesh.Trimesh(verts[i] / scale, faces, process=False)
        h.visual.face_colors = HAND_RGBA
        sc.add_geometry(h, node_name=f"grasp_{i:03d}", geom_name=f"grasp_{i:03d}")
    return sc


def contact_sheet(mesh: trimesh.Trimesh, verts: np.ndarray, faces: np.ndarray, order: np.ndarray, labels: list[str], path: Path) -> Path | None:
    """Render hand + object for the grasps in `order` into one image; None if rendering fails."""
    try:
        from hoitool.render.offscreen import OBJECT_COLOR, RenderMesh, contact_sheet as tile, render

        images = [render([RenderMesh(verts[i], faces), RenderMesh(mesh.vertices, mesh.faces, OBJECT_COLOR)], size=256) for i in order]
        img = tile(images, cols=min(4, len(images)), labels=labels)
        with atomic_path(path) as tmp:
            img.save(tmp, format="PNG")
        return path
    except Exception as e:  # noqa: BLE001 - rendering is optional; the meshes are the result
        log.warning("contact sheet not rendered (%s: %s); run `hoitool doctor` to check rendering", type(e).__name__, e)
        return None


def groups(score: np.ndarray | None, n: int) -> dict[str, np.ndarray]:
    """Masks: all grasps, and with scores the top and bottom 10 % (at least one each)."""
    out = {"all": np.ones(n, bool)}
    if score is not None and n >= 2:
        k = max(1, int(round(TAIL * n)))
        order = np.argsort(score, kind="stable")
        top, bottom = np.zeros(n, bool), np.zeros(n, bool)
        top[order[:k]] = True
        bottom[order[-k:]] = True
        out.update({"top10": top, "bottom10": bottom})
    return out


def metrics_summary(m: GraspMetrics, score: np.ndarray | None) -> dict:
    n = len(m.contact)
    per = m.per_grasp()
    if score is not None:
        for i, row in enumerate(per):
            row["score"] = float(score[i])
    return {"aggregate": {name: m.aggregate(mask) for name, mask in groups(score, n).items()}, "per_grasp": per}


COLUMNS = [("intersection_cm3", "vol cm³ ↓"), ("max_depth_cm", "max depth cm ↓"), ("mean_depth_cm", "mean depth cm ↓"),
           ("displacement_cm", "sim. disp. -z cm ↓"), ("displacement6_cm", "sim. disp. 6 dir. cm ↓"), ("contact_ratio", "contact ratio ↑"), ("contact_area", "contact area ↑")]


def metrics_table(aggregate: dict, title: str):
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=escape(title))
    t.add_column("grasps")
    t.add_column("n", justify="right")
    for _, name in COLUMNS:
        t.add_column(name, justify="right")
    for group, row in aggregate.items():
        t.add_row(escape(group), str(row["grasps"]), *[f"{row[k]:.3f}" if np.isfinite(row[k]) else "-" for k, _ in COLUMNS])
    return t
