"""Iterated closest point alignment of point sets (correspondences re-found every iteration).

`icp` fits a translation, a translation and a uniform scale, or a full similarity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from hoitool.geometry.transforms import np_apply, umeyama


@dataclass
class ICPResult:
    transform: np.ndarray
    """(4, 4) mapping source points onto the target."""
    error: float
    """Mean distance from moved source points to their nearest target points at the end."""
    iterations: int


def icp(source: np.ndarray, target: np.ndarray, mode: str = "translation", iters: int = 30, tol: float = 1e-7,
        scale_about: np.ndarray | None = None, trim: float = 1.0) -> ICPResult:
    """Align source (N, 3) to target (M, 3).

    Args:
        mode: "translation"; "scale" (a uniform scale about `scale_about`, default the
            origin, plus a translation); "ray" (a uniform scale about `scale_about` alone:
            seen from a camera at that point, nothing moves in the image); "similarity"
            (rotation, scale, translation).
        trim: use only this fraction of the closest correspondences each iteration.
        tol: stop when the mean distance changes by less than this.
    """
    tree = cKDTree(target)
    T = np.eye(4)
    prev = np.inf
    c = np.zeros(3) if scale_about is None else np.asarray(scale_about, dtype=np.float64)
    it = 0
    for it in range(1, iters + 1):
        cur = np_apply(T, source)
        d, j = tree.query(cur)
        keep = np.argsort(d)[: max(3, int(np.ceil(trim * len(d))))]
        src, dst = cur[keep], target[j[keep]]
        if mode == "translation":
            step = np.eye(4)
            step[:3, 3] = (dst - src).mean(0)
        elif mode == "scale":
            x, y = src - c, dst - c
            xm, ym = x.mean(0), y.mean(0)
            xc = x - xm
            s = float((xc * (y - ym)).sum() / max((xc * xc).sum(), 1e-12))
            s = max(s, 1e-3)
            step = np.eye(4)
            step[:3, :3] *= s
            step[:3, 3] = c + ym - s * xm - s * c
        elif mode == "ray":
            x, y = src - c, dst - c
            s = max(float((x * y).sum() / max((x * x).sum(), 1e-12)), 1e-3)
            step = np.eye(4)
            step[:3, :3] *= s
            step[:3, 3] = c - s * c
        elif mode == "similarity":
            step = umeyama(src, dst, with_scale=True)
        else:
            raise ValueError(f"unknown ICP mode {mode!r}")
        T = step @ T
        err = float(d[keep].mean())
        if abs(prev - err) < tol:
            break
        prev = err
    d, _ = tree.query(np_apply(T, source))
    return ICPResult(T, float(d.mean()), it)
