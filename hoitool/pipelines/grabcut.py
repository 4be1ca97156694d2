"""Hand and object masks of a photograph without learned weights: OpenCV's GrabCut seeded by a
box around the object and by the silhouette of the hand fitted to its 2D keypoints.

- the object: outside the box is background, inside it probably object, and the fitted hand's
  silhouette (its triangles rasterised through the camera, hidden fingers included) probably
  not object;
- the hand: the silhouette's core (eroded by `hand_core` of the hand's size) is hand, the rest
  of it probably hand, a band around it (`hand_band`) probably not, everything else and the
  object from the step before definitely not; the object is then that mask without the hand.

The silhouette is only *probably* not object: where the hand is behind the object it covers
the object, and as definite background it taught GrabCut the object's colours as background
(scripts/bench_masks.py: mean object IoU 0.54, against 0.85 this way).

GrabCut (Rother et al. 2004) fits colour mixtures to the seeds and cuts the pixel graph, a few
times over. It runs in a window around the box or the silhouette with background context
around it, shrunk to at most `max_side` pixels; the mask is scaled back to the image.

    masks = derive_masks(image, camera, hand, uv, conf, box=np.array([410, 220, 690, 560]))
    masks.hand, masks.object        # (H, W) bool
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from hoitool.geometry.camera import Camera
from hoitool.hand.model import HandModel, HandParams

#: Nearer than this (metres) a triangle is not rasterised.
NEAR_M = 1e-3


@dataclass
class GrabCutConfig:
    """Settings of the GrabCut masks (defaults: about 0.05-0.3 s per mask on one CPU core, plus the
    hand's keypoint fit, 1-2 s)."""

    iterations: int = 5
    """GrabCut iterations (colour mixtures re-fitted and the graph cut again each time)."""
    max_side: int = 400
    """Longer side, pixels, of the window GrabCut works in: larger windows are shrunk and the
    mask scaled back to the image."""
    context: float = 0.3
    """Background context around the object box or the hand's silhouette, as a share of its
    width / height on each side (GrabCut learns the background's colours there)."""
    hand_core: float = 0.06
    """Erosion of the hand's silhouette, as a share of the hand's size (the diagonal of its
    silhouette's box), that gives the definite-hand core (the palm: fingers are thinner); 0: no
    definite core."""
    hand_band: float = 0.06
    """Dilation of the hand's silhouette, the same unit: the band around it is probably not
    hand, and beyond it is background (the keypoint fit is off by about a finger's width)."""
    min_component: float = 0.05
    """Connected pieces smaller than this share of the largest piece are dropped."""
    seed: int = 0
    """OpenCV's random seed (GrabCut starts its colour mixtures with k-means)."""


@dataclass
class Window:
    """The part [x0, x1) x [y0, y1) of an image that GrabCut works in, resampled by `scale`."""

    x0: int
    y0: int
    x1: int
    y1: int
    scale: float

    @classmethod
    def around(cls, box: np.ndarray, shape: tuple[int, int], context: float, max_side: int) -> "Window":
        """A window holding `box` (x0, y0, x1, y1 pixels) and `context` of its size on each side, inside
        the image (H, W)."""
        H, W = shape
        bx0, by0, bx1, by1 = (float(v) for v in box)
        px, py = context * (bx1 - bx0) + 4, context * (by1 - by0) + 4
        x0, y0 = max(int(np.floor(bx0 - px)), 0), max(int(np.floor(by0 - py)), 0)
        x1, y1 = min(int(np.ceil(bx1 + px)) + 1, W), min(int(np.ceil(by1 + py)) + 1, H)
        return cls(x0, y0, x1, y1, min(1.0, max_side / max(x1 - x0, y1 - y0)))

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the resampled window."""
        return max(1, round((self.x1 - self.x0) * self.scale)), max(1, round((self.y1 - self.y0) * self.scale))

    def image(self, image: np.ndarray) -> np.ndarray:
        """The window of an (H, W, 3) image, resampled."""
        crop = np.ascontiguousarray(image[self.y0:self.y1, self.x0:self.x1])
        return crop if self.scale == 1.0 else cv2.resize(crop, self.size, interpolation=cv2.INTER_AREA)

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """The window of an (H, W) bool mask, resampled: pixels at least half covered."""
        crop = mask[self.y0:self.y1, self.x0:self.x1].astype(np.float32)
        if self.scale != 1.0:
            crop = cv2.resize(crop, self.size, interpolation=cv2.INTER_AREA)
        return crop >= 0.5

    def points(self, uv: np.ndarray) -> np.ndarray:
        """(N, 2) image pixels -> window pixels (pixel centres at integers in both)."""
        return (np.asarray(uv, np.float64) - [self.x0, self.y0] + 0.5) * self.scale - 0.5

    def paste(self, mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """A window mask back in an (H, W) bool image (False outside the window)."""
        w, h = self.x1 - self.x0, self.y1 - self.y0
        m = mask.astype(np.float32)
        if m.shape != (h, w):
            m = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
        out = np.zeros(shape, bool)
        out[self.y0:self.y1, self.x0:self.x1] = m >= 0.5
        return out


def _disc(radius: float) -> np.ndarray:
    r = max(int(round(radius)), 0)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def keep_large_components(mask: np.ndarray, min_share: float, pinned: np.ndarray | None = None) -> np.ndarray:
    """(H, W) bool without the 8-connected pieces smaller than `min_share` of the largest,
    except those holding a `pinned` (N, 2) pixel (u, v)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask.astype(bool)
    area = stats[1:, cv2.CC_STAT_AREA]
    keep = np.concatenate([[False], area >= min_share * area.max()])
    if pinned is not None and len(pinned):
        u, v = np.round(np.asarray(pinned)).astype(int).T
        ok = (u >= 0) & (u < mask.shape[1]) & (v >= 0) & (v < mask.shape[0])
        keep[labels[v[ok], u[ok]]] = True
        keep[0] = False
    return keep[labels]


def grabcut(image: np.ndarray, seeds: np.ndarray, iterations: int = 5, seed: int = 0) -> np.ndarray:
    """(H, W) bool foreground of GrabCut from a seed map.

    Args:
        image: (H, W, 3) uint8.
        seeds: (H, W) uint8 of cv2.GC_BGD, GC_FGD, GC_PR_BGD, GC_PR_FGD.
    Raises:
        ValueError: no pixel may be background (GrabCut needs both colour models).
    """
    fg = (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)
    if fg.sum() < 10:  # too few to fit a colour mixture: the seeds are the answer
        return fg
    if (~fg).sum() < 10:
        raise ValueError("no background pixels around the region to segment")
    if iterations == 0:
        return fg
    mask = np.ascontiguousarray(seeds, dtype=np.uint8).copy()
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(int(seed))
    cv2.grabCut(np.ascontiguousarray(image[..., :3], dtype=np.uint8), mask, None, bgd, fgd, int(iterations),
                cv2.GC_INIT_WITH_MASK)
    return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)


