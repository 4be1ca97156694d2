"""What every dataset converter shares: options, the reading context, and the tally of what
was read and skipped.

A converter is one module of this package with a module-level `DATASET = Dataset(...)`. Its
`read(ctx)` yields, per annotated frame it looks at, either a record (an `HOIRecord`, or a
`TwoHandRecord` for two-hand datasets) with the hand(s) in the object mesh's frame, in metres,
in hoitool's pose convention (45-d axis-angle, flat hand at zero), or a `Skip(reason, where)`.
`ctx` does the conventions that recur across datasets:

* `ctx.full_pose(side, pose, pca=..., flat_mean=...)`: MANO PCA coefficients and poses relative
  to MANO's mean pose (`flat_hand_mean=False`) become hoitool's flat-mean axis-angle, with the
  MANO file's own `hands_components` / `hands_mean` (hence `--mano-dir`).
* `ctx.to_object_frame(side, params, oTx)`: hand parameters given in a camera or world frame x
  moved into the object's frame (exact for MANO's wrist joint, hence `--mano-dir`).
* `ctx.frames(seq)`: `--stride`; `ctx.want(category)`: `--categories`.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Union

import numpy as np
import torch

from hoitool.data.records import HOIRecord
from hoitool.data.vocab import canonical_category, category_or_text
from hoitool.errors import InputError
from hoitool.hand.model import HandModel, HandParams, transform_params


@dataclass
class Skip:
    """A frame (or sequence) not converted: why, and where (for the summary)."""

    reason: str
    where: str = ""
    count: int = 1
    """How many frames this skip stands for (a whole sequence skipped at once)."""


@dataclass
class Dataset:
    """One dataset's converter."""

    name: str
    """The --dataset name."""
    title: str
    """The dataset's name as its authors write it."""
    hands: str
    """'one' (HOIRecords, for G-HOP) or 'two' (TwoHandRecords, for `twohands`)."""
    source: str
    """Where the layout read here is documented (paper, toolkit)."""
    layout: str
    """The files read, relative to --root, in one line (shown when the root does not match)."""
    mano: str
    """'required' when the converter needs the MANO files, 'optional' when it does not."""
    read: Callable[["Context"], Iterator[Union[HOIRecord, "object", Skip]]]
    check: Callable[[Path], str | None]
    """Returns what is missing from a root (None: it looks right)."""
    objects_help: str = ""
    """What --objects points at for this dataset ('' when the meshes ship with it)."""


@dataclass
class ConvertOptions:
    """Options of a dataset conversion (`hoitool prepare-data --dataset`)."""

    dataset: str
    root: Path
    work: Path
    """Folder for files the converter derives (posed meshes of articulated objects, ...)."""
    objects: Path | None = None
    """Where the dataset's object meshes are, when they ship separately."""
    mano_dir: str | None = None
    categories: list[str] | None = None
    max_records: int | None = None
    stride: int = 1
    max_gap_mm: float = 10.0
    """One-hand records whose hand is farther than this from the object are skipped (not in contact)."""


