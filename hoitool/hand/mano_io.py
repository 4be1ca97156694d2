"""Reading hand model files: the licensed MANO pickles (without chumpy) and the open hand.

MANO files store arrays as chumpy objects, and chumpy does not work with numpy 2. The
unpickler below maps every `chumpy.*` class to a plain holder that keeps its state, then
takes the array out of it. Arrays read from a MANO file are cached as .npz in the user cache
(never inside the project), keyed by the file's path, size and modification time.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np

from hoitool.assets import asset_dir, cache_dir
from hoitool.errors import InputError

MODEL_KEYS = [
    "v_template", "f", "J_regressor", "weights", "posedirs", "shapedirs",
    "kintree_table", "hands_components", "hands_mean",
]
OPEN_HAND_FILES = {"right": "open_hand_right.pkl", "left": "open_hand_left.pkl"}
MANO_FILES = {"right": "MANO_RIGHT.pkl", "left": "MANO_LEFT.pkl"}


class _Holder:
    """Stands in for chumpy objects: keeps whatever state the pickle sets."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.__dict__["_state"] = state


_SAFE = {
    "numpy": {"_reconstruct", "scalar", "ndarray", "dtype", "_frombuffer"},
    "copy_reg": {"_reconstructor"}, "copyreg": {"_reconstructor"},
    "__builtin__": {"object", "set", "frozenset", "slice", "complex", "bytearray"},
    "builtins": {"object", "set", "frozenset", "slice", "complex", "bytearray"},
    "_codecs": {"encode"},
}


class _Unpickler(pickle.Unpickler):
    """Loads arrays, sparse matrices and chumpy stand-ins; refuses everything else."""

    def find_class(self, module, name):
        root = module.split(".")[0]
        if root == "chumpy":
            return _Holder
        if name in _SAFE.get(root, ()) or (module.startswith("scipy.sparse") and name.endswith(("_matrix", "_array"))):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a hand model file")


def _to_array(v):
    if isinstance(v, _Holder):
        st = v.__dict__.get("_state", {})
        if isinstance(st, dict) and "x" in st:
            return np.asarray(st["x"])
        if isinstance(st, dict) and "a" in st:
            return np.asarray(st["a"])
        raise InputError("unrecognised chumpy object in the hand model file")
    if hasattr(v, "toarray"):  # scipy.sparse
        return np.asarray(v.toarray())
    return np.asarray(v)


def read_model_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a MANO-layout pickle (MANO or the open hand) into plain float32/int arrays."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = _Unpickler(f, encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise InputError(f"cannot read hand model {path}: {e}") from e
    missing = [k for k in MODEL_KEYS if k not in raw]
    if missing:
        raise InputError(f"{path} is not a MANO-layout hand model (missing {', '.join(missing)})")
    out = {}
    for k in MODEL_KEYS:
        a = _to_array(raw[k])
        if k in ("f", "kintree_table"):
            out[k] = a.astype(np.int64)
        else:
            out[k] = a.astype(np.float32)
    if out["shapedirs"].ndim != 3 or out["weights"].shape[1] != 16:
        raise InputError(f"{path}: unexpected array shapes for a hand model")
    return out


def load_cached(path: Path) -> dict[str, np.ndarray]:
    """read_model_file with an .npz cache in the user cache directory."""
    st = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    cache = cache_dir() / "hand_models" / f"{path.stem}-{key}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return {k: z[k] for k in MODEL_KEYS}
    arrs = read_model_file(path)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".part.npz")
    np.savez(tmp, **arrs)
    os.replace(tmp, cache)
    return arrs


def resolve_source(side: str, mano_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The hand model file for `side` and a description of where it came from.

    First found wins: `mano_dir` (the --mano-dir flag), $HOITOOL_MANO_DIR, the bundled open hand.
    """
    if side not in ("right", "left"):
        raise InputError(f"side must be 'right' or 'left', got {side!r}")
    for given, origin in ((mano_dir, "--mano-dir"), (os.environ.get("HOITOOL_MANO_DIR"), "HOITOOL_MANO_DIR")):
        if given:
            d = Path(given).expanduser()
            f = d / MANO_FILES[side]
            if not f.is_file():
                raise InputError(f"{origin} is set to {d}, which has no {MANO_FILES[side]}: point it at the folder holding MANO_RIGHT.pkl and MANO_LEFT.pkl")
            return f, f"MANO ({origin}: {d})"
    return asset_dir() / "hand" / OPEN_HAND_FILES[side], "open hand (bundled)"


def load_arrays(side: str, mano_dir: str | os.PathLike | None = None) -> tuple[dict[str, np.ndarray], str]:
    """Arrays of the hand model for `side`, and the source description."""
    path, source = resolve_source(side, mano_dir)
    if not path.is_file():
        raise InputError(f"hand model file missing: {path} (rebuild it: make hand)")
    arrs = load_cached(path) if source.startswith("MANO") else read_model_file(path)
    return arrs, source
