"""Rigid and similarity transforms as 4x4 matrices.

Convention: `aTb` maps points in frame b into frame a; `aTb @ bTc = aTc`.
"""

from __future__ import annotations

import numpy as np
import torch


def make_transform(R: torch.Tensor, t: torch.Tensor, scale: torch.Tensor | float | None = None) -> torch.Tensor:
    """Build (..., 4, 4) from rotation (..., 3, 3), translation (..., 3) and optional scale (...)."""
    T = torch.zeros(R.shape[:-2] + (4, 4), dtype=R.dtype, device=R.device)
    if scale is None:
        T[..., :3, :3] = R
    else:
        s = torch.as_tensor(scale, dtype=R.dtype, device=R.device)
        T[..., :3, :3] = R * s[..., None, None] if s.ndim else R * s
    T[..., :3, 3] = t
    T[..., 3, 3] = 1.0
    return T


def apply_transform(T: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply (..., 4, 4) to points (..., N, 3)."""
    return points @ T[..., :3, :3].transpose(-1, -2) + T[..., None, :3, 3]


def invert_transform(T: torch.Tensor) -> torch.Tensor:
    """Inverse of a similarity transform sR|t (uniform scale allowed)."""
    A = T[..., :3, :3]
    s2 = (A[..., :, 0] ** 2).sum(-1)  # squared scale
    Ainv = A.transpose(-1, -2) / s2[..., None, None]
    out = torch.zeros_like(T)
    out[..., :3, :3] = Ainv
    out[..., :3, 3] = -(Ainv @ T[..., :3, 3, None])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def transform_scale(T: torch.Tensor) -> torch.Tensor:
    """The uniform scale of (..., 4, 4) similarity transforms."""
    return T[..., :3, 0].norm(dim=-1)


def np_apply(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """NumPy twin of apply_transform for one (4, 4) and (N, 3)."""
    return points @ T[:3, :3].T + T[:3, 3]


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> np.ndarray:
    """Least-squares similarity dst ~ s R src + t (Umeyama 1991). Returns (4, 4) dstTsrc."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    U, S, Vt = np.linalg.svd(cov)
    D = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[2, 2] = -1
    R = U @ D @ Vt
    s = np.trace(np.diag(S) @ D) / xs.var(0).sum() if with_scale else 1.0
    T = np.eye(4)
    T[:3, :3] = s * R
    T[:3, 3] = mu_d - s * R @ mu_s
    return T