def silhouette(vertices: np.ndarray | torch.Tensor, faces: np.ndarray | torch.Tensor, camera: Camera) -> np.ndarray:
    """(H, W) bool: the pixels whose centres (at integers) a mesh covers, seen through `camera`.

    Every triangle in front of the camera is filled (the silhouette is their union), a pixel
    counting when its centre lies inside the triangle or on its edge.

    Args:
        vertices: (V, 3) camera frame (OpenCV), metres. faces: (F, 3).
    """
    v = torch.as_tensor(vertices).detach().cpu().double().numpy()
    f = torch.as_tensor(faces).detach().cpu().long().numpy()
    f = f[(v[f, 2] > NEAR_M).all(1)]
    z = np.maximum(v[:, 2], NEAR_M)
    uv = np.stack([camera.fx * v[:, 0] / z + camera.cx, camera.fy * v[:, 1] / z + camera.cy], 1)
    H, W = camera.height, camera.width
    out = np.zeros((H, W), bool)
    tri = uv[f]  # (F, 3, 2)
    lo = np.maximum(np.ceil(tri.min(1)), 0).astype(np.int64)
    hi = np.minimum(np.floor(tri.max(1)), [W - 1, H - 1]).astype(np.int64)
    for (a, b, c), (x0, y0), (x1, y1) in zip(tri, lo, hi):
        if x1 < x0 or y1 < y0:
            continue
        px, py = np.meshgrid(np.arange(x0, x1 + 1, dtype=np.float64), np.arange(y0, y1 + 1, dtype=np.float64))
        d = [(q[0] - p[0]) * (py - p[1]) - (q[1] - p[1]) * (px - p[0]) for p, q in ((a, b), (b, c), (c, a))]
        inside = ((d[0] >= 0) & (d[1] >= 0) & (d[2] >= 0)) | ((d[0] <= 0) & (d[1] <= 0) & (d[2] <= 0))
        out[y0:y1 + 1, x0:x1 + 1] |= inside
    return out


