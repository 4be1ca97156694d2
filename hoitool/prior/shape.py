"""Object shapes drawn from the prior for a given hand: DDIM with the hand channels inpainted.

The hand field channels of the interaction grid are fixed to the given hand's field: at every
DDIM step the sampled hand channels are replaced by the known ones noised to that step's level
(sqrt(abar) x_known + sqrt(1 - abar) eps, RePaint-style replacement), and at the end by the known
channels themselves; only the object latent is sampled. Each decoded object is a mesh in the
hand frame h (the hand's own frame, zero global rotation and translation), which the hand's
pose maps to wherever the hand is (e.g. the camera frame of a photo).

    prior = load_prior()
    res = sample_shapes_for_hand(prior, "mug", hand, params, ShapeConfig(samples=8, steps=50))
    res.objects[i]                # trimesh in h (metres), or None
    res.placed(hand, params)      # the same meshes in the frame `params` puts the hand in
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import trimesh

from hoitool.errors import InputError
from hoitool.geometry.grid import LATENT_RES, nTh_from_joints
from hoitool.geometry.transforms import invert_transform
from hoitool.hand.field import hand_field
from hoitool.hand.model import HandModel, HandParams, hand_fingerprint
from hoitool.prior.model import OBJECT_CHANNELS, InteractionPrior, ddim_scheduler
from hoitool.prior.sample import grid_to_mesh
from hoitool.utils.seeding import torch_generator


@dataclass
class ShapeConfig:
    """Settings of drawing object shapes from the prior for a fitted hand."""

    samples: int = 8
    """Object shapes drawn; the best by mask agreement is used."""
    steps: int = 50
    """DDIM steps."""
    guidance: float = 4.0
    """Classifier-free guidance scale of the category prompt."""
    seed: int = 0
    batch_size: int = 8
    """Samples denoised at once (sample i depends only on (seed, i), not on the batch)."""

    def __post_init__(self):
        for k in ("samples", "steps", "batch_size"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"ShapeConfig.{k} must be at least 1, got {getattr(self, k)}")


@dataclass
class HandShapes:
    """Object shapes sampled for one hand (B samples)."""

    category: str
    x: torch.Tensor
    """(B, 23, 16, 16, 16) sampled interaction grids (hand channels = the given hand's)."""
    field: torch.Tensor
    """(1, 20, 16, 16, 16) the given hand's field (squared n units, clamped at 0.12)."""
    object_grid: torch.Tensor
    """(B, 64, 64, 64) decoded object SDF in [-1, 1] (x 4 cm) in the frame n."""
    hTn: torch.Tensor
    """(4, 4) grid frame n -> hand frame h."""
    objects: list[trimesh.Trimesh | None]
    """Object surfaces in h (metres); None where the grid has no zero crossing."""

    def placed(self, hand: HandModel, params: HandParams, scale: float = 1.0) -> list[trimesh.Trimesh | None]:
        """The objects in the frame `params` (one hand) puts the hand in, optionally scaled by
        `scale` about that frame's origin (the camera centre, for reconstruct's hand scale)."""
        with torch.no_grad():
            oTh = hand.frame_from_hand(params.to(hand.device))[0].cpu().double().numpy()
        T = np.diag([scale, scale, scale, 1.0]) @ oTh
        out = []
        for m in self.objects:
            if m is None:
                out.append(None)
                continue
            c = m.copy()
            c.apply_transform(T)
            out.append(c)
        return out


def prior_category(prior: InteractionPrior, name: str) -> str:
    """The prior's category for a name or synonym; InputError naming the known categories and the
    nearest (by text embedding, else by spelling) when the prior was not trained on it."""
    from hoitool.data.vocab import canonical_category

    known = list(prior.categories)
    if not known:
        raise InputError(f"the prior {getattr(prior, 'source', '')} lists no training categories: it cannot draw a shape for {name!r}")
    canon = canonical_category(name) or name.strip().lower()
    if canon in known:
        return canon
    near = _nearest(prior, canon, known)
    raise InputError(f"the prior does not know the category {name!r} (nearest: {near}); it knows {', '.join(known)}")


def prior_hand_record(prior: InteractionPrior) -> dict:
    """The hand model the prior was trained with, as its model file records it (load_prior keeps
    it as `prior.hand`): {"source": ..., "fingerprint": ...}; files written before the fingerprint
    was exported record the source alone."""
    rec = getattr(prior, "hand", None)
    return dict(rec) if isinstance(rec, dict) else ({"source": rec} if rec else {})


def check_shape_prior(prior: InteractionPrior, hand: HandModel) -> None:
    """InputError (one line) when the prior cannot draw shapes for `hand` (a right hand): trained
    with another hand model (by the recorded fingerprint, else by the recorded source: MANO or not,
    and which), or on interaction grids of another resolution than the hand field's."""
    src = getattr(prior, "source", "the prior")
    r = 64 // prior.vqvae.config.downsampling
    hand_channels = prior.unet.config.in_channels - OBJECT_CHANNELS
    if r != LATENT_RES or hand_channels != 20:
        raise InputError(f"{src} has {hand_channels} hand channels on {r}^3 grids, but --shape prior fills in a hand field of "
                         f"20 channels on {LATENT_RES}^3: pass a G-HOP prior trained by this hoitool (--model)")
    rec = prior_hand_record(prior)
    fp, was = rec.get("fingerprint"), rec.get("source")
    if fp:
        other = fp != hand_fingerprint(hand)
    elif was:  # a MANO source names its folder, which may have moved: MANO against MANO cannot be told apart
        other = str(was) != hand.source and not (str(was).startswith("MANO") and hand.is_mano)
    else:
        return
    if other:
        raise InputError(f"{src} was trained with the hand model '{was or 'fingerprint ' + fp}', but this run uses "
                         f"'{hand.source}': set HOITOOL_MANO_DIR as for its training (unset for the bundled open hand), "
                         "or pass another --model")


def _nearest(prior: InteractionPrior, name: str, known: list[str]) -> str:
    from hoitool.models.text import prompt_for

    try:
        e = prior.text.encode([prompt_for(name)] + [prompt_for(k) for k in known])
        e = torch.nn.functional.normalize(e, dim=-1)
        return known[int((e[1:] @ e[0]).argmax())]
    except Exception:  # noqa: BLE001 - no text encoder at hand: fall back to spelling
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.0)
        return close[0] if close else known[0]


