"""HO-3D (v2/v3; Hampali et al., CVPR 2020): one right hand and one YCB object per frame.

Layout read (the authors' release and their `ho3d` toolkit):
    ROOT/train/<SEQ>/meta/<FRAME>.pkl   handPose (48: global rotation + 15 joints, axis-angle),
                                        handTrans (3), handBeta (10), objRot (3, axis-angle),
                                        objTrans (3), objName ('006_mustard_bottle'), in the
                                        camera frame, metres
    ROOT/train/<SEQ>/rgb/<FRAME>.jpg|png
    OBJECTS/<objName>/textured_simple.obj   the YCB models (--objects; default ROOT/models)
Conventions: the toolkit builds MANO with `flat_hand_mean=True` and sets `fullpose` directly,
so the 45 articulation numbers are hoitool's flat-mean axis-angle as they are. The object's
camera pose maps model coordinates into the camera (x_c = R(objRot) x_o + objTrans); hands go
into the object frame by its inverse. Frames whose meta holds no hand pose (the evaluation
split's) are skipped, and so are annotation files that cannot be read or lack a field.

Several sequences were filmed by up to five cameras at once, as folders `<NAME><CAMERA>`
(`ABF10`..`ABF14`, ...: the toolkit's `multiCamSeqs`); they hold the same 3D annotation per
frame, which in the object's frame is the same record, so only the first camera is read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hoitool.data.datasets.base import Context, Dataset, Skip, load_pickle, missing, params_of, record, rigid
from hoitool.data.vocab import category_or_text

#: YCB object names of HO-3D -> hoitool categories.
YCB_CATEGORIES = {
    "002_master_chef_can": "can", "003_cracker_box": "box", "004_sugar_box": "box", "005_tomato_soup_can": "can",
    "006_mustard_bottle": "bottle", "007_tuna_fish_can": "can", "008_pudding_box": "box", "009_gelatin_box": "box",
    "010_potted_meat_can": "can", "011_banana": "banana", "019_pitcher_base": "pitcher", "021_bleach_cleanser": "bottle",
    "024_bowl": "bowl", "025_mug": "mug", "035_power_drill": "drill", "036_wood_block": "box", "037_scissors": "scissors",
    "040_large_marker": "marker", "051_large_clamp": "clamp", "052_extra_large_clamp": "clamp", "061_foam_brick": "box",
}


def ycb_category(name: str) -> str:
    """The hoitool category of a YCB object name ('006_mustard_bottle' -> 'bottle')."""
    return YCB_CATEGORIES.get(name) or category_or_text(name.split("_", 1)[-1])


def ycb_mesh(objects: Path, name: str) -> Path | None:
    for rel in (f"{name}/textured_simple.obj", f"{name}/google_16k/textured.obj", f"{name}.obj"):
        if (objects / rel).is_file():
            return objects / rel
    return None


#: Multi-camera sequence names (each folder is the name plus a camera digit).
MULTI_CAMERA = ("ABF1", "BB1", "GPMF1", "GSF1", "MDF1", "SB1", "ShSu1", "SiBF1", "SMu4")


def _first_cameras(seqs: list[Path]) -> tuple[list[Path], list[Path]]:
    """(sequences to read, other cameras of multi-camera sequences)."""
    keep, other, seen = [], [], set()
    for seq in seqs:
        base = seq.name[:-1]
        if base in MULTI_CAMERA and seq.name[-1:].isdigit():
            if base in seen:
                other.append(seq)
                continue
            seen.add(base)
        keep.append(seq)
    return keep, other


def _meta(path: Path) -> dict | str:
    """The annotation of one frame, or why it cannot be used."""
    from hoitool.errors import InputError

    try:
        m = load_pickle(path)
    except InputError:
        return "annotation file unreadable"
    if not isinstance(m, dict):
        return "annotation file is not a dict"
    if m.get("handPose") is None or m.get("objRot") is None:
        return "no hand or object pose in the annotation (evaluation frames)"
    try:
        sizes = {k: np.asarray(m[k], np.float64).size for k in ("handPose", "handTrans", "handBeta", "objRot", "objTrans")}
        str(m["objName"])
    except (KeyError, TypeError, ValueError):
        return "annotation lacks a field (handPose, handTrans, handBeta, objRot, objTrans, objName)"
    if sizes != {"handPose": 48, "handTrans": 3, "handBeta": 10, "objRot": 3, "objTrans": 3}:
        return "annotation arrays have unexpected sizes"
    return m


def _check(root: Path) -> str | None:
    return missing(root, "train/*/meta/*.pkl")


def _read(ctx: Context):
    objects = ctx.objects_root(ctx.root / "models")
    seqs, others = _first_cameras(sorted(p for p in (ctx.root / "train").iterdir() if p.is_dir()))
    for seq in others:
        yield Skip("same frames as another camera of a multi-camera sequence", seq.name,
                   count=len(ctx.frames(sorted((seq / "meta").glob("*.pkl")))))
    for seq in seqs:
        metas = sorted((seq / "meta").glob("*.pkl"))
        for meta in ctx.frames(metas):
            where = f"{seq.name}/{meta.stem}"
            m = _meta(meta)
            if isinstance(m, str):
                yield Skip(m, where)
                continue
            name = str(m["objName"])
            category = ycb_category(name)
            if not ctx.want(category):
                yield Skip("category not in --categories", where)
                continue
            mesh = ycb_mesh(objects, name)
            if mesh is None:
                yield Skip(f"object model missing under {objects} (give the YCB models with --objects)", where)
                continue
            pose = np.asarray(m["handPose"], np.float32).reshape(48)
            params = params_of(pose[:3], ctx.full_pose("right", pose[3:]), m["handBeta"], m["handTrans"], "right")
            oTc = np.linalg.inv(rigid(m["objRot"], m["objTrans"]))
            image = next((p for p in (seq / "rgb" / f"{meta.stem}.jpg", seq / "rgb" / f"{meta.stem}.png") if p.is_file()), None)
            extra = {"image": str(image)} if image is not None else {}
            yield record("right", ctx.to_object_frame("right", params, oTc), mesh=mesh, category=category,
                         id=f"ho3d-{seq.name}-{meta.stem}", source="ho3d", **extra)


DATASET = Dataset(
    name="ho3d", title="HO-3D", hands="one", source="Hampali et al. CVPR 2020 and the HO-3D toolkit",
    layout="train/<SEQ>/meta/<FRAME>.pkl (+ rgb/), YCB models under models/<name>/textured_simple.obj or --objects",
    mano="required", read=_read, check=_check,
    objects_help="the YCB models folder (<name>/textured_simple.obj)",
)
