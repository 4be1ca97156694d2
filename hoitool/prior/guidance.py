"""Using the prior on grids made from something else: score distillation and the likelihood score.

Score distillation (SDS, G-HOP's one-step x0 variant): noise the current interaction grid to a
random t, let the guided denoiser predict x0, decode it, and pull the current grid towards that
prediction with weight w(t) = sqrt(1 - abar) sqrt(abar). The targets carry no gradient; the
object term reaches the object's pose through `grid_sample`, the hand term the articulation
through the skeletal field.

Likelihood score (G-HOP Eq. 3): over timesteps t and noises eps, with w = 1 - abar,
g = clip(w (eps_hat - eps), +-0.5), score = 0.5 sum g^2 averaged; lower is more plausible.
Every grid is scored with the same (t, eps) pairs, so differences between grids are not noise
of the estimate, and a grid's score does not depend on what it is batched with.

    targets = sds_targets(prior, object_grid, field, ["mug"] * B, keys=[(seed, i, k) for i in range(B)])
    scores = likelihood_score(prior, x, ["mug"] * B)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hoitool.prior.model import InteractionPrior, field_to_x
from hoitool.utils.seeding import torch_generator


@dataclass
class GuidanceConfig:
    guidance: float = 4.0
    """Classifier-free guidance scale."""
    respaced: int = 100
    """Timesteps are drawn from this many evenly spaced steps of the training schedule."""
    t_min: int = 25
    """Smallest respaced step drawn by SDS; the largest is 25-75, set by how solid the object is."""
    hand_weight: float = 5.0
    """Hand term relative to the object term (G-HOP: 0.5 x 10). Both terms are MSEs in the model's
    [-1, 1] channel units: the object SDF / 0.2 n units, the hand field / 0.12 x 2 - 1. In raw
    squared-distance units (n^2) the same hand term would be (2 / 0.12)^2 ~ 278x smaller; hoitool
    keeps the normalised units so that the two terms compare like with like."""
    scales: int = 5
    """Object grid compared at 64, 32, 16, 8, 4 (average pooling)."""


@dataclass
class SDSTarget:
    object_grid: torch.Tensor
    """(B, 1, 64, 64, 64) decoded x0 prediction, [-1, 1]."""
    field_x: torch.Tensor
    """(B, 20, r, r, r) predicted hand channels mapped to [-1, 1] (field_to_x)."""
    weight: torch.Tensor
    """(B,) w(t)."""
    t: torch.Tensor
    """(B,) timestep of the training schedule (0-999)."""


def alphas_cumprod(prior: InteractionPrior) -> torch.Tensor:
    return prior.alphas_cumprod().to(prior.device)


def respaced(prior: InteractionPrior, k: torch.Tensor, n: int) -> torch.Tensor:
    """Training-schedule timesteps of respaced steps k (of n)."""
    return (k * (prior.schedule.num_train_timesteps // n)).long()


def max_step(object_grid: torch.Tensor, cfg: GuidanceConfig) -> torch.Tensor:
    """(B,) largest respaced SDS step: 25 % of the schedule for a grid with no interior (min
    above -0.2), rising to 75 % for a solid one (min -1), as in G-HOP."""
    a = ((object_grid.flatten(1).amin(1) + 0.2) / -0.8).clamp(0, 1)
    return (cfg.respaced * (0.25 + 0.5 * a)).round().long().clamp_min(cfg.t_min)


def _noisy(prior: InteractionPrior, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor):
    ab = alphas_cumprod(prior)[t].reshape(-1, 1, 1, 1, 1)
    return ab.sqrt() * x + (1 - ab).sqrt() * eps, ab


@torch.no_grad()
def sds_targets(prior: InteractionPrior, object_grid: torch.Tensor, field: torch.Tensor, categories: list[str],
                keys: list[tuple], cfg: GuidanceConfig | None = None) -> SDSTarget:
    """One SDS query for B grids.

    Args:
        object_grid: (B, 1, 64, 64, 64) current object grids in [-1, 1].
        field: (B, 20, r, r, r) current hand fields (squared n units).
        keys: per grid, the keys its t and noise are drawn from (e.g. (seed, grasp, query)).
    """
    cfg = cfg or GuidanceConfig()
    dev = prior.device
    B = object_grid.shape[0]
    x = prior.pack(prior.vqvae.encode(object_grid), field)
    hi = max_step(object_grid, cfg).cpu()
    ks, eps = [], []
    for i, key in enumerate(keys):
        g = torch_generator(*key)
        ks.append(int(torch.randint(cfg.t_min, int(hi[i]) + 1, (1,), generator=g)))
        eps.append(torch.randn(x.shape[1:], generator=g))
    t = respaced(prior, torch.tensor(ks), cfg.respaced).to(dev)
    eps = torch.stack(eps).to(dev)
    xt, ab = _noisy(prior, x, t, eps)
    ctx, null = prior.context(categories), prior.context([""] * B)
    e = prior.guided_eps(xt, t, ctx, null, cfg.guidance)
    x0 = ((xt - (1 - ab).sqrt() * e) / ab.sqrt()).clamp(-prior.norm.clip, prior.norm.clip)
    z0, f0 = prior.unpack(x0)
    grid0 = prior.vqvae.decode_latent(z0).clamp(-1, 1)
    w = ((1 - ab).sqrt() * ab.sqrt()).flatten()
    return SDSTarget(grid0, field_to_x(f0), w, t)


def multiscale_mse(a: torch.Tensor, b: torch.Tensor, scales: int = 5) -> torch.Tensor:
    """(B,) sum over scales of the mean squared difference of (B, 1, R, R, R) grids, each scale
    average-pooled by 2 from the previous."""
    total = a.new_zeros(a.shape[0])
    for s in range(scales):
        if s:
            a, b = F.avg_pool3d(a, 2), F.avg_pool3d(b, 2)
        total = total + ((a - b) ** 2).flatten(1).mean(1)
        if a.shape[-1] <= 1:
            break
    return total


def sds_loss(object_grid: torch.Tensor, field: torch.Tensor, target: SDSTarget, cfg: GuidanceConfig | None = None) -> torch.Tensor:
    """(B,) w(t) [multi-scale MSE(object grid, target) + hand_weight MSE(hand channels, target)]."""
    cfg = cfg or GuidanceConfig()
    obj = multiscale_mse(object_grid, target.object_grid, cfg.scales)
    hand = ((field_to_x(field) - target.field_x) ** 2).flatten(1).mean(1)
    return target.weight * (obj + cfg.hand_weight * hand)


def rank_pairs(steps: int, noises: int, shape: tuple, respaced_n: int = 100, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The (respaced step, noise) pairs of the likelihood score: `steps` steps evenly covering the
    schedule (centres of equal strata) x `noises` noises, shared by every grid."""
    k = ((torch.arange(steps) + 0.5) * respaced_n / steps).long().clamp(0, respaced_n - 1)
    g = torch_generator(seed, "rank")
    eps = torch.randn((steps, noises) + tuple(shape), generator=g)
    return k, eps


