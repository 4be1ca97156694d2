"""A small PointNet++ (single-scale grouping) in plain PyTorch: an object/hand point-cloud encoder.

Farthest point sampling picks centres, each centre groups its k nearest points (coordinates
relative to the centre, plus their features), a shared MLP and a max over the group make the
centre's feature; after the set abstractions, the last centres' absolute coordinates and
features go through a pointwise layer and a global max pool, then a small MLP to the global
feature. Everything is batch-independent (LayerNorm, no BatchNorm) and, up to ties between
exactly equal distances, independent of the order of the input points.

    enc = PointNet2Encoder(PointNet2Config(in_features=1, out_dim=10))
    logits = enc(points, labels)        # points (B, N, 3), labels (B, N, 1) -> (B, 10)
    f = enc.features(points, labels)    # (B, 256): before the head's last ReLU (FHID-style metrics)

Memory grows as B x centres x N (the kNN distances): encode large sets in chunks of ~100 clouds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


def farthest_point_sample(points: torch.Tensor, n: int) -> torch.Tensor:
    """points (B, N, 3) -> (B, n) long indices of n distinct points, chosen greedily, each the
    farthest from those already chosen; the first is the point farthest from the centroid (so the
    chosen set does not depend on the order of the points)."""
    B, N, _ = points.shape
    if n > N:
        raise ValueError(f"cannot sample {n} distinct points from {N}")
    idx = torch.empty(B, n, dtype=torch.long, device=points.device)
    rows = torch.arange(B, device=points.device)
    dist = ((points - points.mean(1, keepdim=True)) ** 2).sum(-1)  # (B, N)
    nearest = torch.full_like(dist, float("inf"))
    for i in range(n):
        idx[:, i] = last = dist.argmax(1) if i == 0 else nearest.argmax(1)
        d = ((points - points[rows, last][:, None]) ** 2).sum(-1)
        nearest = torch.minimum(nearest, d)
        nearest[rows, last] = -1.0  # never chosen twice, even among duplicate points
    return idx


def gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (B, N, C), idx (B, ...) long -> (B, ..., C): x[b, idx[b, ...]]."""
    B, C = x.shape[0], x.shape[-1]
    flat = idx.reshape(B, -1)
    out = torch.gather(x, 1, flat[..., None].expand(-1, -1, C))
    return out.reshape(*idx.shape, C)


def knn_group(points: torch.Tensor, centres: torch.Tensor, k: int, features: torch.Tensor | None = None) -> torch.Tensor:
    """points (B, N, 3), centres (B, M, 3), features (B, N, F) or None -> (B, M, k, 3 + F): each
    centre's k nearest points, coordinates relative to the centre, then the points' features."""
    N = points.shape[1]
    if k > N:
        raise ValueError(f"cannot group {k} neighbours from {N} points")
    # Exact per-pair distances (the matrix-product shortcut can break ties by position).
    d = torch.cdist(centres, points, compute_mode="donot_use_mm_for_euclid_dist")  # (B, M, N)
    idx = d.topk(k, dim=-1, largest=False).indices  # (B, M, k)
    grouped = gather(points, idx) - centres[:, :, None]
    if features is not None:
        grouped = torch.cat([grouped, gather(features, idx)], dim=-1)
    return grouped


def shared_mlp(cin: int, widths: tuple[int, ...] | list[int]) -> nn.Sequential:
    """Pointwise Linear, LayerNorm, ReLU for each width (applied over the last dimension)."""
    mods: list[nn.Module] = []
    for w in widths:
        mods += [nn.Linear(cin, w), nn.LayerNorm(w), nn.ReLU()]
        cin = w
    return nn.Sequential(*mods)


