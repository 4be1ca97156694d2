"""OakInk-Shape (Yang et al., CVPR 2022): right-hand grasps in each object's canonical frame.

Layout read (the authors' release, as their `oikit` toolkit reads it; --root is $OAKINK_DIR or
its `shape/` folder):
    shape/oakink_shape_v2/<category>/<obj_id>/<grasp_id>/hand_param.pkl
                                    a grasp recorded on a real object (ids: 6 and 10 characters)
    shape/oakink_shape_v2/<category>/<obj_id>/<grasp_id>/<target_id>/hand_param.pkl
                                    the same grasp transferred to a virtual object
    hand_param.pkl                  pose (48 axis-angle: global rotation + 15 joints; the
                                    documentation also describes 16 x 4 quaternions, w first,
                                    which are read too), shape (10 betas), tsl (3), metres
    shape/oakink_shape_v2/<category>/<obj_id>/<grasp_id>/source.txt
                                    the OakInk-Image sequence the grasp comes from
                                    ('<stage>/<obj>_<intent>_<subject>/<time>'; gives the intent)
    shape/metaV2/object_id.json, virtual_object_id.json (or virtual_obj_id.json)
                                    {obj_id: {"name": ...}}
    shape/OakInkObjectsV2/<name>/align/*.obj|ply, shape/OakInkVirtualObjectsV2/<name>/align/...
                                    the object models, metres (--objects: the folder holding
                                    both, default ROOT/shape)
Conventions (oikit `oi_shape.py` / `utils.py`, manotorch `manolayer.py`): oikit poses every
grasp with manotorch's right `ManoLayer(center_idx=0)`, whose defaults are axis-angle and
`flat_hand_mean=True`, so the 45 articulation numbers are hoitool's flat-mean axis-angle as they
are. `center_idx=0` subtracts the posed wrist joint (which global rotation leaves at the rest
wrist J0(betas)) before `tsl` is added, so smplx's translation is `tsl - J0(betas)` (the MANO
model from --mano-dir gives J0). The canonical frame is the model file's frame moved so that its
bounding-box centre is at the origin; the model files are referenced in place and the hand is
moved by that centre instead. All OakInk-Shape hands are right hands (oikit builds one right
MANO layer for every grasp, the receiving hand of a handover included; each hand of a handover
is its own grasp folder and so its own record). Records keep the intent (use, hold, liftup,
handover), the split (oikit's: md5 of the object id mod 10; < 8 train, 8 val, 9 test), the
grasp id and whether the object is virtual. `--stride` keeps every STRIDE-th grasp of each
source object (grasps have no frames).
Not read: OakInk-Image (`image/anno`), whose per-frame hands come from the same sequences as
these grasps but in a camera frame, four cameras per frame.
Skipped: grasps whose object id is in neither metaV2 file, objects without a model file,
hand_param.pkl files without a 48- or 64-number pose.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import torch

from hoitool.data.datasets.base import Context, Dataset, Skip, load_pickle, missing, params_of, record
from hoitool.data.vocab import category_or_text
from hoitool.errors import InputError

#: OakInk-Shape category folders -> hoitool categories (others go through category_or_text).
OAKINK_CATEGORIES = {
    "cylinder_bottle": "bottle", "lotion_pump": "bottle", "trigger_sprayer": "sprayer", "power_drill": "drill",
    "fryingpan": "pan", "gamecontroller": "remote", "cameras": "camera", "lightbulb": "light bulb",
    "pincer": "pliers", "squeezable": "squeeze tube",
}
INTENTS = {"0001": "use", "0002": "hold", "0003": "liftup", "0004": "handover"}
_SOURCE = re.compile(r"[A-Za-z0-9]{6}_(\d{4})_")


def oakink_category(folder: str) -> str:
    """The hoitool category of an OakInk-Shape category folder ('trigger_sprayer' -> 'sprayer')."""
    return category_or_text(OAKINK_CATEGORIES.get(folder, folder))


def oakink_split(obj_id: str) -> str:
    """oikit's OakInk-Shape split of an object id."""
    h = int(hashlib.md5(obj_id.encode("utf-8")).hexdigest(), 16) % 10
    return "train" if h < 8 else ("val" if h == 8 else "test")


def _shape_dir(root: Path) -> Path:
    """The OakInk-Shape folder: ROOT/shape, or ROOT itself when it is that folder."""
    for d in (root / "shape", root):
        if (d / "oakink_shape_v2").is_dir():
            return d
    return root / "shape"


def _check(root: Path) -> str | None:
    return missing(_shape_dir(root), "oakink_shape_v2/*/*/*/hand_param.pkl", "metaV2/object_id.json")


def _meta(shape: Path) -> dict[str, tuple[str, bool]]:
    """obj_id -> (model folder name, real object?) from metaV2."""
    out: dict[str, tuple[str, bool]] = {}
    for fname, real in (("virtual_object_id.json", False), ("virtual_obj_id.json", False), ("object_id.json", True)):
        path = shape / "metaV2" / fname
        if not path.is_file():
            continue
        try:
            table = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read {path}: {e}") from e
        if not isinstance(table, dict):
            raise InputError(f"{path}: expected {{obj_id: {{\"name\": ...}}}}")
        for oid, v in table.items():
            name = v.get("name") if isinstance(v, dict) else v
            if name:
                out[str(oid)] = (str(name), real)
    return out


