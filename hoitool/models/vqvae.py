"""The 3D object autoencoder: a 64^3 object SDF grid <-> a 3 x 16^3 latent (G-HOP's object channels).

G-HOP's bottleneck is a VQ codebook (`bottleneck="vq"`, kept for older checkpoints); the default
is a continuous latent with a small L2 pull towards 0 (`bottleneck="continuous"`): with 3 latent
channels, a codebook of a few hundred entries is a coarse grid of 3-vectors, and the decoder
saw only those (measured in the README: occupancy IoU on held-out objects).

    vq = VQVAE(VQVAEConfig())
    out = vq(grid)               # grid (B, 1, 64, 64, 64) in [-1, 1]
    out.recon, out.z, out.vq_loss
    z = vq.encode(grid)          # (B, 3, 16, 16, 16) pre-quantisation latent (what the prior models)
    grid = vq.decode_latent(z)   # quantise, then decode
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hoitool.models.blocks import Downsample, ResBlock, SpatialTransformer, Upsample, norm


@dataclass
class VQVAEConfig:
    """Sizes of the autoencoder. Defaults: the shipped model, sized to train on a 2-core CPU (G-HOP's
    own: patch 1, channels 64, mult (1, 2, 4), mid attention, codebook 8192)."""

    patch: int = 4
    """Voxels per side folded into channels before the first convolution (space-to-depth), and
    unfolded after the last: 64^3 convolutions are what makes a 3D VQ-VAE slow on a CPU. The
    default folds 4^3 voxels, so every convolution runs at the latent's 16^3 with 64 channels:
    for the time of the old 2 x (16, 32)-channel model, 4x the weights (measured, README)."""
    channels: int = 64
    """Base channel count (at the first level, resolution R / patch)."""
    channel_mult: tuple[int, ...] = (1,)
    """Channel multiplier per level; each level after the first halves the resolution."""
    num_res_blocks: int = 1
    """Residual blocks per level."""
    mid_attention: bool = False
    """Self-attention in the middle block (at the latent resolution)."""
    latent_channels: int = 3
    """Channels of the latent."""
    codebook_size: int = 512
    """Entries of the codebook."""
    beta: float = 0.25
    """Commitment weight (vq)."""
    latent_l2: float = 1e-4
    """Weight of the latent's mean square (continuous): keeps its scale from drifting."""
    bottleneck: str = "continuous"
    """"continuous" (no quantisation; the shipped default) or "vq" (a codebook, G-HOP's)."""

    @property
    def downsampling(self) -> int:
        return self.patch * 2 ** (len(self.channel_mult) - 1)


