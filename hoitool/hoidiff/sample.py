"""Sampling the HOIDiffusion model: a loaded model (`load_hoidiff`) and its guided DDIM loop.

    hd = load_hoidiff("runs/hoidiff")                        # or None: the shipped model
    x = hd.sample(conditions, prompts, negatives, hd.initial_noise(seed, keys), steps=50, guidance=7.5)

The command that runs it over a render folder is hoitool.pipelines.synthesize.

Guidance: eps = eps(negative prompt) + w (eps(prompt) - eps(negative prompt)), the condition
features added in both branches; w = 1 runs the prompt branch alone.

Seeds: `initial_noise` draws each frame's noise from its own generator keyed by (seed, *key),
and DDIM runs with eta = 0, so an image depends on its frame alone, not on which other frames
are processed with it (with video=True it also depends on the anchor frame, by design).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from hoitool.errors import InputError
from hoitool.hoidiff.model import HoiDiffConfig, HoiDiffModel, config_from_dict
from hoitool.utils.seeding import torch_generator


@dataclass
class HoiDiffusion:
    """A loaded model, ready to sample."""

    model: HoiDiffModel
    text: object
    """encode(prompts) -> the text encoder's output (MiniLM (N, 384) or CLIP (N, 77, D))."""
    vae: torch.nn.Module | None
    cfg: HoiDiffConfig
    source: str
    """The model file."""
    step: int | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def noise_shape(self) -> tuple[int, int, int]:
        """Shape of one frame's starting noise: latents on a base, pixels otherwise."""
        if self.vae is not None:
            s = self.cfg.resolution // self.cfg.latent_scale
            return (int(self.model.unet.config.in_channels), s, s)
        return (3, self.cfg.resolution, self.cfg.resolution)

    def initial_noise(self, seed: int, keys: list[tuple]) -> torch.Tensor:
        """(N, C, h, w) standard normal noise, row i from the generator of (seed, *keys[i])."""
        return torch.stack([torch.randn(self.noise_shape(), generator=torch_generator(seed, *k)) for k in keys])

    @torch.no_grad()
    def sample(self, conditions: dict[str, torch.Tensor], prompts: list[str], negatives: list[str], noise: torch.Tensor,
               steps: int = 50, guidance: float = 7.5, video: bool = False,
               progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Denoise N frames together: conditions name -> (N, 3, R, R) in [0, 1] (names left out
        count as empty), one prompt and negative prompt per frame, `noise` from `initial_noise`.
        With `video` the N frames are one trajectory and attend to the middle one. Returns
        (N, 3, R, R) images in [-1, 1]."""
        from hoitool.hoidiff.train import noise_scheduler
        from hoitool.hoidiff.video import anchor_attention

        dev = self.device
        N = len(noise)
        schedule = dict(self.cfg.schedule)
        if self.vae is None:
            # pixel space: images lie in [-1, 1], so DDIM's x0 estimate is clipped there. Without it
            # the first steps (alpha_bar ~ 1e-9 at t = T - 1 of the cosine schedule) divide the
            # epsilon error by ~3e-5 and the samples never recover from it.
            schedule.update(clip_sample=True, clip_sample_range=1.0)
        sch = noise_scheduler(schedule, "ddim")
        sch.set_timesteps(steps)
        feats = self.model.adapter_features({n: c.to(dev) for n, c in conditions.items()})
        guided = guidance != 1.0
        text = self.text.encode(list(negatives) + list(prompts) if guided else list(prompts)).to(dev)
        if guided and feats is not None:
            feats = [torch.cat([f, f]) for f in feats]  # the geometry steers both branches
        x = noise.to(dev) * sch.init_noise_sigma
        ctx = anchor_attention(self.model.unet, frames=N) if video else contextlib.nullcontext()
        with ctx:
            for i, t in enumerate(sch.timesteps):
                xin = sch.scale_model_input(torch.cat([x, x]) if guided else x, t)
                out = self.model.denoise(xin, t.expand(len(xin)).to(dev), text, feats)
                if guided:
                    uncond, cond = out.chunk(2)
                    out = uncond + guidance * (cond - uncond)
                x = sch.step(out, t, x).prev_sample
                if progress is not None:
                    progress(i + 1, len(sch.timesteps))
        if self.vae is not None:
            x = x / self.vae.config.scaling_factor + (self.vae.config.get("shift_factor") or 0.0)
            x = torch.cat([self.vae.decode(x[i:i + 8]).sample for i in range(0, N, 8)])
        return x.clamp(-1, 1)


def load_hoidiff(path: str | Path | None = None, base: str | Path | None = None,
                 device: torch.device | str = "cpu") -> HoiDiffusion:
    """A model of `hoitool train hoidiff` (run folder or model.pt; None: the shipped default). A
    model trained on a Stable Diffusion base reloads the base from the folder it was trained on,
    or from `base` when that folder moved."""
    from hoitool.hoidiff.sdfolder import ClipText, check_sd_folder, load_sd
    from hoitool.utils.modelfile import read_model

    d = read_model(path, "hoidiff")
    cfg = config_from_dict(dict(d["config"]))
    src = d["path"]
    if cfg.base:
        if base is None:
            check_sd_folder(cfg.base, f"{src} was trained on the Stable Diffusion folder {cfg.base}, unusable now "
                                      "(pass --base with where that folder is)")
        sd = load_sd(base or cfg.base, device)
        mine = {k: v for k, v in dict(sd.unet.config).items() if not k.startswith("_")}
        diff = sorted(k for k in ("block_out_channels", "down_block_types", "up_block_types", "in_channels", "cross_attention_dim",
                                  "layers_per_block") if _plain(mine.get(k)) != _plain(cfg.unet.get(k)))
        if diff:
            raise InputError(f"--base {sd.path} is not the Stable Diffusion model {src} was trained on (UNet {', '.join(diff)} differ)")
        cfg.base = str(sd.path)
        model, text, vae = HoiDiffModel(cfg, sd.unet), ClipText(sd.tokenizer, sd.text_encoder), sd.vae
    else:
        if base is not None:
            raise InputError(f"--base: {src} is the default pixel-space model, trained without a Stable Diffusion base")
        from hoitool.models.text import TextEncoder

        model, text, vae = HoiDiffModel(cfg), TextEncoder("minilm", known=d.get("prompts")), None
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in d["state_dict"].items()})
    except RuntimeError:
        raise InputError(f"{src}: its weights do not fit its own model config (a damaged file?): train it again") from None
    return HoiDiffusion(model.eval().to(device), text, vae, cfg, src, d.get("step"))


def _plain(v):
    return list(v) if isinstance(v, (list, tuple)) else v
