"""Loading trained models: a model.pt, a run folder, or the defaults shipped in assets/models/."""

from __future__ import annotations

from pathlib import Path

import torch

from hoitool.models.unet3d import unet_from_dict
from hoitool.models.vqvae import VQVAE, vqvae_from_dict
from hoitool.prior.model import GridNormaliser, InteractionPrior, schedule_from_dict
from hoitool.utils.modelfile import DEFAULTS, default_model_path, read_model  # noqa: F401 (re-exported)


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
    prior.hand = {"source": d.get("hand"), "fingerprint": d.get("hand_sha")}
    return prior.to(device)
