"""A synthetic two-hand corpus: an optimisation planner on the hand model, both sides.

Hand-hand interactions start from a template of one interaction type, placed with one hand (the
base) at rest and the other facing it:

    palms_pressed      palms together, fingers flat, a small twist between the hands
    near_contact       palms facing 1-4 cm apart (a clap about to land); no contact is asked for
    interlaced         palms facing, shifted by half a finger, fingers curled between the other's
    fingertips         palms facing a hand-length apart, fingertip pads pulled together
    hand_over_hand     one palm on the back of the other hand, at a random angle
    holding_fingers    one hand closes around the other's four fingers
    holding_wrist      one hand closes around the other's wrist

(which hand is the base, the holder or on top is drawn per candidate). Adam then optimises both
hands' anatomical finger angles and the second hand's rotation and translation against
    attraction (robust pull between the zones the type names) + penetration (squared depth of
    each hand's vertices behind the other's nearest vertex, along that vertex's normal, both
    ways) + joint limits + a small pull to the initial articulation,
and candidates are kept when exact mesh measures pass `TwoHandConfig`'s gates: intersection
volume (winding numbers on a 2 mm grid), deepest vertex, and the distance between the hands
(touching for every type but near_contact, which must keep a gap).

Bimanual grasps: the one-hand grasp planner grasps a larger object (box, pan, kettle, bowl,
bottle, scaled to two-hand size) with the right hand, and with the left hand by planning a right
grasp on the mirrored object and mirroring it back; right and left grasps are paired when the
hands sit apart and do not collide.

Candidate i's initialisation depends only on (seed, key, i).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import trimesh

from hoitool.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from hoitool.hand.keypoints import FINGER_JOINTS, FINGERS
from hoitool.hand.mirror import mirror_params
from hoitool.hand.model import HandModel, HandParams
from hoitool.hand.prior import PosePrior
from hoitool.utils.seeding import numpy_rng, torch_generator

HAND_TYPES = ["palms_pressed", "near_contact", "interlaced", "fingertips", "hand_over_hand", "holding_fingers", "holding_wrist"]
OBJECT_TYPE = "bimanual_grasp"
INTERACTION_TYPES = HAND_TYPES + [OBJECT_TYPE]
#: Objects of the bimanual grasps and the factor that makes each two-hand size.
BIMANUAL_OBJECTS = {"box": 2.6, "pan": 1.0, "kettle": 1.3, "bowl": 1.6, "bottle": 1.3}


@dataclass
class TwoHandConfig:
    """Settings of the two-hand planner and its quality gates."""

    iterations: int = 100
    lr_rotation: float = 0.02
    lr_translation: float = 0.002
    lr_pose: float = 0.04
    contact_sigma_m: float = 0.02
    """Scale of the robust attraction."""
    w_attract: float = 1.0
    w_penetration: float = 30.0
    """Weight of the squared penetration depth, per cm^2."""
    w_limits: float = 10.0
    w_rest: float = 0.05
    w_gap: float = 30.0
    """near_contact: weight of the squared distance (cm) outside the wanted gap."""
    gap_m: tuple[float, float] = (0.008, 0.02)
    """near_contact: wanted distance between the hands."""
    betas_std: float = 0.7
    penetration_points: int = 260
    """Vertices of each hand checked against the other (every k-th vertex)."""
    # quality gates (exact, on the closed meshes)
    max_volume_cm3: float = 0.5
    """Largest intersection volume of the two hands."""
    max_depth_m: float = 0.005
    """Deepest vertex of either hand inside the other."""
    contact_m: float = 0.005
    """Touching: the surfaces come this close (or overlap within the gates above)."""
    near_gap_m: tuple[float, float] = (0.003, 0.025)
    """near_contact: the distance between the hands lies in this range."""
    volume_pitch_m: float = 0.002


@dataclass
class TwoHandBatch:
    right: HandParams
    left: HandParams
    types: list[str]
    quality: dict[str, np.ndarray]
    """Per kept pair: penetration_volume_cm3, penetration_depth_cm, distance_cm."""
    candidates: int
    rejected: dict[str, int] = field(default_factory=dict)
    passed: int = 0
    """Candidates that passed the gates (kept or not)."""


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _rot_about(axis: np.ndarray, angle: float) -> np.ndarray:
    return axis_angle_to_matrix(torch.as_tensor(_unit(axis) * angle, dtype=torch.float64)).numpy()


class _Geometry:
    """Rest-pose landmarks of one hand model: palm centre and frame (normal out of the palm,
    finger direction, side), zone vertex ids."""

    def __init__(self, hand: HandModel):
        md = hand.metadata
        v = hand.v_template.detach().double().numpy()
        J = hand.rest_joints()[0].detach().double().numpy()
        self.palm = md.contact_zones["palm"]
        self.pads = np.concatenate([md.contact_zones[f] for f in FINGERS])
        self.tips = [md.contact_zones[f] for f in FINGERS]
        self.centre = v[self.palm].mean(0)
        n = _unit(md.palm_normal.astype(np.float64))
        f = J[4] - J[0]
        self.finger = _unit(f - (f @ n) * n)
        self.normal = n
        self.side_axis = np.cross(n, self.finger)
        self.frame = np.stack([n, self.finger, self.side_axis], 1)
        four = [j for name in ("index", "middle", "ring", "little") for j in FINGER_JOINTS[name][:2]]
        self.fingers = np.nonzero(np.isin(md.vertex_joint, four))[0]
        along = (v - J[0]) @ self.finger
        self.wrist = np.nonzero((md.vertex_joint == 0) & (along < 0.035))[0]
        self.wrist_point = v[self.wrist].mean(0)
        self.everything = np.arange(len(v))
        self.finger_point = v[self.fingers].mean(0)


class TwoHandPlanner:
    """Plans two-hand interactions with a right and a left hand model."""

    def __init__(self, right: HandModel, left: HandModel, config: TwoHandConfig | None = None):
        self.hands = {"right": right, "left": left}
        self.cfg = config or TwoHandConfig()
        self.priors = {s: PosePrior.from_hand(h) for s, h in self.hands.items()}
        self.geo = {s: _Geometry(h) for s, h in self.hands.items()}
        step = max(1, right.num_vertices // self.cfg.penetration_points)
        self.query = torch.arange(0, right.num_vertices, step)

    # -- templates -----------------------------------------------------------------------
    def _template(self, kind: str, rng: np.random.Generator) -> dict:
        """Initial placement: base side, the other hand's rotation and translation in the base's
        rest frame (world = R v_h + t), closures, and the attraction pairs."""
        base = "right" if rng.random() < 0.5 else "left"
        other = "left" if base == "right" else "right"
        gb, go = self.geo[base], self.geo[other]
        twist = lambda deg: _rot_about(gb.normal, math.radians(rng.uniform(-deg, deg)))  # noqa: E731
        closure = {base: rng.uniform(0.0, 0.3), other: rng.uniform(0.0, 0.3)}
        pairs: list[tuple[str, np.ndarray, np.ndarray, float]] = []  # (source side, source ids, target ids on the other, weight)
        if kind in ("palms_pressed", "near_contact", "interlaced", "fingertips"):
            n_t, f_t = -gb.normal, twist(25 if kind != "interlaced" else 30) @ gb.finger
            gap = {"palms_pressed": rng.uniform(0.004, 0.012), "near_contact": rng.uniform(0.015, 0.04),
                   "interlaced": rng.uniform(0.025, 0.035), "fingertips": rng.uniform(0.07, 0.12)}[kind]
            target = gb.centre + gb.normal * gap
            if kind == "palms_pressed":
                closure = {base: rng.uniform(0.0, 0.15), other: rng.uniform(0.0, 0.15)}
                pairs = [(base, gb.palm, go.palm, 1.0), (other, go.palm, gb.palm, 1.0)]
            elif kind == "interlaced":
                target = target + gb.side_axis * rng.uniform(-0.012, 0.012)
                closure = {base: rng.uniform(0.45, 0.8), other: rng.uniform(0.45, 0.8)}
                pairs = [(base, gb.pads, go.everything, 1.0), (other, go.pads, gb.everything, 1.0)]
            elif kind == "fingertips":
                closure = {base: rng.uniform(0.05, 0.35), other: rng.uniform(0.05, 0.35)}
                on = [1.0, 1.0] + [float(rng.random() < 0.7) for _ in range(3)]
                pairs = [(base, gb.tips[k], go.tips[k], on[k]) for k in range(5)]
            else:  # near_contact
                closure = {base: rng.uniform(0.0, 0.3), other: rng.uniform(0.0, 0.3)}
        elif kind == "hand_over_hand":
            n_t = gb.normal
            f_t = _rot_about(gb.normal, rng.uniform(-math.pi / 2, math.pi / 2)) @ gb.finger
            target = gb.centre - gb.normal * rng.uniform(0.028, 0.038)
            closure = {base: rng.uniform(0.0, 0.4), other: rng.uniform(0.1, 0.5)}
            pairs = [(other, go.palm, gb.everything, 1.0), (other, go.pads, gb.everything, 0.3)]
        elif kind in ("holding_fingers", "holding_wrist"):
            # the other hand holds the base: its palm on the far side of the held part, its
            # fingers wrapping across the held part's long axis
            point = gb.finger_point if kind == "holding_fingers" else gb.wrist_point
            held = gb.fingers if kind == "holding_fingers" else gb.wrist
            s = 1.0 if rng.random() < 0.5 else -1.0  # from the palmar or the dorsal side
            n_t = -s * gb.normal
            f_t = (1.0 if rng.random() < 0.5 else -1.0) * gb.side_axis
            f_t = _rot_about(n_t, math.radians(rng.uniform(-20, 20))) @ f_t
            target = point + s * gb.normal * rng.uniform(0.02, 0.03)
            closure = {base: rng.uniform(0.0, 0.4), other: rng.uniform(0.45, 0.8)}
            pairs = [(other, go.palm, held, 1.0), (other, go.pads, held, 1.0), (other, go.tips[0], held, 2.0)]
        else:
            raise ValueError(f"unknown two-hand interaction type {kind!r}")
        # the other hand's rotation takes its (normal, finger) onto (n_t, f_t)
        f_t = _unit(f_t - (f_t @ n_t) * n_t)
        dst = np.stack([n_t, f_t, np.cross(n_t, f_t)], 1)
        R = dst @ go.frame.T
        t = target - R @ go.centre
        return {"base": base, "other": other, "R": R, "t": t, "closure": closure, "pairs": pairs}

    # -- optimisation ----------------------------------------------------------------------
    def optimise(self, kind: str, seed: int, key: str, ids: range) -> tuple[HandParams, HandParams]:
        """Optimise candidates `ids` of one interaction type; (right, left) in the base hand's frame."""
        cfg = self.cfg
        temps = [self._template(kind, numpy_rng(seed, key, kind, i)) for i in ids]
        B = len(ids)
        q0, betas = {s: [] for s in self.hands}, {s: [] for s in self.hands}
        for i, tp in zip(ids, temps):
            g = torch_generator(seed, key, kind, i)
            for s in ("right", "left"):
                c = torch.full((1, 1), float(tp["closure"][s]))
                q0[s].append(self.priors[s].to_anatomical(self.priors[s].sample(1, g, closure=c))[0])
                betas[s].append((cfg.betas_std * torch.randn(10, generator=g)).clamp(-2, 2))
        q0 = {s: torch.stack(v) for s, v in q0.items()}
        betas = {s: torch.stack(v) for s, v in betas.items()}
        is_base_right = torch.tensor([tp["base"] == "right" for tp in temps])
        R0 = torch.as_tensor(np.stack([tp["R"] for tp in temps]), dtype=torch.float32)
        t0 = torch.as_tensor(np.stack([tp["t"] for tp in temps]), dtype=torch.float32)
        q = {s: q0[s].clone().requires_grad_(True) for s in self.hands}
        omega = torch.zeros(B, 3, requires_grad=True)
        t = t0.clone().requires_grad_(True)
        opt = torch.optim.Adam([{"params": [omega], "lr": cfg.lr_rotation}, {"params": [t], "lr": cfg.lr_translation},
                                {"params": list(q.values()), "lr": cfg.lr_pose}])
        zero3 = torch.zeros(B, 3)
        faces = {s: self.hands[s].faces for s in self.hands}
        for _ in range(cfg.iterations):
            opt.zero_grad()
            hp = {s: self.priors[s].from_anatomical(q[s]) for s in self.hands}
            v_h = {s: self.hands[s](global_orient=zero3, hand_pose=hp[s], betas=betas[s], transl=zero3).vertices for s in self.hands}
            R = axis_angle_to_matrix(omega) @ R0
            moved = {s: v_h[s] @ R.transpose(1, 2) + t[:, None] for s in self.hands}
            # the base stays at rest; the other hand moves
            vr = torch.where(is_base_right[:, None, None], v_h["right"], moved["right"])
            vl = torch.where(is_base_right[:, None, None], moved["left"], v_h["left"])
            verts = {"right": vr, "left": vl}
            loss = self._attraction(temps, verts)
            pen, dmin = self._penetration(verts, faces)
            loss = loss + cfg.w_penetration * pen
            if kind == "near_contact":
                lo, hi = cfg.gap_m
                loss = loss + cfg.w_gap * (100 * ((lo - dmin).clamp_min(0) + (dmin - hi).clamp_min(0))) ** 2
            for s in self.hands:
                loss = loss + cfg.w_limits * self.priors[s].limit_violation(hp[s]) + cfg.w_rest * ((q[s] - q0[s]) ** 2).sum((1, 2))
            loss.sum().backward()
            opt.step()
        with torch.no_grad():
            R = axis_angle_to_matrix(omega) @ R0
            out = {}
            for s in self.hands:
                hp = self.priors[s].clamp(self.priors[s].from_anatomical(q[s]))
                J0 = self.hands[s].rest_joints(betas[s])[:, 0]
                moved_transl = t - J0 + (R @ J0[:, :, None])[..., 0]
                base_here = is_base_right if s == "right" else ~is_base_right
                go = torch.where(base_here[:, None], zero3, matrix_to_axis_angle(R))
                tr = torch.where(base_here[:, None], zero3, moved_transl)
                out[s] = HandParams(go, hp, betas[s], tr, s)
        return out["right"], out["left"]

    def _attraction(self, temps: list[dict], verts: dict) -> torch.Tensor:
        """(B,) robust pull of each template's zone pairs: per pair, the mean of the 8 smallest
        distances from source-zone vertices to the target set. Candidates with the same base side
        and zone pairs are batched."""
        cfg = self.cfg
        B = len(temps)
        loss = torch.zeros(B)
        groups: dict = {}
        for b, tp in enumerate(temps):
            key = (tp["base"], tuple((src, id(sid), id(tid)) for src, sid, tid, _ in tp["pairs"]))
            groups.setdefault(key, []).append(b)
        for (_, _), members in groups.items():
            idx = torch.as_tensor(members)
            for k, (src, sid, tid, _) in enumerate(temps[members[0]]["pairs"]):
                dst = "left" if src == "right" else "right"
                w = torch.tensor([temps[b]["pairs"][k][3] for b in members])
                d = torch.cdist(verts[src][idx][:, sid], verts[dst][idx][:, tid]).min(dim=2).values
                d = d.topk(min(8, d.shape[1]), dim=1, largest=False).values.mean(1)
                loss = loss.index_add(0, idx, cfg.w_attract * w * d ** 2 / (d ** 2 + cfg.contact_sigma_m ** 2))
        return loss

    def _penetration(self, verts: dict, faces: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) summed squared depth (cm^2) of each hand's query vertices behind the other's
        nearest vertex along its normal, both ways; (B,) smallest vertex distance (metres)."""
        total, dmin = 0.0, None
        for a, b in (("right", "left"), ("left", "right")):
            pa = verts[a][:, self.query]
            vb = verts[b]
            nb = _vertex_normals(vb.detach(), faces[b])
            dist = torch.cdist(pa, vb)
            d, j = dist.min(dim=2)
            nn = torch.gather(vb, 1, j[..., None].expand(-1, -1, 3))
            nrm = torch.gather(nb, 1, j[..., None].expand(-1, -1, 3))
            signed = ((pa - nn) * nrm).sum(-1)
            total = total + (100 * (-signed).clamp_min(0)).square().sum(1)
            m = d.min(dim=1).values
            dmin = m if dmin is None else torch.minimum(dmin, m)
        return total, dmin

    # -- planning with gates -----------------------------------------------------------------
    def plan(self, kind: str, n: int, seed: int, key: str, batch: int = 32, max_candidates: int | None = None) -> TwoHandBatch:
        """Plan until `n` pairs of type `kind` pass the gates (or `max_candidates` were tried)."""
        from hoitool.metrics.twohands import pair_metrics

        cfg = self.cfg
        max_candidates = max_candidates or max(8 * n, 32)
        kept_r, kept_l, quality = [], [], {"penetration_volume_cm3": [], "penetration_depth_cm": [], "distance_cm": []}
        rejected = {"volume": 0, "depth": 0, "no_contact": 0, "gap": 0}
        tried = have = passed = 0
        batch = min(batch, max(4, 3 * n))
        while have < n and tried < max_candidates:
            if tried:
                rate = max(have / tried, 0.1)
                batch = int(np.clip(np.ceil((n - have) / rate * 1.2), 4, 48))
            ids = range(tried, min(tried + batch, max_candidates))
            right, left = self.optimise(kind, seed, key, ids)
            tried = ids.stop
            with torch.no_grad():
                vr = self.hands["right"](right).vertices.numpy()
                vl = self.hands["left"](left).vertices.numpy()
            m = pair_metrics(vr, self.hands["right"].faces.numpy(), vl, self.hands["left"].faces.numpy(), pitch_m=cfg.volume_pitch_m)
            dist = m["distance_cm"] / 100
            checks = [("volume", m["penetration_volume_cm3"] <= cfg.max_volume_cm3),
                      ("depth", m["penetration_depth_cm"] / 100 <= cfg.max_depth_m)]
            if kind == "near_contact":
                checks.append(("gap", (dist >= cfg.near_gap_m[0]) & (dist <= cfg.near_gap_m[1])))
            else:
                checks.append(("no_contact", dist <= cfg.contact_m))
            alive = np.ones(len(ids), dtype=bool)
            for name, ok in checks:
                rejected[name] += int((alive & ~ok).sum())
                alive &= ok
            passed += int(alive.sum())
            good = np.nonzero(alive)[0][: n - have]
            if len(good):
                idx = torch.as_tensor(good)
                kept_r.append(right[idx])
                kept_l.append(left[idx])
                for k in quality:
                    quality[k].append(m[k][good])
                have += len(good)
        if not kept_r:
            return TwoHandBatch(HandParams.zeros(0, "right"), HandParams.zeros(0, "left"), [], {k: np.zeros(0) for k in quality}, tried, rejected, passed)
        return TwoHandBatch(HandParams.cat(kept_r), HandParams.cat(kept_l), [kind] * have,
                            {k: np.concatenate(v) for k, v in quality.items()}, tried, rejected, passed)


def _vertex_normals(v: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(B, V, 3) unit area-weighted vertex normals of meshes (B, V, 3) with faces (F, 3)."""
    tri = v[:, faces]
    fn = torch.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
    n = torch.zeros_like(v)
    for k in range(3):
        n.index_add_(1, faces[:, k], fn)
    return torch.nn.functional.normalize(n, dim=-1)


