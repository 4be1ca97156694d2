"""A stand-in MANO folder for tests: the open hand written in MANO's released file layout
(chumpy objects, a sparse regressor), with a non-zero mean pose and a random orthonormal PCA
basis, so that code converting PCA coefficients or mean-relative poses must use the file's own
arrays to pass. (The licensed MANO files are never part of the project.)"""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import numpy as np
import scipy.sparse

from hoitool.assets import asset_dir
from hoitool.hand.mano_io import read_model_file


def write_chumpy_file(path, arrays) -> None:
    """Pickle arrays the way the released MANO files do: chumpy objects and a sparse regressor."""
    mod = types.ModuleType("chumpy")
    sub = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = x

        def __getstate__(self):
            return {"x": self.x, "_dirty": True}

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    sub.Ch = Ch
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = mod, sub
    try:
        data = {k: Ch(np.asarray(v, dtype=np.float64)) for k, v in arrays.items() if k in ("v_template", "shapedirs", "posedirs", "hands_mean")}
        data.update(f=arrays["f"].astype(np.uint32), weights=arrays["weights"].astype(np.float64),
                    kintree_table=arrays["kintree_table"], hands_components=arrays["hands_components"].astype(np.float64),
                    J_regressor=scipy.sparse.csc_matrix(arrays["J_regressor"].astype(np.float64)), bs_style="lbs")
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=2)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]


def make_fake_mano_dir(folder: Path, seed: int = 0, keep_pca: bool = False, released_left: bool = False) -> Path:
    """Write MANO_RIGHT.pkl and MANO_LEFT.pkl into `folder` (the open hand's geometry); returns it.
    Unless `keep_pca`, each side gets a non-zero `hands_mean` and its own orthonormal 45 x 45
    `hands_components`. `released_left` flips the x components of the left shape directions,
    the defect of the released MANO_LEFT.pkl that hoitool's hand model corrects."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for side in ("right", "left"):
        arrays = read_model_file(asset_dir() / "hand" / f"open_hand_{side}.pkl")
        if not keep_pca:
            arrays["hands_mean"] = rng.normal(0, 0.15, 45).astype(np.float32)
            q, _ = np.linalg.qr(rng.normal(size=(45, 45)))
            arrays["hands_components"] = q.T.astype(np.float32)  # rows are components
        if released_left and side == "left":
            arrays["shapedirs"] = arrays["shapedirs"].copy()
            arrays["shapedirs"][:, 0, :] *= -1
        write_chumpy_file(folder / f"MANO_{side.upper()}.pkl", arrays)
    return folder
