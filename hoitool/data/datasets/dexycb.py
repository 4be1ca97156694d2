"""DexYCB (Chao et al., CVPR 2021): one hand (right or left) grasping one of 20 YCB objects,
seen by eight calibrated cameras.

Layout read (the authors' release and their `dex-ycb-toolkit`, `dex_ycb_toolkit/dex_ycb.py`):
    ROOT/<SUBJECT>/<SEQ>/meta.yml          serials (the cameras), num_frames, ycb_ids (1-based
                                           YCB class ids, 1 = 002_master_chef_can ...
                                           21 = 061_foam_brick), ycb_grasp_ind (index into
                                           ycb_ids of the grasped object), mano_sides
                                           (['right'] or ['left']), mano_calib (['<name>'])
    ROOT/<SUBJECT>/<SEQ>/<SERIAL>/labels_<FRAME:06d>.npz
                                           pose_y (num_obj, 3, 4): each object's model-to-
                                           camera [R | t], metres; pose_m (1, 51): the hand
                                           in the same camera frame; all zeros = not annotated
    ROOT/<SUBJECT>/<SEQ>/<SERIAL>/color_<FRAME:06d>.jpg   (referenced as `image` when present)
    ROOT/calibration/mano_<name>/mano.yml  betas (10): the subject's hand shape
    OBJECTS/<name>/textured_simple.obj     the YCB models, metres (--objects; default ROOT/models)
Conventions (confirmed in the toolkit's `layers/mano_layer.py`, `examples/visualize_pose.py`
and manopth's `ManoLayer`): pose_m = 3 global axis-angle + 45 PCA coefficients + 3
translation (metres), for manopth's `ManoLayer(use_pca=True, ncomps=45, flat_hand_mean=False)`
of the sequence's side: the articulation is hands_mean + coefficients @ hands_components of the
MANO file of that side (hence --mano-dir), and the translation is added after posing about the
wrist joint, exactly as smplx's `transl`. The camera frame is OpenCV's (the toolkit's y/z flip
is for pyrender only). Left hands are posed with MANO_LEFT.pkl's own PCA basis and mean and
kept as left-hand records (manopth reads MANO_LEFT.pkl as released, while hoitool's hand model
corrects that file's shape directions: `Context.left_as_released` refits the betas and keeps
the wrist where the toolkit put it; a residual shape difference remains).
Cameras: the eight cameras show the same 3D frames, so one camera's labels per sequence are
read (the first of meta.yml's serials that has labels); the hand goes into the grasped
object's frame by the inverse of that camera's pose_y. Skipped: frames whose hand or grasped
object is not annotated (all-zero pose_m or pose_y), unreadable labels files, objects whose
model is missing.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from hoitool.data.datasets.base import Context, Dataset, Skip, missing, params_of, record
from hoitool.data.datasets.ho3d import ycb_category, ycb_mesh
from hoitool.errors import InputError

#: DexYCB's YCB class ids (meta.yml ycb_ids) -> model folder names.
YCB_CLASSES = {
    1: "002_master_chef_can", 2: "003_cracker_box", 3: "004_sugar_box", 4: "005_tomato_soup_can",
    5: "006_mustard_bottle", 6: "007_tuna_fish_can", 7: "008_pudding_box", 8: "009_gelatin_box",
    9: "010_potted_meat_can", 10: "011_banana", 11: "019_pitcher_base", 12: "021_bleach_cleanser",
    13: "024_bowl", 14: "025_mug", 15: "035_power_drill", 16: "036_wood_block", 17: "037_scissors",
    18: "040_large_marker", 19: "051_large_clamp", 20: "052_extra_large_clamp", 21: "061_foam_brick",
}

_LABEL = re.compile(r"labels_(\d+)\.npz$")


def _yaml(path: Path) -> dict:
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise InputError(f"cannot read {path}: {e}") from e
    if not isinstance(data, dict):
        raise InputError(f"{path} is not a YAML mapping")
    return data


def _check(root: Path) -> str | None:
    return missing(root, "*/*/meta.yml", "calibration/mano_*/mano.yml")


def _labels(folder: Path) -> list[tuple[int, Path]]:
    out = []
    for p in folder.glob("labels_*.npz"):
        m = _LABEL.search(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def _read(ctx: Context):
    root = ctx.root.resolve()  # records name files by absolute path
    objects = ctx.objects_root(root / "models").resolve()
    betas_of: dict[str, np.ndarray] = {}
    for meta_file in sorted(root.glob("*/*/meta.yml")):
        seq = meta_file.parent
        where = f"{seq.parent.name}/{seq.name}"
        meta = _yaml(meta_file)
        try:
            ycb_ids = [int(i) for i in meta["ycb_ids"]]
            grasp_ind = int(meta["ycb_grasp_ind"])
            side = str(meta["mano_sides"][0]).lower()
            calib = str(meta["mano_calib"][0])
            serials = [str(s) for s in meta.get("serials") or sorted(p.name for p in seq.iterdir() if p.is_dir())]
            ycb_id = ycb_ids[grasp_ind]
        except (KeyError, IndexError, TypeError, ValueError):
            yield Skip("meta.yml lacks ycb_ids, ycb_grasp_ind, mano_sides or mano_calib", where)
            continue
        if side not in ("right", "left"):
            yield Skip(f"unknown hand side {side!r} in meta.yml", where)
            continue
        # One camera: the others show the same 3D frames.
        serial, labels = None, []
        for s in serials:
            labels = _labels(seq / s)
            if labels:
                serial = s
                break
        if serial is None:
            yield Skip("no labels_*.npz in any camera folder", where)
            continue
        frames = ctx.frames(labels)
        name = YCB_CLASSES.get(ycb_id, str(ycb_id))
        category = ycb_category(name)
        if not ctx.want(category):
            yield Skip("category not in --categories", where, count=len(frames))
            continue
        mesh = ycb_mesh(objects, name)
        if mesh is None:
            yield Skip(f"object model missing under {objects} (give the YCB models with --objects)", where, count=len(frames))
            continue
        if calib not in betas_of:
            calib_file = root / "calibration" / f"mano_{calib}" / "mano.yml"
            if not calib_file.is_file():
                yield Skip(f"hand calibration missing ({calib_file})", where, count=len(frames))
                continue
            betas_of[calib] = np.asarray(_yaml(calib_file)["betas"], np.float32).reshape(-1)
        betas = betas_of[calib]
        for frame, path in frames:
            fwhere = f"{where}/{serial}/{path.name}"
            try:
                with np.load(path) as lab:
                    pose_m = np.asarray(lab["pose_m"], np.float64).reshape(-1, 51)[0]
                    pose_y = np.asarray(lab["pose_y"], np.float64).reshape(-1, 3, 4)
            except (OSError, ValueError, KeyError, IndexError) as e:
                yield Skip(f"unreadable labels file, or one without pose_m (1, 51) and pose_y (n, 3, 4) ({type(e).__name__})", fwhere)
                continue
            if not np.any(pose_m):
                yield Skip("hand not annotated in the frame (all-zero pose_m)", fwhere)
                continue
            if grasp_ind >= len(pose_y) or not np.any(pose_y[grasp_ind]):
                yield Skip("grasped object not annotated in the frame (all-zero pose_y)", fwhere)
                continue
            hand_pose = ctx.full_pose(side, pose_m[3:48], pca=True, flat_mean=False)
            params = ctx.left_as_released(params_of(pose_m[:3], hand_pose, betas, pose_m[48:51], side))
            cTo = np.eye(4)
            cTo[:3] = pose_y[grasp_ind]
            image = seq / serial / f"color_{frame:06d}.jpg"
            extra = {"camera": serial, **({"image": str(image)} if image.is_file() else {})}
            yield record(side, ctx.to_object_frame(side, params, np.linalg.inv(cTo)), mesh=mesh, category=category,
                         id=f"dexycb-{seq.parent.name}-{seq.name}-{frame:06d}", source="dexycb", **extra)


DATASET = Dataset(
    name="dexycb", title="DexYCB", hands="one", source="Chao et al. CVPR 2021 and the dex-ycb-toolkit (NVlabs)",
    layout="<SUBJECT>/<SEQ>/meta.yml, <SUBJECT>/<SEQ>/<SERIAL>/labels_<FRAME>.npz, calibration/mano_<name>/mano.yml, "
           "YCB models under models/<name>/textured_simple.obj or --objects",
    mano="required", read=_read, check=_check,
    objects_help="the YCB models folder (<name>/textured_simple.obj)",
)
