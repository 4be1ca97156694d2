"""The HOIDiffusion training task for hoitool.train.loop (`hoitool train hoidiff`).

    task = HoiDiffTask("RENDERS", HoiDiffOptions(base="sd-v1-4"))      # or base=None: the default model
    train(task, TrainConfig(out="runs/hoidiff", steps=50_000, batch_size=8, lr=1e-5))

Loss: MSE of the UNet's prediction (v for the default model; epsilon or v as a base's scheduler says) on noised images (latents
of the base's VAE, or pixels for the default model), timesteps uniform over T = 1000. Every
sample's draws (prompt dropout, VAE posterior sample, noise, timestep) come from its own
generator keyed by (seed, step, position in the global batch).

Prompt dropout: a share of samples (0.1) train with the empty prompt, the unconditional branch
of classifier-free guidance. Background regularisation (the paper's appearance
regularisation): with probability 0.1 a whole step's batch is the trajectories' background
images (background.png: no hand, no object) with all three conditions zero; the draw depends
on (seed, step) alone, so every process agrees.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hoitool.hoidiff.data import BACKGROUND_PROMPT, RenderFrames
from hoitool.hoidiff.model import CONDITIONS, HoiDiffConfig, HoiDiffModel, default_config
from hoitool.utils.seeding import numpy_rng, torch_generator


@dataclass
class HoiDiffOptions:
    """What `hoitool train hoidiff` trains (the loop's own options are in TrainConfig)."""

    base: str | None = None
    """Local Stable Diffusion 1.x folder (diffusers layout): frozen except its UNet decoder half.
    None: the small default model, trained from scratch in pixel space."""
    resolution: int | None = None
    """Image side in pixels; None: 64 for the default model, the base's own (UNet sample_size x
    the VAE's factor: 512 for SD 1.x)."""
    conditions: list[str] = field(default_factory=lambda: list(CONDITIONS))
    """Condition maps with an encoder."""
    prompt_dropout: float = 0.1
    """Share of samples trained with the empty prompt (classifier-free guidance)."""
    background_prob: float = 0.1
    """Probability that a step's whole batch is background images with empty conditions."""
    background_prompt: str = BACKGROUND_PROMPT
    """Prompt of the background images (a trajectory's `background_prompt` in index.jsonl wins)."""
    channels: list[int] = field(default_factory=lambda: [32, 48, 64, 96])
    """Default model: UNet widths per level (the condition encoders follow them)."""
    adapter_res_blocks: int | None = None
    """Residual blocks per condition-encoder stage; None: 2 on a base (T2I-Adapter), 1 for the default model."""
    text_tokens: int = 4
    """Default model: cross-attention tokens made from the MiniLM sentence embedding."""
    gradient_checkpointing: bool = True
    """On a base: recompute the UNet's activations in the backward pass (as the paper; saves memory)."""


def _unet_config(path: Path) -> dict:
    d = json.loads((path / "unet" / "config.json").read_text())
    return {k: v for k, v in d.items() if not k.startswith("_")}


def model_config(opts: HoiDiffOptions) -> HoiDiffConfig:
    """The model's config from the options (on a base, from its unet/ and vae/ configs; the base
    must have been checked)."""
    from hoitool.errors import InputError
    from hoitool.hoidiff.sdfolder import read_schedule

    if opts.base is None:
        return default_config(opts.conditions, opts.resolution or 64, tuple(opts.channels), 2,
                              opts.adapter_res_blocks or 1, opts.text_tokens)
    base = Path(opts.base)
    unet = _unet_config(base)
    vae = json.loads((base / "vae" / "config.json").read_text())
    text = json.loads((base / "text_encoder" / "config.json").read_text())
    scale = 2 ** (len(vae.get("block_out_channels", [0] * 4)) - 1)
    native = int(unet.get("sample_size", 64)) * scale
    cfg = HoiDiffConfig(unet=unet, resolution=opts.resolution or native, latent_scale=scale, fold=1,
                        conditions=list(opts.conditions), adapter_res_blocks=opts.adapter_res_blocks or 2, text="clip",
                        text_dim=int(text.get("hidden_size", unet.get("cross_attention_dim", 768))), text_tokens=0,
                        schedule=read_schedule(base), base=str(base))
    if cfg.text_dim != unet.get("cross_attention_dim"):
        raise InputError(f"--base {base}: its text encoder width ({cfg.text_dim}) is not the UNet's cross_attention_dim "
                         f"({unet.get('cross_attention_dim')}); SD 1.x pairs CLIP ViT-L (768) with its UNet")
    return cfg


def noise_scheduler(schedule: dict, kind: str = "ddpm"):
    """A diffusers scheduler (DDPM for training, DDIM for sampling) from the saved schedule."""
    from diffusers import DDIMScheduler, DDPMScheduler

    cls = DDPMScheduler if kind == "ddpm" else DDIMScheduler
    keys = set(inspect.signature(cls.__init__).parameters)
    return cls(**{k: v for k, v in schedule.items() if k in keys})


def _image_side(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as im:
        return im.size[0]


def background_step(seed: int, step: int, prob: float) -> bool:
    """Whether step `step` trains on background images (depends on (seed, step) alone)."""
    return prob > 0 and numpy_rng(seed, step, "hoidiff-background").random() < prob


class HoiDiffTask:
    """Epsilon (or v) MSE of the conditioned UNet on rendered frames; see the module docstring."""

    name = "hoidiff"

    def __init__(self, data: str | Path, options: HoiDiffOptions | None = None):
        from hoitool.errors import InputError
        from hoitool.hoidiff.data import parse_conditions
        from hoitool.hoidiff.sdfolder import check_sd_folder

        self.opts = options or HoiDiffOptions()
        self.opts.conditions = parse_conditions(self.opts.conditions)
        for name, v in (("prompt dropout", self.opts.prompt_dropout), ("background probability", self.opts.background_prob)):
            if not 0.0 <= v <= 1.0:
                raise InputError(f"{name} must lie in [0, 1], got {v}")
        if self.opts.base is not None:
            self.opts.base = str(check_sd_folder(self.opts.base))
        self.data_root = Path(data)
        self.model_cfg = model_config(self.opts)
        self.frames = RenderFrames(data, self.model_cfg.resolution, self.model_cfg.conditions, self.opts.background_prompt)
        tr = self.frames.trajectories[0]
        side = _image_side(tr.dir / f"{tr.stems[0]}_rgb.png")
        if side < self.model_cfg.resolution:
            import logging

            logging.getLogger(__name__).warning(
                "the renders are %d px, the model trains at %d px: they are upsampled (blurry targets); render with --size %d",
                side, self.model_cfg.resolution, self.model_cfg.resolution)
        self.scheduler = noise_scheduler(self.model_cfg.schedule)
        self.text = None
        self.vae = None

    def config(self) -> dict:
        return {"data": str(self.data_root), "trajectories": len(self.frames.trajectories), "frames": len(self.frames),
                "options": asdict(self.opts), "model": asdict(self.model_cfg)}

    def build(self, device: torch.device) -> nn.Module:
        if self.model_cfg.base:
            from hoitool.hoidiff.sdfolder import ClipText, load_sd

            sd = load_sd(self.model_cfg.base, device)
            self.vae, self.text = sd.vae, ClipText(sd.tokenizer, sd.text_encoder)
            model = HoiDiffModel(self.model_cfg, sd.unet)
            if self.opts.gradient_checkpointing:
                model.unet.enable_gradient_checkpointing()
            return model
        from hoitool.models.text import TextEncoder

        self.text = TextEncoder("minilm")
        return HoiDiffModel(self.model_cfg)

    def size(self) -> int:
        return len(self.frames)

    def loss(self, model, idx, keys, device):
        gens = [torch_generator(*k, "hoidiff") for k in keys]
        seed, step = keys[0][0], keys[0][1]
        background = background_step(seed, step, self.opts.background_prob)
        b = self.frames.batch(idx, background=background)
        drop = [float(torch.rand(1, generator=g)) < self.opts.prompt_dropout for g in gens]
        text = self.text.encode(["" if d else p for d, p in zip(drop, b.prompts)]).to(device)
        x0 = b.images.to(device)
        if self.vae is not None:
            with torch.no_grad():
                post = self.vae.encode(x0).latent_dist
                z = torch.stack([torch.randn(post.mean.shape[1:], generator=g) for g in gens]).to(device)
                x0 = post.mean + post.std * z
                x0 = (x0 - (self.vae.config.get("shift_factor") or 0.0)) * self.vae.config.scaling_factor
        noise = torch.stack([torch.randn(x0.shape[1:], generator=g) for g in gens]).to(device)
        T = self.scheduler.config.num_train_timesteps
        t = torch.tensor([int(torch.randint(T, (1,), generator=g)) for g in gens], device=device)
        x_t = self.scheduler.add_noise(x0, noise, t)
        pred = model(x_t, t, text, {n: c.to(device) for n, c in b.conditions.items()})
        target = noise if self.scheduler.config.prediction_type == "epsilon" else self.scheduler.get_velocity(x0, noise, t)
        mse = F.mse_loss(pred.float(), target.float())
        return mse, {"mse": mse.item(), "background": float(background)}

    def export(self, model: nn.Module) -> dict:
        m = model.module if hasattr(model, "module") else model
        out = {"config": m.config(), "data": str(self.data_root), "categories": sorted({t.category for t in self.frames.trajectories})}
        if self.model_cfg.text == "minilm" and self.text is not None:
            # the training prompts' embeddings: sampling with them needs no text encoder
            out["prompts"] = self.text.known(self.frames.prompts())
        return out

