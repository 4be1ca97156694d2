"""Joint and keypoint orders.

The model's 16 joints come in MANO order: wrist; index 1-3; middle 1-3; little 1-3; ring 1-3;
thumb 1-3. Keypoints are 21 in OpenPose/MediaPipe order: wrist; thumb 1-4; index 1-4;
middle 1-4; ring 1-4; little 1-4, tips last in each finger (tips are model vertices).
"""

from __future__ import annotations

import torch

MANO_JOINT_NAMES = [
    "wrist",
    "index1", "index2", "index3",
    "middle1", "middle2", "middle3",
    "little1", "little2", "little3",
    "ring1", "ring2", "ring3",
    "thumb1", "thumb2", "thumb3",
]
MANO_PARENTS = [-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14]

#: Fingers in keypoint order.
FINGERS = ["thumb", "index", "middle", "ring", "little"]
#: MANO joint ids of each finger, proximal to distal.
FINGER_JOINTS = {
    "thumb": [13, 14, 15],
    "index": [1, 2, 3],
    "middle": [4, 5, 6],
    "ring": [10, 11, 12],
    "little": [7, 8, 9],
}

KEYPOINT_NAMES = ["wrist"] + [f"{f}{i}" for f in FINGERS for i in (1, 2, 3, 4)]
#: Index of each keypoint's joint in MANO order, or -(k+1) for the tip of finger k (FINGERS order).
KEYPOINT_SOURCE = [0] + [x for k, f in enumerate(FINGERS) for x in FINGER_JOINTS[f] + [-(k + 1)]]
#: Keypoint ids of the fingertips.
TIP_KEYPOINTS = [4, 8, 12, 16, 20]
#: Parent of each keypoint (for drawing skeletons).
KEYPOINT_PARENTS = [-1] + [p for k in range(5) for p in (0, 1 + 4 * k, 2 + 4 * k, 3 + 4 * k)]


def keypoints_from_joints(joints: torch.Tensor, vertices: torch.Tensor, tip_vertices: torch.Tensor) -> torch.Tensor:
    """21 keypoints (B, 21, 3) from joints (B, 16, 3), vertices (B, V, 3) and the five fingertip
    vertex ids (thumb, index, middle, ring, little)."""
    tips = vertices[:, tip_vertices]  # (B,5,3)
    joint_ids = torch.tensor([max(s, 0) for s in KEYPOINT_SOURCE], device=joints.device)
    kp = joints[:, joint_ids].clone()
    kp[:, TIP_KEYPOINTS] = tips
    return kp
