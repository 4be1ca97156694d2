"""Per-model metadata derived from geometry, with the same code for MANO and the open hand:
fingertip vertices, palmar (grasping-side) faces and vertices, contact zones.

Everything is computed in the flat rest pose from the template, the rest joints and the
skinning weights, so no vertex index of any particular model is hard-coded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hoitool.hand.keypoints import FINGER_JOINTS, FINGERS

#: A face is palmar when its normal is within this angle of its part's palmar direction.
PALMAR_ANGLE_DEG = 65.0


@dataclass
class HandMetadata:
    """Geometry-derived facts about one hand model (one side)."""

    fingertips: np.ndarray
    """(5,) vertex ids of the fingertips, thumb, index, middle, ring, little."""
    vertex_joint: np.ndarray
    """(V,) the joint with the largest skinning weight for each vertex (MANO order)."""
    palm_normal: np.ndarray
    """(3,) unit normal of the palm, pointing out of the palm, in the rest pose."""
    palmar_faces: np.ndarray
    """(F,) bool: faces on the grasping side (palm and the finger pads)."""
    palmar_vertices: np.ndarray
    """(V,) bool: vertices of palmar faces."""
    contact_zones: dict[str, np.ndarray] = field(default_factory=dict)
    """Vertex ids per zone: the five distal pads ('thumb' ... 'little') and 'palm'."""


def palm_normal(joints: np.ndarray, side: str) -> np.ndarray:
    """Unit palm normal (pointing out of the palm) from the wrist, index and little knuckles."""
    n = np.cross(joints[1] - joints[0], joints[7] - joints[0])
    n = n / np.linalg.norm(n)
    return n if side == "right" else -n


def thumb_palmar_direction(joints: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Direction the thumb pad faces in the rest pose: between the palm normal and the index
    knuckle, perpendicular to the thumb's middle bone."""
    b = joints[15] - joints[14]
    b = b / np.linalg.norm(b)
    u = joints[1] - joints[14]
    u = u - (u @ b) * b
    u = u / np.linalg.norm(u)
    d = n + u
    d = d - (d @ b) * b
    return d / np.linalg.norm(d)


def derive_metadata(v_template: np.ndarray, faces: np.ndarray, joints: np.ndarray, weights: np.ndarray, side: str) -> HandMetadata:
    """Compute HandMetadata from the rest template (V,3), faces (F,3), rest joints (16,3) and
    skinning weights (V,16)."""
    v = np.asarray(v_template, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    J = np.asarray(joints, dtype=np.float64)
    vj = np.asarray(weights).argmax(1)
    n = palm_normal(J, side)
    n_thumb = thumb_palmar_direction(J, n)

    tips = []
    for name in FINGERS:
        j1, j2, j3 = FINGER_JOINTS[name]
        b = J[j3] - J[j2]
        b = b / np.linalg.norm(b)
        cand = np.nonzero(vj == j3)[0]
        tips.append(int(cand[np.argmax((v[cand] - J[j3]) @ b)]))
    tips = np.array(tips)

    tri = v[f]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    fn /= np.linalg.norm(fn, axis=1, keepdims=True) + 1e-12
    face_joint = np.array([np.bincount(vj[x], minlength=16).argmax() for x in f])
    direction = np.where(np.isin(face_joint, FINGER_JOINTS["thumb"])[:, None], n_thumb[None], n[None])
    palmar_faces = (fn * direction).sum(1) > np.cos(np.deg2rad(PALMAR_ANGLE_DEG))
    palmar_vertices = np.zeros(len(v), dtype=bool)
    palmar_vertices[np.unique(f[palmar_faces])] = True

    zones = {}
    for k, name in enumerate(FINGERS):
        j3 = FINGER_JOINTS[name][2]
        zones[name] = np.nonzero(palmar_vertices & (vj == j3))[0]
    # palm: palmar vertices of the wrist joint between 30 % and 100 % of the way to the knuckles
    mcp = J[[1, 4, 7, 10]].mean(0)
    axis = mcp - J[0]
    s = (v - J[0]) @ axis / (axis @ axis)
    zones["palm"] = np.nonzero(palmar_vertices & (vj == 0) & (s > 0.3) & (s < 1.0))[0]
    return HandMetadata(tips, vj, n, palmar_faces, palmar_vertices, zones)