class Context:
    """What a converter's `read` works with (see the module docstring)."""

    def __init__(self, opts: ConvertOptions):
        self.opts = opts
        self.root = Path(opts.root)
        self._hands: dict[str, HandModel] = {}
        self._arrays: dict[str, dict] = {}
        wanted = opts.categories or []
        self._wanted = {canonical_category(c) or category_or_text(c) for c in wanted}

    # -- hand model and pose conventions ----------------------------------------------------
    def hand(self, side: str) -> HandModel:
        if side not in self._hands:
            self._hands[side] = HandModel(side, self.opts.mano_dir)
        return self._hands[side]

    def _pca(self, side: str) -> dict:
        if side not in self._arrays:
            from hoitool.hand.mano_io import load_arrays

            arrs, _ = load_arrays(side, self.opts.mano_dir)
            self._arrays[side] = {"mean": np.asarray(arrs["hands_mean"], np.float64).reshape(45),
                                  "components": np.asarray(arrs["hands_components"], np.float64).reshape(-1, 45)}
        return self._arrays[side]

    def full_pose(self, side: str, pose, *, pca: bool = False, flat_mean: bool = True) -> np.ndarray:
        """(N, 45) or (45,) flat-mean axis-angle from a dataset's articulation: PCA
        coefficients (`pca`, any number of leading components) and/or relative to MANO's mean
        pose (`flat_mean=False`)."""
        a = np.asarray(pose, np.float64)
        one = a.ndim == 1
        a = a.reshape(1, -1) if one else a
        if pca:
            comps = self._pca(side)["components"]
            if a.shape[1] > comps.shape[0]:
                raise InputError(f"{a.shape[1]} PCA coefficients, but the hand model has {comps.shape[0]} components")
            a = a @ comps[: a.shape[1]]
        elif a.shape[1] != 45:
            raise InputError(f"expected 45 axis-angle numbers per hand, got {a.shape[1]}")
        if not flat_mean:
            a = a + self._pca(side)["mean"]
        a = a.astype(np.float32)
        return a[0] if one else a

    def to_object_frame(self, side: str, params: HandParams | dict, oTx) -> HandParams:
        """Hand parameters in frame x moved into the object frame by oTx (4, 4) or (N, 4, 4)."""
        if isinstance(params, dict):
            params = HandParams.from_numpy(params, side=side)
        T = torch.as_tensor(np.asarray(oTx), dtype=torch.float32)
        with torch.no_grad():
            return transform_params(self.hand(side), params, T)

    def fit_template(self, side: str, vtemp: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """(betas (10,), wrist offset (3,), RMS residual in metres) of a rest hand template given
        as vertices: least-squares betas (and a rigid offset) on the hand model's shape
        directions, and what to add to a translation so that the fitted hand's wrist joint is the
        template's."""
        layer = self.hand(side).layer
        vt = layer.v_template.detach().double().numpy()
        S = layer.shapedirs.detach().double().numpy()[..., :10]  # (V, 3, 10)
        J = layer.J_regressor.detach().double().numpy()
        if vtemp.shape != vt.shape:
            raise InputError(f"hand template has {len(vtemp)} vertices, the hand model {len(vt)}")
        V = vt.shape[0]
        A = np.concatenate([S.reshape(V * 3, 10), np.tile(np.eye(3), (V, 1))], 1)
        sol, *_ = np.linalg.lstsq(A, (vtemp - vt).reshape(-1), rcond=None)
        betas = sol[:10]
        fitted = vt + S @ betas
        rms = float(np.sqrt(((fitted + sol[10:] - vtemp) ** 2).sum(1).mean()))
        return betas.astype(np.float32), J[0] @ vtemp - J[0] @ fitted, rms

    def left_as_released(self, params: HandParams) -> HandParams:
        """Left hands of toolkits that pose MANO_LEFT.pkl as released. hoitool corrects that
        file's shape directions (see `hand.model._fix_mano_left_shapedirs`), so the same betas
        would give another shape and, through the betas-dependent wrist joint, another place.
        Each hand's released rest shape is refitted with the corrected directions and the
        translation moved so that the wrist joint stays where the toolkit put it. Right hands,
        and hand models the correction leaves alone, pass unchanged."""
        hand = self.hand(params.side)
        if params.side != "left" or not hand.is_mano:
            return params
        if not hasattr(self, "_released"):
            from hoitool.hand.mano_io import load_arrays

            raw = np.asarray(load_arrays("left", self.opts.mano_dir)[0]["shapedirs"], np.float64)[..., :10]
            fixed = hand.layer.shapedirs.detach().double().numpy()[..., :10]
            self._released = {"raw": None if np.allclose(raw, fixed) else raw}
        raw = self._released["raw"]
        if raw is None:
            return params
        vt = hand.layer.v_template.detach().double().numpy()
        betas, transl = params.betas.clone(), params.transl.clone()
        for i, b in enumerate(params.betas.double().numpy()):
            key = b.tobytes()
            if key not in self._released:  # betas repeat (one per subject or sequence)
                self._released[key] = self.fit_template("left", vt + raw @ b)[:2]
            fit, offset = self._released[key]
            betas[i] = torch.as_tensor(fit)
            transl[i] = transl[i] + torch.as_tensor(offset, dtype=transl.dtype)
        return HandParams(params.global_orient, params.hand_pose, betas, transl, "left")

    # -- selection --------------------------------------------------------------------------
    def frames(self, items):
        """Every --stride-th item of a sequence's frames."""
        return list(items)[:: max(1, self.opts.stride)]

    def want(self, category: str) -> bool:
        """Whether --categories keeps this (canonical) category."""
        return not self._wanted or category in self._wanted

    def objects_root(self, default: Path) -> Path:
        """--objects when given, else `default` (a folder inside the dataset)."""
        return Path(self.opts.objects) if self.opts.objects else default


def record(side: str, params: HandParams, *, mesh: str | os.PathLike, category: str, id: str, source: str,
           scale: float = 1.0, **extra) -> HOIRecord:
    """An HOIRecord from one hand's parameters (batch of one) in the object frame."""
    p = params.numpy()
    return HOIRecord(object_mesh=str(mesh), category=category, side=side,
                     global_orient=p["global_orient"].reshape(3), hand_pose=p["hand_pose"].reshape(45),
                     betas=p["betas"].reshape(10), transl=p["transl"].reshape(3), id=id, source=source,
                     scale=float(scale), extra=extra)


def params_of(global_orient, hand_pose, betas, transl, side: str) -> HandParams:
    """A batch of one HandParams from four array-likes (betas padded or cut to 10)."""
    b = np.zeros(10, np.float32)
    given = np.asarray(betas, np.float32).reshape(-1)[:10]
    b[: given.size] = given
    return HandParams.from_numpy({"global_orient": np.asarray(global_orient, np.float32).reshape(1, 3),
                                  "hand_pose": np.asarray(hand_pose, np.float32).reshape(1, 45),
                                  "betas": b.reshape(1, 10), "transl": np.asarray(transl, np.float32).reshape(1, 3)}, side=side)


def rigid(R, t) -> np.ndarray:
    """(4, 4) from a rotation (3x3, or 3 axis-angle numbers) and a translation."""
    from scipy.spatial.transform import Rotation

    R = np.asarray(R, np.float64)
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(R.reshape(3)).as_matrix() if R.size == 3 else R.reshape(3, 3)
    T[:3, 3] = np.asarray(t, np.float64).reshape(3)
    return T


class DataUnpickler(pickle.Unpickler):
    """Dataset annotation pickles hold dicts, lists and numpy arrays; nothing else is loaded."""

    _SAFE = {"numpy": {"_reconstruct", "scalar", "ndarray", "dtype", "_frombuffer"},
             "numpy.core.multiarray": {"_reconstruct", "scalar"}, "numpy._core.multiarray": {"_reconstruct", "scalar"},
             "numpy.core.numeric": {"_frombuffer"}, "numpy._core.numeric": {"_frombuffer"},
             "copy_reg": {"_reconstructor"}, "copyreg": {"_reconstructor"},
             "builtins": {"object", "set", "frozenset", "slice", "complex"}, "__builtin__": {"object", "set", "frozenset", "slice", "complex"},
             "collections": {"OrderedDict", "defaultdict"}, "_codecs": {"encode"}}

    def find_class(self, module, name):
        if name in self._SAFE.get(module, ()):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def load_pickle(path: str | os.PathLike):
    """Read an annotation pickle (Python 2 pickles too) without running code from it."""
    try:
        with open(path, "rb") as f:
            return DataUnpickler(f, encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise InputError(f"cannot read annotation file {path}: {e}") from e


def missing(root: Path, *relpaths: str) -> str | None:
    """'<root>/a, <root>/b' for the expected paths (globs allowed) that do not exist; None if all do."""
    gone = [p for p in relpaths if not (any(root.glob(p)) if any(c in p for c in "*?[") else (root / p).exists())]
    return ", ".join(str(root / p) for p in gone) or None
