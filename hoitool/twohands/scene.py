"""Two-hand scenes: per-sample meshes, .glb scenes and contact sheets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import trimesh

from hoitool.utils.io import atomic_path

RIGHT_RGBA = (224, 172, 150, 255)
LEFT_RGBA = (150, 190, 140, 255)
OBJECT_RGBA = (110, 150, 200, 255)
RIGHT_COLOR = tuple(c / 255 for c in RIGHT_RGBA)
LEFT_COLOR = tuple(c / 255 for c in LEFT_RGBA)


def scene(right_v: np.ndarray, right_f: np.ndarray, left_v: np.ndarray, left_f: np.ndarray,
          obj: trimesh.Trimesh | None = None) -> trimesh.Scene:
    s = trimesh.Scene()
    for name, v, f, rgba in (("right_hand", right_v, right_f, RIGHT_RGBA), ("left_hand", left_v, left_f, LEFT_RGBA)):
        m = trimesh.Trimesh(v, f, process=False)
        m.visual.face_colors = rgba
        s.add_geometry(m, node_name=name, geom_name=name)
    if obj is not None:
        o = obj.copy()
        o.visual.face_colors = OBJECT_RGBA
        s.add_geometry(o, node_name="object", geom_name="object")
    return s


def render_sheet(right_v: np.ndarray, right_f, left_v: np.ndarray, left_f, objects: list, labels: list[str], path: Path,
                 size: int = 256, cols: int = 4) -> Path:
    """A contact sheet of pairs (B, V, 3); raises when rendering is unavailable."""
    from hoitool.render.offscreen import OBJECT_COLOR, RenderMesh, contact_sheet, render

    images = []
    for i in range(len(right_v)):
        meshes = [RenderMesh(right_v[i], right_f, RIGHT_COLOR), RenderMesh(left_v[i], left_f, LEFT_COLOR)]
        if objects[i] is not None:
            meshes.append(RenderMesh(objects[i].vertices, objects[i].faces, OBJECT_COLOR))
        images.append(render(meshes, direction=(0.4, -1.0, 0.6), up=(0.0, 0.0, 1.0), size=size))
    img = contact_sheet(images, cols=min(cols, len(images)), labels=labels)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)


def render_pairs(records, path: Path, mano_dir=None, scale: float = 1.0) -> Path:
    """A contact sheet of two-hand records (in their own frames)."""
    from hoitool.geometry.mesh import load_mesh
    from hoitool.hand.model import HandModel

    hands = {s: HandModel(s, mano_dir) for s in ("right", "left")}
    with torch.no_grad():
        vr = np.stack([hands["right"](r.hand_params("right")).vertices[0].numpy() for r in records])
        vl = np.stack([hands["left"](r.hand_params("left")).vertices[0].numpy() for r in records])
    objects = [load_mesh(r.object_mesh, r.scale * scale)[0] if r.object_mesh else None for r in records]
    labels = [r.interaction or r.id for r in records]
    return render_sheet(vr, hands["right"].faces.numpy(), vl, hands["left"].faces.numpy(), objects, labels, path)
