"""GRAB (Taheri et al., ECCV 2020): whole-body grasping sequences; each hand of each frame is
its own one-hand record on the sequence's object.

Layout read (the authors' release after their `grab/unzip_grab.py`; --root is the folder that
holds `grab/` and `tools/`):
    grab/<s1..s10>/<object>_<intent>[_<n>].npz   one sequence; every key holds a dict (a 0-d
        object array): rhand / lhand {params: {global_orient (T, 3), hand_pose (T, n_comps),
        transl (T, 3), fullpose (T, 45)}, vtemp: 'tools/subject_meshes/<gender>/<sbj>_rhand.ply'},
        object {params: {global_orient (T, 3), transl (T, 3)},
        object_mesh: 'tools/object_meshes/contact_meshes/<object>.ply'}, contact {object (T, V)
        body-part label per object vertex, 0 where nothing touches}, n_frames, n_comps, sbj_id;
        world frame, metres
    tools/object_meshes/contact_meshes/<object>.ply, tools/subject_meshes/<gender>/<sbj>_[lr]hand.ply
Conventions (GRAB repository: `grab/save_grab_vertices.py`, `tools/objectmodel.py`,
`tools/utils.py`): each hand is smplx's MANO with `flat_hand_mean=True`,
`num_pca_comps=n_comps` (24 in the release) and `v_template` = the subject's hand template
mesh, so `hand_pose` is PCA coefficients on the MANO file's `hands_components`, with no mean pose
added (smplx turns PCA off when 45 components are asked for; then they are axis-angle).
Templates instead of betas: hoitool's hand has betas, so the template is fitted by linear least
squares on the MANO model's 10 shape directions plus one rigid offset (template - MANO template
= shapedirs @ betas + offset; exact for a template in MANO's shape space); the translation then
gets the difference of the two wrist joints, so the wrist stays where GRAB put it. The fit's
RMS residual is kept as `betas_fit_rms_mm`. Objects: `ObjectModel` poses vertices as rows
times the rotation matrix, i.e. world = R(global_orient)^T x + transl; hands go into the object
mesh's frame by the inverse. Left hands use MANO_LEFT and stay left records. Records keep the
intent (from the file name) and the split of the GRAB repository's `grab_preprocessing.py`
(objects: test mug, wineglass, camera, binoculars, fryingpan, toothpaste; val apple, toothbrush,
elephant, hand; else train). `--stride` keeps every STRIDE-th frame of a sequence (captured at
120 fps: a stride of 4 or more is sensible).
Skipped: frames where GRAB's contact labels show no part of that hand touching the object
(cheaper than, and before, the distance filter); sequences whose object or hand template mesh
is missing. Files `*_verts_*.npz` (written by GRAB's `save_grab_vertices.py`) are ignored.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from hoitool.data.datasets.base import Context, Dataset, Skip, DataUnpickler, missing, record
from hoitool.data.vocab import category_or_text
from hoitool.errors import InputError
from hoitool.hand.model import HandParams

#: GRAB object names -> hoitool categories (names not listed go through category_or_text).
GRAB_CATEGORIES = {
    "alarmclock": "alarm clock", "cubelarge": "box", "cubemedium": "box", "cubesmall": "box",
    "cylinderlarge": "cylinder", "cylindermedium": "cylinder", "cylindersmall": "cylinder", "fryingpan": "pan",
    "gamecontroller": "remote", "hand": "hand sculpture", "lightbulb": "light bulb", "piggybank": "piggy bank",
    "pyramidlarge": "pyramid", "pyramidmedium": "pyramid", "pyramidsmall": "pyramid", "spherelarge": "ball",
    "spheremedium": "ball", "spheresmall": "ball", "stanfordbunny": "bunny", "toruslarge": "torus",
    "torusmedium": "torus", "torussmall": "torus", "train": "toy train", "waterbottle": "bottle",
    "wristwatch": "watch", "doorknob": "door knob",
}
SPLITS = {**{o: "test" for o in ("mug", "wineglass", "camera", "binoculars", "fryingpan", "toothpaste")},
          **{o: "val" for o in ("apple", "toothbrush", "elephant", "hand")}}
#: GRAB contact labels (tools/utils.py `contact_ids`) of each hand: the hand and its 15 finger parts.
CONTACT_IDS = {"right": np.array([22, *range(41, 56)]), "left": np.array([21, *range(26, 41)])}
HAND_KEYS = {"right": "rhand", "left": "lhand"}


def grab_category(name: str) -> str:
    """The hoitool category of a GRAB object name ('waterbottle' -> 'bottle')."""
    return category_or_text(GRAB_CATEGORIES.get(name, name))


class _Npz:
    """A GRAB sequence file read member by member; object arrays (the dicts) go through the
    annotation unpickler, so no code from the file runs."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._zip = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as e:
            raise InputError(f"cannot read annotation file {path}: {e}") from e
        self.keys = {n[:-4] for n in self._zip.namelist() if n.endswith(".npy")}

    def get(self, key: str, default=None):
        if key not in self.keys:
            return default
        fmt = np.lib.format
        try:
            with self._zip.open(f"{key}.npy") as f:
                version = fmt.read_magic(f)
                shape, fortran, dtype = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(f)
                if dtype.hasobject:
                    arr = np.asarray(DataUnpickler(f, encoding="latin1").load())
                else:
                    arr = np.frombuffer(f.read(), dtype=dtype, count=int(np.prod(shape)))
                    arr = arr.reshape(shape, order="F" if fortran else "C")
        except Exception as e:  # zip, header and unpickling errors of a damaged file
            raise InputError(f"cannot read {key!r} from annotation file {self.path}: {e}") from e
        return arr.item() if arr.ndim == 0 else arr


