"""The models' training tasks for hoitool.train.loop: the VQ-VAE and the G-HOP prior."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from hoitool.hand.model import HandModel
from hoitool.models.text import DEFAULT_ENCODER, TextEncoder, prompt_for
from hoitool.models.unet3d import UNet3D, UNetConfig
from hoitool.models.vqvae import VQVAE, VQVAEConfig
from hoitool.prior.checkpoint import read_model, vqvae_from_model
from hoitool.prior.data import InteractionData, random_rigid
from hoitool.prior.model import GridNormaliser, ScheduleConfig, train_scheduler
from hoitool.utils.seeding import torch_generator


@dataclass
class Augment:
    """Random rigid motion of the grid frame n, per sample."""

    rotation: float = math.pi
    """Largest rotation (rad) about the grid centre."""
    shift: float = 0.1
    """Largest shift per axis (n units; 0.1 = 2 cm)."""


class VQVAETask:
    """L1 reconstruction of object grids (resampled under augmentations) + codebook loss."""

    name = "vqvae"

    def __init__(self, data: str | Path, model: VQVAEConfig | None = None, augment: Augment | None = None):
        self.data_root = Path(data)
        self.data = InteractionData(data)
        self.model_cfg = model or VQVAEConfig()
        self.augment = augment or Augment()

    def config(self) -> dict:
        return {"model": asdict(self.model_cfg), "data": str(self.data_root), "augment": asdict(self.augment)}

    def build(self, device: torch.device) -> nn.Module:
        return VQVAE(self.model_cfg)

    def size(self) -> int:
        return len(self.data)

    def loss(self, model, idx, keys, device):
        aug = torch.stack([random_rigid(torch_generator(*k, "augment"), self.augment.rotation, self.augment.shift) for k in keys])
        grid = self.data.object_grids(torch.as_tensor(idx), aug).to(device)
        out = model(grid)
        l1 = F.l1_loss(out.recon, grid)
        return l1 + out.vq_loss, {"l1": l1.item(), "vq": out.vq_loss.item()}

    def export(self, model: nn.Module) -> dict:
        return {"config": asdict(self.model_cfg), "data": str(self.data_root)}


@dataclass
class PriorOptions:
    """Options of the prior's task besides the denoiser's sizes."""

    text_encoder: str = DEFAULT_ENCODER
    """'minilm' (shipped offline) or a local transformers text encoder folder (e.g. CLIP)."""
    text_dropout: float = 0.2
    """Probability of training a sample with the empty prompt (for classifier-free guidance)."""
    copies: int = 4
    """Encoded copies of each record: the first as prepared, the others augmented."""
    augment: Augment = field(default_factory=lambda: Augment(rotation=0.1, shift=0.03))
    """Augmentation of the extra copies (small: the hand-object relation must survive)."""
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


class GHOPTask:
    """epsilon-prediction MSE on interaction grids [VQ-VAE latent | hand field], text-conditioned."""

    name = "ghop"

    def __init__(self, data: str | Path, vqvae: str | Path | None, model: UNetConfig | None = None,
                 options: PriorOptions | None = None, cache: Path | None = None,
                 log: Callable[[str], None] | None = None, progress: Callable[[int, int], None] | None = None,
                 encode: bool = True):
        self.data_root = Path(data)
        self.opts = options or PriorOptions()
        vq_model = read_model(vqvae, "vqvae")
        self.vqvae_source = vq_model["path"]
        self.vqvae = vqvae_from_model(vq_model)
        self.vqvae_state = {"config": vq_model["config"], "state_dict": self.vqvae.state_dict()}
        self.data = InteractionData(data)
        self.text = TextEncoder(self.opts.text_encoder)
        cats = sorted(set(self.data.categories))
        self.prompts = [prompt_for(c) for c in cats] + [""]
        emb = self.text.encode(self.prompts)
        self.embeddings = {p: emb[i].numpy() for i, p in enumerate(self.prompts)}
        self.categories = cats
        self.record_context = torch.stack([emb[cats.index(c)] for c in self.data.categories])
        self.null_context = emb[-1]
        self.model_cfg = model or UNetConfig()
        self.model_cfg.context_dim = int(emb.shape[-1])
        self.scheduler = train_scheduler(self.opts.schedule)
        self.cache = cache
        if encode:
            self.encode(log, progress)

    def encode(self, log: Callable[[str], None] | None = None, progress: Callable[[int, int], None] | None = None) -> None:
        """Latents of every copy of every record, the hand fields, the latent normalisation
        (read from `cache` when it was made from the same VQ-VAE, data and options)."""
        cache = self.cache
        key = {"vqvae": self.vqvae_source, "data": str(self.data_root.resolve()), "n": len(self.data),
               "copies": self.opts.copies, "augment": asdict(self.opts.augment)}
        if cache is not None and cache.exists():
            d = torch.load(cache, map_location="cpu", weights_only=False)
            if d.get("key") == key:
                self.latents, self.fields = d["latents"], d["fields"]
                self.norm = GridNormaliser.fit(self.latents[:, 0], self.fields)
                return
        if log:
            log(f"encoding {len(self.data)} records x {self.opts.copies} copies with the VQ-VAE")
        hand = HandModel("right")
        n, A, bs = len(self.data), self.opts.copies, 16
        lat, fields = [], []
        total, done = n * A, 0
        with torch.no_grad():
            for s in range(0, n, bs):
                idx = torch.arange(s, min(n, s + bs))
                fields.append(self.data.hand_fields(hand, idx).half())
                per_copy = []
                for c in range(A):
                    aug = None if c == 0 else torch.stack([
                        random_rigid(torch_generator(0, "copy", int(i), c), self.opts.augment.rotation, self.opts.augment.shift) for i in idx])
                    per_copy.append(self.vqvae.encode(self.data.object_grids(idx, aug)))
                    done += len(idx)
                    if progress:
                        progress(done, total)
                lat.append(torch.stack(per_copy, dim=1))
        self.latents, self.fields = torch.cat(lat), torch.cat(fields)
        if cache is not None:
            from hoitool.utils.io import atomic_path

            with atomic_path(cache) as tmp:
                torch.save({"key": key, "latents": self.latents, "fields": self.fields}, tmp)
        self.norm = GridNormaliser.fit(self.latents[:, 0], self.fields)

    def config(self) -> dict:
        return {"model": {"unet": asdict(self.model_cfg), "schedule": asdict(self.opts.schedule), "text_encoder": self.opts.text_encoder},
                "data": str(self.data_root), "vqvae": self.vqvae_source,
                "options": {k: v for k, v in asdict(self.opts).items() if k != "schedule"}}

    def build(self, device: torch.device) -> nn.Module:
        return UNet3D(self.model_cfg)

    def size(self) -> int:
        return len(self.data)

    def x0(self, idx: torch.Tensor, copy: torch.Tensor) -> torch.Tensor:
        return self.norm.pack(self.latents[idx, copy], self.fields[idx].float())

    def loss(self, model, idx, keys, device):
        T = self.opts.schedule.num_train_timesteps
        gens = [torch_generator(*k, "noise") for k in keys]
        copy = torch.tensor([int(torch.randint(self.opts.copies, (1,), generator=g)) for g in gens])
        t = torch.tensor([int(torch.randint(T, (1,), generator=g)) for g in gens])
        drop = torch.tensor([bool(torch.rand(1, generator=g) < self.opts.text_dropout) for g in gens])
        idx = torch.as_tensor(idx)
        x0 = self.x0(idx, copy)
        noise = torch.stack([torch.randn(x0.shape[1:], generator=g) for g in gens])
        ctx = torch.where(drop[:, None], self.null_context[None], self.record_context[idx])[:, None]
        xt = self.scheduler.add_noise(x0, noise, t)
        eps = model(xt.to(device), t.to(device), ctx.to(device))
        loss = F.mse_loss(eps, noise.to(device))
        return loss, {}

    def export(self, model: nn.Module) -> dict:
        return {"unet": asdict(self.model_cfg), "schedule": asdict(self.opts.schedule), "vqvae": self.vqvae_state,
                "normaliser": self.norm.state(), "text_encoder": self.opts.text_encoder,
                "text_embeddings": self.embeddings, "categories": self.categories, "data": str(self.data_root)}
