"""Sampling interactions from the prior and turning them into meshes and hand parameters.

    res = sample_interactions(prior, "mug", n=8, steps=100, guidance=4.0, seed=0)
    res.hand          # HandParams (8) in the hand frame h (global_orient = transl = 0)
    res.objects[i]    # trimesh.Trimesh in h, metres, or None when sample i has no surface
    write_samples(res, "out/")   # per-sample hand.obj, object.obj, scene.glb; samples.npz; contact_sheet.png
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import trimesh

from hoitool.geometry.grid import GRID_HALF_EXTENT, N_UNIT_M, OBJECT_CLAMP, nTh_from_joints
from hoitool.geometry.transforms import invert_transform, np_apply
from hoitool.hand.field import pose_from_field
from hoitool.hand.model import HandModel, HandParams
from hoitool.prior.model import InteractionPrior
from hoitool.utils.io import atomic_path, save_npz

log = logging.getLogger(__name__)

HAND_RGBA = (224, 172, 150, 255)
OBJECT_RGBA = (110, 150, 200, 255)


@dataclass
class SampledInteractions:
    categories: list[str]
    seed: int
    x: torch.Tensor
    """(B, 23, 16, 16, 16) sampled interaction grids."""
    object_grid: torch.Tensor
    """(B, 64, 64, 64) decoded object SDF in [-1, 1] (x 4 cm) in the frame n."""
    hand: HandParams
    """(B) right hands in their own frame h."""
    hTn: torch.Tensor
    """(B, 4, 4) grid frame n -> hand frame h."""
    objects: list[trimesh.Trimesh | None]
    """Object surfaces in h (metres); None where the grid has no zero crossing."""
    hand_vertices: np.ndarray
    """(B, V, 3) hand vertices in h (metres)."""
    hand_faces: np.ndarray
    penetration_mm: np.ndarray
    """(B,) deepest overlap of hand and object (either way), NaN without an object."""
    fingers_in_contact: np.ndarray
    """(B,) fingers within 5 mm of the object surface."""
    contact: np.ndarray
    """(B,) bool: some finger or the palm within 5 mm of (or inside) the object."""


def grid_to_mesh(grid: np.ndarray, hTn: np.ndarray) -> trimesh.Trimesh | None:
    """Zero level set of an (R, R, R) n-frame grid as a mesh in h (metres): the surface of its
    largest connected inside region (smaller islands are dropped)."""
    from scipy import ndimage
    from skimage.measure import marching_cubes

    R = grid.shape[0]
    if not (grid.min() < 0 < grid.max()):
        return None
    labels, count = ndimage.label(grid < 0)
    if count > 1:
        keep = np.bincount(labels.ravel())[1:].argmax() + 1
        grid = np.where((labels > 0) & (labels != keep), np.abs(grid), grid)
    step = 2 * GRID_HALF_EXTENT / (R - 1)
    v, f, _, _ = marching_cubes(grid.astype(np.float32), level=0.0, spacing=(step, step, step))
    v = v - GRID_HALF_EXTENT
    return trimesh.Trimesh(np_apply(hTn, v), f, process=True)


def decode_interactions(prior: InteractionPrior, x: torch.Tensor, hand: HandModel, categories: list[str], seed: int) -> SampledInteractions:
    from hoitool.metrics.grasp import contact_quality

    dec = prior.decode(x)
    field = dec.field.cpu()
    params = pose_from_field(hand, field)
    with torch.no_grad():
        out = hand(params)
        nTh = nTh_from_joints(hand.rest_joints(params.betas))
    hTn = invert_transform(nTh)
    grids = dec.object_grid[:, 0].cpu()
    objects = [grid_to_mesh(g.numpy(), T.numpy()) for g, T in zip(grids, hTn)]
    B = len(objects)
    pen = np.full(B, np.nan)
    fingers = np.zeros(B, dtype=int)
    contact = np.zeros(B, dtype=bool)
    for i, m in enumerate(objects):
        if m is None:
            continue
        q = contact_quality(hand, m, params[i], object_in_hand=m.is_watertight)
        pen[i] = 1000 * np.nanmax([q.penetration_m[0], q.object_in_hand_m[0]])
        fingers[i] = int(q.fingers[0].sum())
        contact[i] = bool(q.fingers[0].any() or q.palm[0])
    return SampledInteractions(categories, seed, x.cpu(), grids, params, hTn, objects, out.vertices.numpy(),
                               hand.faces.cpu().numpy(), pen, fingers, contact)


def sample_interactions(prior: InteractionPrior, category: str | list[str], n: int, steps: int = 100, guidance: float = 4.0,
                        seed: int = 0, hand: HandModel | None = None, batch_size: int = 16,
                        progress: Callable[[int, int], None] | None = None) -> SampledInteractions:
    cats = [category] * n if isinstance(category, str) else list(category)
    x = prior.sample(cats, steps=steps, guidance=guidance, seed=seed, batch_size=batch_size, progress=progress)
    return decode_interactions(prior, x, hand or HandModel("right"), cats, seed)


def _scene(hand_v: np.ndarray, hand_f: np.ndarray, obj: trimesh.Trimesh | None) -> trimesh.Scene:
    scene = trimesh.Scene()
    h = trimesh.Trimesh(hand_v, hand_f, process=False)
    h.visual.face_colors = HAND_RGBA
    scene.add_geometry(h, node_name="hand", geom_name="hand")
    if obj is not None:
        o = obj.copy()
        o.visual.face_colors = OBJECT_RGBA
        scene.add_geometry(o, node_name="object", geom_name="object")
    return scene


def write_samples(res: SampledInteractions, out: str | Path, sheet: bool = True, meta: dict | None = None) -> list[Path]:
    """Write per-sample meshes and scenes, samples.npz (written last) and contact_sheet.png."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    B = len(res.objects)
    for i in range(B):
        d = out / f"{i:03d}"
        d.mkdir(exist_ok=True)
        with atomic_path(d / "hand.obj") as tmp:
            trimesh.Trimesh(res.hand_vertices[i], res.hand_faces, process=False).export(tmp, file_type="obj")
        if res.objects[i] is not None:
            with atomic_path(d / "object.obj") as tmp:
                res.objects[i].export(tmp, file_type="obj")
        with atomic_path(d / "scene.glb") as tmp:
            _scene(res.hand_vertices[i], res.hand_faces, res.objects[i]).export(tmp, file_type="glb")
    written.extend(out / f"{i:03d}" for i in range(B))
    if sheet:
        try:
            from hoitool.render.offscreen import OBJECT_COLOR, RenderMesh, contact_sheet, render

            images = []
            for i in range(B):
                meshes = [RenderMesh(res.hand_vertices[i], res.hand_faces)]
                if res.objects[i] is not None:
                    meshes.append(RenderMesh(res.objects[i].vertices, res.objects[i].faces, OBJECT_COLOR))
                images.append(render(meshes, size=256))
            labels = [f"{i:03d} {res.categories[i]}" + ("" if res.objects[i] is not None else " (no object)") for i in range(B)]
            img = contact_sheet(images, cols=min(4, B), labels=labels)
            with atomic_path(out / "contact_sheet.png") as tmp:
                img.save(tmp, format="PNG")
            written.append(out / "contact_sheet.png")
        except Exception as e:  # noqa: BLE001 - rendering is optional; the meshes are the result
            log.warning("contact sheet not rendered (%s: %s); run `hoitool doctor` to check rendering", type(e).__name__, e)
    p = res.hand.numpy()
    save_npz(out / "samples.npz", category=np.array(res.categories), seed=np.int64(res.seed),
             index=np.arange(B), **p, x=res.x.numpy().astype(np.float16), object_grid=res.object_grid.numpy().astype(np.float16),
             hTn=res.hTn.numpy(), has_object=np.array([o is not None for o in res.objects]),
             penetration_mm=res.penetration_mm, fingers_in_contact=res.fingers_in_contact, contact=res.contact,
             object_sdf_unit_m=np.float64(OBJECT_CLAMP * N_UNIT_M), **{k: np.array(v) for k, v in (meta or {}).items()})
    written.append(out / "samples.npz")
    return written
