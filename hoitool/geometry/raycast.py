"""Ray casting against triangle meshes in PyTorch (Moller-Trumbore), every hit per ray.

Used for depth peeling: the nearest and farthest hits of an object along the rays through
contact pixels, and the hits on the palmar faces of a hand.
"""

from __future__ import annotations

import torch


def ray_hits(origins: torch.Tensor, dirs: torch.Tensor, vertices: torch.Tensor, faces: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Distances (R, F) along each ray to each triangle, +inf where it misses.

    origins, dirs: (R, 3) (dirs need not be unit; distances are in units of |dir|);
    vertices (V, 3); faces (F, 3). Both sides of a triangle count.
    """
    tri = vertices[faces]
    v0, e1, e2 = tri[:, 0], tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    out = []
    for s in range(0, len(origins), chunk):
        o, d = origins[s:s + chunk, None], dirs[s:s + chunk, None]  # (r,1,3)
        p = torch.cross(d.expand(-1, len(faces), -1), e2[None].expand(len(o), -1, -1), dim=-1)
        det = (e1[None] * p).sum(-1)
        ok = det.abs() > 1e-12
        inv = 1.0 / torch.where(ok, det, torch.ones_like(det))
        tv = o - v0[None]
        u = (tv * p).sum(-1) * inv
        q = torch.cross(tv, e1[None].expand_as(tv), dim=-1)
        v = (d * q).sum(-1) * inv
        t = (e2[None] * q).sum(-1) * inv
        hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
        out.append(torch.where(hit, t, torch.full_like(t, torch.inf)))
    return torch.cat(out) if out else torch.zeros(0, len(faces), device=vertices.device)


def nearest_farthest(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """From hit distances (R, F): nearest (R,), farthest (R,) and a hit mask (R,)."""
    hit = torch.isfinite(t).any(1)
    near = t.amin(1)
    far = torch.where(torch.isfinite(t), t, torch.full_like(t, -torch.inf)).amax(1)
    return near, far, hit
