"""Grasp synthesis for any object mesh with the interaction prior (G-HOP section 3.2.2).

Per grasp: the object starts with its centroid at the grid frame's origin (8 cm in front of the
index knuckle) under a random rotation and offset, the hand at a relaxed pose. Stage 1 (SDS)
optimises the object's pose relative to the hand (6D rotation + translation) and the hand's
articulation against the prior by score distillation; stage 2 refines on the meshes (contact
attraction, penetration, damping). Grasps are then ranked: first those that hold (thumb opposing
another contact, shallow penetration), then those that only touch, then those that touch
nothing; within each group by the prior's likelihood score with penetration and contact terms
(`rank_score`).

All grasps of a call are optimised together, `batch_size` at a time; grasp i depends only on
(seed, i), and its loss is a sum of its own terms, so results do not depend on the batch size.

Speed (2 CPU cores): a diffusion query (encode, guided denoiser, decode) costs ~0.25 s per
grasp, and the 64^3 object grid with its gradient ~0.1 s. So SDS queries the prior every
`query_every` iterations (default 50: 10 queries in 500 iterations) and the iterations between
queries descend towards the latest prediction, with the object term evaluated on 4,096 random
points of the 64^3 grid plus the 16^3 block centres (pooled to 8^3 and 4^3). `query_every=1`
is G-HOP's one query per iteration.

    obj = GraspObject.from_mesh(mesh)                     # metric, validated mesh
    res = synthesise_grasps(prior, obj, "mug", GraspConfig(n=100))
    res.params          # HandParams (n) in the mesh's frame, metres
    res.score, res.order
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import trimesh

from hoitool.errors import InputError
from hoitool.geometry.grid import (
    GRID_RES, N_UNIT_M, OBJECT_CLAMP, canonical_sdf, grid_coords, nTh_from_joints, object_channel, query_grid,
)
from hoitool.geometry.rotations import matrix_to_axis_angle, matrix_to_rot6d, random_rotations, rot6d_to_matrix
from hoitool.geometry.sdf import winding_number
from hoitool.geometry.transforms import apply_transform, invert_transform, make_transform, transform_scale
from hoitool.hand.field import skeletal_field
from hoitool.hand.model import HandModel, HandParams
from hoitool.hand.prior import PosePrior
from hoitool.metrics.grasp import CONTACT_THRESHOLD_M
from hoitool.prior.guidance import GuidanceConfig, SDSTarget, likelihood_score, multiscale_mse, sds_targets
from hoitool.prior.model import InteractionPrior, field_to_x
from hoitool.utils.seeding import torch_generator

#: Largest object (bounding-box side, metres) one hand can hold; the grid spans +-0.3 m.
MAX_GRASP_EXTENT_M = 0.4
#: Meshes with more faces are refused (simplify them first).
MAX_FACES = 1_000_000
#: Share of probe points with an undecided winding number (0.2-0.8) above which a mesh is open.
OPEN_MESH_FRACTION = 0.02


@dataclass
class RankWeights:
    """The ranking score of a grasp (lower = better) is its tier plus, within the tier, a value in
    [0, 1): `likelihood` x its likelihood score's rank among the set (0 best, 1 worst) +
    `penetration` x (deepest hand vertex inside the object / `penetration_cm`, capped at 1) +
    `contact` x (share of the six zones, five fingers and palm, not touching). The tier puts
    every grasp that holds before every one that only touches, and both before those that touch
    nothing, whatever the prior says (bench_grasp.py measures what each part buys)."""

    likelihood: float = 0.4
    penetration: float = 0.3
    contact: float = 0.3
    penetration_cm: float = 1.0
    """Depth that counts fully, and the largest a holding grasp may have."""


@dataclass
class GraspConfig:
    n: int = 100
    steps: int = 500
    """SDS iterations (0: refinement only, from the random starts)."""
    query_every: int = 50
    """Iterations per diffusion query during SDS."""
    lr: float = 1e-2
    """AdamW, cosine to lr/100."""
    sds_weight: float = 10.0
    limit_weight: float = 1.0
    """Joint-limit violation (squared radians) during both stages."""
    fine_points: int = 4096
    refine_steps: int = 100
    refine_lr: float = 1e-3
    attraction_m: float = 0.05
    damping: float = 0.1
    """Weight of the MSE (cm^2, mean over vertices and x, y, z) to the refinement's starting vertices (G-HOP: 0.1)."""
    batch_size: int = 50
    seed: int = 0
    offset_m: float = 0.05
    rank_steps: int = 10
    rank_noises: int = 1
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    physical_rank: bool = True
    """Rank by `rank_score` (hold tier, likelihood, penetration, contact); False: by the likelihood alone."""
    rank_weights: RankWeights = field(default_factory=RankWeights)


