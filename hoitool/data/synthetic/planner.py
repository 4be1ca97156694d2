"""An optimisation-based grasp planner on the hand model and an object's SDF.

Each candidate starts from its own random approach: a surface point drawn by area with free
space along its normal (the outside of a cup's wall, not its inside), the palm facing it at
a small standoff with a random roll, a half-open hand and a random hand shape. Adam then
optimises the hand's rotation, translation and anatomical finger angles against
    contact attraction (finger pads and palm pulled onto the surface, robust to fingers that
    cannot reach, the thumb weighted most) + penetration repulsion (squared depth of a dense
    sampling of the hand surface inside the object) + a pose prior (joint limits and a small
    pull to the rest pose),
with signed distances from the object's 64^3 grid (trilinear, differentiable). Candidates
are kept when the exact mesh distances pass the quality gates of `PlannerConfig`.

All candidates of an object are optimised together; candidate i's initialisation depends
only on (seed, object key, i), so results do not depend on the batch size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
import trimesh

from hoitool.geometry.grid import SDFVolume
from hoitool.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from hoitool.hand.keypoints import FINGERS
from hoitool.hand.model import HandModel, HandParams
from hoitool.hand.prior import PosePrior
from hoitool.losses.contact import net_contact_normal, zone_attraction, zone_closest, zone_distances
from hoitool.metrics.grasp import ContactQuality, contact_quality
from hoitool.losses.penetration import penetration_loss
from hoitool.utils.seeding import numpy_rng, torch_generator


@dataclass
class PlannerConfig:
    """Settings of the synthetic grasp planner."""

    iterations: int = 120
    """Adam steps per batch of candidates."""
    lr_rotation: float = 0.02
    """Adam step for the hand rotation (radians)."""
    lr_translation: float = 0.002
    """Adam step for the hand translation (metres)."""
    lr_pose: float = 0.04
    """Adam step for the finger angles (radians)."""
    standoff_m: tuple[float, float] = (0.005, 0.025)
    """Initial gap between palm and surface, drawn uniformly."""
    clearance_m: float = 0.08
    """Approach points need this much free space along their normal."""
    closure: tuple[float, float] = (0.05, 0.35)
    """Initial finger closure (0 flat, 1 fist), drawn uniformly."""
    betas_std: float = 0.7
    """Standard deviation of the random hand shape (clipped to +-2)."""
    contact_sigma_m: float = 0.02
    """Scale of the robust contact attraction."""
    w_contact: float = 1.0
    w_thumb: float = 4.0
    """Relative weight of the thumb pad's attraction (other pads: 1, 1, 0.7, 0.5)."""
    thumb_sigma_m: float = 0.02
    """Scale of the thumb's attraction."""
    w_palm: float = 0.3
    w_penetration: float = 30.0
    """Weight of the squared penetration depth, per cm^2."""
    w_limits: float = 10.0
    w_rest: float = 0.01
    surface_samples: int = 1500
    """Hand surface points checked for penetration (vertices alone miss thin walls)."""
    w_balance: float = 0.0
    """Weight of the net contact normal (a force-closure proxy); off by default: on the
    synthetic categories it lowered the acceptance rate (see the README)."""
    balance_sigma_m: float = 0.005
    # quality gates, checked on exact mesh distances
    max_penetration_m: float = 0.005
    """Reject when a hand vertex is deeper than this inside the object, or an object surface
    point deeper than this inside the hand."""
    contact_threshold_m: float = 0.005
    """A finger touches when one of its vertices is this close to the surface, or inside."""
    min_fingers: int = 3
    """Keep grasps with at least this many fingers touching, the thumb among them."""
    opposition_cos: float = -0.3
    """The thumb's contact normal must oppose another touching zone's (cosine below this)."""