# -- bimanual grasps ---------------------------------------------------------------------------

def mirrored_mesh(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """The mesh reflected through x = 0, faces re-wound so normals still point out."""
    v = mesh.vertices * np.array([-1.0, 1.0, 1.0])
    return trimesh.Trimesh(v, mesh.faces[:, ::-1], process=False)


def bimanual_object(category: str, rng: np.random.Generator) -> trimesh.Trimesh:
    """A synthetic object of `category` scaled to two-hand size (BIMANUAL_OBJECTS)."""
    from hoitool.data.synthetic.objects import make_object

    mesh = make_object(category, rng)
    mesh.apply_scale(BIMANUAL_OBJECTS[category] * rng.uniform(0.9, 1.1))
    return mesh


def plan_bimanual(grasp_planner, left: HandModel, mesh: trimesh.Trimesh, n: int, seed: int, key: str,
                  per_side: int = 8, max_candidates: int = 64, max_volume_cm3: float = 0.5, min_apart: float = 0.4) -> tuple[HandParams, HandParams, dict]:
    """Up to `n` (right, left) grasp pairs of `mesh` (object frame): `per_side` grasps per hand
    from the one-hand planner (the left ones planned on the mirrored mesh), paired greedily when
    the hands' palms are at least `min_apart` x the object's largest extent apart and the two
    hands overlap by at most `max_volume_cm3`."""
    from hoitool.geometry.grid import SDFVolume, canonical_sdf
    from hoitool.metrics.twohands import intersection_volume_cm3

    right = grasp_planner.hand
    sides = {}
    stats = {"candidates": 0, "grasps": {}}
    for side, m in (("right", mesh), ("left", mirrored_mesh(mesh))):
        sdf, uTo = canonical_sdf(m, 64, 0.06)
        gb = grasp_planner.plan(m, SDFVolume(sdf, uTo), per_side, seed, f"{key}-{side}", max_candidates=max_candidates)
        stats["candidates"] += gb.candidates
        stats["grasps"][side] = gb.params.batch_size
        sides[side] = gb.params if side == "right" else mirror_params(gb.params)
    pr, pl = sides["right"], sides["left"]
    if pr.batch_size == 0 or pl.batch_size == 0:
        return HandParams.zeros(0, "right"), HandParams.zeros(0, "left"), stats
    with torch.no_grad():
        vr = right(pr).vertices.numpy()
        vl = left(pl).vertices.numpy()
    gr, gl = _Geometry(right), _Geometry(left)
    cr, cl = vr[:, gr.palm].mean(1), vl[:, gl.palm].mean(1)
    need = min_apart * float(mesh.extents.max())
    rng = numpy_rng(seed, key, "pairs")
    order = [(i, j) for i in range(len(vr)) for j in range(len(vl))]
    rng.shuffle(order)
    used_r, used_l, pairs = set(), set(), []
    fr, fl = right.faces.numpy(), left.faces.numpy()
    for i, j in order:
        if len(pairs) >= n:
            break
        if i in used_r or j in used_l or np.linalg.norm(cr[i] - cl[j]) < need:
            continue
        if intersection_volume_cm3(vr[i], fr, vl[j], fl) > max_volume_cm3:
            continue
        pairs.append((i, j))
        used_r.add(i)
        used_l.add(j)
    stats["pairs"] = len(pairs)
    stats["passed"] = sum(stats["grasps"].values())
    if not pairs:
        return HandParams.zeros(0, "right"), HandParams.zeros(0, "left"), stats
    ii = torch.as_tensor([p[0] for p in pairs])
    jj = torch.as_tensor([p[1] for p in pairs])
    return pr[ii], pl[jj], stats
