"""Measures of generated hand-object images against the geometry they were drawn from (HOIDiffusion).

    labels = segmentation_labels(seg)                      # (H, W) 0 background, 1 hand, 2 object
    iou = segmentation_iou(pred, labels)                   # per-class IoU and mIoU, pixels pooled
    touch = regions_touch(pred == HAND, pred == OBJECT)    # hand within 1 px of the object?
    rec = contact_recall(touch_true, touch_generated)      # share of true contacts kept
    p = pck(kp_detected, kp_true, alpha=0.1, detected=found)
    tc = temporal_consistency(frames, hand_masks, object_masks)   # static pixels, frame to frame

All functions take numpy arrays, pool over whatever batch they are given and return dataclasses.
Pixel coordinates follow hoitool's convention (pixel centres at integers); colour differences
are in 0-255 units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

BACKGROUND, HAND, OBJECT = 0, 1, 2
CLASS_NAMES = ("background", "hand", "object")


def segmentation_labels(seg: np.ndarray) -> np.ndarray:
    """Class labels (..., H, W) uint8 from segmentation images (..., H, W, 3) in HOIDiffusion's
    colours (hoitool.render.conditions): hand -> 1, object -> 2, anything else -> 0."""
    from hoitool.render.conditions import SEG_HAND, SEG_OBJECT

    seg = np.asarray(seg)
    if seg.shape[-1] != 3:
        raise ValueError(f"expected segmentation images (..., H, W, 3), got {seg.shape}")
    out = np.zeros(seg.shape[:-1], np.uint8)
    out[(seg == np.asarray(SEG_OBJECT, seg.dtype)).all(-1)] = OBJECT
    out[(seg == np.asarray(SEG_HAND, seg.dtype)).all(-1)] = HAND
    return out


@dataclass
class SegmentationIoU:
    """Intersection over union per class, from a confusion matrix of pixels pooled over images."""

    iou: np.ndarray  # (C,) float64; NaN for a class in neither prediction nor target
    confusion: np.ndarray  # (C, C) int64, rows target class, columns predicted class

    @property
    def miou(self) -> float:
        """Mean IoU over the classes that occur (in the target or the prediction)."""
        ok = np.isfinite(self.iou)
        return float(self.iou[ok].mean()) if ok.any() else float("nan")

    def per_class(self, names=CLASS_NAMES) -> dict[str, float]:
        return {n: float(v) for n, v in zip(names, self.iou)}


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int = 3) -> np.ndarray:
    """(C, C) int64 pixel counts, rows target class, columns predicted class, over label maps of
    any (equal) shape with values in [0, C)."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction and target differ in shape: {pred.shape} vs {target.shape}")
    p, t = pred.reshape(-1).astype(np.int64), target.reshape(-1).astype(np.int64)
    if p.size and (min(p.min(), t.min()) < 0 or max(p.max(), t.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes})")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def segmentation_iou(pred: np.ndarray, target: np.ndarray, num_classes: int = 3) -> SegmentationIoU:
    """Per-class IoU = TP / (TP + FP + FN) of label maps pred and target ((N, H, W) or (H, W)),
    pixels pooled over all images (a dataset's IoU, not a mean of per-image IoUs)."""
    cm = confusion_matrix(pred, target, num_classes)
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - np.diag(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    return SegmentationIoU(iou, cm)


def dilate(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    """Binary dilation of masks (..., H, W) by a (2r+1) x (2r+1) square: a pixel is set when some
    pixel within Chebyshev distance r is (nothing wraps around the image border)."""
    m = np.asarray(mask, dtype=bool)
    if radius <= 0:
        return m.copy()
    H, W = m.shape[-2:]
    pad = [(0, 0)] * (m.ndim - 2) + [(radius, radius), (radius, radius)]
    p = np.pad(m, pad)
    out = np.zeros_like(m)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= p[..., dy:dy + H, dx:dx + W]
    return out


def regions_touch(hand: np.ndarray, obj: np.ndarray, radius: int = 1) -> np.ndarray:
    """Whether the hand and object regions touch: some hand pixel within `radius` px (Chebyshev
    distance, so the 8 neighbours for radius 1) of an object pixel. Masks (..., H, W) bool;
    returns (...) bool (a 0-d array for one image)."""
    hand, obj = np.asarray(hand, dtype=bool), np.asarray(obj, dtype=bool)
    if hand.shape != obj.shape:
        raise ValueError(f"hand and object masks differ in shape: {hand.shape} vs {obj.shape}")
    return (hand & dilate(obj, radius)).any(axis=(-2, -1))


@dataclass
class ContactRecall:
    """Share of frames in contact by the reference that are also in contact in the test images."""

    recall: float  # hits / positives; NaN when there is no positive
    positives: int  # frames in contact by the reference
    hits: int  # of those, frames in contact in the test images
    frames: int  # frames scored
    test_contacts: int  # frames in contact in the test images (positives or not)


def contact_recall(reference: np.ndarray, test: np.ndarray) -> ContactRecall:
    """Contact recall of `test` (N,) bool against `reference` (N,) bool."""
    ref, tst = np.asarray(reference, dtype=bool).reshape(-1), np.asarray(test, dtype=bool).reshape(-1)
    if ref.shape != tst.shape:
        raise ValueError(f"reference and test differ in length: {ref.shape} vs {tst.shape}")
    pos, hits = int(ref.sum()), int((ref & tst).sum())
    return ContactRecall(hits / pos if pos else float("nan"), pos, hits, int(ref.size), int(tst.sum()))


def keypoint_box_size(keypoints: np.ndarray) -> np.ndarray:
    """Max side (pixels) of each hand's 2D keypoint bounding box: keypoints (..., K, 2) -> (...)."""
    kp = np.asarray(keypoints, dtype=np.float64)
    ext = kp.max(axis=-2) - kp.min(axis=-2)
    return ext.max(axis=-1)


@dataclass
class PCK:
    """Percentage of correct keypoints (as fractions 0-1) at one threshold alpha."""

    alpha: float
    images: int  # images scored
    detected: int  # images where the detector found a hand
    pck_detected: float  # correct keypoints / keypoints of detected images (NaN when none)
    pck_all: float  # correct keypoints / all keypoints: a missed hand counts as all wrong

    @property
    def detection_rate(self) -> float:
        return self.detected / self.images if self.images else float("nan")


def keypoint_correct(pred: np.ndarray, target: np.ndarray, alpha: float) -> np.ndarray:
    """(N, K) bool: |pred - target| <= alpha * max side of the target's keypoint box (per image),
    for pred and target (N, K, 2) pixels."""
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"expected pred and target of one shape (N, K, 2), got {pred.shape} and {target.shape}")
    thr = alpha * keypoint_box_size(target)  # (N,)
    return np.linalg.norm(pred - target, axis=-1) <= thr[:, None]


def pck(pred: np.ndarray, target: np.ndarray, alpha: float, detected: Optional[np.ndarray] = None) -> PCK:
    """PCK@alpha of detected keypoints pred (N, K, 2) against true keypoints target (N, K, 2),
    pixels; the threshold of an image is alpha times the max side of its true keypoint box.
    detected (N,) bool says which images had a hand found (default: all); the keypoints of the
    others are ignored."""
    ok = keypoint_correct(pred, target, alpha)
    n, k = ok.shape
    det = np.ones(n, bool) if detected is None else np.asarray(detected, dtype=bool).reshape(-1)
    if det.shape != (n,):
        raise ValueError(f"detected: expected ({n},), got {det.shape}")
    hits = int(ok[det].sum())
    nd = int(det.sum())
    return PCK(float(alpha), n, nd, hits / (nd * k) if nd else float("nan"), hits / (n * k) if n else float("nan"))


@dataclass
class FrameDifference:
    """Mean absolute colour difference (0-255, averaged over channels) over a set of pixels.
    Sums and counts are kept so results of several clips add up (`a + b`)."""

    total: float  # sum over pixels of the channel-mean absolute difference
    pixels: int

    @property
    def mean(self) -> float:
        return self.total / self.pixels if self.pixels else float("nan")

    def __add__(self, other: "FrameDifference") -> "FrameDifference":
        return FrameDifference(self.total + other.total, self.pixels + other.pixels)


def masked_frame_difference(frames: np.ndarray, mask: np.ndarray) -> FrameDifference:
    """|frame t+1 - frame t| over the pixels of mask[t], for consecutive frames (T, H, W, C) of
    one clip (0-255 values) and masks (T-1, H, W) bool."""
    f = np.asarray(frames, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    if f.ndim != 4 or m.shape != (f.shape[0] - 1, *f.shape[1:3]):
        raise ValueError(f"expected frames (T, H, W, C) and masks (T-1, H, W), got {f.shape} and {m.shape}")
    d = np.abs(f[1:] - f[:-1]).mean(-1)  # (T-1, H, W)
    return FrameDifference(float(d[m].sum()), int(m.sum()))


@dataclass
class StaticPixels:
    """Pixels that show the same static surface in frames t and t+1 (fixed camera, static
    object): no hand in either frame. Each (T-1, H, W) bool."""

    object: np.ndarray  # object in both frames
    background: np.ndarray  # neither hand nor object in both frames


def static_pixels(hand: np.ndarray, obj: np.ndarray, margin: int = 0) -> StaticPixels:
    """Static pixels of consecutive frame pairs from hand and object masks (T, H, W) bool.
    `margin` > 0 also leaves out pixels within that many px (Chebyshev) of the hand in either
    frame: in an antialiased render the hand's colour bleeds into the pixels along its outline."""
    hand, obj = np.asarray(hand, dtype=bool), np.asarray(obj, dtype=bool)
    if hand.shape != obj.shape or hand.ndim != 3:
        raise ValueError(f"expected hand and object masks (T, H, W) of one shape, got {hand.shape} and {obj.shape}")
    near = dilate(hand, margin)
    no_hand = ~near[1:] & ~near[:-1]
    return StaticPixels(no_hand & obj[1:] & obj[:-1], no_hand & ~obj[1:] & ~obj[:-1])


@dataclass
class TemporalConsistency:
    object: FrameDifference
    background: FrameDifference

    def __add__(self, other: "TemporalConsistency") -> "TemporalConsistency":
        return TemporalConsistency(self.object + other.object, self.background + other.background)


def temporal_consistency(frames: np.ndarray, hand: np.ndarray, obj: np.ndarray, margin: int = 0) -> TemporalConsistency:
    """Frame-to-frame colour change on static object and background pixels of one clip: frames
    (T, H, W, C) 0-255, hand and object masks (T, H, W) bool at the frames' resolution, `margin`
    as in `static_pixels`. Lower is more consistent; exactly 0 for a clip whose static pixels do
    not change."""
    s = static_pixels(hand, obj, margin)
    return TemporalConsistency(masked_frame_difference(frames, s.object), masked_frame_difference(frames, s.background))
