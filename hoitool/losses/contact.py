"""Contact between hand zones and an object surface, from signed distances of hand points."""

from __future__ import annotations

import torch


def zone_distances(sdf: torch.Tensor, zone_index: torch.Tensor) -> torch.Tensor:
    """(B, Z) distance of each zone to the surface (min |sdf| over its points).

    Args:
        sdf: (B, N) signed distances of hand points.
        zone_index: (Z, K) point indices per zone (pad a zone by repeating its points).
    """
    return sdf.abs()[:, zone_index].amin(-1)


def zone_attraction(sdf: torch.Tensor, zone_index: torch.Tensor, sigma: float | torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) robust attraction of zones to the surface: sum_z w_z * d_z^2 / (d_z^2 + sigma_z^2).

    Zones far beyond sigma pull weakly, so fingers that cannot reach do not drag the hand.
    """
    d2 = zone_distances(sdf, zone_index) ** 2
    r = d2 / (d2 + sigma**2)
    return (r if weights is None else r * weights).sum(-1)


def zones_in_contact(sdf: torch.Tensor, zone_index: torch.Tensor, threshold: float) -> torch.Tensor:
    """(B, Z) bool: a zone touches when any of its points is within `threshold` of the
    surface or inside the object."""
    return (sdf[:, zone_index] < threshold).any(-1)


def zone_closest(sdf: torch.Tensor, zone_index: torch.Tensor) -> torch.Tensor:
    """(B, Z) index (into the N points) of each zone's point closest to the surface."""
    k = sdf.abs()[:, zone_index].argmin(-1)  # (B,Z) position inside the zone
    return zone_index[torch.arange(zone_index.shape[0], device=sdf.device)[None], k]


def net_contact_normal(sdf_zone: torch.Tensor, normals_zone: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B,) squared norm of the contact-weighted sum of surface normals at the zones.

    sdf_zone (B, Z) zone distances; normals_zone (B, Z, 3) outward normals at their closest
    points. Balanced (opposing) contacts cancel, a hand resting on one face does not: a
    force-closure proxy.
    """
    w = torch.exp(-sdf_zone.abs() / sigma)
    return ((w[..., None] * normals_zone).sum(1) ** 2).sum(-1)


def opposed_contacts(in_contact: torch.Tensor, normals: torch.Tensor, cos_max: float = -0.3) -> torch.Tensor:
    """(B,) bool: zone 0 (the thumb) touches and some other touching zone's normal opposes it
    (cosine below cos_max). in_contact (B, Z) bool, normals (B, Z, 3)."""
    cos = (normals[:, :1] * normals[:, 1:]).sum(-1)  # (B, Z-1)
    return in_contact[:, 0] & ((cos < cos_max) & in_contact[:, 1:]).any(-1)
