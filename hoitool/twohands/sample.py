"""Sampling two hands: cascaded DDIM with classifier-free guidance on the relative pose and
anti-penetration guidance at every step.

    xa, xb = sample_vectors(model, n=100, seed=0)            # (100, 64) each, de-normalised
    right, left = from_vectors(hands["right"], hands["left"], xa, xb)

Sample i's starting noise comes from its own generator seeded by (seed, i) and DDIM runs with
eta = 0, so a sample does not depend on the batch size or on the other samples.
"""

from __future__ import annotations

from typing import Callable

import torch

from hoitool.twohands.guidance import PenetrationGuide, step_weight
from hoitool.twohands.model import TwoHandDiffusion, sample_scheduler
from hoitool.twohands.params import DIM, RIGID
from hoitool.utils.seeding import torch_generator

DEFAULT_STEPS = 42
DEFAULT_GUIDANCE = 0.0
DEFAULT_PENETRATION = 400.0
DEFAULT_PROXIMITY = 0.3


def _noise(seed: int, ids: range, dim: int, stage: str) -> torch.Tensor:
    return torch.stack([torch.randn(dim, generator=torch_generator(seed, "twohands", stage, i)) for i in ids])


@torch.no_grad()
def _denoise(model: TwoHandDiffusion, x: torch.Tensor, sched, predict: Callable, guide: Callable | None) -> torch.Tensor:
    steps = len(sched.timesteps)
    for k, t in enumerate(sched.timesteps):
        tt = torch.full((x.shape[0],), int(t), device=x.device, dtype=torch.long)
        x0 = predict(x, tt)
        if guide is not None:
            x0 = guide(x0, k, steps)
        x = sched.step(x0, t, x, eta=0.0).prev_sample
    return x


def sample_vectors(model: TwoHandDiffusion, n: int, seed: int = 0, steps: int = DEFAULT_STEPS, guidance: float = DEFAULT_GUIDANCE,
                   penetration: float = DEFAULT_PENETRATION, object_points: torch.Tensor | None = None,
                   guide: PenetrationGuide | None = None, batch_size: int = 2000, start: int = 0,
                   progress: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """n samples (ids start .. start+n-1) as de-normalised (x_a, x_b), each (n, 64).

    guidance: classifier-free guidance weight on the second hand's rotation and position
    (x0 = x0_c + w (x0_c - x0_u) there); penetration: anti-penetration weight (0: off);
    object_points: (P, 3) object surface points in the reference frame (the model must have an
    object encoder)."""
    dev = model.norm.mean_a.device
    if object_points is not None and not model.has_object:
        raise ValueError("this two-hand model has no object encoder: train it on data with objects")
    if model.joint and guidance:
        raise ValueError("classifier-free guidance needs the cascaded model (this one is joint): pass guidance 0")
    if penetration > 0 and guide is None:
        raise ValueError("penetration guidance needs a PenetrationGuide")
    out_a, out_b = [], []
    done = 0
    for s in range(start, start + n, batch_size):
        ids = range(s, min(start + n, s + batch_size))
        B = len(ids)
        pts = None
        if object_points is not None:
            sel = torch.linspace(0, object_points.shape[0] - 1, model.object_points).round().long()
            pts = object_points[sel].to(dev)
        obj, obj_mask = model.encode_object(pts, B)
        sched = sample_scheduler(model.schedule, steps)
        if model.joint:
            z = _noise(seed, ids, 2 * DIM, "joint").to(dev)

            def guide_joint(x0, k, K):
                if penetration <= 0:
                    return x0
                g = guide.gradient(model.norm, x0[:, :DIM], x0[:, DIM:], "ab")
                return x0 - step_weight(penetration, k, K) * g

            z = _denoise(model, z, sched, lambda x, t: model.predict(x, t, None, obj, obj_mask), guide_joint)
            za, zb = z[:, :DIM], z[:, DIM:]
        else:
            za = _noise(seed, ids, DIM, "anchor").to(dev)
            za = _denoise(model, za, sched, lambda x, t: model.predict(x, t, None, obj, obj_mask), None)
            zb = _noise(seed, ids, DIM, "second").to(dev)
            # the condition carries the noise the second stage was trained with (conditioning augmentation)
            za_c = za + model.cond_noise * _noise(seed, ids, DIM, "condition").to(dev) if model.cond_noise else za
            both_obj = None if obj is None else torch.cat([obj, obj])
            both_mask = None if obj_mask is None else torch.cat([obj_mask, obj_mask])

            def predict_b(x, t):
                if guidance == 0:
                    return model.predict(x, t, za_c, obj, obj_mask)
                # the conditional and the unconditional pass in one batch
                c = model.net(torch.cat([x, x]), torch.cat([t, t]), cond=torch.cat([za_c, za_c]),
                              cond_mask=torch.cat([torch.ones(B, dtype=torch.bool), torch.zeros(B, dtype=torch.bool)]).to(dev),
                              obj=both_obj, obj_mask=both_mask)
                x0c = c[:B]
                # the null-condition pass was trained on anchors, in the anchor's normalisation: read its
                # prediction as numbers, then in the second hand's normalisation (for the 9 relative numbers it
                # is the identity pose, as InterHandGen's shared relative-pose statistics make it)
                x0u = model.norm.norm_b(model.norm.denorm_a(c[B:]))
                x0 = x0c.clone()
                x0[:, RIGID] = x0c[:, RIGID] + guidance * (x0c[:, RIGID] - x0u[:, RIGID])
                return x0

            def guide_b(x0, k, K):
                if penetration <= 0:
                    return x0
                return x0 - step_weight(penetration, k, K) * guide.gradient(model.norm, za, x0, "b")

            zb = _denoise(model, zb, sched, predict_b, guide_b)
        out_a.append(model.norm.denorm_a(za))
        out_b.append(model.norm.denorm_b(zb))
        done += B
        if progress:
            progress(done, n)
    return torch.cat(out_a), torch.cat(out_b)
