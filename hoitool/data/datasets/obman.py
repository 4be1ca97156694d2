"""ObMan (Hasson et al., CVPR 2019): synthetic renders of a right hand grasping a ShapeNet object
(GraspIt grasps on bottles, bowls, cameras, cans, jars, knives, mugs, phones and remotes).

Layout read (the authors' release, `obman_train/handobjectdatasets/obman.py`, and the renderer
that wrote it, `obman_render/blender_grasps.py` and `coordutils.py`):
    ROOT/<SPLIT>/meta/<IDX:08d>.pkl   (SPLIT: train, val, test) side ('right'), pca_pose (45),
                                      verts_3d (778, 3): the MANO-ordered hand vertices, world
                                      frame, metres; affine_transform (4, 4): ShapeNet model
                                      coordinates -> world, its 3x3 part = rotation x the
                                      object's uniform scale (obj_scale); class_id (synset),
                                      sample_id, obj_path (the authors' ShapeNetCore.v2 path)
    ROOT/<SPLIT>/rgb/<IDX:08d>.jpg    (referenced as `image` when present)
    OBJECTS/<class_id>/<sample_id>/models/model_normalized.obj   ShapeNetCore.v2 (--objects,
                                      where obj_path is remapped; default ROOT/ShapeNetCore.v2)
Conventions: ObMan renders the hand as part of an SMPL+H body (flat_hand_mean=True, the right
hand's articulation = pca_pose @ hands_components of MANO_RIGHT.pkl, no mean pose added, zero
shape), so the meta holds no MANO wrist rotation or translation. As the G-HOP authors'
preprocessing does, the articulation is taken from pca_pose (flat-mean, the MANO file's own
basis, hence --mano-dir), betas are zero, and the wrist's rigid pose is the least-squares rigid
fit of that MANO hand to verts_3d (its mean vertex error is kept as `fit_mm`; above 10 mm the
sample is skipped: the MANO files do not match). The object keeps the ShapeNet mesh in place
with the record's `scale` = the affine's uniform scale; the hand goes into the object's frame
(rotation and translation of the affine). GraspIt hands are right hands (`side` is 'right' in
every sample the renderer writes; a 'left' side would use MANO_LEFT.pkl's basis).
Skipped: samples whose ShapeNet model is missing under --objects, whose affine has a
reflection, or whose hand does not fit. Unconfirmed: that the affine applies to the OBJ file's
vertices as stored (Blender's OBJ import axis change not baked in); the G-HOP authors' ObMan
preprocessing applies it that way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hoitool.data.datasets.base import Context, Dataset, Skip, load_pickle, missing, params_of, record, rigid
from hoitool.data.vocab import category_or_text
from hoitool.errors import InputError

#: ShapeNet synsets of ObMan's objects -> hoitool categories.
SYNSETS = {"02876657": "bottle", "02880940": "bowl", "02942699": "camera", "02946921": "can", "02992529": "phone",
           "03593526": "jar", "03624134": "knife", "03797390": "mug", "04074963": "remote"}
MAX_FIT_MM = 10.0


def _check(root: Path) -> str | None:
    return missing(root, "*/meta/*.pkl")


def _shapenet_ids(meta: dict) -> tuple[str, str] | None:
    cls, sample = meta.get("class_id"), meta.get("sample_id")
    if cls is not None and sample is not None:
        return str(cls), str(sample)
    parts = Path(str(meta.get("obj_path", ""))).parts  # .../ShapeNetCore.v2/<class>/<sample>/models/<file>
    return (parts[-4], parts[-3]) if len(parts) >= 4 and parts[-2] == "models" else None


def _shapenet_mesh(objects: Path, cls: str, sample: str, obj_path) -> Path | None:
    names = [Path(str(obj_path)).name] if str(obj_path or "").endswith(".obj") else []
    for name in names + ["model_normalized.obj"]:
        p = objects / cls / sample / "models" / name
        if p.is_file():
            return p
    return None


def _fit(ctx: Context, side: str, hand_pose: np.ndarray, verts: np.ndarray):
    """Hand parameters (zero shape, `hand_pose`) whose mesh best matches `verts` (778, 3) after a
    rigid motion, and the mean vertex error (m)."""
    zero = params_of(np.zeros(3), hand_pose, np.zeros(10), np.zeros(3), side)
    with torch.no_grad():
        v0 = ctx.hand(side)(zero).vertices[0].double().numpy()
    a, b = v0.mean(0), verts.mean(0)
    U, _, Vt = np.linalg.svd((v0 - a).T @ (verts - b))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(Vt.T @ U.T))])
    R = Vt.T @ D @ U.T
    t = b - R @ a
    err = float(np.linalg.norm(v0 @ R.T + t - verts, axis=1).mean())
    return ctx.to_object_frame(side, zero, rigid(R, t)), err


def _read(ctx: Context):
    root = ctx.root.resolve()  # records name files by absolute path
    objects = ctx.objects_root(root / "ShapeNetCore.v2").resolve()
    for split in sorted(p.parent for p in root.glob("*/meta") if p.is_dir()):
        for meta_file in ctx.frames(sorted(split.glob("meta/*.pkl"))):
            where = f"{split.name}/{meta_file.stem}"
            try:
                m = load_pickle(meta_file)
            except InputError:
                m = None
            if not isinstance(m, dict) or any(m.get(k) is None for k in ("verts_3d", "affine_transform")) \
                    or (m.get("pca_pose") is None and m.get("hand_pose") is None):
                yield Skip("unreadable meta, or one without verts_3d, affine_transform or pca_pose", where)
                continue
            ids = _shapenet_ids(m)
            if ids is None:
                yield Skip("meta without class_id/sample_id or a ShapeNet obj_path", where)
                continue
            category = SYNSETS.get(ids[0]) or category_or_text(ids[0])
            if not ctx.want(category):
                yield Skip("category not in --categories", where)
                continue
            mesh = _shapenet_mesh(objects, *ids, m.get("obj_path"))
            if mesh is None:
                yield Skip(f"ShapeNet model missing under {objects} (give ShapeNetCore.v2 with --objects)", where)
                continue
            A = np.asarray(m["affine_transform"], np.float64).reshape(4, 4)
            det = np.linalg.det(A[:3, :3])
            if det <= 0:
                yield Skip("object transform with a reflection or no volume", where)
                continue
            scale = float(np.cbrt(det))
            U, _, Vt = np.linalg.svd(A[:3, :3] / scale)
            oTw = np.linalg.inv(rigid(U @ Vt, A[:3, 3]))
            side = str(m.get("side", "right")).lower()
            if m.get("pca_pose") is not None:
                hand_pose = ctx.full_pose(side, np.asarray(m["pca_pose"], np.float64).reshape(-1), pca=True, flat_mean=True)
            else:  # the 45 flat-mean axis-angles that pca_pose encodes
                hand_pose = ctx.full_pose(side, np.asarray(m["hand_pose"], np.float64).reshape(-1)[-45:])
            verts = np.asarray(m["verts_3d"], np.float64).reshape(-1, 3)
            verts_o = verts @ oTw[:3, :3].T + oTw[:3, 3]
            params, err = _fit(ctx, side, hand_pose, verts_o)
            if err * 1000 > MAX_FIT_MM:
                yield Skip(f"hand vertices do not fit a MANO hand with the sample's pca_pose (mean error > {MAX_FIT_MM:g} mm: "
                           "check --mano-dir)", where)
                continue
            image = split / "rgb" / f"{meta_file.stem}.jpg"
            extra = {"fit_mm": round(err * 1000, 3), **({"image": str(image)} if image.is_file() else {})}
            yield record(side, params, mesh=mesh, category=category, id=f"obman-{split.name}-{meta_file.stem}",
                         source="obman", scale=scale, **extra)


DATASET = Dataset(
    name="obman", title="ObMan", hands="one", source="Hasson et al. CVPR 2019, the obman_train and obman_render code",
    layout="<SPLIT>/meta/<IDX>.pkl (+ rgb/), ShapeNetCore.v2 models under --objects (<synset>/<id>/models/model_normalized.obj)",
    mano="required", read=_read, check=_check,
    objects_help="the ShapeNetCore.v2 folder (<synset>/<id>/models/model_normalized.obj)",
)
