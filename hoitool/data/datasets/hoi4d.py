"""HOI4D (Liu et al., CVPR 2022): egocentric RGB-D videos of hands using category-level objects,
with per-frame MANO hand poses and per-frame object poses in the camera frame.

Layout read (the release as described in the authors' `HOI4D-Instructions` README, with the
hand poses and CAD models that ship as separate downloads; sequence ids are
`ZY2021080000<c>/H<h>/C<class>/N<instance>/S<room>/s<layout>/T<task>`):
    ROOT/handpose/refinehandpose_right/<SEQ>/<FRAME>.pickle   (or ROOT/HOI4D_Handpose/handpose/)
    ROOT/handpose/refinehandpose_left/<SEQ>/<FRAME>.pickle    poseCoeff (48: 3 global axis-angle
                                        + 45 joint axis-angle), beta (10), trans (3, metres),
                                        kps2D; in the camera frame
    ROOT/HOI4D_annotations/<SEQ>/objpose/<FRAME>.json         (or the same under HOI4D_release/)
                                        {"dataList" or "objects": [{"center": {x, y, z},
                                        "rotation": {x, y, z}, "dimensions": {...}}, ...]}: the
                                        object's pose in the camera frame, metres
    OBJECTS/rigid/<Class>/<NNN>.obj     the CAD model of instance N<NNN>, metres, in the frame
                                        that defines its pose (--objects; default
                                        ROOT/HOI4D_CAD_Model_for_release)
    ROOT/HOI4D_release/<SEQ>/align_rgb/<FRAME:05d>.jpg        (decoded frames; referenced as
                                        `image` when present)
Conventions: the README poses hands with manopth's `ManoLayer(use_pca=False,
flat_hand_mean=True)` and adds `trans` after posing about the wrist joint, so poseCoeff[3:] is
hoitool's flat-mean axis-angle as it is and trans is smplx's transl. The object pose maps CAD
coordinates into the camera: x_c = R x_o + center, with R from the rotation's x, y, z as
intrinsic 'XYZ' Euler angles (radians), the first entry of dataList (the README's reader and
the G-HOP/DiffHOI preprocessing do the same). Classes C<k> follow the README's mapping (C1
ToyCar, C2 Mug, ... C20 Chair).
Kept: the rigid classes (ToyCar, Mug, Bottle, Bowl, Kettle, Knife, the classes the G-HOP
authors' preprocessing keeps). Skipped: articulated classes (their poses are per part, with
part meshes and joints; not converted), frames without an object pose, unreadable pose files
(or hand files without poseCoeff/beta/trans). Both hands of a frame become separate records
(`...-<frame>-right`, `...-left`); the contact filter drops the hand that does not touch the
object.
Unconfirmed: (1) the left-hand files follow the right hand's convention (manopth side='left',
flat_hand_mean=True, use_pca=False): the README shows the right hand only (as for DexYCB, left
hands go through `Context.left_as_released`: hoitool corrects MANO_LEFT.pkl's shape directions);
(2) objpose files may be Python literals rather than strict JSON (the README reads them with
`eval`): both are accepted; (3) CAD files are named with three digits (`N05` -> `005.obj`),
the unpadded name is tried too; (4) the CAD models are in metres (the G-HOP authors'
preprocessing poses them with these poses next to MANO hands in metres).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np

from hoitool.data.datasets.base import Context, Dataset, Skip, load_pickle, params_of, record, rigid
from hoitool.data.vocab import category_or_text
from hoitool.errors import InputError

#: C<k> -> class name (the README's mapping; '' = unused index).
CLASSES = ["", "ToyCar", "Mug", "Laptop", "StorageFurniture", "Bottle", "Safe", "Bowl", "Bucket", "Scissors", "",
           "Pliers", "Kettle", "Knife", "TrashCan", "", "", "Lamp", "Stapler", "", "Chair"]
RIGID = {"ToyCar", "Mug", "Bottle", "Bowl", "Kettle", "Knife"}
SEQ_GLOB = "ZY*/H*/C*/N*/S*/s*/T*"
SIDES = ("right", "left")


def _hand_root(root: Path) -> Path | None:
    for c in (root / "handpose", root / "HOI4D_Handpose" / "handpose"):
        if any(c.glob(f"refinehandpose_*/{SEQ_GLOB}/*.pickle")):
            return c
    return None


def _anno_root(root: Path) -> Path | None:
    for c in (root / "HOI4D_annotations", root / "HOI4D_annotations" / "HOI4D_annotations", root / "HOI4D_release", root):
        if any(c.glob(f"{SEQ_GLOB}/objpose/*.json")):
            return c
    return None


def _check(root: Path) -> str | None:
    gone = []
    if _hand_root(root) is None:
        gone.append(f"{root}/handpose/refinehandpose_right/{SEQ_GLOB}/*.pickle")
    if _anno_root(root) is None:
        gone.append(f"{root}/HOI4D_annotations/{SEQ_GLOB}/objpose/*.json")
    return ", ".join(gone) or None


def _frame_files(folder: Path, suffix: str) -> dict[int, Path]:
    return {int(p.stem): p for p in folder.glob(f"*{suffix}") if p.stem.isdigit()}


def _object_pose(path: Path) -> np.ndarray:
    """cTo (4, 4) from an objpose file (its first object)."""
    from scipy.spatial.transform import Rotation

    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = ast.literal_eval(text)
        except (ValueError, SyntaxError) as e:
            raise InputError(f"cannot read object pose {path}: {e}") from None
    try:
        anno = (data.get("dataList") or data.get("objects"))[0]
        c, r = anno["center"], anno["rotation"]
        t = [float(c["x"]), float(c["y"]), float(c["z"])]
        R = Rotation.from_euler("XYZ", [float(r["x"]), float(r["y"]), float(r["z"])]).as_matrix()
    except (AttributeError, TypeError, KeyError, IndexError, ValueError) as e:
        raise InputError(f"object pose {path} has no dataList/objects entry with center and rotation ({e})") from None
    return rigid(R, t)


def _cad(rigid_dir: Path, name: str, instance: int) -> Path | None:
    for stem in (f"{instance:03d}", str(instance)):
        if (rigid_dir / name / f"{stem}.obj").is_file():
            return rigid_dir / name / f"{stem}.obj"
    return None


def _read(ctx: Context):
    root = ctx.root.resolve()  # records name files by absolute path
    hand_root, anno_root = _hand_root(root), _anno_root(root)
    objects = ctx.objects_root(root / "HOI4D_CAD_Model_for_release").resolve()
    rigid_dir = objects / "rigid" if (objects / "rigid").is_dir() else objects
    hands: dict[str, dict[str, dict[int, Path]]] = {}  # seq -> side -> frame -> pickle
    for side in SIDES:
        base = hand_root / f"refinehandpose_{side}"
        for d in base.glob(SEQ_GLOB):
            if d.is_dir():
                hands.setdefault(d.relative_to(base).as_posix(), {})[side] = _frame_files(d, ".pickle")
    for seq in sorted(hands):
        by_side = hands[seq]
        frames = ctx.frames(sorted(set().union(*by_side.values())))
        n = sum(f in files for f in frames for files in by_side.values())
        parts = seq.split("/")
        m_cls, m_ins = re.fullmatch(r"C(\d+)", parts[2]), re.fullmatch(r"N(\d+)", parts[3])
        k = int(m_cls.group(1)) if m_cls else -1
        name = CLASSES[k] if 0 <= k < len(CLASSES) else ""
        if not name or m_ins is None:
            yield Skip("unknown object class or instance in the sequence id", seq, count=n)
            continue
        if name not in RIGID:
            yield Skip("articulated object (HOI4D poses its parts separately; not converted)", seq, count=n)
            continue
        category = category_or_text(name)
        if not ctx.want(category):
            yield Skip("category not in --categories", seq, count=n)
            continue
        mesh = _cad(rigid_dir, name, int(m_ins.group(1)))
        if mesh is None:
            yield Skip(f"CAD model missing under {rigid_dir} (rigid/<Class>/<NNN>.obj; give --objects)", seq, count=n)
            continue
        poses = _frame_files(anno_root / seq / "objpose", ".json")
        sid = seq.replace("/", "-")
        for frame in frames:
            sides = [s for s in SIDES if frame in by_side.get(s, {})]
            if frame not in poses:
                yield Skip("no object pose for the frame", f"{seq}/{frame}", count=len(sides))
                continue
            try:
                oTc = np.linalg.inv(_object_pose(poses[frame]))
            except InputError:
                yield Skip("unreadable object pose file (no dataList/objects entry with center and rotation)",
                           str(poses[frame]), count=len(sides))
                continue
            image = root / "HOI4D_release" / seq / "align_rgb" / f"{frame:05d}.jpg"
            extra = {"image": str(image)} if image.is_file() else {}
            for side in sides:
                path = by_side[side][frame]
                try:
                    h = load_pickle(path)
                except InputError:
                    h = None
                if not isinstance(h, dict) or any(h.get(key) is None for key in ("poseCoeff", "beta", "trans")):
                    yield Skip("unreadable hand pose file, or one without poseCoeff, beta or trans", str(path))
                    continue
                pose = np.asarray(h["poseCoeff"], np.float64).reshape(-1)
                if pose.size != 48:
                    yield Skip("hand pose file with a poseCoeff that is not 48 numbers", str(path))
                    continue
                params = ctx.left_as_released(params_of(pose[:3], ctx.full_pose(side, pose[3:]), h["beta"], h["trans"], side))
                yield record(side, ctx.to_object_frame(side, params, oTc), mesh=mesh, category=category,
                             id=f"hoi4d-{sid}-{frame:05d}-{side}", source="hoi4d", **extra)


DATASET = Dataset(
    name="hoi4d", title="HOI4D", hands="one", source="Liu et al. CVPR 2022 and the HOI4D-Instructions README",
    layout=f"handpose/refinehandpose_{{right,left}}/{SEQ_GLOB}/<FRAME>.pickle, HOI4D_annotations/{SEQ_GLOB}/objpose/<FRAME>.json, "
           "CAD models under HOI4D_CAD_Model_for_release/rigid/<Class>/<NNN>.obj or --objects",
    mano="required", read=_read, check=_check,
    objects_help="the HOI4D CAD models folder (rigid/<Class>/<NNN>.obj)",
)
