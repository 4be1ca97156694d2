"""MOW, "Manipulating Objects in the Wild" (Cao, Radosavovic, Kanazawa, Malik, ICCV 2021): 512
internet photographs, each with one right hand and one object annotated in 3D. Each record is a
grasp (hand in the object's frame, metres) and keeps its photograph and camera, so the set
doubles as truth for single-image reconstruction.

Layout read (the authors' release `mow.zip` and their repository ZheC/MOW; --root is the
folder that holds poses.json, or its parent):
    poses.json              a list, one entry per image: image_id, obj_name ('pen_1'), R (9,
                            row-major), t (3), s, hand_pose (48), trans (3), hand_R (9), hand_t (3),
                            hand_s; also state ('done'), queue_id, obj_url
    models/<image_id>.obj   the object template chosen for that image
    images/<image_id>.jpg   the photograph
Conventions (ZheC/MOW `vis_anno.py` and `utils.py`; neural_renderer's `load_obj`; the `mano`
package of otaheri/MANO):
* Object: the model is read with neural_renderer's `load_obj`, whose default normalisation
  scales it so that its longest bounding-box side is 2, then centred at its vertex mean with y
  negated (and the faces reversed). That normalised mesh is what R, t, s pose: camera points are
  s * (R^T x + t) (vertices are rows multiplied by R). The normalised mesh is derived once per
  model under OUT/dataset/meshes/mow-<image_id>.obj and records scale it to metres.
* Hand: `mano.load(..., num_pca_comps=45, flat_hand_mean=False)` on MANO_RIGHT; that package
  (like smplx) turns PCA off when 45 components are asked for, so hand_pose[3:] is 45 axis-angle
  numbers relative to MANO's mean pose (not PCA coefficients), hand_pose[:3] the global rotation,
  trans the translation, betas zero (the package ignores any). The posed MANO hand (metres)
  is then placed like the object: camera points are hand_s * (hand_R^T v + hand_t).
* Units: MANO is metric, so camera coordinates divided by hand_s are metres; the object's
  metric scale is s / hand_s (the record's `scale` on the normalised mesh). Every hand is a
  right hand (the visualisation loads only MANO_RIGHT).
* Camera: normalised focal length 1 and principal point at the centre of the photograph padded
  (at the bottom and right) to a square of side L = max(width, height); in hoitool's pixel
  convention (pixel centres at integers, OpenCV axes, y down) fx = fy = L, cx = cy = L/2 - 0.5.
  Records keep `image` (absolute path), `camera` {fx, fy, cx, cy, width, height} (the fields of
  hoitool.geometry.camera.Camera) and `cTo` (4 x 4, metres: the record's object frame to that
  camera). Unconfirmed: the y-down image axis (taken from the renderer's projection, which
  flips v, and the y negation of the models).
Skipped: entries whose state is not 'done', entries lacking a pose field, rotations that are not
rotations, missing models or images. `--stride` keeps every STRIDE-th entry of poses.json.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from hoitool.data.datasets.base import Context, Dataset, Skip, missing, params_of, record
from hoitool.data.vocab import category_or_text
from hoitool.errors import InputError
from hoitool.utils.io import atomic_path

FIELDS = ("R", "t", "s", "hand_pose", "trans", "hand_R", "hand_t", "hand_s")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def mow_category(name: str) -> str:
    """The hoitool category of a MOW obj_name ('microphone_1' -> 'microphone')."""
    return category_or_text(re.sub(r"[_\s]*\d+$", "", str(name)) or str(name))


def _mow_root(root: Path) -> Path:
    if not (root / "poses.json").is_file() and (root / "mow" / "poses.json").is_file():
        return root / "mow"
    return root


def _check(root: Path) -> str | None:
    return missing(_mow_root(root), "poses.json", "models/*.obj", "images")


def _rotation(values) -> np.ndarray | None:
    M = np.asarray(values, np.float64).reshape(-1)
    if M.size != 9:
        return None
    M = M.reshape(3, 3)
    if not np.allclose(M @ M.T, np.eye(3), atol=1e-3) or np.linalg.det(M) <= 0:
        return None
    return M


def _obj_vertices(path: Path) -> np.ndarray:
    """Every `v` line of an OBJ file, as neural_renderer's load_obj reads them."""
    rows = []
    with open(path, errors="replace") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] == "v":
                rows.append([float(x) for x in parts[1:4]])
    if not rows:
        raise InputError(f"object model {path} has no vertices")
    return np.asarray(rows, np.float64)