@dataclass
class GraspObject:
    """An object prepared for grasping: the metric mesh, its canonical SDF and centroid."""

    mesh: trimesh.Trimesh
    sdf_u: torch.Tensor
    """(1, 1, R, R, R) signed distances in the unit-ball frame u."""
    uTo: torch.Tensor
    centroid: np.ndarray

    @classmethod
    def from_mesh(cls, mesh: trimesh.Trimesh, name: str = "mesh", res: int = GRID_RES) -> "GraspObject":
        check_graspable(mesh, name)
        sdf, uTo = canonical_sdf(mesh, res)
        c = mesh.center_mass if mesh.is_watertight and mesh.volume > 0 else mesh.bounds.mean(0)
        return cls(mesh, torch.as_tensor(sdf)[None, None], torch.as_tensor(uTo, dtype=torch.float32), np.asarray(c, dtype=np.float64))

    def sdf_m(self, points_o: torch.Tensor) -> torch.Tensor:
        """(B, N) signed distance in metres of points (B, N, 3) in the object frame."""
        uTo = self.uTo.to(points_o)
        return query_grid(self.sdf_u.to(points_o), apply_transform(uTo, points_o)) / transform_scale(uTo)[..., None]


def check_graspable(mesh: trimesh.Trimesh, name: str = "mesh") -> None:
    """Refuse meshes a hand cannot grasp or whose inside is undefined (one line, what to do)."""
    if len(mesh.faces) > MAX_FACES:
        raise InputError(f"{name} has {len(mesh.faces):,} faces (at most {MAX_FACES:,}): simplify it, e.g. with "
                         "trimesh's simplify_quadric_decimation, and retry")
    ext = float(mesh.extents.max())
    if ext > MAX_GRASP_EXTENT_M:
        raise InputError(f"{name} is {ext:.2f} m across: too large to hold in one hand (at most {MAX_GRASP_EXTENT_M} m); "
                         "check its units (--scale) or grasp a part of it")
    if not mesh.is_watertight:
        lo, hi = mesh.bounds
        probe = np.stack(np.meshgrid(*[np.linspace(a, b, 12) for a, b in zip(lo, hi)], indexing="ij"), -1).reshape(-1, 3)
        w = winding_number(mesh, probe)
        undecided = float(((w > 0.2) & (w < 0.8)).mean())
        if undecided > OPEN_MESH_FRACTION:
            raise InputError(f"{name} is not a closed surface ({100 * undecided:.0f}% of points inside its box are neither "
                             "inside nor outside): close its holes (e.g. trimesh.repair.fill_holes or a watertight remesh) and retry")


@dataclass
class GraspResult:
    params: HandParams
    """(n) right hands in the object's frame, metres."""
    hTo: torch.Tensor
    """(n, 4, 4) object frame -> hand frame h."""
    score: np.ndarray
    """(n,) ranking score (`rank_score`: hold tier + likelihood and contact terms), lower = better."""
    order: np.ndarray
    """Grasp indices from best to worst score."""
    category: str
    stage1_params: HandParams
    """The grasps after SDS, before refinement."""
    seconds: dict
    likelihood: np.ndarray | None = None
    """(n,) the prior's likelihood score alone (G-HOP Eq. 3), lower = more plausible."""
    tier: np.ndarray | None = None
    """(n,) 0 holds (thumb opposing another contact, penetration < 1 cm), 1 touches, 2 touches nothing."""