def _grab_root(root: Path) -> Path:
    """The folder holding grab/ and tools/ (ROOT, or ROOT's parent when ROOT is grab/)."""
    if not (root / "grab").is_dir() and any(root.glob("s*/*.npz")):
        return root.parent
    return root


def _check(root: Path) -> str | None:
    return missing(_grab_root(root), "grab/*/*.npz", "tools")


def _read_vertices(path: Path) -> np.ndarray:
    import trimesh

    try:
        return np.asarray(trimesh.load(path, force="mesh", process=False).vertices, np.float64)
    except Exception as e:  # trimesh raises many types on bad files
        raise InputError(f"cannot read hand template {path}: {type(e).__name__}: {e}") from e


def _object_to_world(params: dict, frames: np.ndarray) -> np.ndarray:
    """(N, 4, 4) wTo: GRAB's ObjectModel maps x -> R(global_orient)^T x + transl."""
    from scipy.spatial.transform import Rotation

    go = np.asarray(params["global_orient"], np.float64)[frames].reshape(-1, 3)
    T = np.tile(np.eye(4), (len(frames), 1, 1))
    T[:, :3, :3] = Rotation.from_rotvec(go).as_matrix().transpose(0, 2, 1)
    T[:, :3, 3] = np.asarray(params["transl"], np.float64)[frames].reshape(-1, 3)
    return T


def _articulation(ctx: Context, side: str, params: dict, frames: np.ndarray) -> np.ndarray | None:
    hp = params.get("hand_pose")
    if hp is not None:
        hp = np.asarray(hp, np.float64)[frames]
        # smplx turns PCA off when 45 components are asked for
        return ctx.full_pose(side, hp, pca=hp.shape[1] != 45, flat_mean=True)
    fp = params.get("fullpose")
    if fp is not None:
        fp = np.asarray(fp, np.float64)[frames]
        return ctx.full_pose(side, fp[:, -45:], flat_mean=True)
    return None