def normalised_model(ctx: Context, model: Path) -> Path:
    """The model as MOW's poses see it (longest side 2, vertex mean at 0, y negated), written
    once under OUT/dataset/meshes (rewritten when the model file is newer)."""
    import trimesh

    out = Path(ctx.opts.work) / "meshes" / f"mow-{model.stem}.obj"
    if out.is_file() and out.stat().st_mtime >= model.stat().st_mtime:
        return out
    raw = _obj_vertices(model)
    extent = float((raw.max(0) - raw.min(0)).max())
    if extent <= 0:
        raise InputError(f"object model {model} is a single point")
    try:
        mesh = trimesh.load(model, force="mesh", process=False, skip_materials=True)
    except Exception as e:  # trimesh raises many types on bad files
        raise InputError(f"cannot read object model {model}: {type(e).__name__}: {e}") from e
    v = (np.asarray(mesh.vertices, np.float64) - raw.mean(0)) * (2.0 / extent)
    v[:, 1] *= -1
    norm = trimesh.Trimesh(v, np.asarray(mesh.faces)[:, ::-1], process=False)
    with atomic_path(out) as tmp:
        norm.export(tmp, file_type="obj")
    return out


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except OSError as e:
        raise InputError(f"cannot read image {path}: {e}") from e


def _read(ctx: Context):
    root = _mow_root(ctx.root)
    path = root / "poses.json"
    try:
        annos = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read {path}: {e}") from e
    if not isinstance(annos, list):
        raise InputError(f"{path}: expected a list of annotations, one per image")
    meshes: dict[Path, Path] = {}
    seen: dict[str, int] = {}
    for a in ctx.frames(annos):
        if not isinstance(a, dict):
            yield Skip("poses.json entry is not an object", str(a)[:40])
            continue
        iid = str(a.get("image_id", "")).strip()
        where = iid or "(no image_id)"
        if not iid:
            yield Skip("entry without image_id", where)
            continue
        if a.get("state", "done") != "done":
            yield Skip("annotation not finished (state is not 'done')", where)
            continue
        if any(a.get(k) is None for k in FIELDS):
            yield Skip(f"entry lacks a pose field ({', '.join(FIELDS)})", where)
            continue
        category = mow_category(a.get("obj_name") or "object")
        if not ctx.want(category):
            yield Skip("category not in --categories", where)
            continue
        model = root / "models" / f"{iid}.obj"
        if not model.is_file():
            yield Skip("object model missing (models/<image_id>.obj)", where)
            continue
        image = next((root / "images" / f"{iid}{s}" for s in IMAGE_SUFFIXES if (root / "images" / f"{iid}{s}").is_file()), None)
        if image is None:
            yield Skip("image missing (images/<image_id>.jpg)", where)
            continue
        R, hR = _rotation(a["R"]), _rotation(a["hand_R"])
        s, hs = float(a["s"]), float(a["hand_s"])
        pose = np.asarray(a["hand_pose"], np.float64).reshape(-1)
        if R is None or hR is None or not (s > 0 and hs > 0) or pose.size != 48:
            yield Skip("R or hand_R not a rotation, s or hand_s not positive, or hand_pose not 48 numbers", where)
            continue
        if model not in meshes:
            meshes[model] = normalised_model(ctx, model)
        k = s / hs  # metres per unit of the normalised model
        t = np.asarray(a["t"], np.float64).reshape(3)
        cTo = np.eye(4)
        cTo[:3, :3], cTo[:3, 3] = R.T, k * t
        cTh = np.eye(4)
        cTh[:3, :3], cTh[:3, 3] = hR.T, np.asarray(a["hand_t"], np.float64).reshape(3)
        params = params_of(pose[:3], ctx.full_pose("right", pose[3:], flat_mean=False), np.zeros(10),
                           np.asarray(a["trans"], np.float64).reshape(3), "right")
        W, H = _image_size(image)
        L = max(W, H)
        camera = {"fx": float(L), "fy": float(L), "cx": L / 2 - 0.5, "cy": L / 2 - 0.5, "width": W, "height": H}
        n = seen[iid] = seen.get(iid, 0) + 1
        rid = f"mow-{iid}" if n == 1 else f"mow-{iid}-{n}"
        yield record("right", ctx.to_object_frame("right", params, np.linalg.inv(cTo) @ cTh), mesh=meshes[model].resolve(),
                     category=category, id=rid, source="mow", scale=k, image=str(image.resolve()), camera=camera,
                     cTo=[[round(float(x), 9) for x in row] for row in cTo], obj_name=str(a.get("obj_name", "")))


DATASET = Dataset(
    name="mow", title="MOW", hands="one", source="Cao et al. ICCV 2021 (Reconstructing Hand-Object Interactions in the Wild) and ZheC/MOW",
    layout="poses.json, models/<image_id>.obj, images/<image_id>.jpg",
    mano="required", read=_read, check=_check,
)