@dataclass
class GraspBatch:
    """Accepted grasps of one object (hand parameters in the object frame) with their quality."""

    params: HandParams
    quality: ContactQuality
    """Exact contact figures of the kept grasps (as checked by the gates)."""
    candidates: int = 0
    """How many candidates were optimised to get these."""
    rejected: dict = field(default_factory=dict)
    """Rejection counts by reason."""
    passed: int = 0
    """How many candidates passed every gate (the first `n` of them are kept)."""


class GraspPlanner:
    """Plans grasps on objects with one hand model (built once, reused for many objects)."""

    def __init__(self, hand: HandModel, config: PlannerConfig | None = None):
        self.hand = hand
        self.cfg = config or PlannerConfig()
        self.prior = PosePrior.from_hand(hand)
        md = hand.metadata
        zones = [md.contact_zones[f] for f in FINGERS] + [md.contact_zones["palm"]]
        self.zone_vertices = np.unique(np.concatenate(zones))
        local = {int(v): i for i, v in enumerate(self.zone_vertices)}
        self.zone_index = _pad([np.array([local[int(v)] for v in z]) for z in zones])  # into zone_vertices
        v = hand.v_template.detach().numpy()
        J = hand.rest_joints()[0].detach().numpy()
        self.palm_centre_h = v[md.contact_zones["palm"]].mean(0)
        self.palm_normal_h = md.palm_normal
        axis = J[4] - J[0]
        axis -= (axis @ md.palm_normal) * md.palm_normal
        self.finger_axis_h = axis / np.linalg.norm(axis)
        self.zone_weights = torch.tensor([self.cfg.w_thumb, 1.0, 1.0, 0.7, 0.5, 0.0])
        # a dense sampling of the hand surface (~3 mm apart) for the penetration term, so thin
        # object walls cannot slip between vertices
        rest = trimesh.Trimesh(v, hand.faces.numpy(), process=False)
        pts, fi = trimesh.sample.sample_surface_even(rest, self.cfg.surface_samples, seed=0)
        bary = trimesh.triangles.points_to_barycentric(rest.triangles[fi], pts)
        # one sparse (Z + P, V) matrix gives the zone vertices and the dense samples from vertices
        nz = len(self.zone_vertices)
        rows = np.concatenate([np.arange(nz), np.repeat(np.arange(len(fi)) + nz, 3)])
        cols = np.concatenate([self.zone_vertices, rest.faces[fi].reshape(-1)])
        vals = np.concatenate([np.ones(nz), bary.reshape(-1)])
        self.query_matrix = torch.sparse_coo_tensor(torch.as_tensor(np.stack([rows, cols])), torch.as_tensor(vals, dtype=torch.float32),
                                                    (nz + len(fi), len(v)), check_invariants=True).coalesce()
        self.n_zone_points = nz

    # -- initialisation ---------------------------------------------------------------------
    def _approach_point(self, mesh: trimesh.Trimesh, sdf: SDFVolume, areas: np.ndarray, rng: np.random.Generator,
                        tries: int = 20) -> tuple[np.ndarray, np.ndarray]:
        """A surface point (by area) with free space along its normal for the hand: the open
        side of a wall, not the inside of a cup. Falls back to the last draw."""
        free = torch.linspace(0.01, self.cfg.clearance_m, 8)
        for _ in range(tries):
            f = rng.choice(len(areas), p=areas)
            a, b = rng.random(2)
            if a + b > 1:
                a, b = 1 - a, 1 - b
            tri = mesh.vertices[mesh.faces[f]]
            p = tri[0] + a * (tri[1] - tri[0]) + b * (tri[2] - tri[0])
            n = mesh.face_normals[f]
            ray = torch.as_tensor(p + free.numpy()[:, None] * n, dtype=torch.float32)[None]
            if (sdf(ray) > 0.005).all():
                break
        return p, n

    def _initial(self, mesh: trimesh.Trimesh, sdf: SDFVolume, seed: int, key: str, ids: range):
        """Per candidate: the palm facing an open surface point at a small standoff, a random
        roll about the normal, a half-open hand and a random hand shape."""
        cfg = self.cfg
        areas = mesh.area_faces / mesh.area_faces.sum()
        R0, t0, q0, betas = [], [], [], []
        src = np.stack([self.palm_normal_h, self.finger_axis_h, np.cross(self.palm_normal_h, self.finger_axis_h)], 1)
        for i in ids:
            rng = numpy_rng(seed, key, i)
            p, n = self._approach_point(mesh, sdf, areas, rng)
            tangent = np.cross(n, rng.normal(size=3))
            tangent /= np.linalg.norm(tangent)
            dst = np.stack([-n, tangent, np.cross(-n, tangent)], 1)
            R = dst @ src.T
            t = p + rng.uniform(*cfg.standoff_m) * n - R @ self.palm_centre_h
            g = torch_generator(seed, key, i)
            closure = torch.empty(1, 1).uniform_(*cfg.closure, generator=g)
            q0.append(self.prior.to_anatomical(self.prior.sample(1, g, closure=closure))[0])
            betas.append((cfg.betas_std * torch.randn(10, generator=g)).clamp(-2, 2))
            R0.append(R)
            t0.append(t)
        return (torch.as_tensor(np.stack(R0), dtype=torch.float32), torch.as_tensor(np.stack(t0), dtype=torch.float32),
                torch.stack(q0), torch.stack(betas))

    # -- optimisation -----------------------------------------------------------------------
    def optimise(self, mesh: trimesh.Trimesh, sdf: SDFVolume, seed: int, key: str, ids: range) -> HandParams:
        """Optimise candidates `ids` of one object; returns their hand parameters (object frame)."""
        cfg = self.cfg
        R0, t0, q0, betas = self._initial(mesh, sdf, seed, key, ids)
        B = len(ids)
        omega = torch.zeros(B, 3, requires_grad=True)
        t = t0.clone().requires_grad_(True)
        q = q0.clone().requires_grad_(True)
        opt = torch.optim.Adam([{"params": [omega], "lr": cfg.lr_rotation}, {"params": [t], "lr": cfg.lr_translation},
                                {"params": [q], "lr": cfg.lr_pose}])
        zero3 = torch.zeros(B, 3)
        zw = self.zone_weights.clone()
        zw[-1] = cfg.w_palm
        sigma = torch.full((len(zw),), cfg.contact_sigma_m)
        sigma[0] = cfg.thumb_sigma_m
        for _ in range(cfg.iterations):
            opt.zero_grad()
            hp = self.prior.from_anatomical(q)
            v_h = self.hand(global_orient=zero3, hand_pose=hp, betas=betas, transl=zero3).vertices
            R = axis_angle_to_matrix(omega) @ R0
            v = v_h @ R.transpose(1, 2) + t[:, None]
            pts = self._query_points(v)
            d_all = sdf(pts)
            d, pz_all = d_all[:, :self.n_zone_points], pts[:, :self.n_zone_points]
            loss = (cfg.w_contact * zone_attraction(d, self.zone_index, sigma, zw)
                    + cfg.w_penetration * penetration_loss(d_all[:, self.n_zone_points:] * 100.0)
                    + cfg.w_limits * self.prior.limit_violation(hp)
                    + cfg.w_rest * (q ** 2).sum((1, 2)))
            if cfg.w_balance > 0:
                idx = zone_closest(d.detach(), self.zone_index)  # (B, Z)
                pz = torch.gather(pz_all, 1, idx[..., None].expand(-1, -1, 3))
                loss = loss + cfg.w_balance * net_contact_normal(zone_distances(d, self.zone_index), sdf.normals(pz), cfg.balance_sigma_m)
            loss.sum().backward()
            opt.step()
        with torch.no_grad():
            R = axis_angle_to_matrix(omega) @ R0
            hp = self.prior.clamp(self.prior.from_anatomical(q))
            J0 = self.hand.rest_joints(betas)[:, 0]
            transl = t - J0 + (R @ J0[:, :, None])[..., 0]
            return HandParams(matrix_to_axis_angle(R), hp, betas, transl, self.hand.side)

    def _query_points(self, v: torch.Tensor) -> torch.Tensor:
        """(B, Z + P, 3): the contact-zone vertices, then the dense surface samples."""
        B, V, _ = v.shape
        out = torch.sparse.mm(self.query_matrix, v.permute(1, 0, 2).reshape(V, B * 3))
        return out.reshape(-1, B, 3).permute(1, 0, 2)

    def evaluate(self, mesh: trimesh.Trimesh, params: HandParams, object_in_hand: bool | np.ndarray = True) -> ContactQuality:
        """Exact quality of grasps (see hoitool.metrics.grasp)."""
        return contact_quality(self.hand, mesh, params, self.cfg.contact_threshold_m, self.cfg.opposition_cos,
                               object_in_hand=object_in_hand)

    def plan(self, mesh: trimesh.Trimesh, sdf: SDFVolume, n: int, seed: int, key: str,
             batch: int = 32, max_candidates: int = 256) -> GraspBatch:
        """Plan until `n` grasps pass the gates (or `max_candidates` were tried)."""
        cfg = self.cfg
        kept: list[HandParams] = []
        kept_quality: list[ContactQuality] = []
        tried = 0
        rejected = {"penetration": 0, "no_thumb": 0, "too_few_fingers": 0, "no_opposition": 0, "object_in_hand": 0}
        while sum(p.batch_size for p in kept) < n and tried < max_candidates:
            # size the next batch from the acceptance seen so far on this object
            have = sum(p.batch_size for p in kept)
            if tried:
                rate = max(have / tried, 0.05)
                batch = int(np.clip(np.ceil((n - have) / rate * 1.2), 8, 64))
            ids = range(tried, min(tried + batch, max_candidates))
            params = self.optimise(mesh, sdf, seed, key, ids)
            tried = ids.stop
            qual = self.evaluate(mesh, params, object_in_hand=False)
            fing = qual.fingers
            # gates in order; a candidate is counted under the first one it fails
            checks = [("penetration", qual.penetration_m <= cfg.max_penetration_m), ("no_thumb", fing[:, 0]),
                      ("too_few_fingers", fing.sum(1) >= cfg.min_fingers), ("no_opposition", qual.opposed)]
            alive = np.ones(len(ids), dtype=bool)
            for name, ok in checks:
                rejected[name] += int((alive & ~ok).sum())
                alive &= ok
            inside = np.zeros(len(ids))
            if alive.any():  # the slowest check, only for grasps that passed the others
                inside = self.evaluate(mesh, params, object_in_hand=alive).object_in_hand_m
                ok = ~(inside > cfg.max_penetration_m)
                rejected["object_in_hand"] += int((alive & ~ok).sum())
                alive &= ok
            good = np.nonzero(alive)[0]
            if len(good):
                kept.append(params[torch.as_tensor(good)])
                kept_quality.append(ContactQuality(qual.penetration_m[good], inside[good], fing[good],
                                                   qual.palm[good], qual.opposed[good], qual.nearest_m[good]))
        if not kept:
            empty = HandParams.zeros(0, self.hand.side)
            none = ContactQuality(np.zeros(0), np.zeros(0), np.zeros((0, 5), bool), np.zeros(0, bool), np.zeros(0, bool), np.zeros(0))
            return GraspBatch(empty, none, tried, rejected, 0)
        quality = ContactQuality(*(np.concatenate([getattr(q, f.name) for q in kept_quality])[:n]
                                   for f in dataclasses.fields(ContactQuality)))
        return GraspBatch(HandParams.cat(kept)[:n], quality, tried, rejected, sum(p.batch_size for p in kept))


def _pad(groups: list[np.ndarray]) -> torch.Tensor:
    """(Z, K) index tensor, each group padded by repeating its own entries."""
    k = max(len(g) for g in groups)
    return torch.as_tensor(np.stack([np.resize(g, k) for g in groups]), dtype=torch.long)