def _read(ctx: Context):
    base = _grab_root(ctx.root)
    meshes = ctx.objects_root(base)
    fits: dict[tuple[str, Path], tuple] = {}
    for seq in sorted(base.glob("grab/*/*.npz")):
        if "_verts_" in seq.name:
            continue
        sbj, stem = seq.parent.name, seq.stem
        obj_name = stem.split("_")[0]
        category = grab_category(obj_name)
        npz = _Npz(seq)
        if not ctx.want(category):
            n = npz.get("n_frames")
            n = len(ctx.frames(range(int(n)))) if n is not None else 1
            yield Skip("category not in --categories", f"{sbj}/{stem}", count=2 * n)
            continue
        obj = npz.get("object") or {}
        op = obj.get("params") or {}
        if "global_orient" not in op or "transl" not in op:
            yield Skip("sequence without object pose", f"{sbj}/{stem}")
            continue
        T = len(np.asarray(op["transl"]).reshape(-1, 3))
        frames = np.asarray(ctx.frames(range(T)), dtype=np.int64)
        mesh_rel = str(obj.get("object_mesh") or f"tools/object_meshes/contact_meshes/{obj_name}.ply")
        mesh = next((p for p in (meshes / mesh_rel, meshes / "tools/object_meshes/contact_meshes" / f"{obj_name}.ply")
                     if p.is_file()), None)
        if mesh is None:
            yield Skip(f"object mesh missing ({mesh_rel} under {meshes})", f"{sbj}/{stem}", count=2 * len(frames))
            continue
        contact = (npz.get("contact") or {}).get("object")
        wTo = _object_to_world(op, frames)
        oTw = np.linalg.inv(wTo)
        intent = stem.split("_")[1] if "_" in stem else ""
        for side in ("right", "left"):
            where = f"{sbj}/{stem} ({side})"
            h = npz.get(HAND_KEYS[side]) or {}
            hp = h.get("params") or {}
            if "global_orient" not in hp or "transl" not in hp:
                yield Skip("sequence without this hand's parameters", where, count=len(frames))
                continue
            vtemp_path = base / str(h.get("vtemp", ""))
            if not h.get("vtemp") or not vtemp_path.is_file():
                yield Skip("hand template mesh missing (tools/subject_meshes)", where, count=len(frames))
                continue
            key = (side, vtemp_path)
            if key not in fits:
                fits[key] = ctx.fit_template(side, _read_vertices(vtemp_path))
            betas, offset, rms = fits[key]
            keep = np.ones(len(frames), bool)
            if contact is not None:
                keep = np.isin(np.asarray(contact)[frames], CONTACT_IDS[side]).any(axis=1)
                if not keep.all():
                    first = frames[np.flatnonzero(~keep)[0]]
                    yield Skip("hand not touching the object (GRAB contact labels)", f"{sbj}/{stem}/{first} ({side})",
                               count=int((~keep).sum()))
            if not keep.any():
                continue
            fk = frames[keep]
            art = _articulation(ctx, side, hp, fk)
            if art is None:
                yield Skip("sequence without hand_pose or fullpose", where, count=len(fk))
                continue
            n = len(fk)
            world = HandParams.from_numpy({
                "global_orient": np.asarray(hp["global_orient"], np.float32)[fk].reshape(n, 3),
                "hand_pose": np.asarray(art, np.float32).reshape(n, 45),
                "betas": np.tile(betas, (n, 1)),
                "transl": (np.asarray(hp["transl"], np.float64)[fk].reshape(n, 3) + offset).astype(np.float32),
            }, side=side)
            po = ctx.to_object_frame(side, world, oTw[keep])
            for i, f in enumerate(fk):
                yield record(side, po[i], mesh=mesh.resolve(), category=category, id=f"grab-{sbj}-{stem}-{f:05d}-{side}",
                             source="grab", intent=intent, split=SPLITS.get(obj_name, "train"),
                             betas_fit_rms_mm=round(rms * 1000, 3))


DATASET = Dataset(
    name="grab", title="GRAB", hands="one", source="Taheri et al. ECCV 2020 and the GRAB repository (otaheri/GRAB)",
    layout="grab/<subject>/<object>_<intent>.npz with tools/object_meshes/contact_meshes/ and tools/subject_meshes/ beside grab/",
    mano="required", read=_read, check=_check,
    objects_help="a folder holding GRAB's tools/object_meshes/ (default: ROOT, which ships them)",
)