def hand_mask_from_silhouette(image: np.ndarray, hand_silhouette: np.ndarray, not_hand: np.ndarray | None = None,
                              cfg: GrabCutConfig | None = None) -> np.ndarray:
    """(H, W) bool: the visible hand, GrabCut seeded by the fitted hand's silhouette (see the
    module doc). `not_hand`: (H, W) bool pixels known not to be hand (a given object mask)."""
    cfg = cfg or GrabCutConfig()
    shape = hand_silhouette.shape
    ys, xs = np.nonzero(hand_silhouette)
    if len(xs) == 0:
        return np.zeros(shape, bool)
    size = float(np.hypot(np.ptp(xs) + 1, np.ptp(ys) + 1))
    box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float64)
    win = Window.around(box, shape, cfg.context + cfg.hand_band, cfg.max_side)
    sil = win.mask(hand_silhouette).astype(np.uint8)
    s = size * win.scale
    core = cv2.erode(sil, _disc(cfg.hand_core * s)) > 0
    band = cv2.dilate(sil, _disc(cfg.hand_band * s)) > 0
    seeds = np.full(sil.shape, cv2.GC_BGD, np.uint8)
    seeds[band] = cv2.GC_PR_BGD
    seeds[sil > 0] = cv2.GC_PR_FGD
    if cfg.hand_core > 0:
        seeds[core] = cv2.GC_FGD
    if not_hand is not None:
        seeds[win.mask(not_hand)] = cv2.GC_BGD
    m = grabcut(win.image(image), seeds, cfg.iterations, cfg.seed)
    m = win.paste(keep_large_components(m, cfg.min_component), shape)
    return m & ~not_hand if not_hand is not None else m


def object_mask_from_box(image: np.ndarray, box: np.ndarray, not_object: np.ndarray | None = None,
                         points: list[np.ndarray] | None = None, cfg: GrabCutConfig | None = None,
                         probably_not_object: np.ndarray | None = None) -> np.ndarray:
    """(H, W) bool: the visible object inside `box` (x0, y0, x1, y1 pixels), GrabCut seeded by the
    box (outside: background), by `not_object` (H, W) bool (definitely not object: a hand mask),
    `probably_not_object` (H, W) bool (the hand's silhouette) and `points` (u, v pixels,
    definitely object)."""
    cfg = cfg or GrabCutConfig()
    shape = image.shape[:2]
    box = np.asarray(box, np.float64)
    win = Window.around(box, shape, cfg.context, cfg.max_side)
    w, h = win.size
    inside = np.zeros((h, w), bool)
    (bx0, by0), (bx1, by1) = np.round(win.points(box.reshape(2, 2))).astype(int)
    inside[max(by0, 0):by1 + 1, max(bx0, 0):bx1 + 1] = True
    seeds = np.full((h, w), cv2.GC_BGD, np.uint8)
    seeds[inside] = cv2.GC_PR_FGD
    if probably_not_object is not None:
        seeds[inside & win.mask(probably_not_object)] = cv2.GC_PR_BGD
    if not_object is not None:
        seeds[win.mask(not_object)] = cv2.GC_BGD
    pts = win.points(np.asarray(points or [], np.float64).reshape(-1, 2))
    for u, v in np.round(pts).astype(int):
        cv2.circle(seeds, (int(u), int(v)), max(2, round(0.02 * max(w, h))), int(cv2.GC_FGD), -1)
    m = grabcut(win.image(image), seeds, cfg.iterations, cfg.seed)
    m = win.paste(keep_large_components(m, cfg.min_component, pts), shape)
    return m & ~not_object if not_object is not None else m


