"""3D building blocks shared by the VQ-VAE and the UNet (all tensors are (B, C, D, H, W))."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups of at least 4 channels each."""
    groups = max(1, min(32, channels // 4))
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels, eps=1e-6)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) timesteps -> (B, dim) sinusoidal features."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


class ResBlock(nn.Module):
    """Two 3x3x3 convolutions with a skip; with `emb_dim`, a scale-shift from the embedding."""

    def __init__(self, cin: int, cout: int, emb_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.conv1 = norm(cin), nn.Conv3d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout) if emb_dim else None
        self.norm2, self.drop = norm(cout), nn.Dropout(dropout)
        self.conv2 = nn.Conv3d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.emb is not None:
            scale, shift = self.emb(F.silu(emb))[:, :, None, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class Downsample(nn.Module):
    """Stride-2 convolution: D -> D/2."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest x2 then a convolution: D -> 2D."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Attention(nn.Module):
    """Multi-head attention of tokens x (B, N, C) to a context (B, M, Cc) (itself if None)."""

    def __init__(self, channels: int, head_dim: int = 64, context_dim: int | None = None):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.q = nn.Linear(channels, channels, bias=False)
        self.kv = nn.Linear(context_dim or channels, 2 * channels, bias=False)
        self.out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        B, N, C = x.shape
        ctx = x if context is None else context
        q = self.q(x).reshape(B, N, self.heads, -1).transpose(1, 2)
        k, v = self.kv(ctx).reshape(B, ctx.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v)
        return self.out(o.transpose(1, 2).reshape(B, N, C))


class SpatialTransformer(nn.Module):
    """Self-attention, cross-attention to the context, feed-forward, over all voxels."""

    def __init__(self, channels: int, context_dim: int | None, head_dim: int = 64, dropout: float = 0.0):
        super().__init__()
        self.norm = norm(channels)
        self.proj_in = nn.Linear(channels, channels)
        self.ln1, self.attn1 = nn.LayerNorm(channels), Attention(channels, head_dim)
        self.cross = context_dim is not None
        if self.cross:
            self.ln2, self.attn2 = nn.LayerNorm(channels), Attention(channels, head_dim, context_dim)
        self.ln3 = nn.LayerNorm(channels)
        self.ff = nn.Sequential(nn.Linear(channels, 4 * channels), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * channels, channels))
        self.proj_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        B, C, D, H, W = x.shape
        h = self.proj_in(self.norm(x).reshape(B, C, -1).transpose(1, 2))
        h = h + self.attn1(self.ln1(h))
        if self.cross:
            h = h + self.attn2(self.ln2(h), context)
        h = h + self.ff(self.ln3(h))
        return x + self.proj_out(h).transpose(1, 2).reshape(B, C, D, H, W)
