"""The interaction prior: a text-conditioned diffusion model over G-HOP's interaction grids.

x (B, 23, 16, 16, 16) = [object latent (3, VQ-VAE pre-quantisation) | hand field (20, squared
distances in n units)], each channel mapped to about [-1, 1], then centred on the training
data's mean grid and divided by its per-voxel spread (`GridNormaliser`). In the
hand-centric frame most voxels are the same in every record (empty space, the hand's own
neighbourhood), so without centring the data varies by a few percent of the noise and a
small model trained briefly learns little beyond the mean (measured: see assets/models/CARD.md).
Noise schedules and DDIM steps are diffusers' (scaled_linear betas 0.0015-0.0195, T = 1000,
epsilon prediction); sampling uses classifier-free guidance against the empty prompt.

    prior = load_prior()                      # the shipped default, or load_prior("runs/ghop")
    x = prior.sample(["mug"] * 4, steps=100, guidance=4.0, seed=0)
    out = prior.decode(x)                     # out.object_grid (4, 1, 64, 64, 64), out.field (4, 20, 16, 16, 16)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from hoitool.geometry.grid import HAND_CLAMP
from hoitool.models.text import TextEncoder, prompt_for
from hoitool.models.unet3d import UNet3D
from hoitool.models.vqvae import VQVAE
from hoitool.utils.seeding import torch_generator

OBJECT_CHANNELS = 3


@dataclass
class ScheduleConfig:
    """The noise schedule (diffusers' names)."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.0015
    beta_end: float = 0.0195
    beta_schedule: str = "scaled_linear"
    prediction_type: str = "epsilon"
    """What the denoiser predicts: "epsilon" (the noise; G-HOP's) or "v_prediction"
    (v = sqrt(a) noise - sqrt(1 - a) x0)."""


def schedule_from_dict(d: dict) -> ScheduleConfig:
    """A saved schedule (those saved before `prediction_type` existed predicted the noise)."""
    return ScheduleConfig(**{"prediction_type": "epsilon", **d})


def train_scheduler(cfg: ScheduleConfig):
    from diffusers import DDPMScheduler

    return DDPMScheduler(**asdict(cfg), clip_sample=False)


def loss_weights(scheduler, t: torch.Tensor, prediction_type: str, min_snr_gamma: float | None) -> torch.Tensor:
    """(B,) per-sample weights of the MSE: 1, or min-SNR-gamma (Hang et al. 2023), which caps the
    weight of low-noise timesteps: min(SNR, gamma) / SNR for noise prediction, min(SNR, gamma) /
    (SNR + 1) for v (both equal min(SNR, gamma) times the MSE of x0: the MSE of the noise is SNR
    times it, that of v SNR + 1 times it)."""
    if not min_snr_gamma:
        return torch.ones(len(t))
    a = scheduler.alphas_cumprod[t.cpu()].double()
    snr = a / (1 - a)
    w = snr.clamp(max=min_snr_gamma) / (snr + 1 if prediction_type == "v_prediction" else snr)
    return w.float()


def ddim_scheduler(cfg: ScheduleConfig, clip: float = 1.0):
    """DDIM; predicted x0 is clipped to [-clip, clip] (the range of the normalised training data).

    `InteractionPrior.sample(clipped_eps=True)` steps it with `use_clipped_model_output=True`: the
    noise of the update is then re-derived from the clipped x0, so x0 and noise stay consistent.
    Keeping the unclipped noise lets a strongly guided sample run away (a 1-D toy with guidance 4
    ends far outside the clip range; tests/test_prior_fixes.py), yet the shipped prior, trained and
    tuned with it, samples better with it (measured; README), so it stays the default."""
    from diffusers import DDIMScheduler

    # InteractionPrior.guided_eps turns a v prediction into noise, so DDIM always steps on noise
    return DDIMScheduler(**{**asdict(cfg), "prediction_type": "epsilon"}, clip_sample=True, clip_sample_range=float(clip),
                         set_alpha_to_one=False, steps_offset=1)


def field_to_x(field: torch.Tensor) -> torch.Tensor:
    return field / HAND_CLAMP * 2 - 1


def x_to_field(x: torch.Tensor) -> torch.Tensor:
    return ((x + 1) / 2 * HAND_CLAMP).clamp(0, HAND_CLAMP)


class GridNormaliser(nn.Module):
    """Raw interaction grids <-> the diffusion model's x.

    raw: object latent z (B, 3, r, r, r) and hand field (B, 20, r, r, r). First
    u = [(z - latent_shift) / latent_scale | field / 0.12 * 2 - 1] (about [-1, 1]), then
    x = (u - template) / spread, with template and spread the data's per-voxel mean and standard
    deviation of u; `clip`, the 99.9th percentile of |x| over the training data, bounds the
    predicted x0 while sampling (larger values let an imperfect model's samples run away).
    """

    def __init__(self, latent_shift, latent_scale, template=None, spread=None, clip: float = 1.0):
        super().__init__()
        f = dict(dtype=torch.float32)
        self.register_buffer("latent_shift", torch.as_tensor(latent_shift, **f).reshape(1, -1, 1, 1, 1))
        self.register_buffer("latent_scale", torch.as_tensor(latent_scale, **f).reshape(1, -1, 1, 1, 1))
        self.register_buffer("template", torch.zeros(1, 1, 1, 1, 1) if template is None else torch.as_tensor(template, **f).reshape(1, *template.shape[-4:]))
        self.register_buffer("spread", torch.ones(1, 1, 1, 1, 1) if spread is None else torch.as_tensor(spread, **f).reshape(1, *spread.shape[-4:]))
        self.clip = float(clip)

    def unit(self, z: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
        return torch.cat([(z - self.latent_shift) / self.latent_scale, field_to_x(field)], dim=1)

    def pack(self, z: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
        return (self.unit(z, field) - self.template) / self.spread

    def unpack(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = x * self.spread + self.template
        return u[:, :OBJECT_CHANNELS] * self.latent_scale + self.latent_shift, x_to_field(u[:, OBJECT_CHANNELS:])

    @classmethod
    def fit(cls, z, field, floor: float = 0.05, chunk: int = 256) -> "GridNormaliser":
        """From training latents (N, 3, r, r, r) and fields (N, 20, r, r, r): per-voxel mean and
        standard deviation (at least `floor`, so voxels that never change stay near 0).

        Tensors or numpy arrays (memory-mapped ones included): the data is read in chunks of
        `chunk` records, never held whole. The latent range is the 0.1-99.9th percentile of
        every k-th latent value (about 100k per channel), `clip` the 99.9th percentile of every
        k-th |x| (about 1M)."""
        z_np, f_np = np.asarray(z), np.asarray(field)
        N, C = z_np.shape[:2]
        V = int(np.prod(z_np.shape[2:]))
        stride = max(1, N * V // 100000)
        k = np.arange(0, N * V, stride)
        # every stride-th value of each channel, in (record, voxel) order; gathered without
        # reshaping (a strided memory map, e.g. one copy of several, would be copied whole)
        voxel = np.unravel_index(k % V, z_np.shape[2:])
        sub = torch.as_tensor(np.asarray(z_np[(k // V, slice(None), *voxel)], dtype=np.float32)).T  # (C, K)
        lo, hi = torch.quantile(sub, torch.tensor([0.001, 0.999]), dim=1)
        base = cls((hi + lo) / 2, ((hi - lo) / 2).clamp_min(1e-3))

        def units(i: int) -> torch.Tensor:
            return base.unit(torch.from_numpy(np.array(z_np[i:i + chunk], dtype=np.float32)),
                             torch.from_numpy(np.array(f_np[i:i + chunk], dtype=np.float32)))

        s1 = s2 = None
        for i in range(0, N, chunk):
            u = units(i).double()
            s1 = u.sum(0) if s1 is None else s1 + u.sum(0)
            s2 = (u * u).sum(0) if s2 is None else s2 + (u * u).sum(0)
        mean = s1 / N
        var = ((s2 - N * mean * mean) / max(N - 1, 1)).clamp_min(0)
        template, spread = mean.float(), var.sqrt().float().clamp_min(floor)
        per_record = template.numel()
        step = max(1, N * per_record // 1_000_000)
        picks = []
        for i in range(0, N, chunk):
            a = ((units(i) - template) / spread).abs().flatten()
            picks.append(a[(-i * per_record) % step::step].clone())  # a view would keep all of `a` alive
        clip = float(torch.quantile(torch.cat(picks), 0.999))
        return cls(base.latent_shift.flatten(), base.latent_scale.flatten(), template, spread, clip)

    def state(self) -> dict:
        return {"latent_shift": self.latent_shift.flatten(), "latent_scale": self.latent_scale.flatten(),
                "template": self.template[0], "spread": self.spread[0], "clip": self.clip}


@dataclass
class DecodedInteraction:
    object_grid: torch.Tensor
    """(B, 1, 64, 64, 64) object SDF in [-1, 1] (x 0.2 n units = x 4 cm) in the frame n."""
    field: torch.Tensor
    """(B, 20, 16, 16, 16) hand skeletal field (squared n units, clamped at 0.12)."""


class InteractionPrior(nn.Module):
    """Denoiser + frozen VQ-VAE + latent normalisation + text embeddings."""

    def __init__(self, unet: UNet3D, vqvae: VQVAE, norm: GridNormaliser,
                 schedule: ScheduleConfig | None = None, text_encoder: str = "minilm", text_embeddings: dict | None = None,
                 categories: list[str] | None = None):
        super().__init__()
        self.unet = unet
        self.vqvae = vqvae.eval().requires_grad_(False)
        self.norm = norm
        self.schedule = schedule or ScheduleConfig()
        self.text = TextEncoder(text_encoder, known={k: np.asarray(v) for k, v in (text_embeddings or {}).items()})
        self.categories = list(categories or [])

    @property
    def device(self) -> torch.device:
        return self.norm.latent_shift.device

    def pack(self, z: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
        """Object latent (B, 3, r, r, r) and hand field (B, 20, r, r, r) -> x (B, 23, r, r, r)."""
        return self.norm.pack(z, field)

    def unpack(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.norm.unpack(x)

    def context(self, categories: list[str]) -> torch.Tensor:
        """(B, 1, D) text tokens of the categories' prompts ('' -> the unconditional prompt)."""
        return self.text.encode([prompt_for(c) for c in categories])[:, None].to(self.device)

    def guided_eps(self, x: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor, null: torch.Tensor, guidance: float) -> torch.Tensor:
        """Classifier-free guidance: out_null + guidance * (out_text - out_null), as noise (a v
        prediction is converted: eps = sqrt(a) v + sqrt(1 - a) x_t; linear, so guiding v or the
        noise is the same)."""
        if guidance == 1.0:
            out = self.unet(x, t, ctx)
        else:
            e_c, e_u = self.unet(torch.cat([x, x]), torch.cat([t, t]), torch.cat([ctx, null])).chunk(2)
            out = e_u + guidance * (e_c - e_u)
        if self.schedule.prediction_type == "v_prediction":
            a = self.alphas_cumprod().to(x.device)[t].reshape(-1, *([1] * (x.dim() - 1)))
            out = a.sqrt() * out + (1 - a).sqrt() * x
        return out

    def alphas_cumprod(self) -> torch.Tensor:
        """(T,) abar of the training schedule (cached per schedule)."""
        key = tuple(asdict(self.schedule).items())
        if getattr(self, "_abar_key", None) != key:
            self._abar, self._abar_key = train_scheduler(self.schedule).alphas_cumprod.float(), key
        return self._abar

    @torch.no_grad()
    def sample(self, categories: list[str], steps: int = 100, guidance: float = 4.0, seed: int = 0,
               batch_size: int = 16, progress: Callable[[int, int], None] | None = None,
               clipped_eps: bool = False) -> torch.Tensor:
        """DDIM samples x0 (B, 23, r, r, r); sample i depends only on (seed, i).

        clipped_eps: re-derive each step's noise from the clipped x0 (the consistent DDIM update).
            Off by default, by measurement: on the shipped prior (5 categories x 4 samples, DDIM 25)
            it gave contact with penetration < 1 cm in 0 % of samples against 70 % with the
            network's noise kept (hand diversity 1.95 vs 0.89 cm); see the README."""
        self.unet.eval()
        r = self.vqvae.config.downsampling
        res = 64 // r
        B = len(categories)
        shape = (self.unet.config.in_channels, res, res, res)
        noise = torch.stack([torch.randn(shape, generator=torch_generator(seed, "sample", i)) for i in range(B)]).to(self.device)
        ctx_all, null_all = self.context(categories), self.context([""] * B)
        out = []
        total, done = B * steps, 0
        for s in range(0, B, batch_size):
            sched = ddim_scheduler(self.schedule, self.norm.clip)
            sched.set_timesteps(steps)
            x, ctx, null = noise[s:s + batch_size], ctx_all[s:s + batch_size], null_all[s:s + batch_size]
            for t in sched.timesteps:
                tt = torch.full((x.shape[0],), int(t), device=self.device, dtype=torch.long)
                eps = self.guided_eps(x, tt, ctx, null, guidance)
                x = sched.step(eps, t, x, eta=0.0, use_clipped_model_output=clipped_eps).prev_sample
                done += x.shape[0]
                if progress is not None:
                    progress(done, total)
            out.append(x)
        return torch.cat(out)

    @torch.no_grad()
    def decode(self, x: torch.Tensor, batch_size: int = 8) -> DecodedInteraction:
        z, field = self.unpack(x)
        grids = torch.cat([self.vqvae.decode_latent(z[i:i + batch_size]) for i in range(0, len(z), batch_size)])
        return DecodedInteraction(grids.clamp(-1, 1), field)