@torch.no_grad()
def likelihood_score(prior: InteractionPrior, x: torch.Tensor, categories: list[str], steps: int = 10, noises: int = 1,
                     guidance: float = 4.0, respaced_n: int = 100, seed: int = 0,
                     progress=None) -> torch.Tensor:
    """(B,) G-HOP's grasp score of interaction grids x (B, 23, r, r, r); lower = more plausible.

    The paper averages 100 steps x 5 noises; `steps` x `noises` trade accuracy for time.
    """
    dev = prior.device
    B = x.shape[0]
    ks, eps = rank_pairs(steps, noises, x.shape[1:], respaced_n, seed)
    ctx, null = prior.context(categories), prior.context([""] * B)
    ac = alphas_cumprod(prior)
    total = torch.zeros(B, device=dev)
    for a, k in enumerate(ks):
        t = respaced(prior, k, respaced_n).to(dev)
        w = 1 - ac[t]
        for j in range(noises):
            e = eps[a, j].to(dev).expand_as(x)
            xt, _ = _noisy(prior, x, t.expand(B), e)
            e_hat = prior.guided_eps(xt, t.expand(B), ctx, null, guidance)
            g = (w * (e_hat - e)).clamp(-0.5, 0.5)
            total += 0.5 * (g ** 2).flatten(1).sum(1)
            if progress is not None:
                progress(B)
    return total / (steps * noises)