def _model(objects: Path, name: str, real: bool) -> Path | None:
    folder = objects / ("OakInkObjectsV2" if real else "OakInkVirtualObjectsV2") / name / "align"
    found = sorted(folder.glob("*.obj")) + sorted(folder.glob("*.ply"))
    if len(found) > 1:  # oikit keeps the one named like the folder ('align') when there are several
        found = [p for p in found if "align" in p.name] or found
    return found[0] if found else None


def _bbox_centre(path: Path) -> np.ndarray:
    import trimesh

    try:
        m = trimesh.load(path, force="mesh", process=False, skip_materials=True)
        v = np.asarray(m.vertices, np.float64)
    except Exception as e:  # trimesh raises many types on bad files
        raise InputError(f"cannot read object model {path}: {type(e).__name__}: {e}") from e
    if v.size == 0:
        raise InputError(f"object model {path} has no vertices")
    return (v.min(0) + v.max(0)) / 2


def _pose48(pose) -> np.ndarray | None:
    """48 flat-mean axis-angle numbers from oikit's axis-angle pose or 16 quaternions (w, x, y, z)."""
    a = np.asarray(pose, np.float64).reshape(-1)
    if a.size == 48:
        return a
    if a.size == 64:
        from scipy.spatial.transform import Rotation

        q = a.reshape(16, 4)
        return Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_rotvec().reshape(48)
    return None


def _intent(grasp_dir: Path) -> str | None:
    src = grasp_dir / "source.txt"
    if not src.is_file():
        return None
    m = _SOURCE.search(src.read_text(errors="replace"))
    return INTENTS.get(m.group(1)) if m else None


def _read(ctx: Context):
    shape = _shape_dir(ctx.root)
    objects = ctx.objects_root(shape)
    meta = _meta(shape)
    centres: dict[Path, np.ndarray] = {}
    for cat_dir in sorted(p for p in (shape / "oakink_shape_v2").iterdir() if p.is_dir()):
        category = oakink_category(cat_dir.name)
        if not ctx.want(category):
            n = sum(1 for _ in cat_dir.glob("*/*/hand_param.pkl")) + sum(1 for _ in cat_dir.glob("*/*/*/hand_param.pkl"))
            yield Skip("category not in --categories", cat_dir.name, count=n)
            continue
        for src_dir in sorted(p for p in cat_dir.iterdir() if p.is_dir()):
            files = sorted(list(src_dir.glob("*/hand_param.pkl")) + list(src_dir.glob("*/*/hand_param.pkl")))
            for f in ctx.frames(files):
                virtual = f.parent.parent != src_dir
                grasp_dir = f.parent.parent if virtual else f.parent
                obj_id = f.parent.name if virtual else src_dir.name
                where = f"{cat_dir.name}/{f.relative_to(cat_dir).parent}"
                if obj_id not in meta:
                    yield Skip("object id in neither metaV2/object_id.json nor virtual_object_id.json", where)
                    continue
                name, real = meta[obj_id]
                mesh = _model(objects, name, real)
                if mesh is None:
                    kind = "OakInkObjectsV2" if real else "OakInkVirtualObjectsV2"
                    yield Skip(f"object model missing ({kind}/<name>/align/*.obj under {objects})", where)
                    continue
                p = load_pickle(f)
                pose = _pose48(p.get("pose")) if isinstance(p, dict) and p.get("pose") is not None else None
                if pose is None or p.get("shape") is None or p.get("tsl") is None:
                    yield Skip("hand_param.pkl without a 48-number (or 16 x 4) pose, shape and tsl", where)
                    continue
                if mesh not in centres:
                    centres[mesh] = _bbox_centre(mesh)
                betas = np.zeros(10, np.float32)
                given = np.asarray(p["shape"], np.float32).reshape(-1)[:10]
                betas[: given.size] = given
                hand = ctx.hand("right")
                with torch.no_grad():
                    j0 = hand.rest_joints(torch.as_tensor(betas).reshape(1, 10))[0, 0].double().numpy()
                # manotorch(center_idx=0) + tsl in the bbox-centred frame -> smplx transl in the file's frame
                transl = np.asarray(p["tsl"], np.float64).reshape(3) - j0 + centres[mesh]
                params = params_of(pose[:3], ctx.full_pose("right", pose[3:]), betas, transl, "right")
                extra = {"split": oakink_split(obj_id), "grasp": grasp_dir.name, "virtual": virtual}
                intent = _intent(grasp_dir)
                if intent:
                    extra["intent"] = intent
                yield record("right", params, mesh=mesh.resolve(), category=category,
                             id=f"oakink-{grasp_dir.name}-{obj_id}", source="oakink", **extra)


DATASET = Dataset(
    name="oakink", title="OakInk-Shape", hands="one", source="Yang et al. CVPR 2022 and the oikit toolkit (oakink/OakInk)",
    layout="shape/oakink_shape_v2/<category>/<obj_id>/<grasp_id>/[<target_id>/]hand_param.pkl, shape/metaV2/object_id.json "
           "(+ virtual_object_id.json), models under shape/OakInkObjectsV2|OakInkVirtualObjectsV2/<name>/align/",
    mano="required", read=_read, check=_check,
    objects_help="the folder holding OakInkObjectsV2/ and OakInkVirtualObjectsV2/ (default ROOT/shape)",
)
