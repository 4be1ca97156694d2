"""The two-hand denoiser of InterHandGen: x0(x_t, t, anchor hand[, object]) over 64-d hand vectors.

Each sample becomes a short sequence of tokens -- timestep, noisy input, condition (the anchor
hand), and optionally an object feature -- each with a learned type embedding. A pre-norm
transformer encoder attends across the tokens of each sample (the released InterHandGen code
attended across the batch by a layout mistake: sample i then depended on the rest of the batch).
The tokens are then flattened and go through a fully connected stack with a skip that
concatenates the stack's input halfway; the last layer starts at zero, so a new model predicts
x0 = 0.

A missing condition (`cond=None`, or `cond_mask` False for a sample) is replaced by a learned
null token: classifier-free-guidance dropout during training, the unconditional branch when
sampling.

    net = HandDiffusionNet(HandDiffConfig())
    x0 = net(x_t, t, cond=anchor)              # x_t (B, 64), t (B,), anchor (B, 64) -> (B, 64)
    x0_uncond = net(x_t, t)                    # the null condition
    x0 = net(x_t, t, cond=anchor, cond_mask=keep)   # keep (B,) bool: False -> null condition

InterHandGen's own sizes (512-d tokens, 7 layers of ~2k width, about 30 M weights) are too slow
to draw 10,000 samples on a 2-core CPU; the defaults here are ~1.5 M weights (hoitool's
two-hand model uses width 384 and tokens of 96: ~0.96 M).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from hoitool.models.blocks import timestep_embedding


@dataclass
class HandDiffConfig:
    """Sizes of the denoiser. Defaults: sized for sampling on a 2-core CPU."""

    dim: int = 64
    """Size of the noisy input and of the output (64 per hand; 128 for a joint two-hand model)."""
    cond_dim: int = 64
    """Size of the condition vector (the anchor hand); 0: no condition token."""
    object_dim: int = 0
    """Size of an object feature vector (e.g. from a point-cloud encoder); 0: no object token."""
    token_dim: int = 128
    """Embedding width of each token."""
    heads: int = 4
    """Attention heads of the transformer encoder."""
    layers: int = 2
    """Transformer encoder layers over the tokens."""
    width: int = 512
    """Width of the fully connected stack."""
    depth: int = 4
    """Fully connected layers (Linear, LayerNorm, SiLU); layer depth // 2 also sees the stack's input."""
    dropout: float = 0.0
    """Dropout in the transformer and the fully connected stack."""

    @property
    def n_tokens(self) -> int:
        return 2 + (self.cond_dim > 0) + (self.object_dim > 0)


class HandDiffusionNet(nn.Module):
    def __init__(self, cfg: HandDiffConfig | None = None):
        super().__init__()
        self.config = cfg = cfg or HandDiffConfig()
        if cfg.token_dim % cfg.heads:
            raise ValueError(f"token_dim {cfg.token_dim} is not a multiple of heads {cfg.heads}")
        if cfg.depth < 1:
            raise ValueError(f"depth must be at least 1, got {cfg.depth}")
        C = cfg.token_dim
        self.time_embed = nn.Sequential(nn.Linear(C, C), nn.SiLU(), nn.Linear(C, C))
        self.x_embed = nn.Linear(cfg.dim, C)
        self.cond_embed = nn.Linear(cfg.cond_dim, C) if cfg.cond_dim > 0 else None
        self.cond_null = nn.Parameter(0.02 * torch.randn(C)) if cfg.cond_dim > 0 else None
        self.obj_embed = nn.Linear(cfg.object_dim, C) if cfg.object_dim > 0 else None
        self.obj_null = nn.Parameter(0.02 * torch.randn(C)) if cfg.object_dim > 0 else None
        self.type_embed = nn.Parameter(0.02 * torch.randn(cfg.n_tokens, C))
        layer = nn.TransformerEncoderLayer(C, cfg.heads, dim_feedforward=2 * C, dropout=cfg.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, norm=nn.LayerNorm(C), enable_nested_tensor=False)

        n_in = cfg.n_tokens * C
        self.skip_at = cfg.depth // 2
        self.fc = nn.ModuleList()
        for i in range(cfg.depth):
            cin = n_in if i == 0 else cfg.width
            if i == self.skip_at and i > 0:
                cin += n_in
            self.fc.append(nn.Sequential(nn.Linear(cin, cfg.width), nn.LayerNorm(cfg.width), nn.SiLU(), nn.Dropout(cfg.dropout)))
        self.out = nn.Linear(cfg.width, cfg.dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @staticmethod
    def _token(embed: nn.Linear, null: torch.Tensor, v: torch.Tensor | None, mask: torch.Tensor | None,
               B: int, name: str) -> torch.Tensor:
        """Embedding of v (B, n), with the null token where v is None or mask (B,) is False -> (B, C)."""
        if v is None:
            return null.expand(B, -1)
        if v.shape != (B, embed.in_features):
            raise ValueError(f"{name} must be ({B}, {embed.in_features}), got {tuple(v.shape)}")
        tok = embed(v)
        if mask is not None:
            if mask.shape != (B,):
                raise ValueError(f"{name}_mask must be ({B},), got {tuple(mask.shape)}")
            tok = torch.where(mask.to(torch.bool)[:, None], tok, null.to(tok.dtype))
        return tok

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None,
                cond_mask: torch.Tensor | None = None, obj: torch.Tensor | None = None,
                obj_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, dim) noisy vector; t (B,) or () timesteps (int or float); cond (B, cond_dim) anchor
        hand or None; cond_mask (B,) bool, False -> null condition; obj (B, object_dim) object
        feature or None; obj_mask (B,) bool -> x0 prediction (B, dim)."""
        cfg = self.config
        if x.ndim != 2 or x.shape[1] != cfg.dim:
            raise ValueError(f"x must be (B, {cfg.dim}), got {tuple(x.shape)}")
        B = x.shape[0]
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(B)
        if t.shape != (B,):
            raise ValueError(f"t must be ({B},), got {tuple(t.shape)}")
        if cond is not None and self.cond_embed is None:
            raise ValueError("this model has no condition token (cond_dim = 0) but got cond")
        if obj is not None and self.obj_embed is None:
            raise ValueError("this model has no object token (object_dim = 0) but got obj")

        tokens = [self.time_embed(timestep_embedding(t, cfg.token_dim).to(x.dtype)), self.x_embed(x)]
        if self.cond_embed is not None:
            tokens.append(self._token(self.cond_embed, self.cond_null, cond, cond_mask, B, "cond"))
        if self.obj_embed is not None:
            tokens.append(self._token(self.obj_embed, self.obj_null, obj, obj_mask, B, "obj"))
        h = torch.stack(tokens, dim=1) + self.type_embed  # (B, n_tokens, C): attention runs over dim 1
        h = self.encoder(h).flatten(1)
        inp = h
        for i, layer in enumerate(self.fc):
            if i == self.skip_at and i > 0:
                h = torch.cat([h, inp], dim=-1)
            h = layer(h)
        return self.out(h)

    def config_dict(self) -> dict:
        return asdict(self.config)


def handdiff_from_dict(d: dict) -> HandDiffusionNet:
    return HandDiffusionNet(HandDiffConfig(**d))


__all__ = ["HandDiffConfig", "HandDiffusionNet", "handdiff_from_dict"]
