"""The hand-centric grid frame `n` and object grids resampled into it (G-HOP's interaction grid).

Frame n: origin at the index knuckle (MCP joint) + (0, -0.08, 0) m in the hand frame h (on
the palm side), one unit = 0.2 m, no rotation. Grids are `res` points per axis on
linspace(-1.5, 1.5) (+-0.30 m); index [i, j, k] is the point (x_i, y_j, z_k).

Objects are stored once as a signed distance grid in their unit-ball frame u (centre = vertex
mean, scale = 0.9 / max radius, grid on [-1, 1]^3) and resampled into n under `uTn` with
trilinear `grid_sample` (align_corners=True), which is differentiable in the transform.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from hoitool.geometry.transforms import apply_transform, transform_scale

GRID_RES = 64
LATENT_RES = 16
GRID_HALF_EXTENT = 1.5
N_UNIT_M = 0.2
PALM_OFFSET_M = (0.0, -0.08, 0.0)
OBJECT_CLAMP = 0.2
HAND_CLAMP = 0.12
UNIT_BALL_RADIUS = 0.9
INDEX_MCP = 1  # joint id (MANO order)


def grid_coords(res: int = GRID_RES, half_extent: float = GRID_HALF_EXTENT, device=None, dtype=torch.float32) -> torch.Tensor:
    """(res, res, res, 3) points of the n-frame grid; [i, j, k] = (x_i, y_j, z_k)."""
    t = torch.linspace(-half_extent, half_extent, res, device=device, dtype=dtype)
    return torch.stack(torch.meshgrid(t, t, t, indexing="ij"), dim=-1)


def nTh_from_joints(joints_h: torch.Tensor) -> torch.Tensor:
    """(B, 4, 4) transform from the hand frame h to n, given joints (B, 16, 3) in h
    (zero global rotation and translation; only the index MCP is used)."""
    c = joints_h[:, INDEX_MCP] + torch.tensor(PALM_OFFSET_M, device=joints_h.device, dtype=joints_h.dtype)
    B = joints_h.shape[0]
    T = torch.zeros(B, 4, 4, device=joints_h.device, dtype=joints_h.dtype)
    T[:, 0, 0] = T[:, 1, 1] = T[:, 2, 2] = 1.0 / N_UNIT_M
    T[:, :3, 3] = -c / N_UNIT_M
    T[:, 3, 3] = 1.0
    return T


def unit_ball_transform(vertices: np.ndarray) -> np.ndarray:
    """uTo (4, 4) float64: centre the vertex mean, scale so the farthest vertex is at 0.9."""
    v = np.asarray(vertices, dtype=np.float64)
    c = v.mean(0)
    s = UNIT_BALL_RADIUS / np.linalg.norm(v - c, axis=1).max()
    T = np.eye(4)
    T[:3, :3] *= s
    T[:3, 3] = -s * c
    return T


def query_grid(grid: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Trilinear values of SDF grids at points in the grid's own [-1, 1]^3 frame.

    Args:
        grid: (B, 1, R, R, R) or (1, 1, R, R, R) signed distances on linspace(-1, 1, R),
            [i, j, k] = (x_i, y_j, z_k), in the grid's units.
        points: (B, N, 3) in the same frame.
    Returns:
        (B, N): values, with the distance to the box added for points outside it (border
        values are the nearest inside values), so far points stay positive and growing.
    """
    B, N, _ = points.shape
    g = grid.expand(B, -1, -1, -1, -1) if grid.shape[0] == 1 and B > 1 else grid
    coords = points[..., [2, 1, 0]].reshape(B, N, 1, 1, 3)  # grid_sample wants (W, H, D) = (z, y, x)
    val = F.grid_sample(g, coords, mode="bilinear", padding_mode="border", align_corners=True)
    val = val.reshape(B, N)
    outside = (points.abs() - 1.0).clamp_min(0).norm(dim=-1)
    return val + outside


def object_channel(sdf_u: torch.Tensor, uTn: torch.Tensor, res: int = GRID_RES) -> torch.Tensor:
    """The object channel of the interaction grid: (B, 1, res, res, res) in [-1, 1].

    Args:
        sdf_u: (B or 1, 1, R, R, R) object SDF in its unit-ball frame, u units.
        uTn: (B, 4, 4) maps n-frame points into u (= uTo @ oTh @ hTn), differentiable.
    Signed distance in n units, clamped to [-0.2, 0.2] and divided by 0.2.
    """
    B = uTn.shape[0]
    pts_n = grid_coords(res, device=uTn.device, dtype=uTn.dtype).reshape(1, -1, 3).expand(B, -1, -1)
    d_u = query_grid(sdf_u, apply_transform(uTn, pts_n))
    d_n = d_u / transform_scale(uTn)[:, None]
    return (d_n.clamp(-OBJECT_CLAMP, OBJECT_CLAMP) / OBJECT_CLAMP).reshape(B, 1, res, res, res)


class SDFVolume(torch.nn.Module):
    """An object's signed distance grid in its unit-ball frame u, queried in metres.

    Args:
        grid: (R, R, R) signed distances in u units on linspace(-1, 1, R).
        uTo: (4, 4) object frame -> u (uniform scale).
    """

    def __init__(self, grid, uTo):
        super().__init__()
        self.register_buffer("grid", torch.as_tensor(np.asarray(grid), dtype=torch.float32)[None, None])
        self.register_buffer("uTo", torch.as_tensor(np.asarray(uTo), dtype=torch.float32))

    @property
    def scale(self) -> torch.Tensor:
        """u units per metre."""
        return transform_scale(self.uTo)

    def forward(self, points_o: torch.Tensor) -> torch.Tensor:
        """Signed distance (B, N) in metres of points (B, N, 3) in the object frame."""
        return query_grid(self.grid, apply_transform(self.uTo, points_o)) / self.scale

    def normals(self, points_o: torch.Tensor, h: float = 0.002) -> torch.Tensor:
        """Unit outward normals (B, N, 3): central differences of the grid, step h metres."""
        B, N, _ = points_o.shape
        offsets = torch.eye(3, device=points_o.device, dtype=points_o.dtype) * h
        p = torch.cat([points_o[:, :, None] + offsets, points_o[:, :, None] - offsets], dim=2)  # (B,N,6,3)
        d = self(p.reshape(B, N * 6, 3)).reshape(B, N, 6)
        return torch.nn.functional.normalize(d[..., :3] - d[..., 3:], dim=-1)


def canonical_sdf(mesh, res: int = GRID_RES, truncation_m: float | None = 0.06) -> tuple[np.ndarray, np.ndarray]:
    """An object's canonical grid: (R, R, R) float32 signed distances in u units, and uTo (4, 4).

    Distances beyond `truncation_m` metres are capped (the interaction grid clamps at 4 cm).
    """
    from hoitool.geometry.sdf import sdf_grid

    uTo = unit_ball_transform(mesh.vertices)
    mu = mesh.copy()
    mu.apply_transform(uTo)
    trunc = None if truncation_m is None else truncation_m * uTo[0, 0]
    if trunc is not None and trunc >= 2.0 * np.sqrt(3):
        trunc = None  # nothing in the box is that far
    return sdf_grid(mu, res, -1.0, 1.0, truncation=trunc), uTo
