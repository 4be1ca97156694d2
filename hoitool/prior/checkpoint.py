"""Loading trained models: a model.pt, a run folder, or the defaults shipped in assets/models/."""

from __future__ import annotations

from pathlib import Path

import torch

from hoitool.assets import asset_dir
from hoitool.errors import HoiError, InputError
from hoitool.models.unet3d import unet_from_dict
from hoitool.models.vqvae import VQVAE, vqvae_from_dict
from hoitool.prior.model import GridNormaliser, InteractionPrior, schedule_from_dict

DEFAULTS = {"vqvae": "ghop_vqvae.pt", "ghop": "ghop_prior.pt"}


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
            raise HoiError(f"no default {kind} model at {p}: train one (scripts/train_default_prior.py) or pass --model RUN")
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


def _float(sd: dict) -> dict:
    return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}


def vqvae_from_model(d: dict) -> VQVAE:
    vq = vqvae_from_dict(d["config"])
    vq.load_state_dict(_float(d["state_dict"]))
    return vq.eval()


def load_vqvae(path: str | Path | None = None, device: str | torch.device = "cpu") -> VQVAE:
    return vqvae_from_model(read_model(path, "vqvae")).to(device)


def load_prior(path: str | Path | None = None, device: str | torch.device = "cpu") -> InteractionPrior:
    d = read_model(path, "ghop")
    unet = unet_from_dict(d["unet"])
    unet.load_state_dict(_float(d["state_dict"]))
    vq = vqvae_from_model({"config": d["vqvae"]["config"], "state_dict": d["vqvae"]["state_dict"]})
    n = d["normaliser"]
    norm = GridNormaliser(n["latent_shift"], n["latent_scale"], n.get("template"), n.get("spread"), n.get("clip", 1.0))
    prior = InteractionPrior(unet.eval(), vq, norm, schedule_from_dict(d["schedule"]),
                             d["text_encoder"], d.get("text_embeddings"), d.get("categories"))
    prior.source = d["path"]
    prior.step = d.get("step")
    return prior.to(device)
