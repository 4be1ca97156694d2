"""The two-hand feature network behind FHID / KHID / precision / recall (InterHandGen's protocol).

A PointNet++ reads both hands' vertices as one point cloud (the anchor's frame, x10, plus a
per-point hand label: 0 right, 1 left) and is trained to regress both hands' normalised
parameter vectors (articulation, shape, relative rotation and position). Its 256-d feature
before the head's last ReLU is the space the distribution metrics are computed in.
"""

from __future__ import annotations

import torch

from hoitool.hand.model import HandModel
from hoitool.models.pointnet2 import PointNet2Config, PointNet2Encoder
from hoitool.twohands.params import DIM, RIGID, VectorNormaliser, from_vectors

POINTS_PER_HAND = 256
SCALE = 10.0


def feature_config() -> PointNet2Config:
    return PointNet2Config(in_features=1, centres=(128, 32), k=16, widths=((32, 32, 64), (64, 64, 128)),
                           feature_dim=256, out_dim=2 * DIM)


def canonical(xa: torch.Tensor) -> torch.Tensor:
    """x_a with the anchor's rotation and position reset to the identity and the origin (the
    hands' own frame, whatever the object)."""
    out = xa.clone()
    out[:, RIGID] = torch.tensor([1.0, 0, 0, 0, 1.0, 0, 0, 0, 0]).to(xa)
    return out


def pair_clouds(hands: dict[str, HandModel], xa: torch.Tensor, xb: torch.Tensor, vertex_ids: dict | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(points (B, 2K, 3) x SCALE, labels (B, 2K, 1)) of both hands in the anchor's frame.
    vertex_ids: fixed ids per side; else K random vertices per hand drawn from `generator`."""
    right, left = from_vectors(hands["right"], hands["left"], canonical(xa), xb)
    vr, vl = hands["right"](right).vertices, hands["left"](left).vertices
    B, V = vr.shape[:2]
    if vertex_ids is None:
        ids = {s: torch.stack([torch.randperm(V, generator=generator)[:POINTS_PER_HAND] for _ in range(B)]).to(vr.device) for s in ("right", "left")}
    else:
        ids = {s: torch.as_tensor(v, device=vr.device).expand(B, -1) for s, v in vertex_ids.items()}
    pr = torch.gather(vr, 1, ids["right"][..., None].expand(-1, -1, 3))
    pl = torch.gather(vl, 1, ids["left"][..., None].expand(-1, -1, 3))
    pts = torch.cat([pr, pl], 1) * SCALE
    lab = torch.cat([torch.zeros(B, pr.shape[1], 1), torch.ones(B, pl.shape[1], 1)], 1).to(pts)
    return pts, lab


class TwoHandFeatures(torch.nn.Module):
    """The feature network with its target normaliser and fixed evaluation vertex ids."""

    def __init__(self, cfg: PointNet2Config, norm: VectorNormaliser, eval_ids: dict[str, torch.Tensor]):
        super().__init__()
        self.net = PointNet2Encoder(cfg)
        self.norm = norm
        for s, v in eval_ids.items():
            self.register_buffer(f"ids_{s}", torch.as_tensor(v, dtype=torch.long))

    def forward(self, points, labels):
        return self.net(points, labels)

    def target(self, xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.norm.norm_a(canonical(xa)), self.norm.norm_b(xb)], 1)

    @torch.no_grad()
    def features(self, hands: dict[str, HandModel], xa: torch.Tensor, xb: torch.Tensor, batch: int = 100) -> torch.Tensor:
        """(N, 256) features of pairs given as de-normalised vectors (N, 64) each."""
        ids = {"right": self.ids_right, "left": self.ids_left}
        out = []
        for s in range(0, len(xa), batch):
            pts, lab = pair_clouds(hands, xa[s:s + batch], xb[s:s + batch], ids)
            out.append(self.net.features(pts, lab).cpu())
        return torch.cat(out) if out else torch.zeros(0, self.net.config.feature_dim)