class SetAbstraction(nn.Module):
    """FPS to n_centres, kNN groups of k, a shared MLP on [relative xyz, features], max over the group."""

    def __init__(self, n_centres: int, k: int, in_channels: int, mlp: list[int] | tuple[int, ...]):
        super().__init__()
        self.n_centres, self.k = n_centres, k
        self.mlp = shared_mlp(3 + in_channels, mlp)
        self.out_channels = mlp[-1]

    def forward(self, points: torch.Tensor, features: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """points (B, N, 3), features (B, N, C) or None -> centres (B, M, 3), their features (B, M, mlp[-1])."""
        centres = gather(points, farthest_point_sample(points, self.n_centres))
        grouped = knn_group(points, centres, self.k, features)  # (B, M, k, 3 + C)
        return centres, self.mlp(grouped).amax(dim=2)


@dataclass
class PointNet2Config:
    """Sizes of the encoder. Defaults: small enough to encode 1,000 two-hand clouds on a 2-core CPU."""

    in_features: int = 0
    """Per-point features besides xyz (e.g. 1 for a hand label)."""
    centres: tuple[int, ...] = (128, 32)
    """Centres of each set abstraction."""
    k: int = 16
    """Neighbours per centre."""
    widths: tuple[tuple[int, ...], ...] = ((32, 32, 64), (64, 64, 128))
    """Shared MLP widths of each set abstraction."""
    feature_dim: int = 256
    """Width of the global feature."""
    out_dim: int = 0
    """0: encoder only (forward returns the feature); > 0: a head ReLU -> Linear(feature_dim, out_dim)."""


class PointNet2Encoder(nn.Module):
    def __init__(self, cfg: PointNet2Config | None = None):
        super().__init__()
        self.config = cfg = cfg or PointNet2Config()
        if len(cfg.centres) != len(cfg.widths) or not cfg.centres:
            raise ValueError(f"centres {cfg.centres} and widths {cfg.widths} must have the same, non-zero length")
        self.sa = nn.ModuleList()
        cin = cfg.in_features
        for m, w in zip(cfg.centres, cfg.widths):
            self.sa.append(SetAbstraction(m, cfg.k, cin, w))
            cin = w[-1]
        D = cfg.feature_dim
        self.global_mlp = shared_mlp(3 + cin, [D])  # on the last centres' [absolute xyz, features]
        self.mlp = nn.Sequential(nn.Linear(D, D), nn.LayerNorm(D), nn.ReLU(), nn.Linear(D, D))
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(D, cfg.out_dim)) if cfg.out_dim > 0 else None

    def features(self, points: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """points (B, N, 3), features (B, N, in_features) or None -> global feature (B, feature_dim),
        taken before the head's last ReLU."""
        cfg = self.config
        if points.ndim != 3 or points.shape[-1] != 3:
            raise ValueError(f"points must be (B, N, 3), got {tuple(points.shape)}")
        if cfg.in_features > 0:
            if features is None or features.shape != (*points.shape[:2], cfg.in_features):
                got = None if features is None else tuple(features.shape)
                raise ValueError(f"features must be (B, N, {cfg.in_features}), got {got}")
        elif features is not None:
            raise ValueError("this encoder takes no per-point features (in_features = 0)")
        xyz, h = points, features
        for sa in self.sa:
            xyz, h = sa(xyz, h)
        h = self.global_mlp(torch.cat([xyz, h], dim=-1)).amax(dim=1)
        return self.mlp(h)

    def forward(self, points: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """points (B, N, 3), features (B, N, in_features) or None -> (B, out_dim), or the global
        feature (B, feature_dim) when out_dim = 0."""
        f = self.features(points, features)
        return f if self.head is None else self.head(f)

    def config_dict(self) -> dict:
        return asdict(self.config)


def pointnet2_from_dict(d: dict) -> PointNet2Encoder:
    d = dict(d)
    d["centres"] = tuple(d["centres"])
    d["widths"] = tuple(tuple(w) for w in d["widths"])
    return PointNet2Encoder(PointNet2Config(**d))


__all__ = ["PointNet2Config", "PointNet2Encoder", "SetAbstraction", "farthest_point_sample", "gather",
           "knn_group", "pointnet2_from_dict"]