def rank_score(likelihood: np.ndarray, quality, weights: RankWeights | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(score, tier) of grasps from their likelihood scores (K,) and exact contact figures
    (`metrics.grasp.contact_quality`); see `RankWeights`."""
    from scipy.stats import rankdata

    w = weights or RankWeights()
    if min(w.likelihood, w.penetration, w.contact) < 0 or w.penetration_cm <= 0:
        raise ValueError(f"rank weights must be >= 0 and penetration_cm > 0, got {w}")
    lik = np.asarray(likelihood, dtype=np.float64)
    K = len(lik)
    pen_cm = np.nan_to_num(100 * np.asarray(quality.penetration_m, dtype=np.float64), nan=1e3)
    zones = np.concatenate([quality.fingers, quality.palm[:, None]], axis=1)
    touches = zones.any(1)
    if quality.nearest_m is not None:  # any hand vertex, not only the contact zones (the evaluation's contact)
        touches = touches | (np.asarray(quality.nearest_m) < CONTACT_THRESHOLD_M)
    holds = quality.fingers[:, 0] & quality.opposed & (pen_cm < w.penetration_cm)
    tier = np.where(holds, 0, np.where(touches, 1, 2))
    # average ranks: equal likelihoods get equal terms; NaN counts as the worst
    lik_rank = (rankdata(np.nan_to_num(lik, nan=np.inf), method="average") - 1) / max(K - 1, 1)
    within = (w.likelihood * lik_rank + w.penetration * np.minimum(pen_cm / w.penetration_cm, 1.0)
              + w.contact * (1.0 - zones.mean(1)))
    within = within / max(w.likelihood + w.penetration + w.contact, 1e-9)
    return tier + 0.999 * within, tier


def rank_grasps(hand: HandModel, mesh: trimesh.Trimesh, params: HandParams, likelihood: np.ndarray,
                weights: RankWeights | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(score, tier) of grasps `params` (right hands in the mesh's frame, metres) on `mesh`."""
    from hoitool.metrics.grasp import contact_quality

    q = contact_quality(hand, mesh, params.to(hand.device), object_in_hand=False)
    return rank_score(likelihood, q, weights)


def _cosine(it: int, total: int, lr: float) -> float:
    lo = lr / 100
    return lo + 0.5 * (lr - lo) * (1 + math.cos(math.pi * it / max(total, 1)))


def relaxed_pose(pose_prior: PosePrior, batch: int, closure: float = 0.3) -> torch.Tensor:
    """(batch, 15, 3) anatomical angles of a slightly curled hand: every flexion at `closure`
    of its range, no abduction or twist."""
    q = torch.zeros(15, 3)
    hi = pose_prior.limits[:, 0, 1].cpu()
    q[:, 0] = closure * hi
    return q[None].repeat(batch, 1, 1)


class _Batch(torch.nn.Module):
    """The variables of a batch of grasps: object pose in the hand frame and articulation."""

    def __init__(self, R: torch.Tensor, t_n: torch.Tensor, q: torch.Tensor):
        super().__init__()
        self.r6 = torch.nn.Parameter(matrix_to_rot6d(R))
        self.t_n = torch.nn.Parameter(t_n)
        self.q = torch.nn.Parameter(q)

    def hTo(self) -> torch.Tensor:
        return make_transform(rot6d_to_matrix(self.r6), self.t_n * N_UNIT_M)


class GraspSynthesiser:
    def __init__(self, prior: InteractionPrior, obj: GraspObject, category: str, cfg: GraspConfig, hand: HandModel | None = None):
        self.prior, self.obj, self.category, self.cfg = prior, obj, category, cfg
        dev = prior.device
        self.dev = dev
        self.hand = (hand or HandModel("right")).to(dev)
        if self.hand.side != "right":
            raise ValueError("grasp synthesis uses the right hand model")
        self.pose_prior = PosePrior.from_hand(self.hand).to(dev)
        self.betas = torch.zeros(1, 10, device=dev)
        self.nTh = nTh_from_joints(self.hand.rest_joints(self.betas))[0]
        self.hTn = invert_transform(self.nTh)
        self.sdf_u = obj.sdf_u.to(dev)
        self.uTo = obj.uTo.to(dev)
        pts = grid_coords(GRID_RES, device=dev)
        self.fine = pts.reshape(-1, 3)
        self.coarse = pts.reshape(16, 4, 16, 4, 16, 4, 3).mean((1, 3, 5)).reshape(-1, 3)  # 16^3 block centres
        md = self.hand.metadata
        zones = [np.asarray(md.contact_zones[k]) for k in ("thumb", "index", "middle", "ring", "little", "palm")]
        k = max(len(z) for z in zones)
        self.zones = torch.as_tensor(np.stack([np.resize(z, k) for z in zones]), device=dev)

    # -- geometry --------------------------------------------------------------------------
    def uTn(self, hTo: torch.Tensor) -> torch.Tensor:
        return self.uTo[None] @ invert_transform(hTo) @ self.hTn[None]

    def object_values(self, hTo: torch.Tensor, points_n: torch.Tensor) -> torch.Tensor:
        """(B, N) object channel values ([-1, 1]) at points (N, 3) of the frame n."""
        uTn = self.uTn(hTo)
        p = apply_transform(uTn, points_n[None].expand(hTo.shape[0], -1, -1))
        d = query_grid(self.sdf_u, p) / transform_scale(uTn)[:, None]
        return d.clamp(-OBJECT_CLAMP, OBJECT_CLAMP) / OBJECT_CLAMP

    def object_grid(self, hTo: torch.Tensor) -> torch.Tensor:
        return object_channel(self.sdf_u, self.uTn(hTo), GRID_RES)

    def hand_out(self, q: torch.Tensor):
        B = q.shape[0]
        return self.hand(hand_pose=self.pose_prior.from_anatomical(q), betas=self.betas.expand(B, -1))

    def field(self, keypoints_h: torch.Tensor) -> torch.Tensor:
        return skeletal_field(apply_transform(self.nTh[None].expand(keypoints_h.shape[0], -1, -1), keypoints_h))

    # -- stages ----------------------------------------------------------------------------
    def initial(self, idx: list[int]) -> _Batch:
        Rs, ts = [], []
        c_h = self.hTn[:3, 3].cpu()
        centroid = torch.as_tensor(self.obj.centroid, dtype=torch.float32)
        for i in idx:
            g = torch_generator(self.cfg.seed, "grasp-init", i)
            R = random_rotations(1, g)[0]
            off = (torch.rand(3, generator=g) * 2 - 1) * self.cfg.offset_m
            ts.append((c_h + off - R @ centroid) / N_UNIT_M)
            Rs.append(R)
        q = relaxed_pose(self.pose_prior, len(idx))
        return _Batch(torch.stack(Rs), torch.stack(ts), q).to(self.dev)

    def sds(self, var: _Batch, idx: list[int], progress: Callable[[int], None] | None = None) -> None:
        cfg = self.cfg
        if cfg.steps == 0:
            return
        opt = torch.optim.AdamW(var.parameters(), lr=cfg.lr, weight_decay=0.0)
        B = len(idx)
        cats = [self.category] * B
        target: SDSTarget | None = None
        coarse_t = None
        for it in range(cfg.steps):
            for gr in opt.param_groups:
                gr["lr"] = _cosine(it, cfg.steps, cfg.lr)
            if it % cfg.query_every == 0:
                with torch.no_grad():
                    hTo = var.hTo()
                    grid = self.object_grid(hTo)
                    fld = self.field(self.hand_out(var.q).keypoints)
                    query = it // cfg.query_every
                    target = sds_targets(self.prior, grid, fld, cats, [(cfg.seed, "sds", i, query) for i in idx], cfg.guidance)
                    coarse_t = torch.nn.functional.avg_pool3d(target.object_grid, 4)  # (B,1,16,16,16)
            g = torch_generator(cfg.seed, "sds-points", it)
            pick = torch.randint(0, self.fine.shape[0], (cfg.fine_points,), generator=g).to(self.dev)
            hTo = var.hTo()
            fine = self.object_values(hTo, self.fine[pick])
            fine_t = target.object_grid.flatten(1)[:, pick]
            coarse = self.object_values(hTo, self.coarse).reshape(B, 1, 16, 16, 16)
            obj = ((fine - fine_t) ** 2).mean(1) + multiscale_mse(coarse, coarse_t, 3)
            out = self.hand_out(var.q)
            hand = ((field_to_x(self.field(out.keypoints)) - target.field_x) ** 2).flatten(1).mean(1)
            self._step(opt, var, cfg.sds_weight * target.weight * (obj + cfg.guidance.hand_weight * hand), progress)

    def refine(self, var: _Batch, progress: Callable[[int], None] | None = None) -> None:
        cfg = self.cfg
        if cfg.refine_steps == 0:
            return
        opt = torch.optim.Adam(var.parameters(), lr=cfg.refine_lr)
        with torch.no_grad():
            start = self._vertices_o(var)
        cm = 100.0
        for _ in range(cfg.refine_steps):
            v = self._vertices_o(var)
            d = self.obj.sdf_m(v) * cm  # (B, V) cm
            zone = d.clamp_min(0)[:, self.zones].amin(-1)  # (B, 6) nearest vertex of each zone
            attract = torch.where(zone < cfg.attraction_m * cm, zone ** 2, torch.zeros_like(zone)).sum(1)
            pen = ((-d).clamp_min(0) ** 2).sum(1)
            damp = vertex_damping(v, start)
            self._step(opt, var, attract + pen + cfg.damping * damp, progress)

    def _step(self, opt, var: _Batch, loss: torch.Tensor, progress) -> None:
        """One optimiser step on the summed per-grasp losses (B,) plus the joint-limit term."""
        loss = loss + self.cfg.limit_weight * self.pose_prior.limit_violation(self.pose_prior.from_anatomical(var.q))
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
        if progress is not None:
            progress(loss.shape[0])

    def _vertices_o(self, var: _Batch) -> torch.Tensor:
        v_h = self.hand_out(var.q).vertices
        return apply_transform(invert_transform(var.hTo()), v_h)

    def params(self, var: _Batch) -> HandParams:
        """The grasps as hand parameters in the object frame (metres)."""
        with torch.no_grad():
            oTh = invert_transform(var.hTo())
            B = oTh.shape[0]
            R, t = oTh[:, :3, :3], oTh[:, :3, 3]
            J0 = self.hand.rest_joints(self.betas)[:, 0].expand(B, -1)
            transl = t + (R @ J0[..., None])[..., 0] - J0
            return HandParams(matrix_to_axis_angle(R), self.pose_prior.from_anatomical(var.q), self.betas.expand(B, -1).clone(),
                              transl, "right")


def vertex_damping(verts: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """(B,) MSE in cm^2 over vertices and coordinates of verts (B, V, 3) to start (B, V, 3), metres (G-HOP's damping)."""
    return ((100.0 * (verts - start)) ** 2).flatten(1).mean(1)


def interaction_grids(prior: InteractionPrior, hand: HandModel, obj: GraspObject, params: HandParams, batch_size: int = 25) -> torch.Tensor:
    """(B, 23, r, r, r) interaction grids (the prior's x) of right-hand grasps of an object."""
    from hoitool.data.interaction import record_grids
    from hoitool.hand.field import hand_field

    dev = prior.device
    xs = []
    with torch.no_grad():
        for s in range(0, params.batch_size, batch_size):
            p = params[s:s + batch_size].to(dev)
            rg = record_grids(hand, obj.sdf_u.to(dev), obj.uTo.to(dev), p)
            fld = hand_field(hand, rg.right_params)
            xs.append(prior.pack(prior.vqvae.encode(rg.object_grid[:, None]), fld))
    return torch.cat(xs)


def score_grasps(prior: InteractionPrior, hand: HandModel, obj: GraspObject, params: HandParams, category: str,
                 steps: int = 10, noises: int = 1, guidance: float = 4.0, batch_size: int = 25,
                 progress: Callable[[int], None] | None = None) -> np.ndarray:
    """(B,) likelihood scores of grasps (lower = more plausible)."""
    out = []
    for s in range(0, params.batch_size, batch_size):
        x = interaction_grids(prior, hand, obj, params[s:s + batch_size], batch_size)
        out.append(likelihood_score(prior, x, [category] * x.shape[0], steps, noises, guidance, progress=progress))
    return torch.cat(out).cpu().numpy().astype(np.float64)


def synthesise_grasps(prior: InteractionPrior, obj: GraspObject, category: str, cfg: GraspConfig | None = None,
                      hand: HandModel | None = None, progress: Callable[[int, int], None] | None = None) -> GraspResult:
    """n grasps of `obj`, optimised `cfg.batch_size` at a time, scored and ordered."""
    cfg = cfg or GraspConfig()
    syn = GraspSynthesiser(prior, obj, category, cfg, hand)
    total = cfg.n * (cfg.steps + cfg.refine_steps + cfg.rank_steps * cfg.rank_noises)
    done = 0

    def tick(k: int) -> None:
        nonlocal done
        done += k
        if progress is not None:
            progress(done, total)

    finals, firsts, hTos = [], [], []
    t0 = time.perf_counter()
    sds_s = refine_s = 0.0
    for s in range(0, cfg.n, cfg.batch_size):
        idx = list(range(s, min(cfg.n, s + cfg.batch_size)))
        var = syn.initial(idx)
        a = time.perf_counter()
        syn.sds(var, idx, tick)
        firsts.append(syn.params(var))
        b = time.perf_counter()
        syn.refine(var, tick)
        refine_s += time.perf_counter() - b
        sds_s += b - a
        finals.append(syn.params(var))
        hTos.append(var.hTo().detach())
    params = HandParams.cat(finals)
    c = time.perf_counter()
    likelihood = score_grasps(prior, syn.hand, obj, params, category, cfg.rank_steps, cfg.rank_noises, cfg.guidance.guidance,
                              batch_size=cfg.batch_size, progress=tick)
    if cfg.physical_rank:
        score, tier = rank_grasps(syn.hand, obj.mesh, params, likelihood, cfg.rank_weights)
    else:
        score, tier = likelihood, None
    rank_s = time.perf_counter() - c
    order = np.argsort(score, kind="stable")
    return GraspResult(params.to("cpu"), torch.cat(hTos).cpu(), score, order, category, HandParams.cat(firsts).to("cpu"),
                       {"sds": sds_s, "refine": refine_s, "rank": rank_s, "total": time.perf_counter() - t0}, likelihood, tier)


def infer_category(path: str, known: list[str]) -> tuple[str, str]:
    """(category, why) from a mesh path's file and folder names, else the unconditional prompt."""
    from pathlib import Path

    from hoitool.data.vocab import canonical_category

    p = Path(path)
    for part in [p.stem] + [q.name for q in p.parents][:3]:
        c = canonical_category(part)
        if c:
            note = "" if c in known else " (not a training category of this prior: nearest by text)"
            return c, f"from the name {part!r}{note}"
    return "", "no category in the file or folder names: using the prior without text (pass --category NAME)"
