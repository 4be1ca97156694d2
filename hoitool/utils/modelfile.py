"""Reading model files written by `hoitool train`: a model.pt, a run folder, or a default shipped in
assets/models/. Every model family (G-HOP, two hands, ...) loads its files through here."""

from __future__ import annotations

from pathlib import Path

import torch

from hoitool.assets import asset_dir
from hoitool.errors import HoiError, InputError

DEFAULTS = {"vqvae": "ghop_vqvae.pt", "ghop": "ghop_prior.pt", "twohands": "twohands.pt", "twohands_features": "twohands_features.pt",
            "hoidiff": "hoidiff.pt", "refinenet": "refinenet.pt"}
#: How to make each default when it is missing.
MAKERS = {"vqvae": "scripts/train_default_prior.py", "ghop": "scripts/train_default_prior.py",
          "twohands": "scripts/train_default_twohands.py", "twohands_features": "scripts/train_default_twohands.py",
          "hoidiff": "scripts/train_default_hoidiff.py", "refinenet": "scripts/train_default_refinenet.py"}


def default_model_path(kind: str) -> Path:
    return asset_dir() / "models" / DEFAULTS[kind]


def _load(p: Path) -> dict:
    try:
        d = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{p} is unreadable as a model ({type(e).__name__}): pass a model.pt written by hoitool train") from None
    if not isinstance(d, dict):
        raise InputError(f"{p} is not a hoitool model file")
    if "task_name" in d:  # a training checkpoint: its EMA weights
        d = {"kind": d["task_name"], "step": d["step"], "state_dict": d["ema"], **d["export"]}
    return d


def read_model(path: str | Path | None, kind: str) -> dict:
    """The weights and settings of a `kind` model ('vqvae' or 'ghop') from a model file, a run
    folder, or the shipped default. In a run folder the later of model.pt and the EMA weights
    of checkpoints/last.pt wins (by step): a run resumed and interrupted after its model.pt was
    written has newer weights in last.pt."""
    if path is None:
        p = default_model_path(kind)
        if not p.exists():
            flag = "--refinenet" if kind == "refinenet" else "--model"
            raise HoiError(f"no default {kind} model at {p}: train one ({MAKERS[kind]}) or pass {flag} RUN")
        d = _load(p)
    else:
        p = Path(path)
        if p.is_dir():
            found = [c for c in (p / "model.pt", p / "checkpoints" / "last.pt") if c.is_file()]
            if not found:
                raise InputError(f"{path} is not a {kind} model: pass a run folder of hoitool train {kind} or its model.pt")
            loaded = [(_load(c), c) for c in found]
            # the highest step; model.pt on a tie (the same EMA weights, without the optimiser)
            d, p = max(loaded, key=lambda dc: (int(dc[0].get("step") or 0), dc[1].name == "model.pt"))
        elif not p.exists():
            raise InputError(f"{path} is not a {kind} model: pass a run folder of hoitool train {kind} or its model.pt")
        else:
            d = _load(p)
    if d.get("kind") != kind:
        raise InputError(f"{p} holds a {d.get('kind')} model, not {kind}")
    d["path"] = str(p.resolve())
    return d
