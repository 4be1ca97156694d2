"""Condition images of HOI data (HOIDiffusion): the 2D hand skeleton and the segmentation map.

    skel = skeleton_image(uv, (256, 256))          # (256, 256, 3) uint8: bones, then joints
    seg = segmentation_image(hand_mask, obj_mask)   # (H, W, 3) uint8 in HOIDiffusion's colours

Skeleton: bones as filled ellipses (half-width 3 px) from each keypoint to its parent, joints as
filled circles (radius 3 px), both in their finger's colour (the wrist white), on black.
Segmentation: hand (128, 128, 128), object (153, 51, 51), background black; where both masks
are set the hand wins (it is in front where it occludes the object).
"""

from __future__ import annotations

import math

import numpy as np

from hoitool.hand.keypoints import KEYPOINT_PARENTS

SEG_HAND = (128, 128, 128)
SEG_OBJECT = (153, 51, 51)
WRIST_COLOUR = (255, 255, 255)
#: Thumb, index, middle, ring, little (RGB).
FINGER_COLOURS = ((255, 0, 0), (255, 170, 0), (0, 200, 0), (0, 170, 255), (170, 0, 255))
JOINT_RADIUS = 3
BONE_HALF_WIDTH = 3


def keypoint_colour(k: int) -> tuple[int, int, int]:
    """RGB colour of keypoint k (OpenPose order): the wrist white, then its finger's."""
    return WRIST_COLOUR if k == 0 else FINGER_COLOURS[(k - 1) // 4]


def skeleton_image(uv: np.ndarray, size: tuple[int, int], visible: np.ndarray | None = None,
                   radius: int = JOINT_RADIUS, half_width: int = BONE_HALF_WIDTH) -> np.ndarray:
    """(H, W, 3) uint8 image of a 21-keypoint hand skeleton at pixel positions uv (21, 2).
    `visible` (21,) bool leaves out keypoints (and their bones) that are not; points outside
    the image are clipped by the drawing, non-finite ones skipped."""
    import cv2

    H, W = size
    img = np.zeros((H, W, 3), dtype=np.uint8)
    uv = np.asarray(uv, dtype=np.float64).reshape(21, 2)
    ok = np.isfinite(uv).all(1)
    if visible is not None:
        ok &= np.asarray(visible, dtype=bool).reshape(21)
    for k in range(1, 21):
        p = KEYPOINT_PARENTS[k]
        if not (ok[k] and ok[p]):
            continue
        a, b = uv[p], uv[k]
        mid = (a + b) / 2
        length = float(np.linalg.norm(b - a))
        angle = math.degrees(math.atan2(b[1] - a[1], b[0] - a[0]))
        poly = cv2.ellipse2Poly((int(round(mid[0])), int(round(mid[1]))), (int(round(length / 2)), int(half_width)),
                                int(round(angle)), 0, 360, 10)
        cv2.fillConvexPoly(img, poly, keypoint_colour(k), lineType=cv2.LINE_AA)
    for k in range(21):
        if ok[k]:
            cv2.circle(img, (int(round(uv[k, 0])), int(round(uv[k, 1]))), int(radius), keypoint_colour(k), -1, lineType=cv2.LINE_AA)
    return img


def segmentation_image(hand_mask: np.ndarray, object_mask: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 segmentation in HOIDiffusion's colours from boolean masks (H, W)."""
    hand = np.asarray(hand_mask, dtype=bool)
    obj = np.asarray(object_mask, dtype=bool)
    if hand.shape != obj.shape:
        raise ValueError(f"hand and object masks differ in size: {hand.shape} vs {obj.shape}")
    out = np.zeros((*hand.shape, 3), dtype=np.uint8)
    out[obj] = SEG_OBJECT
    out[hand] = SEG_HAND
    return out
