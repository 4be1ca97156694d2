"""The 3D UNet denoiser of G-HOP: eps(x_t, t, text) over the 23 x 16^3 interaction grid.

Residual blocks with a scale-shift from the timestep embedding; at the levels named in
`attention_levels` and in the middle, a transformer block (self-attention over voxels,
cross-attention to the text tokens, feed-forward).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from hoitool.models.blocks import Downsample, ResBlock, SpatialTransformer, Upsample, norm, timestep_embedding


@dataclass
class UNetConfig:
    """Sizes of the denoiser. Defaults: the shipped model, sized for a 2-core CPU (G-HOP's own:
    channels 64, mult (1, 2, 3), 3 blocks, head_dim 64, attention at levels 1 and 2)."""

    in_channels: int = 23
    """Channels of the interaction grid (3 object latent + 20 hand field)."""
    channels: int = 32
    """Base channel count."""
    channel_mult: tuple[int, ...] = (1, 2, 2)
    """Multiplier per level; each level after the first halves the resolution."""
    num_res_blocks: int = 1
    """Residual blocks per level."""
    attention_levels: tuple[int, ...] = (1, 2)
    """Levels (0 = full resolution) with transformer blocks; the middle always has one."""
    head_dim: int = 32
    """Channels per attention head."""
    context_dim: int = 384
    """Width of the text embedding."""
    dropout: float = 0.1
    """Dropout in residual blocks."""
    text_in_embedding: bool = True
    """Also add the text tokens' mean (through a small MLP) to the timestep embedding, so every
    residual block's scale-shift sees the category, not only the attention layers (the shipped
    prior before this option had it off and told categories apart at chance)."""


class UNet3D(nn.Module):
    def __init__(self, cfg: UNetConfig | None = None):
        super().__init__()
        self.config = cfg = cfg or UNetConfig()
        ch = [cfg.channels * m for m in cfg.channel_mult]
        emb = 4 * cfg.channels
        self.time_embed = nn.Sequential(nn.Linear(cfg.channels, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.text_embed = nn.Sequential(nn.Linear(cfg.context_dim, emb), nn.SiLU(), nn.Linear(emb, emb)) if cfg.text_in_embedding else None
        self.conv_in = nn.Conv3d(cfg.in_channels, ch[0], 3, padding=1)

        def stage(cin: int, cout: int, level: int) -> nn.ModuleList:
            mods = [ResBlock(cin, cout, emb, cfg.dropout)]
            if level in cfg.attention_levels:
                mods.append(SpatialTransformer(cout, cfg.context_dim, cfg.head_dim, cfg.dropout))
            return nn.ModuleList(mods)

        self.down = nn.ModuleList()
        skips = [ch[0]]
        cin = ch[0]
        for level, c in enumerate(ch):
            for _ in range(cfg.num_res_blocks):
                self.down.append(stage(cin, c, level))
                cin = c
                skips.append(c)
            if level < len(ch) - 1:
                self.down.append(nn.ModuleList([Downsample(c)]))
                skips.append(c)
        self.mid = nn.ModuleList([ResBlock(cin, cin, emb, cfg.dropout), SpatialTransformer(cin, cfg.context_dim, cfg.head_dim, cfg.dropout),
                                  ResBlock(cin, cin, emb, cfg.dropout)])
        self.up = nn.ModuleList()
        for level in reversed(range(len(ch))):
            for i in range(cfg.num_res_blocks + 1):
                self.up.append(stage(cin + skips.pop(), ch[level], level))
                cin = ch[level]
                if level > 0 and i == cfg.num_res_blocks:
                    self.up[-1].append(Upsample(cin))
        self.out = nn.Sequential(norm(cin), nn.SiLU(), nn.Conv3d(cin, cfg.in_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    @staticmethod
    def _run(mods: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        for m in mods:
            if isinstance(m, ResBlock):
                h = m(h, emb)
            elif isinstance(m, SpatialTransformer):
                h = m(h, context)
            else:
                h = m(h)
        return h

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """x (B, C, r, r, r); t (B,) timesteps; context (B, M, context_dim) text tokens -> eps (B, C, r, r, r)."""
        emb = self.time_embed(timestep_embedding(t, self.config.channels))
        if self.text_embed is not None:
            emb = emb + self.text_embed(context.mean(1))
        h = self.conv_in(x)
        hs = [h]
        for mods in self.down:
            h = self._run(mods, h, emb, context)
            hs.append(h)
        h = self._run(self.mid, h, emb, context)
        for mods in self.up:
            h = self._run(mods, torch.cat([h, hs.pop()], dim=1), emb, context)
        return self.out(h)

    def config_dict(self) -> dict:
        return asdict(self.config)


def unet_from_dict(d: dict) -> UNet3D:
    d = dict(d)
    d["channel_mult"] = tuple(d["channel_mult"])
    d["attention_levels"] = tuple(d["attention_levels"])
    d.setdefault("text_in_embedding", False)  # saved before the option existed
    return UNet3D(UNetConfig(**d))
