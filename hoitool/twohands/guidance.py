"""Anti-penetration guidance between two hands (InterHandGen's, on a vertex subset).

For each checked vertex of one hand, its nearest checked vertex on the other; the vertex is
penetrating when its offset points against that vertex's normal. Penalty per penetrating vertex:
c^2 r^2 / (r^2 + c^2), c = 0.05 m, r the offset length in metres (r^2 near contact, bounded by c^2
for the far outliers a nearest-vertex test produces); both ways, summed. During sampling the x0
prediction takes a step against the gradient (in normalised units): x0 <- x0 - w_k grad,
w_k = w 0.9^(K - 1 - k) at step k of K (w = 7 as InterHandGen: strongest at the end).

InterHandGen's released penalty is 1000 r^2 / (r^2 + c^2), i.e. 4e5 times this one near contact;
with w = 7 and hoitool's normalised vectors (positions in units of ~3 cm) its steps are thousands
of units and the samples blow up. Scaled as here, ten vertices 1 cm deep move the hand by about
0.2 mm per unit of w_k, so the last ~20 steps (sum of w_k ~ 60) undo about a centimetre.
"""

from __future__ import annotations

import torch

from hoitool.hand.model import HandModel
from hoitool.hand.subset import SubsetHand, even_subset
from hoitool.twohands.params import from_vectors

ROBUST_M = 0.05
DECAY = 0.9


def penetration_energy(pa: torch.Tensor, na: torch.Tensor, pb: torch.Tensor, nb: torch.Tensor) -> torch.Tensor:
    """(B,) penalty of points pa (B, K, 3) behind pb's nearest points (normals nb) and vice versa."""
    total = 0.0
    for p, q, nq in ((pa, pb, nb), (pb, pa, na)):
        d = torch.cdist(p, q)
        j = d.argmin(dim=2)
        nn = torch.gather(q, 1, j[..., None].expand(-1, -1, 3))
        nrm = torch.gather(nq, 1, j[..., None].expand(-1, -1, 3))
        off = p - nn
        inside = (off * nrm).sum(-1) < 0
        r2 = off.square().sum(-1)
        total = total + (ROBUST_M ** 2 * r2 / (r2 + ROBUST_M ** 2) * inside).sum(1)
    return total


ENERGIES = ("spheres", "vertices")


class PenetrationGuide:
    """Gradient of a two-hand penetration energy with respect to normalised vectors.

    energy: 'spheres' (default: the overlap of the hands' skeleton spheres, hoitool.hand.spheres)
    or 'vertices' (InterHandGen's nearest-vertex test on `vertices` evenly spread vertices).
    proximity (spheres only): weight of a pull on hands whose spheres are more than `proximity_m`
    apart, (gap - proximity_m)^2: penetration guidance alone pushes hands apart, and this keeps
    the pair within InterHandGen's 2 cm proximity without touching pairs already close."""

    def __init__(self, right: HandModel, left: HandModel, vertices: int = 128, energy: str = "spheres",
                 proximity: float = 0.0, proximity_m: float = 0.015):
        self.proximity, self.proximity_m = proximity, proximity_m
        if energy not in ENERGIES:
            raise ValueError(f"energy must be one of {ENERGIES}, got {energy!r}")
        self.kind = energy
        self.models = {"right": right, "left": left}
        if energy == "spheres":
            from hoitool.hand.spheres import HandSpheres

            self.parts = {s: HandSpheres(h) for s, h in self.models.items()}
        else:
            self.parts = {s: SubsetHand(h, even_subset(h, vertices)) for s, h in self.models.items()}

    def to(self, device):
        self.parts = {s: m.to(device) for s, m in self.parts.items()}
        self.models = {s: m.to(device) for s, m in self.models.items()}
        return self

    def energy(self, xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        """(B,) energy (m^2) of de-normalised vectors (B, 64)."""
        r, l = from_vectors(self.models["right"], self.models["left"], xa, xb)
        a = self.parts["right"](r.global_orient, r.hand_pose, r.betas, r.transl)
        b = self.parts["left"](l.global_orient, l.hand_pose, l.betas, l.transl)
        if self.kind == "spheres":
            from hoitool.hand.spheres import sphere_gap, sphere_overlap

            e = sphere_overlap(a[0], a[1], b[0], b[1])
            if self.proximity:
                e = e + self.proximity * (sphere_gap(a[0], a[1], b[0], b[1]) - self.proximity_m).clamp_min(0).square()
            return e
        return penetration_energy(*a, *b)

    def gradient(self, norm, za: torch.Tensor, zb: torch.Tensor, wrt: str) -> torch.Tensor:
        """d energy / d z (normalised) for the second hand (wrt='b') or both ('ab', joint models:
        returns (B, 128))."""
        with torch.enable_grad():
            za = za.detach().requires_grad_(wrt == "ab")
            zb = zb.detach().requires_grad_(True)
            e = self.energy(norm.denorm_a(za), norm.denorm_b(zb)).sum()
            if wrt == "ab":
                ga, gb = torch.autograd.grad(e, [za, zb])
                return torch.cat([ga, gb], 1)
            return torch.autograd.grad(e, [zb])[0]


def step_weight(w: float, k: int, steps: int) -> float:
    return w * DECAY ** (steps - 1 - k)
