"""Grasp quality from exact mesh distances: penetration depth, finger contacts, opposition."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import trimesh

from hoitool.geometry.sdf import closest_points, signed_distance
from hoitool.hand.keypoints import FINGER_JOINTS, FINGERS
from hoitool.hand.model import HandModel, HandParams
from hoitool.losses.contact import opposed_contacts, zone_closest, zones_in_contact

#: Contact: a vertex within 5 mm of the surface or inside it (GraspTTA / ObMan convention).
CONTACT_THRESHOLD_M = 0.005


@dataclass
class ContactQuality:
    """Per grasp: penetration_m (K,) deepest hand vertex inside the object; object_in_hand_m
    (K,) deepest object surface sample inside the hand (catches thin walls passing between
    hand vertices); fingers (K, 5) bool in contact (thumb ... little); palm (K,) bool;
    opposed (K,) bool: the thumb's contact normal opposes another contact's."""

    penetration_m: np.ndarray
    object_in_hand_m: np.ndarray
    fingers: np.ndarray
    palm: np.ndarray
    opposed: np.ndarray
    nearest_m: np.ndarray | None = None
    """(K,) signed distance of the hand vertex nearest the surface (negative inside), any vertex."""


def object_in_hand_depth(hand_vertices: np.ndarray, hand_faces: np.ndarray, surface_points: np.ndarray) -> np.ndarray:
    """(K,) deepest of `surface_points` (P, 3) inside each posed hand (K, V, 3), metres."""
    import igl

    F = np.ascontiguousarray(hand_faces, dtype=np.int64)
    P = np.ascontiguousarray(surface_points, dtype=np.float64)
    out = np.zeros(len(hand_vertices))
    for k, V in enumerate(hand_vertices):
        V = np.ascontiguousarray(V, dtype=np.float64)
        lo, hi = V.min(0) - 1e-3, V.max(0) + 1e-3
        near = np.all((P > lo) & (P < hi), axis=1)
        if near.any():
            s = igl.signed_distance(P[near], V, F, igl.SIGNED_DISTANCE_TYPE_PSEUDONORMAL)[0]
            out[k] = max(0.0, -float(np.min(s)))
    return out


def part_index(hand: HandModel) -> torch.Tensor:
    """(6, K) vertex ids of the five fingers (all their vertices) and the palm contact zone,
    each row padded by repeating its own entries."""
    md = hand.metadata
    groups = [np.nonzero(np.isin(md.vertex_joint, FINGER_JOINTS[f]))[0] for f in FINGERS]
    groups.append(md.contact_zones["palm"])
    k = max(len(g) for g in groups)
    return torch.as_tensor(np.stack([np.resize(g, k) for g in groups]), dtype=torch.long)


def contact_quality(hand: HandModel, mesh: trimesh.Trimesh, params: HandParams, threshold: float = CONTACT_THRESHOLD_M,
                    opposition_cos: float = -0.3, surface_samples: int = 2000,
                    object_in_hand: bool | np.ndarray = True) -> ContactQuality:
    """Exact contact figures of grasps `params` (in the mesh's frame, metres).

    object_in_hand: compute object_in_hand_m for all grasps (True), none (False) or those
    selected by a (K,) bool mask (others get NaN); it is the slowest figure.
    """
    with torch.no_grad():
        v = hand(params).vertices.cpu()
    K, V, _ = v.shape
    pts = v.reshape(-1, 3).numpy()
    d = torch.as_tensor(signed_distance(mesh, pts)).reshape(K, V)
    _, face, _ = closest_points(mesh, pts)
    normals = torch.as_tensor(mesh.face_normals[face], dtype=torch.float32).reshape(K, V, 3)
    parts = part_index(hand)
    touching = zones_in_contact(d, parts, threshold)
    idx = zone_closest(d, parts)
    nz = torch.gather(normals, 1, idx[..., None].expand(-1, -1, 3))
    opposed = opposed_contacts(touching, nz, opposition_cos)
    depth = (-d).clamp_min(0).amax(1)
    mask = np.broadcast_to(np.asarray(object_in_hand, dtype=bool), (K,))
    inside = np.full(K, np.nan)
    if mask.any():
        samples, _ = trimesh.sample.sample_surface_even(mesh, surface_samples, seed=0)
        inside[mask] = object_in_hand_depth(v.numpy()[mask], hand.faces.cpu().numpy(), samples)
    return ContactQuality(depth.numpy(), inside, touching[:, :5].numpy(), touching[:, 5].numpy(), opposed.numpy(),
                          d.amin(1).numpy())


#: Voxel pitch (m) of the intersection volume.
VOXEL_PITCH_M = 0.005


def object_voxels(mesh: trimesh.Trimesh, pitch: float = VOXEL_PITCH_M) -> np.ndarray:
    """(N, 3) centres of the `pitch` voxels inside the object (grid aligned to its bounds)."""
    lo, hi = mesh.bounds
    axes = [np.arange(a + pitch / 2, b, pitch) for a, b in zip(lo, hi)]
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    return pts[signed_distance(mesh, pts) < 0]


@dataclass
class GraspMetrics:
    """Per grasp (K,): intersection_cm3 (object voxels inside the hand x pitch^3),
    max_depth_cm / mean_depth_cm (hand vertices inside the object: deepest, and mean over those
    inside; 0 when none), contact (a hand vertex within 5 mm of the surface or inside),
    contact_area (share of hand vertices in contact), displacement_cm (simulation with gravity
    along the object frame's -z, the papers' figure), displacement6_cm (mean over gravity along
    +-x, +-y, +-z of the object frame: a scan's -z is arbitrary); both NaN when not simulated."""

    intersection_cm3: np.ndarray
    max_depth_cm: np.ndarray
    mean_depth_cm: np.ndarray
    contact: np.ndarray
    contact_area: np.ndarray
    displacement_cm: np.ndarray
    displacement6_cm: np.ndarray

    FIELDS = ("intersection_cm3", "max_depth_cm", "mean_depth_cm", "contact", "contact_area", "displacement_cm",
              "displacement6_cm")

    def per_grasp(self) -> list[dict]:
        return [{k: (bool(getattr(self, k)[i]) if k == "contact" else float(getattr(self, k)[i])) for k in self.FIELDS}
                for i in range(len(self.contact))]

    def aggregate(self, mask: np.ndarray | None = None) -> dict:
        """Means over the selected grasps; contact becomes contact_ratio."""
        m = np.ones(len(self.contact), bool) if mask is None else np.asarray(mask, bool)
        out = {"grasps": int(m.sum())}
        for k in self.FIELDS:
            v = getattr(self, k)[m].astype(np.float64)
            name = "contact_ratio" if k == "contact" else k
            out[name] = float(np.nanmean(v)) if m.any() and np.isfinite(v).any() else float("nan")
        return out


def grasp_metrics(hand_vertices: np.ndarray, hand_faces: np.ndarray, mesh: trimesh.Trimesh, simulate: bool = True,
                  pitch: float = VOXEL_PITCH_M, threshold: float = CONTACT_THRESHOLD_M, progress=None) -> GraspMetrics:
    """Evaluate grasps: hand meshes (K, V, 3) and the object mesh, all in one frame, metres."""
    from hoitool.geometry.sdf import winding_number
    from hoitool.metrics.simulation import SIX_DIRECTIONS

    V = np.asarray(hand_vertices, dtype=np.float64)
    K = len(V)
    d = signed_distance(mesh, V.reshape(-1, 3)).reshape(K, -1).astype(np.float64)
    depth = (-d).clip(min=0)
    inside = d < 0
    max_depth = depth.max(1) * 100
    mean_depth = np.where(inside.any(1), (depth * inside).sum(1) / np.maximum(inside.sum(1), 1), 0.0) * 100
    touch = d < threshold
    vox = object_voxels(mesh, pitch)
    vol = np.zeros(K)
    sim = None
    if simulate:
        from hoitool.metrics.simulation import GraspSimulator

        sim = GraspSimulator(mesh)
    disp = np.full(K, np.nan)
    disp6 = np.full(K, np.nan)
    down = SIX_DIRECTIONS.index((0.0, 0.0, -1.0))
    try:
        for k in range(K):
            lo, hi = V[k].min(0), V[k].max(0)
            near = vox[np.all((vox > lo) & (vox < hi), axis=1)]
            if len(near):
                hm = trimesh.Trimesh(V[k], hand_faces, process=False)
                vol[k] = float((winding_number(hm, near) > 0.5).sum()) * pitch**3 * 1e6
            if sim is not None:
                six = sim.displacements_cm(V[k], hand_faces, SIX_DIRECTIONS)
                disp[k], disp6[k] = six[down], six.mean()
            if progress is not None:
                progress(1)
    finally:
        if sim is not None:
            sim.close()
    return GraspMetrics(vol, max_depth, mean_depth, touch.any(1), touch.mean(1), disp, disp6)
