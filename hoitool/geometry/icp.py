"""Iterated closest point alignment of point sets (correspondences re-found every iteration).

`icp` fits, by mode: a translation ("translation"); a uniform scale about a centre plus a
translation ("scale"); a uniform scale about a centre and nothing else ("ray": no
translation, so seen from a camera at the centre nothing moves in the image); or a rotation,
scale and translation ("similarity").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from hoitool.geometry.transforms import np_apply, umeyama


@dataclass
class ICPResult:
    transform: np.ndarray
    """(4, 4) mapping source points onto the target. For mode "ray" it is s * I about the
    centre c: linear part s * I, translation column (1 - s) * c, which is zero for the
    default centre (the origin)."""
    error: float
    """Mean distance from moved source points to their nearest target points at the end."""
    iterations: int


def icp(source: np.ndarray, target: np.ndarray, mode: str = "translation", iters: int = 30, tol: float = 1e-7,
        scale_about: np.ndarray | None = None, trim: float = 1.0) -> ICPResult:
    """Align source (N, 3) to target (M, 3), both in the same units (metres).

    Args:
        mode: what the transform may do.
            "translation": a translation only.
            "scale": a uniform scale s about `scale_about` plus a free translation.
            "ray": a uniform scale s about `scale_about` and nothing else: no translation
            is fitted (the transform's translation column is (1 - s) * scale_about, zero
            when it is the origin); every point slides along its ray from that centre, so
            from a camera there nothing moves in the image. Use "scale" when a
            translation is wanted too.
            "similarity": rotation, uniform scale and translation (Umeyama).
        scale_about: (3,) centre of the scale for "scale" and "ray"; default the origin
            (the camera centre for points in the camera frame).
        trim: use only this fraction of the closest correspondences each iteration.
        iters: at most this many iterations.
        tol: stop when the mean distance changes by less than this.

    Returns:
        ICPResult with the (4, 4) transform, the final mean nearest-point distance and the
        iterations run.
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