@dataclass
class PhotoMasks:
    """Masks of one photograph and what they came from."""

    hand: np.ndarray
    """(H, W) bool: the visible hand."""
    object: np.ndarray
    """(H, W) bool: the visible object."""
    hand_silhouette: np.ndarray | None
    """(H, W) bool: the silhouette of the hand fitted to the keypoints (None when not needed)."""
    hand_params: HandParams | None
    """That fitted hand (camera frame), reusable as reconstruct_image's stage 1."""


def fit_hand(hand: HandModel, uv: np.ndarray, conf: np.ndarray, camera: Camera) -> HandParams:
    """The hand fitted to 21 keypoints (pixels (21, 2), confidences (21,)), as reconstruction's
    stage 1 fits it."""
    from hoitool.hand.fitting import fit_to_2d_keypoints

    fit = fit_to_2d_keypoints(hand, torch.as_tensor(uv, dtype=torch.float32), camera,
                              torch.as_tensor(conf, dtype=torch.float32))
    return fit.params


#: A first object mask covering less than this share of its box is checked against the box alone.
SMALL_OBJECT_SHARE = 0.15


def derive_masks(image: np.ndarray, camera: Camera, hand: HandModel, uv: np.ndarray, conf: np.ndarray,
                 box: np.ndarray | None = None, hand_mask: np.ndarray | None = None, object_mask: np.ndarray | None = None,
                 points: list[np.ndarray] | None = None, cfg: GrabCutConfig | None = None) -> PhotoMasks:
    """The masks not given, by GrabCut (see the module doc for the seeds).

    With neither mask given: (1) the object from `box`, the fitted hand's silhouette probably not
    object; (2) the hand from that silhouette, (1) definitely not hand; (3) the object is (1)
    without the hand. When (1) covers less than 15 % of the box (a thin object whose colours
    GrabCut gives to the background, or a piece of the background picked instead), it is redone
    from the box alone and that is kept when it finds over four times more. A given mask is kept as it is and seeds the
    other as definitely not that.

    Args:
        image: (H, W, 3) uint8 RGB. camera: the image's camera.
        uv, conf: (21, 2) keypoint pixels, (21,) confidences.
        box: (4,) x0, y0, x1, y1 pixels around the object (needed unless object_mask is given).
        hand_mask, object_mask: (H, W) bool masks already known.
        points: u, v pixels on the object (definitely object).
    """
    cfg = cfg or GrabCutConfig()
    if object_mask is None and box is None:
        raise ValueError("the object's GrabCut mask needs a box around the object")
    params = sil = None
    if hand_mask is None:
        params = fit_hand(hand, uv, conf, camera)
        with torch.no_grad():
            verts = hand(params.to(hand.device)).vertices[0]
        sil = silhouette(verts, hand.faces, camera)
    if object_mask is not None:
        obj = object_mask
    elif hand_mask is not None:
        obj = object_mask_from_box(image, box, hand_mask, points, cfg)
    else:
        obj = object_mask_from_box(image, box, None, points, cfg, probably_not_object=sil)
        x0, y0, x1, y1 = np.asarray(box, np.float64)
        if obj.sum() < SMALL_OBJECT_SHARE * (x1 - x0) * (y1 - y0):
            # next to nothing (or a piece of the background behind): the box alone, when it finds
            # clearly more; otherwise the hand's GrabCut would take the object
            alone = object_mask_from_box(image, box, None, points, cfg)
            if obj.sum() < 0.25 * alone.sum():
                obj = alone
    if hand_mask is None:
        hand_mask = hand_mask_from_silhouette(image, sil, obj, cfg)
        if object_mask is None:
            obj = obj & ~hand_mask
    return PhotoMasks(hand_mask, obj, sil, params)