@torch.no_grad()
def inpaint_hand_sample(prior: InteractionPrior, category: str, field: torch.Tensor, n: int, steps: int = 50,
                        guidance: float = 4.0, seed: int = 0, batch_size: int = 8,
                        progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """DDIM samples x0 (n, 23, r, r, r) whose hand channels are `field` (1, 20, r, r, r), squared n
    units; sample i depends only on (seed, i). The known channels replace the sampled ones at
    every step, noised to the level of the step they enter (the object latent is never replaced).

    Sample i's generator (CPU) gives, in order, its start noise (C, r, r, r), whose hand channels
    are the known channels' noise at the first step, then the hand channels' noise (C - 3, r, r, r)
    of each later step, drawn when that step is taken: memory does not grow with the steps."""
    dev = prior.device
    prior.unet.eval()
    r = 64 // prior.vqvae.config.downsampling
    if field.shape[-1] != r:
        raise ValueError(f"hand field of resolution {field.shape[-1]}, the prior's grid has {r}")
    C = prior.unet.config.in_channels
    shape, hand_shape = (C, r, r, r), (C - OBJECT_CHANNELS, r, r, r)
    known = prior.pack(torch.zeros(1, OBJECT_CHANNELS, r, r, r, device=dev), field.to(dev).float())[:, OBJECT_CHANNELS:]
    abar = prior.alphas_cumprod().to(dev)

    def noised(a: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return a.sqrt() * known + (1 - a).sqrt() * eps

    out, done = [], 0
    for s in range(0, n, batch_size):
        sched = ddim_scheduler(prior.schedule, prior.norm.clip)
        sched.set_timesteps(steps)
        ts = [int(t) for t in sched.timesteps]
        gens = [torch_generator(seed, "shape", i) for i in range(s, min(s + batch_size, n))]
        x = torch.stack([torch.randn(shape, generator=g) for g in gens]).to(dev)
        ctx, null = prior.context([category] * len(gens)), prior.context([""] * len(gens))
        x[:, OBJECT_CHANNELS:] = noised(abar[ts[0]], x[:, OBJECT_CHANNELS:])
        for k, t in enumerate(sched.timesteps):
            tt = torch.full((x.shape[0],), int(t), device=dev, dtype=torch.long)
            eps = prior.guided_eps(x, tt, ctx, null, guidance)
            x = sched.step(eps, t, x, eta=0.0).prev_sample
            if k + 1 < len(ts):  # the hand enters step k + 1 noised to that step's level
                hn = torch.stack([torch.randn(hand_shape, generator=g) for g in gens]).to(dev)
                x[:, OBJECT_CHANNELS:] = noised(abar[ts[k + 1]], hn)
            done += x.shape[0]
            if progress is not None:
                progress(done, n * len(ts))
        x[:, OBJECT_CHANNELS:] = known  # the sample's hand is the given hand
        out.append(x)
    return torch.cat(out)


def sample_shapes_for_hand(prior: InteractionPrior, category: str, hand: HandModel, params: HandParams,
                           cfg: ShapeConfig | None = None, progress: Callable[[int, int], None] | None = None) -> HandShapes:
    """Object shapes of `category` for one right hand `params` (its articulation and shape; the
    global rotation and translation are ignored: the shapes are in the hand frame h)."""
    cfg = cfg or ShapeConfig()
    if params.batch_size != 1:
        raise ValueError(f"one hand at a time, got {params.batch_size}")
    if params.side != "right":
        raise InputError("the prior's interaction grids are of right hands: a prior shape for a left hand is not supported")
    check_shape_prior(prior, hand)
    params = params.to(hand.device)
    with torch.no_grad():
        field = hand_field(hand, params).float()
        local = HandParams(torch.zeros_like(params.global_orient), params.hand_pose, params.betas,
                           torch.zeros_like(params.transl), params.side)
        hTn = invert_transform(nTh_from_joints(hand(local).joints))[0].cpu()
    x = inpaint_hand_sample(prior, category, field, cfg.samples, cfg.steps, cfg.guidance, cfg.seed, cfg.batch_size, progress)
    grids = prior.decode(x).object_grid[:, 0].cpu()
    objects = [grid_to_mesh(g.numpy(), hTn.double().numpy()) for g in grids]
    return HandShapes(category, x.cpu(), field.cpu(), grids, hTn, objects)
