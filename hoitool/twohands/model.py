"""The two-hand diffusion model: denoiser, object encoder, normalisation and noise schedule.

Cascaded (InterHandGen): one network predicts x0 of the anchor (right) hand with a null
condition, p(x_a | object), and of the second (left) hand conditioned on the anchor,
p(x_b | x_a, object). Joint (the ablation): one network over [x_a | x_b] (128 numbers).
The object condition is a PointNet++ feature of the object's surface points in the reference
frame; records without an object use the learned null object token.

Schedule: diffusers' DDPM training and DDIM sampling with x0 ("sample") prediction. The released
InterHandGen schedule (linear betas 1e-4..0.01 over T = 129) ends at alpha_bar = 0.52, far from
pure noise, while sampling starts from pure noise; hoitool uses T = 1000 with the cosine schedule
(alpha_bar_T ~ 0) and 42 DDIM steps by default, spaced so the first is at t = T - 1
(diffusers' default 'leading' spacing would start at t = 943, alpha_bar 0.008).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from hoitool.models.handdiff import HandDiffConfig, HandDiffusionNet, handdiff_from_dict
from hoitool.models.pointnet2 import PointNet2Config, PointNet2Encoder, pointnet2_from_dict
from hoitool.twohands.params import DIM, VectorNormaliser


@dataclass
class TwoHandSchedule:
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"


def train_scheduler(s: TwoHandSchedule):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=s.num_train_timesteps, beta_schedule=s.beta_schedule,
                         prediction_type="sample", clip_sample=False)


def sample_scheduler(s: TwoHandSchedule, steps: int):
    from diffusers import DDIMScheduler

    sch = DDIMScheduler(num_train_timesteps=s.num_train_timesteps, beta_schedule=s.beta_schedule,
                        prediction_type="sample", clip_sample=False, set_alpha_to_one=True, timestep_spacing="trailing")
    sch.set_timesteps(steps)
    return sch


def default_net(joint: bool, object_dim: int, width: int = 384, token_dim: int = 96, dropout: float = 0.0) -> HandDiffConfig:
    return HandDiffConfig(dim=2 * DIM if joint else DIM, cond_dim=0 if joint else DIM, object_dim=object_dim,
                          token_dim=token_dim, width=width, dropout=dropout)


def default_encoder() -> PointNet2Config:
    return PointNet2Config(in_features=0, centres=(64, 16), k=16, widths=((32, 32, 64), (64, 64, 128)), feature_dim=128)


class TwoHandDiffusion(nn.Module):
    """Denoiser (+ object encoder) with the data's normaliser; predictions in normalised units."""

    def __init__(self, net: HandDiffConfig, encoder: PointNet2Config | None, norm: VectorNormaliser,
                 schedule: TwoHandSchedule | None = None, joint: bool = False, object_points: int = 256, cond_noise: float = 0.0):
        super().__init__()
        self.net = HandDiffusionNet(net)
        self.encoder = PointNet2Encoder(encoder) if encoder is not None else None
        self.norm = norm
        self.schedule = schedule or TwoHandSchedule()
        self.joint = joint
        self.object_points = object_points
        self.cond_noise = cond_noise
        """Noise (normalised units) the second stage's condition was trained with (conditioning augmentation)."""

    def config(self) -> dict:
        return {"net": asdict(self.net.config), "encoder": asdict(self.encoder.config) if self.encoder is not None else None,
                "schedule": asdict(self.schedule), "joint": self.joint, "object_points": self.object_points, "cond_noise": self.cond_noise}

    @classmethod
    def from_config(cls, d: dict, norm_state: dict) -> "TwoHandDiffusion":
        enc = d.get("encoder")
        m = cls(HandDiffConfig(**d["net"]), PointNet2Config(**{k: tuple(map(tuple, v)) if k == "widths" else (tuple(v) if isinstance(v, list) else v)
                                                              for k, v in enc.items()}) if enc else None,
                VectorNormaliser.from_state(norm_state), TwoHandSchedule(**d["schedule"]), d["joint"], d.get("object_points", 256),
                d.get("cond_noise", 0.0))
        return m

    @property
    def has_object(self) -> bool:
        return self.encoder is not None

    def encode_object(self, points: torch.Tensor | None, batch: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(feature (B, D), mask (B,)) from object points (B, P, 3) or (P, 3) (broadcast); None: no object."""
        if self.encoder is None:
            return None, None
        if points is None:
            feat = torch.zeros(batch, self.net.config.object_dim, device=self.norm.mean_a.device)
            return feat, torch.zeros(batch, dtype=torch.bool, device=feat.device)
        if points.dim() == 2:
            f = self.encoder(points[None])
            return f.expand(batch, -1), torch.ones(batch, dtype=torch.bool, device=f.device)
        return self.encoder(points), torch.ones(points.shape[0], dtype=torch.bool, device=points.device)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None, cond_mask: torch.Tensor | None = None,
                points: torch.Tensor | None = None, obj_mask: torch.Tensor | None = None, repeat: int = 1) -> torch.Tensor:
        """Training forward: x0 (normalised) from x_t (B, D). Object points (B / repeat, P, 3) and
        obj_mask (B / repeat,) are encoded once (only the rows with an object) and tiled `repeat`
        times; rows without an object get the null object token."""
        obj = None
        if self.encoder is not None:
            n = x.shape[0] // repeat
            obj = torch.zeros(n, self.net.config.object_dim, device=x.device, dtype=x.dtype)
            if obj_mask is None or points is None:
                obj_mask = torch.zeros(n, dtype=torch.bool, device=x.device)
            elif obj_mask.any():
                obj = obj.index_put((obj_mask.nonzero()[:, 0],), self.encoder(points[obj_mask]))
            obj, obj_mask = obj.repeat(repeat, 1), obj_mask.repeat(repeat)
        return self.net(x, t, cond=cond, cond_mask=cond_mask, obj=obj, obj_mask=obj_mask)

    def predict(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None, obj, obj_mask) -> torch.Tensor:
        """x0 (normalised) from x_t; cond = the clean normalised anchor, or None (the anchor stage /
        the unconditional pass)."""
        B = x.shape[0]
        if self.joint:
            return self.net(x, t, obj=obj, obj_mask=obj_mask)
        mask = None if cond is None else torch.ones(B, dtype=torch.bool, device=x.device)
        return self.net(x, t, cond=cond, cond_mask=mask, obj=obj, obj_mask=obj_mask)
