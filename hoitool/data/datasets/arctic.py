"""ARCTIC (Fan et al., CVPR 2023): two hands manipulating an articulated object, motion capture.

Two converters read the same release: `arctic` writes one-hand records (each hand in contact
with the object, its own record), `arctic-two-hands` writes two-hand records with the object.

Layout read (the authors' `arctic` toolkit: docs/data/data_doc.md, src/arctic/preprocess_dataset.py,
common/object_tensors.py, common/body_models.py):
    ROOT/raw_seqs/<SUBJECT>/<SEQ>.mano.npy   a pickled dict (np.save of a dict):
                                            {"right"|"left": {"rot" (F, 3) axis-angle,
                                            "pose" (F, 45) axis-angle, "trans" (F, 3),
                                            "shape" (10,), "fitting_err" (F,)}}, world frame, metres
    ROOT/raw_seqs/<SUBJECT>/<SEQ>.object.npy (F, 7): articulation angle (radians), rotation
                                            (3, axis-angle) and translation (3, millimetres) of
                                            the object in the world frame
    ROOT/meta/object_vtemplates/<OBJECT>/   top.obj and bottom.obj (the two parts), or mesh.obj
                                            with parts.json (one 0/1 per vertex, 0 = top: the
                                            toolkit's object_tensors.py adds 1 and articulates
                                            parts_ids == 1), in
                                            the object's canonical frame, millimetres
<OBJECT> is the sequence name up to its first underscore ('box_grab_01' -> 'box').

Conventions: the toolkit builds MANO through smplx with `use_pca=False, flat_hand_mean=False`,
so the 45 pose numbers are relative to MANO's mean pose (hoitool adds the MANO file's
`hands_mean`: --mano-dir is required). The object's pose maps canonical coordinates into the
world: x_w = R(rot) x_o + trans / 1000 after the top part has been turned by the articulation
angle about the canonical -z axis through the origin (the bottom part does not move). Hands go
into the object's canonical frame (the bottom part's) by the inverse of that pose, exactly.
The object mesh of a record is the template with its top part turned to the frame's angle
quantised to whole degrees (so one mesh serves many frames), written once in metres under
OUT/dataset/meshes/; the exact angle is kept in the record (`articulation_rad`). Frame numbers
are motion-capture frame indices (the images are offset from them by the toolkit's per-subject
offsets). Left hands are left MANO hands; nothing is mirrored.

Skipped: sequences of objects not in --categories, without an object file or template, or
whose MANO and object files disagree on the frame count; frames with non-finite numbers;
`arctic`: hands farther than --max-gap-mm from the object (approach, release, the idle hand);
`arctic-two-hands`: frames where neither hand is within --max-gap-mm of the object (a frame
where both are gets the interaction label 'bimanual_grasp').

Known difference: the toolkit's smplx MANO layers do not fix the left model's shape directions
(smplx issue #48) and hoitool's do: `Context.left_as_released` refits each left hand's betas
and keeps its wrist where the toolkit put it; what the fixed directions cannot express remains
a shape difference where betas are far from zero (see zc-alexfan/arctic#50).
Unconfirmed: the units of top.obj / bottom.obj (taken as millimetres, like mesh.obj, with which
the toolkit's documentation says they are aligned).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hoitool.data.datasets.base import Context, Dataset, Skip, DataUnpickler, missing, record, rigid
from hoitool.data.vocab import category_or_text
from hoitool.errors import InputError
from hoitool.hand.model import HandParams
from hoitool.utils.io import atomic_path

SIDES = ("right", "left")
#: Articulation angles are quantised to this step (degrees) for the written meshes.
ANGLE_STEP_DEG = 1.0
#: Slack of the converter's own contact pre-filter (one-hand records), on top of --max-gap-mm;
#: the conversion's contact filter decides on the records' own (quantised) meshes.
PREFILTER_SLACK_MM = 2.0
#: ARCTIC object names -> hoitool categories (free text where the vocabulary has none).
ARCTIC_CATEGORIES = {
    "box": "box", "capsulemachine": "capsule machine", "espressomachine": "espresso machine", "ketchup": "bottle",
    "laptop": "laptop", "microwave": "microwave", "mixer": "mixer", "notebook": "notebook", "phone": "phone",
    "scissors": "scissors", "waffleiron": "waffle iron",
}
NOT_IN_CONTACT = "hand more than {mm:g} mm from the object (not in contact)"


def arctic_category(name: str) -> str:
    """The hoitool category of an ARCTIC object name ('ketchup' -> 'bottle')."""
    return category_or_text(ARCTIC_CATEGORIES.get(name, name))


def load_npy(path: Path):
    """An .npy array; pickled (object) arrays are read without running code from them."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            _, _, dtype = read_header(f)
            if dtype.hasobject:
                a = DataUnpickler(f, encoding="latin1").load()
            else:
                f.seek(0)
                a = np.load(f, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise InputError(f"cannot read ARCTIC file {path}: {type(e).__name__}: {e}") from e
    if isinstance(a, np.ndarray) and a.dtype.hasobject and a.shape == ():
        a = a.item()
    return a


def arti_rotation(angle: np.ndarray) -> np.ndarray:
    """(N, 3, 3) turns of the top part: `angle` radians about the canonical -z axis."""
    from scipy.spatial.transform import Rotation

    a = np.asarray(angle, np.float64).reshape(-1)
    return Rotation.from_rotvec(np.stack([np.zeros_like(a), np.zeros_like(a), -a], 1)).as_matrix()


class Template:
    """One object's two parts in its canonical frame, metres."""

    def __init__(self, name: str, bottom, top):
        self.name = name
        self.bottom, self.top = bottom, top  # (vertices (V, 3), faces (T, 3)) each
        self._trees = None

    @classmethod
    def load(cls, folder: Path) -> "Template | None":
        import json

        import trimesh

        def load(p):
            m = trimesh.load(p, force="mesh", process=False)
            return np.asarray(m.vertices, np.float64) / 1000.0, np.asarray(m.faces, np.int64)

        try:
            if (folder / "top.obj").is_file() and (folder / "bottom.obj").is_file():
                return cls(folder.name, load(folder / "bottom.obj"), load(folder / "top.obj"))
            if (folder / "mesh.obj").is_file() and (folder / "parts.json").is_file():
                v, f = load(folder / "mesh.obj")
                top = np.asarray(json.loads((folder / "parts.json").read_text()), np.int64).reshape(-1) == 0  # see the docstring
                if top.shape[0] != len(v):
                    raise InputError(f"{folder / 'parts.json'} has {top.shape[0]} entries for {len(v)} vertices of mesh.obj")
                return cls(folder.name, (v[~top], _faces_of(f, ~top)), (v[top], _faces_of(f, top)))
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001 - trimesh raises many types on bad files
            raise InputError(f"cannot read the ARCTIC object template {folder}: {type(e).__name__}: {e}") from e
        return None

    def posed(self, angle_rad: float):
        """(vertices, faces) with the top part turned by `angle_rad`."""
        R = arti_rotation(angle_rad)[0]
        (vb, fb), (vt, ft) = self.bottom, self.top
        return np.concatenate([vb, vt @ R.T]), np.concatenate([fb, ft + len(vb)])

    def _tree(self, part):
        from scipy.spatial import cKDTree

        import trimesh

        v, f = part
        pts = [v]
        if len(f):
            s, _ = trimesh.sample.sample_surface(trimesh.Trimesh(v, f, process=False), 20000, seed=0)
            pts.append(np.asarray(s))
        return cKDTree(np.concatenate(pts))

    def gap_m(self, verts: np.ndarray, angles: np.ndarray) -> np.ndarray:
        """(N,) distance from each posed hand (N, V, 3), canonical frame, to the object at the
        frame's exact articulation angle."""
        if self._trees is None:
            self._trees = [self._tree(self.bottom) if len(self.bottom[0]) else None,
                           self._tree(self.top) if len(self.top[0]) else None]
        n, nv = verts.shape[:2]
        d = np.full((n, nv), np.inf)
        if self._trees[0] is not None:
            d = np.minimum(d, self._trees[0].query(verts.reshape(-1, 3), k=1)[0].reshape(n, nv))
        if self._trees[1] is not None:  # the top part's own frame: undo the turn
            local = np.einsum("nji,nvj->nvi", arti_rotation(angles), verts)
            d = np.minimum(d, self._trees[1].query(local.reshape(-1, 3), k=1)[0].reshape(n, nv))
        return d.min(1)


def _faces_of(faces: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The faces whose three vertices are all kept, renumbered over the kept vertices."""
    index = np.cumsum(keep) - 1
    inside = keep[faces].all(1)
    return index[faces[inside]]


@dataclass
class _Sequence:
    subject: str
    name: str
    object: str
    category: str
    frames: list
    angles: np.ndarray
    params: dict
    """side -> HandParams (batch of the frames) in the object's canonical frame."""
    gaps: dict
    """side -> (N,) metres, or None when the contact filter is off."""
    template: Template


def _check(root: Path) -> str | None:
    return missing(root, "raw_seqs/*/*.mano.npy", "meta/object_vtemplates/*/*.obj")


def _frame_count(obj_path: Path, mano_path: Path) -> int:
    try:
        return int(load_npy(obj_path).shape[0]) if obj_path.is_file() else int(len(load_npy(mano_path)["right"]["rot"]))
    except (KeyError, TypeError, IndexError):
        return 1


def _hand_arrays(mano: dict, side: str, n_frames: int, where: str) -> dict:
    try:
        h = mano[side]
        out = {k: np.asarray(h[k], np.float64) for k in ("rot", "pose", "trans", "shape")}
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"{where}: expected {side}.rot/pose/trans/shape in the MANO file ({e})") from e
    for k, n in (("rot", 3), ("pose", 45), ("trans", 3)):
        if out[k].shape != (n_frames, n):
            raise InputError(f"{where}: {side}.{k} has shape {out[k].shape}, expected ({n_frames}, {n})")
    s = out["shape"].reshape(-1, out["shape"].shape[-1] if out["shape"].ndim else 1)
    out["shape"] = np.repeat(s, n_frames, 0) if len(s) == 1 else s
    if out["shape"].shape[0] != n_frames:
        raise InputError(f"{where}: {side}.shape has {out['shape'].shape[0]} rows for {n_frames} frames")
    return out


def _sequences(ctx: Context, per_frame: int, filter_mm: float | None):
    """Per sequence: Skips (the whole sequence, or frames with bad numbers), then a _Sequence
    of the remaining frames with both hands in the object's frame (and their gaps to it when
    `filter_mm` is given)."""
    objects = ctx.objects_root(ctx.root / "meta" / "object_vtemplates")
    templates: dict[str, Template | None] = {}
    for subject in sorted(p for p in (ctx.root / "raw_seqs").iterdir() if p.is_dir()):
        for mano_path in sorted(subject.glob("*.mano.npy")):
            seq = mano_path.name[: -len(".mano.npy")]
            where = f"{subject.name}/{seq}"
            obj_path = mano_path.with_name(f"{seq}.object.npy")
            name = seq.split("_")[0]
            category = arctic_category(name)
            if not ctx.want(category):
                n = len(ctx.frames(range(_frame_count(obj_path, mano_path))))
                yield Skip("category not in --categories", where, count=n * per_frame)
                continue
            if not obj_path.is_file():
                n = len(ctx.frames(range(_frame_count(obj_path, mano_path))))
                yield Skip("no object pose file (<SEQ>.object.npy)", where, count=n * per_frame)
                continue
            if name not in templates:
                templates[name] = Template.load(objects / name) if (objects / name).is_dir() else None
            template = templates[name]
            obj = np.asarray(load_npy(obj_path), np.float64)
            if obj.ndim != 2 or obj.shape[1] != 7:
                raise InputError(f"{obj_path}: expected (frames, 7) object parameters, got shape {obj.shape}")
            frames = ctx.frames(range(obj.shape[0]))
            if template is None:
                yield Skip(f"object template missing under {objects} (<OBJECT>/top.obj + bottom.obj, or mesh.obj + parts.json)",
                           where, count=len(frames) * per_frame)
                continue
            mano = load_npy(mano_path)
            if not isinstance(mano, dict) or not all(isinstance(mano.get(s), dict) for s in SIDES):
                raise InputError(f"{mano_path}: expected a dict with 'right' and 'left' MANO parameters")
            n_mano = len(np.asarray(mano["right"].get("rot", [])))
            if n_mano != obj.shape[0]:
                yield Skip("MANO and object files differ in frame count", where, count=len(frames) * per_frame)
                continue
            hands = {s: _hand_arrays(mano, s, n_mano, str(mano_path)) for s in SIDES}
            idx = np.asarray(frames, np.int64)
            finite = np.isfinite(obj[idx]).all(1)
            for s in SIDES:
                finite &= np.all([np.isfinite(hands[s][k][idx]).all(1) for k in hands[s]], axis=0)
            for i in idx[~finite]:
                yield Skip("non-finite MANO or object parameters", f"{where}/{i:05d}", count=per_frame)
            idx = idx[finite]
            if len(idx) == 0:
                continue
            yield _pose_sequence(ctx, subject.name, seq, name, category, idx, obj[idx], hands, template, filter_mm)


def _pose_sequence(ctx, subject, seq, name, category, idx, obj, hands, template, filter_mm) -> _Sequence:
    oTw = np.stack([np.linalg.inv(rigid(o[1:4], o[4:7] / 1000.0)) for o in obj])
    params, gaps = {}, {}
    for s in SIDES:
        h = hands[s]
        p = HandParams.from_numpy({"global_orient": h["rot"][idx], "hand_pose": ctx.full_pose(s, h["pose"][idx], flat_mean=False),
                                   "betas": _betas10(h["shape"][idx]), "transl": h["trans"][idx]}, side=s)
        params[s] = ctx.to_object_frame(s, ctx.left_as_released(p), oTw)
        gaps[s] = None
        if filter_mm is not None:
            g = []
            with torch.no_grad():
                for a in range(0, len(idx), 256):
                    v = ctx.hand(s)(params[s][a: a + 256]).vertices.double().numpy()
                    g.append(template.gap_m(v, obj[a: a + 256, 0]))
            gaps[s] = np.concatenate(g)
    return _Sequence(subject, seq, name, category, [int(i) for i in idx], obj[:, 0].copy(), params, gaps, template)


def _betas10(shape: np.ndarray) -> np.ndarray:
    b = np.zeros((len(shape), 10))
    b[:, : min(10, shape.shape[1])] = shape[:, :10]
    return b


class _Meshes:
    """The articulated objects at quantised angles, written once under OUT/dataset/meshes/."""

    def __init__(self, ctx: Context):
        self.folder = Path(ctx.opts.work) / "meshes"
        self._done: dict[tuple[str, int], Path] = {}

    @staticmethod
    def quantise(angle_rad: float) -> int:
        """The angle in whole steps of ANGLE_STEP_DEG."""
        return int(round(np.degrees(angle_rad) / ANGLE_STEP_DEG))

    def path(self, template: Template, angle_rad: float) -> Path:
        q = self.quantise(angle_rad)
        key = (template.name, q)
        if key not in self._done:
            deg = q * ANGLE_STEP_DEG
            label = f"{deg:+04.0f}" if float(ANGLE_STEP_DEG).is_integer() else f"{deg:+06.1f}"
            p = self.folder / f"arctic_{re.sub(r'[^A-Za-z0-9]+', '_', template.name)}_{label}deg.obj"
            if not p.is_file():
                import trimesh

                v, f = template.posed(np.radians(deg))
                with atomic_path(p) as tmp:
                    trimesh.Trimesh(v, f, process=False).export(tmp, file_type="obj")
            self._done[key] = p
        return self._done[key]


def _hand_dict(p: HandParams) -> dict:
    return {k: v.reshape(-1) for k, v in p.numpy().items()}


def _read_one(ctx: Context):
    mm = ctx.opts.max_gap_mm
    limit = (mm + PREFILTER_SLACK_MM) / 1000 if mm > 0 else None
    meshes = _Meshes(ctx)
    for item in _sequences(ctx, per_frame=2, filter_mm=limit):
        if isinstance(item, Skip):
            yield item
            continue
        sq = item
        for j, f in enumerate(sq.frames):
            for s in SIDES:
                rid = f"arctic-{sq.subject}-{sq.name}-{f:05d}-{s}"
                if limit is not None and sq.gaps[s][j] > limit:
                    yield Skip(NOT_IN_CONTACT.format(mm=mm), rid)
                    continue
                yield record(s, sq.params[s][j], mesh=meshes.path(sq.template, sq.angles[j]), category=sq.category,
                             id=rid, source="arctic", articulation_rad=round(float(sq.angles[j]), 5))


def _read_two(ctx: Context):
    from hoitool.data.synthetic.twohands import OBJECT_TYPE
    from hoitool.twohands.records import TwoHandRecord

    mm = ctx.opts.max_gap_mm
    limit = mm / 1000 if mm > 0 else None
    meshes = _Meshes(ctx)
    for item in _sequences(ctx, per_frame=1, filter_mm=limit):
        if isinstance(item, Skip):
            yield item
            continue
        sq = item
        for j, f in enumerate(sq.frames):
            rid = f"arctic-{sq.subject}-{sq.name}-{f:05d}"
            touching = [s for s in SIDES if limit is None or sq.gaps[s][j] <= limit]
            if not touching:
                yield Skip(f"neither hand within {mm:g} mm of the object (not in contact)", rid)
                continue
            extra = {"articulation_rad": round(float(sq.angles[j]), 5)}
            if limit is not None:
                extra["contact"] = "both" if len(touching) == 2 else touching[0]
            yield TwoHandRecord(_hand_dict(sq.params["right"][j]), _hand_dict(sq.params["left"][j]), id=rid,
                                object_mesh=str(meshes.path(sq.template, sq.angles[j])), category=sq.category, scale=1.0,
                                interaction=OBJECT_TYPE if len(touching) == 2 else "", source="arctic", extra=extra)


_LAYOUT = ("raw_seqs/<SUBJECT>/<SEQ>.mano.npy and <SEQ>.object.npy, "
           "meta/object_vtemplates/<OBJECT>/top.obj + bottom.obj (or mesh.obj + parts.json)")
_OBJECTS = "a folder of ARCTIC object templates (<OBJECT>/top.obj + bottom.obj); default ROOT/meta/object_vtemplates"
_SOURCE = "Fan et al. CVPR 2023 and the ARCTIC toolkit (docs/data/data_doc.md)"

DATASETS = {
    "arctic": Dataset(name="arctic", title="ARCTIC", hands="one", source=_SOURCE, layout=_LAYOUT, mano="required",
                      read=_read_one, check=_check, objects_help=_OBJECTS),
    "arctic-two-hands": Dataset(name="arctic-two-hands", title="ARCTIC (two hands)", hands="two", source=_SOURCE,
                                layout=_LAYOUT, mano="required", read=_read_two, check=_check, objects_help=_OBJECTS),
}
