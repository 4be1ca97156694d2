"""The HOIDiffusion denoiser: a diffusers UNet2DConditionModel steered by one condition encoder per
geometry map (T2I-Adapter style), plus the text path.

    model = HoiDiffModel(default_config())                      # the small pixel-space model
    feats = model.adapter_features({"skeleton": s, "normals": n})   # list over UNet levels
    eps = model.denoise(x_t, t, text, feats)                    # (B, C, h, w), epsilon (or v)

Condition encoders: PixelUnshuffle -> conv -> one stage per UNet down block (2x average-pool
where the UNet halves its resolution, then residual blocks), each stage's output the shape of
that block's features. The encoders' outputs are summed (weights 1) and handed to diffusers as
`down_intrablock_additional_residuals`, which adds them to the UNet encoder features after
each resolution level (before its downsampler; after the block for a block without
cross-attention). The sampler passes them to both classifier-free branches.

A condition image of zeros (no hand, no object: the background) gives exactly zero features:
the encoders have no bias terms, and convolution, ReLU and average pooling all map 0 to 0. So
"empty conditions" (background regularisation), a condition left out with `--conditions`, and an
encoder not run at all are the same thing, and the features of several conditions are exactly
the sum of each one's alone.

Two kinds of model:
- base: a local Stable Diffusion 1.x folder (latent space, CLIP text states as they are). Only
  the encoders and the UNet decoder half (up_blocks, conv_norm_out, conv_out, as the paper
  trains) learn; `state_dict()` holds only those, the rest is reloaded from the base folder.
- default: a small UNet trained from scratch in pixel space (64 px images, 2 x 2 pixel blocks
  folded into channels so the UNet runs at 32 x 32), text from the shipped
  all-MiniLM-L6-v2 sentence embedding (384-d) projected by a learned layer to a few
  cross-attention tokens. Everything in it learns.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from hoitool.errors import InputError

CONDITIONS = ("skeleton", "normals", "segmentation")
"""The geometry maps, in the order the render folder names them (STEM_{name}.png)."""

#: Parameter name prefixes that learn on top of a Stable Diffusion base (the paper's choice).
TRAINED_ON_BASE = ("adapters.", "unet.up_blocks.", "unet.conv_norm_out.", "unet.conv_out.")
_BLOCKS = ("CrossAttnDownBlock2D", "DownBlock2D")


def default_schedule() -> dict:
    """Noise schedule of the default model: T = 1000, cosine betas, v prediction; DDIM steps
    spaced so the first is at t = T - 1 (pure noise at 64 px pixel space). Epsilon prediction
    was tried first: after 2,500 steps (batch 16) its DDIM samples were still noise, with an
    epsilon error of 0.45 at t = 50 on held-out frames (fine textures of the backgrounds)."""
    return {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "prediction_type": "v_prediction",
            "clip_sample": False, "set_alpha_to_one": True, "steps_offset": 0, "timestep_spacing": "trailing"}


def default_unet(resolution: int = 64, channels: tuple[int, ...] = (32, 48, 64, 96), fold: int = 2,
                 cross_attention_dim: int = 64, heads: int = 4) -> dict:
    """UNet2DConditionModel config of the default pixel-space model. The image's `fold` x `fold`
    pixel blocks are folded into channels first (64 px RGB -> 32 x 32 x 12), then one resnet per
    level, no attention at the two finest levels (32, 16), self- and cross-attention at 8 and 4."""
    n = len(channels)
    down = ["DownBlock2D"] * max(n - 2, 0) + ["CrossAttnDownBlock2D"] * min(n, 2)
    return {"sample_size": resolution // fold, "in_channels": 3 * fold * fold, "out_channels": 3 * fold * fold,
            "block_out_channels": list(channels), "down_block_types": down,
            "up_block_types": [t.replace("Down", "Up") for t in reversed(down)],
            "layers_per_block": 1, "cross_attention_dim": cross_attention_dim, "attention_head_dim": heads,
            "norm_num_groups": 8}


@dataclass
class HoiDiffConfig:
    """Everything needed to rebuild a HOIDiffusion model (saved in model.pt)."""

    unet: dict
    """UNet2DConditionModel config (the base's own, or `default_unet()`)."""
    resolution: int = 64
    """Image side in pixels (square)."""
    latent_scale: int = 1
    """Image pixels per UNet pixel: the VAE's factor (8 for SD) on a base, `fold` in pixel space."""
    fold: int = 1
    """Pixel-space models: image pixels folded into channels per side before the UNet (and
    unfolded after); 1 on a base (its VAE does the folding)."""
    conditions: list[str] = field(default_factory=lambda: list(CONDITIONS))
    """Condition maps with an encoder."""
    adapter_res_blocks: int = 2
    """Residual blocks per encoder stage (T2I-Adapter: 2)."""
    text: str = "minilm"
    """'minilm' (pooled 384-d sentence embedding, projected to `text_tokens` tokens) or 'clip'
    (the base's CLIP hidden states as they are)."""
    text_dim: int = 384
    """Width of the text encoder's output."""
    text_tokens: int = 4
    """Cross-attention tokens made from a MiniLM embedding (unused with 'clip')."""
    schedule: dict = field(default_factory=default_schedule)
    """diffusers scheduler config (betas, T, prediction type, DDIM spacing)."""
    base: str | None = None
    """Stable Diffusion folder the frozen weights come from (None: the default model)."""


def default_config(conditions: list[str] | None = None, resolution: int = 64,
                   channels: tuple[int, ...] = (32, 48, 64, 96), fold: int = 2, res_blocks: int = 1,
                   text_tokens: int = 4) -> HoiDiffConfig:
    """The small pixel-space model trained from scratch (no base)."""
    if resolution % fold:
        raise InputError(f"--resolution {resolution} must be a multiple of {fold}")
    return HoiDiffConfig(unet=default_unet(resolution, channels, fold), resolution=resolution, latent_scale=fold, fold=fold,
                         conditions=list(conditions or CONDITIONS), adapter_res_blocks=res_blocks, text="minilm",
                         text_dim=384, text_tokens=text_tokens)


def adapter_layout(unet: dict, latent_scale: int) -> tuple[list[int], list[int]]:
    """(channels, strides) of the features diffusers adds in each UNet down block: the block's width,
    and image pixels per feature pixel. A cross-attention block takes them before its
    downsampler; a plain block after its own downsampler (diffusers' rule), so one lower."""
    types = list(unet["down_block_types"])
    bad = [t for t in types if t not in _BLOCKS]
    if bad:
        raise InputError(f"UNet down block {bad[0]} is not supported by the condition encoders (only {', '.join(_BLOCKS)}, as SD 1.x)")
    strides = []
    for i, t in enumerate(types):
        last = i == len(types) - 1
        strides.append(latent_scale * 2 ** (i if (t == "CrossAttnDownBlock2D" or last) else i + 1))
    return list(unet["block_out_channels"]), strides


class _ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(c, c, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class ConditionEncoder(nn.Module):
    """One condition image (B, 3, H, W) in [0, 1] -> a feature map per UNet level.

    PixelUnshuffle(strides[0]) folds pixels into channels, a 3x3 conv widens to channels[0], then
    stage i average-pools by 2 where strides[i] = 2 strides[i-1], changes width by a 1x1 conv,
    and runs `res_blocks` residual blocks. No bias anywhere: zeros in, zeros out."""

    def __init__(self, channels: list[int], strides: list[int], res_blocks: int = 2, in_channels: int = 3):
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(strides[0])
        self.conv_in = nn.Conv2d(in_channels * strides[0] ** 2, channels[0], 3, padding=1, bias=False)
        stages, prev_c, prev_s = [], channels[0], strides[0]
        for c, s in zip(channels, strides):
            if s not in (prev_s, 2 * prev_s):
                raise ValueError(f"feature strides must stay or double from level to level, got {strides}")
            layers: list[nn.Module] = [nn.AvgPool2d(2)] if s == 2 * prev_s else []
            if c != prev_c:
                layers.append(nn.Conv2d(prev_c, c, 1, bias=False))
            layers += [_ResBlock(c) for _ in range(res_blocks)]
            stages.append(nn.Sequential(*layers))
            prev_c, prev_s = c, s
        self.stages = nn.ModuleList(stages)

    def forward(self, cond: torch.Tensor) -> list[torch.Tensor]:
        h = self.conv_in(self.unshuffle(cond))
        out = []
        for stage in self.stages:
            h = stage(h)
            out.append(h)
        return out


class HoiDiffModel(nn.Module):
    """UNet + condition encoders (+ the MiniLM projection of the default model).

    `state_dict()` / `load_state_dict()` cover only the weights that learn (see module docstring),
    so run folders and model files never hold Stable Diffusion's own weights."""

    def __init__(self, cfg: HoiDiffConfig, unet=None):
        super().__init__()
        from diffusers import UNet2DConditionModel

        self.cfg = cfg
        self.unet = unet if unet is not None else UNet2DConditionModel.from_config(cfg.unet)
        channels, strides = adapter_layout(cfg.unet, cfg.latent_scale)
        if cfg.resolution % strides[-1]:
            raise InputError(f"--resolution {cfg.resolution} must be a multiple of {strides[-1]} for this UNet")
        self.adapters = nn.ModuleDict({n: ConditionEncoder(channels, strides, cfg.adapter_res_blocks) for n in cfg.conditions})
        cross = int(cfg.unet["cross_attention_dim"])
        if cfg.text == "minilm":
            self.text_proj = nn.Linear(cfg.text_dim, cfg.text_tokens * cross)
        elif cfg.text == "clip":
            if cfg.text_dim != cross:
                raise InputError(f"text encoder width {cfg.text_dim} does not match the UNet's cross_attention_dim {cross}")
            self.text_proj = None
        else:
            raise ValueError(f"unknown text path {cfg.text!r}")
        self.trained = TRAINED_ON_BASE if cfg.base else ("",)
        for name, p in self.named_parameters():
            p.requires_grad_(self.is_trained(name))

    def is_trained(self, name: str) -> bool:
        return name.startswith(self.trained)

    def config(self) -> dict:
        return asdict(self.cfg)

    # -- weights: only those that learn ------------------------------------------------------

    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        sd = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        for k in [k for k in sd if k.startswith(prefix) and not self.is_trained(k[len(prefix):])]:
            del sd[k]
        return sd

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        own = set(self.state_dict())
        missing, unexpected = sorted(own - set(state_dict)), sorted(set(state_dict) - own)
        if strict and (missing or unexpected):
            raise RuntimeError(f"HoiDiffModel weights do not match: missing {missing[:3]}, unexpected {unexpected[:3]}")
        res = super().load_state_dict(OrderedDict((k, v) for k, v in state_dict.items() if k in own), strict=False, assign=assign)
        return res._replace(missing_keys=[k for k in res.missing_keys if k in own], unexpected_keys=unexpected)

    # -- forward ---------------------------------------------------------------------------------

    def text_states(self, text: torch.Tensor) -> torch.Tensor:
        """Cross-attention states: MiniLM (B, 384) -> (B, text_tokens, D); CLIP (B, 77, D) as it is."""
        if self.text_proj is None:
            return text
        return self.text_proj(text).view(len(text), self.cfg.text_tokens, -1)

    def adapter_features(self, cond: dict[str, torch.Tensor]) -> list[torch.Tensor] | None:
        """Summed encoder features, one (B, C_l, h_l, w_l) per UNet down block. `cond` maps
        condition names to (B, 3, H, W) images in [0, 1]; a name left out contributes nothing
        (as a zero image would). None when no condition is given."""
        unknown = set(cond) - set(self.adapters)
        if unknown:
            raise InputError(f"this model has no encoder for {', '.join(sorted(unknown))} (it has {', '.join(self.adapters)})")
        total = None
        for name, enc in self.adapters.items():
            if name in cond:
                f = enc(cond[name])
                total = f if total is None else [a + b for a, b in zip(total, f)]
        return total

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, text: torch.Tensor,
                features: list[torch.Tensor] | None) -> torch.Tensor:
        """x_t: (B, C, h, w) noisy sample (latents on a base; the (B, 3, H, W) image in pixel space,
        folded here); t: (B,) timesteps; text: the text encoder's output (see `text_states`);
        features: from `adapter_features` (batch B) or None. Returns the prediction, shaped as x_t."""
        res = None if features is None else list(features)  # diffusers pops from the list
        f = self.cfg.fold
        x = x_t if f == 1 else nn.functional.pixel_unshuffle(x_t, f)
        out = self.unet(x, t, encoder_hidden_states=self.text_states(text), down_intrablock_additional_residuals=res).sample
        return out if f == 1 else nn.functional.pixel_shuffle(out, f)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, text: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.denoise(x_t, t, text, self.adapter_features(cond))


def config_from_dict(d: dict) -> HoiDiffConfig:
    return HoiDiffConfig(**d)
