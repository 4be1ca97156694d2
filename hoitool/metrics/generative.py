"""Distribution metrics over feature sets: Fréchet distance, kernel distance, precision/recall, diversity.

Features are (N, D) arrays, one row per sample, computed in float64. With two-hand features
(e.g. InterHandGen's) `frechet_distance` is FHID and `kernel_distance` is KHID; with image
features they are FID and KID.

    fid = frechet_distance(real_feats, fake_feats)
    kid, kid_std = kernel_distance(real_feats, fake_feats)
    precision, recall = precision_recall(real_feats, fake_feats, k=5)
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg

#: Distance blocks hold at most this many float64 entries (32 MiB), so 10,000 x 10,000 fits easily.
_BLOCK_ENTRIES = 1 << 22


def _features(x, name: str, min_samples: int = 2) -> np.ndarray:
    """x as a (N, D) float64 array; ValueError on NaN/inf or fewer than `min_samples` rows."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name}: expected features of shape (N, D), got {x.shape}")
    if len(x) < min_samples:
        raise ValueError(f"{name}: needs at least {min_samples} samples, got {len(x)}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: features contain NaN or inf")
    return x


def _same_dim(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")


def frechet_distance(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to a (N, D) and b (M, D):
    |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), in squared feature units.

    eps * I is added to both covariances when their product is singular (pytorch-fid's rule)."""
    a, b = _features(a, "a"), _features(b, "b")
    _same_dim(a, b)
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a = np.atleast_2d(np.cov(a, rowvar=False))
    s_b = np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
        warnings.simplefilter("always", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s_a @ s_b)
    singular = any(issubclass(w.category, linalg.LinAlgWarning) for w in caught)
    if singular or not np.all(np.isfinite(covmean)):
        offset = eps * np.eye(len(s_a))
        covmean = linalg.sqrtm((s_a + offset) @ (s_b + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real  # numerical noise: the product of two PSD matrices has a real root
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(s_a) + np.trace(s_b) - 2.0 * np.trace(covmean))


def _polynomial_mmd2(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef: float) -> float:
    """Unbiased squared MMD of x (m, D), y (m, D) with k(u, v) = (gamma u.v + coef)^degree."""
    m = len(x)
    k_xx = (gamma * (x @ x.T) + coef) ** degree
    k_yy = (gamma * (y @ y.T) + coef) ** degree
    k_xy = (gamma * (x @ y.T) + coef) ** degree
    same = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(same - 2.0 * k_xy.mean())


def kernel_distance(
    a: np.ndarray,
    b: np.ndarray,
    degree: int = 3,
    gamma: float | None = None,
    coef: float = 1.0,
    subsets: int = 50,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel distance (KID / KHID) of a (N, D) and b (M, D): (mean, std) over `subsets` random
    subsets of the unbiased squared MMD with the polynomial kernel (gamma x.y + coef)^degree.

    gamma defaults to 1/D; subset_size is capped at min(N, M); subsets are drawn without
    replacement from numpy's default_rng(seed)."""
    a, b = _features(a, "a"), _features(b, "b")
    _same_dim(a, b)
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    gamma = 1.0 / a.shape[1] if gamma is None else float(gamma)
    m = min(int(subset_size), len(a), len(b))
    if m < 2:
        raise ValueError(f"subset_size must be >= 2, got {subset_size}")
    rng = np.random.default_rng(seed)
    mmd = np.array([
        _polynomial_mmd2(a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)], degree, gamma, coef)
        for _ in range(subsets)
    ])
    return float(mmd.mean()), float(mmd.std())


def _pairwise_blocks(x: np.ndarray, y: np.ndarray):
    """Yield (start, d) with d (rows, M) the Euclidean distances from x[start:start+rows] to y."""
    rows = max(1, _BLOCK_ENTRIES // max(len(y), 1))
    y2 = np.einsum("ij,ij->i", y, y)
    for s in range(0, len(x), rows):
        xs = x[s:s + rows]
        d2 = np.einsum("ij,ij->i", xs, xs)[:, None] + y2[None, :] - 2.0 * (xs @ y.T)
        yield s, np.sqrt(np.maximum(d2, 0.0))


def _knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """(N,) distance from each row of x to its k-th nearest other row."""
    out = np.empty(len(x))
    for s, d in _pairwise_blocks(x, x):
        rows = np.arange(len(d))
        d[rows, s + rows] = np.inf  # not itself
        out[s:s + len(d)] = np.partition(d, k - 1, axis=1)[:, k - 1]
    return out


def _coverage(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> float:
    """Share of points (N, D) inside at least one ball (centres (M, D), radii (M,))."""
    hit = np.zeros(len(points), dtype=bool)
    for s, d in _pairwise_blocks(points, centres):
        hit[s:s + len(d)] = np.any(d <= radii[None, :], axis=1)
    return float(hit.mean())


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 5) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of real (N, D) and fake (M, D).

    Each set's manifold is the union of balls around its points with radius the distance to the
    point's k-th nearest other member. precision = share of fake points inside the real
    manifold; recall = share of real points inside the fake manifold. Distances are computed in
    blocks of at most 4M entries, so 10,000 x 10,000 sets need about 32 MiB at a time."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    real, fake = _features(real, "real", k + 1), _features(fake, "fake", k + 1)
    _same_dim(real, fake)
    precision = _coverage(fake, real, _knn_radii(real, k))
    recall = _coverage(real, fake, _knn_radii(fake, k))
    return precision, recall


def diversity(feats: np.ndarray, pairs: int = 200, seed: int = 0) -> float:
    """Mean Euclidean distance over `pairs` random pairs (i != j) of feats (N, D), drawn with
    numpy's default_rng(seed); in feature units."""
    x = _features(feats, "feats")
    if pairs < 1:
        raise ValueError(f"pairs must be >= 1, got {pairs}")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(x), pairs)
    j = rng.integers(0, len(x) - 1, pairs)
    j = j + (j >= i)  # uniform over the others
    return float(np.linalg.norm(x[i] - x[j], axis=1).mean())