def space_to_depth(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, D, H, W) -> (B, C p^3, D/p, H/p, W/p)."""
    if p == 1:
        return x
    B, C, D, H, W = x.shape
    x = x.reshape(B, C, D // p, p, H // p, p, W // p, p).permute(0, 1, 3, 5, 7, 2, 4, 6)
    return x.reshape(B, C * p**3, D // p, H // p, W // p)


def depth_to_space(x: torch.Tensor, p: int) -> torch.Tensor:
    """Inverse of space_to_depth."""
    if p == 1:
        return x
    B, Cp, D, H, W = x.shape
    C = Cp // p**3
    x = x.reshape(B, C, p, p, p, D, H, W).permute(0, 1, 5, 2, 6, 3, 7, 4)
    return x.reshape(B, C, D * p, H * p, W * p)


@dataclass
class VQOutput:
    recon: torch.Tensor
    """(B, 1, R, R, R) reconstruction."""
    z: torch.Tensor
    """(B, Cl, r, r, r) pre-quantisation latent."""
    vq_loss: torch.Tensor
    """Codebook + commitment loss (scalar)."""
    indices: torch.Tensor
    """(B, r, r, r) code indices."""


class Quantizer(nn.Module):
    """Nearest-codebook-entry quantisation with a straight-through gradient."""

    def __init__(self, size: int, dim: int, beta: float):
        super().__init__()
        self.beta = beta
        self.codebook = nn.Embedding(size, dim)
        nn.init.uniform_(self.codebook.weight, -1.0 / size, 1.0 / size)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, C, D, H, W = z.shape
        flat = z.permute(0, 2, 3, 4, 1).reshape(-1, C)
        e = self.codebook.weight
        d = (flat * flat).sum(1, keepdim=True) - 2 * flat @ e.T + (e * e).sum(1)[None]
        idx = d.argmin(1)
        zq = self.codebook(idx).reshape(B, D, H, W, C).permute(0, 4, 1, 2, 3)
        loss = F.mse_loss(zq, z.detach()) + self.beta * F.mse_loss(z, zq.detach())
        return z + (zq - z).detach(), loss, idx.reshape(B, D, H, W)


class Encoder(nn.Module):
    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        ch = [cfg.channels * m for m in cfg.channel_mult]
        self.patch = cfg.patch
        self.conv_in = nn.Conv3d(cfg.patch**3, ch[0], 3, padding=1)
        blocks: list[nn.Module] = []
        cin = ch[0]
        for i, c in enumerate(ch):
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(cin, c))
                cin = c
            if i < len(ch) - 1:
                blocks.append(Downsample(c))
        self.down = nn.Sequential(*blocks)
        self.mid = nn.Sequential(ResBlock(cin, cin), *([SpatialTransformer(cin, None)] if cfg.mid_attention else []), ResBlock(cin, cin))
        self.out = nn.Sequential(norm(cin), nn.SiLU(), nn.Conv3d(cin, cfg.latent_channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.mid(self.down(self.conv_in(space_to_depth(x, self.patch)))))


class Decoder(nn.Module):
    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        ch = [cfg.channels * m for m in cfg.channel_mult][::-1]
        self.conv_in = nn.Conv3d(cfg.latent_channels, ch[0], 3, padding=1)
        self.mid = nn.Sequential(ResBlock(ch[0], ch[0]), *([SpatialTransformer(ch[0], None)] if cfg.mid_attention else []), ResBlock(ch[0], ch[0]))
        blocks: list[nn.Module] = []
        cin = ch[0]
        for i, c in enumerate(ch):
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(cin, c))
                cin = c
            if i < len(ch) - 1:
                blocks.append(Upsample(c))
        self.up = nn.Sequential(*blocks)
        self.patch = cfg.patch
        self.out = nn.Sequential(norm(cin), nn.SiLU(), nn.Conv3d(cin, cfg.patch**3, 3, padding=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return depth_to_space(self.out(self.up(self.mid(self.conv_in(z)))), self.patch)


class VQVAE(nn.Module):
    def __init__(self, cfg: VQVAEConfig | None = None):
        super().__init__()
        self.config = cfg or VQVAEConfig()
        self.encoder = Encoder(self.config)
        if self.config.bottleneck not in ("vq", "continuous"):
            raise ValueError(f"bottleneck must be 'vq' or 'continuous', got {self.config.bottleneck!r}")
        self.quantizer = Quantizer(self.config.codebook_size, self.config.latent_channels, self.config.beta) if self.quantised else None
        self.decoder = Decoder(self.config)

    def encode(self, grid: torch.Tensor) -> torch.Tensor:
        """(B, 1, R, R, R) -> (B, Cl, R/4, R/4, R/4) pre-quantisation latent."""
        return self.encoder(grid)

    @property
    def quantised(self) -> bool:
        return self.config.bottleneck == "vq"

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Decode a latent (quantised first with a codebook) to (B, 1, R, R, R)."""
        return self.decoder(self.quantizer(z)[0] if self.quantised else z)

    def forward(self, grid: torch.Tensor) -> VQOutput:
        z = self.encoder(grid)
        if not self.quantised:
            return VQOutput(self.decoder(z), z, self.config.latent_l2 * z.square().mean(), torch.zeros(0, dtype=torch.long))
        zq, loss, idx = self.quantizer(z)
        return VQOutput(self.decoder(zq), z, loss, idx)

    def config_dict(self) -> dict:
        return asdict(self.config)


def vqvae_from_dict(d: dict) -> VQVAE:
    d = dict(d)
    d["channel_mult"] = tuple(d["channel_mult"])
    d.setdefault("bottleneck", "vq")  # saved before the option existed: every such model has a codebook
    return VQVAE(VQVAEConfig(**d))


__all__ = ["VQVAE", "VQVAEConfig", "VQOutput", "Quantizer", "vqvae_from_dict"]
