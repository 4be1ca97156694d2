"""Approach trajectories and look-at cameras (the first pieces of HOI data rendering)."""

import json
import math

import numpy as np
import pytest
import torch

from hoitool.geometry.rotations import axis_angle_to_matrix, rotation_angle
from hoitool.hand.model import HandParams
from hoitool.render.trajectory import approach_direction, grasp_trajectory, look_at_camera


def _grasp(hand, seed=0):
    from hoitool.hand.prior import PosePrior

    g = torch.Generator().manual_seed(seed)
    pose = PosePrior.from_hand(hand).sample(1, g, closure=torch.tensor([[0.7]]))
    return HandParams(torch.tensor([[0.3, -1.2, 0.5]]), pose, 0.5 * torch.randn(1, 10, generator=g), torch.tensor([[0.02, -0.01, 0.05]]), hand.side)


@pytest.mark.parametrize("side", ["right", "left"])
def test_trajectory_runs_from_open_and_back_to_the_grasp(side, right_hand, left_hand):
    hand = right_hand if side == "right" else left_hand
    grasp = _grasp(hand)
    traj = grasp_trajectory(hand, grasp, frames=8)
    assert traj.batch_size == 8
    # the last frame is the grasp, the first a flat hand 0.3 m back against the palm's direction
    for k in HandParams.TENSORS:
        assert torch.allclose(getattr(traj, k)[-1], getattr(grasp, k)[0])
    assert torch.allclose(traj.hand_pose[0], torch.zeros(45))
    d = approach_direction(hand, grasp)[0]
    assert torch.allclose(traj.transl[0], grasp.transl[0] - 0.3 * d, atol=1e-6)
    # the orientation never changes; the palm centre moves monotonically towards the grasp
    assert torch.allclose(traj.global_orient, grasp.global_orient.expand(8, 3))
    steps = (traj.transl[1:] - traj.transl[:-1]).norm(dim=1)
    assert torch.allclose(steps, torch.full((7,), 0.3 / 7), atol=1e-6)
    # per-joint slerp from the identity: every joint keeps its axis and turns by s times its angle
    R_end = axis_angle_to_matrix(grasp.hand_pose.reshape(15, 3))
    for k, s in ((2, 2 / 7), (5, 5 / 7)):
        R = axis_angle_to_matrix(traj.hand_pose[k].reshape(15, 3))
        assert torch.allclose(rotation_angle(R), s * rotation_angle(R_end), atol=1e-5)


def test_approach_points_from_the_palm_into_the_object(right_hand):
    """With no rotation the approach is the rest palm normal; the open start sits on the back side."""
    g = HandParams.zeros(1, "right")
    d = approach_direction(right_hand, g)[0]
    assert torch.allclose(d, torch.as_tensor(right_hand.metadata.palm_normal, dtype=torch.float32), atol=1e-6)
    with pytest.raises(ValueError):
        grasp_trajectory(right_hand, HandParams.zeros(2, "right"))


def test_look_at_camera_ranges_and_centre():
    centre = np.array([0.1, -0.05, 0.2])
    for seed in range(20):
        cam, cTo = look_at_camera(centre, np.random.default_rng(seed), size=256)
        R, t = cTo[:3, :3], cTo[:3, 3]
        assert np.allclose(R @ R.T, np.eye(3), atol=1e-9) and np.linalg.det(R) > 0
        c = R @ centre + t  # the centre in the camera frame: straight ahead
        assert np.allclose(c[:2], 0, atol=1e-9) and 0.35 <= c[2] <= 0.45
        eye = -R.T @ t
        elev = math.degrees(math.asin((eye - centre)[2] / np.linalg.norm(eye - centre)))
        assert 5.0 - 1e-6 <= elev <= 60.0 + 1e-6
        uv = cam.project(torch.as_tensor(c[None], dtype=torch.float32))[0]
        assert torch.allclose(uv, torch.tensor([127.5, 127.5]))
        # the object frame's up (+z) points up in the image (towards smaller v)
        above = cam.project(torch.as_tensor((R @ (centre + [0, 0, 0.05]) + t)[None], dtype=torch.float32))[0]
        assert above[1] < 127.5


def _straight_hand():
    """21 keypoints: the wrist at (128, 200), each finger a straight vertical line."""
    uv = np.zeros((21, 2))
    uv[0] = (128, 200)
    for f in range(5):
        for j in range(4):
            uv[1 + 4 * f + j] = (60 + 34 * f, 160 - 25 * j)
    return uv


def test_skeleton_image_colours_joints_and_bones():
    from hoitool.render.conditions import FINGER_COLOURS, WRIST_COLOUR, keypoint_colour, skeleton_image

    uv = _straight_hand()
    img = skeleton_image(uv, (256, 256))
    assert img.shape == (256, 256, 3) and img.dtype == np.uint8
    assert tuple(img[200, 128]) == WRIST_COLOUR
    for k in range(1, 21):
        u, v = uv[k].astype(int)
        assert tuple(img[v, u]) == keypoint_colour(k)
    # a bone's midpoint between two joints of the index finger is drawn in its colour, 3 px half-width
    u, v = int(uv[6, 0]), int((uv[6, 1] + uv[7, 1]) / 2)
    assert tuple(img[v, u]) == FINGER_COLOURS[1]
    assert tuple(img[v, u + 6]) == (0, 0, 0)
    assert tuple(img[5, 5]) == (0, 0, 0)
    # a hidden fingertip and its bone are left out; points off the image and NaN do not fail
    vis = np.ones(21, bool)
    vis[20] = False
    hidden = skeleton_image(uv, (256, 256), visible=vis)
    u, v = uv[20].astype(int)
    assert tuple(hidden[v, u]) == (0, 0, 0)
    far = uv.copy()
    far[4] = (-50, 900)
    far[8] = (np.nan, np.nan)
    assert skeleton_image(far, (256, 256)).any()


def test_segmentation_colours_and_occlusion():
    from hoitool.render.conditions import SEG_HAND, SEG_OBJECT, segmentation_image

    hand = np.zeros((8, 8), bool)
    obj = np.zeros((8, 8), bool)
    hand[:4] = True
    obj[2:6] = True
    seg = segmentation_image(hand, obj)
    assert tuple(seg[0, 0]) == SEG_HAND and tuple(seg[3, 0]) == SEG_HAND  # the hand in front
    assert tuple(seg[5, 0]) == SEG_OBJECT and tuple(seg[7, 0]) == (0, 0, 0)
    with pytest.raises(ValueError):
        segmentation_image(hand, obj[:4])


def test_render_frame_maps_agree_with_geometry_and_read_back(right_hand, tmp_path):
    """A grasp on a box: keypoint pixels project the 3D labels; depth at the object's pixels
    matches the box's camera-frame depth range; normals are unit and face the camera; the frame
    reads back the same (depth exactly)."""
    import trimesh

    from hoitool.render.hoi_frame import read_frame, render_frame, write_frame

    box = trimesh.creation.box((0.06, 0.06, 0.12))
    g = HandParams.zeros(1, "right")
    g.transl[:] = torch.tensor([[-0.05, 0.06, 0.0]])
    cam, cTo = look_at_camera(np.zeros(3), np.random.default_rng(3), size=128)
    f = render_frame(right_hand, g, box, cam, cTo)
    assert f.rgb.shape == (128, 128, 3) and f.object_mask.any()
    kp = torch.tensor(f.labels["keypoints_3d_camera_m"])
    assert torch.allclose(cam.project(kp), torch.tensor(f.labels["keypoints_2d_px"]), atol=1e-2)
    corners = (np.asarray(box.vertices) @ cTo[:3, :3].T + cTo[:3, 3])[:, 2]
    d = f.depth[f.object_mask]
    assert d.min() >= corners.min() - 1e-3 and d.max() <= corners.max() + 1e-3
    fg = f.depth > 0
    assert np.allclose(np.linalg.norm(f.normals[fg], axis=-1), 1, atol=1e-3)
    # visible surfaces face the camera: their normals point against the viewing ray (z forward)
    assert (f.normals[f.object_mask][:, 2] < 0.05).mean() > 0.95
    # a box's faces are flat: its pixels' normals are its face normals (turned into the camera frame)
    faces_c = np.unique(np.round(box.face_normals @ cTo[:3, :3].T, 6), axis=0)
    cos = (f.normals[f.object_mask] @ faces_c.T).max(1)
    assert (cos > 0.99).mean() > 0.9
    write_frame(tmp_path, f, "000")
    back = read_frame(tmp_path, "000")
    assert np.array_equal(back.rgb, f.rgb) and np.array_equal(back.object_mask, f.object_mask)
    assert np.array_equal(back.depth, f.depth)
    assert np.allclose(back.normals[fg], f.normals[fg], atol=0.02)
    assert back.labels == json.loads(json.dumps(f.labels))


def test_random_appearance_is_seeded_and_composited(right_hand):
    """The same seed gives the same look; backgrounds vary with the seed; the background shows
    exactly where neither the hand nor the object is, and the maps do not depend on the look."""
    import trimesh

    from hoitool.render.appearance import random_appearance, random_background
    from hoitool.render.hoi_frame import render_frame

    a, b = random_appearance(np.random.default_rng(5), 64), random_appearance(np.random.default_rng(5), 64)
    assert np.array_equal(a.background, b.background) and a.object_color == b.object_color
    backs = [random_background(np.random.default_rng(s), 64) for s in range(12)]
    assert len({bk.tobytes() for bk in backs}) == 12 and all(bk.shape == (64, 64, 3) and bk.dtype == np.uint8 for bk in backs)
    box = trimesh.creation.box((0.06, 0.06, 0.12))
    g = HandParams.zeros(1, "right")
    g.transl[:] = torch.tensor([[-0.05, 0.06, 0.0]])
    cam, cTo = look_at_camera(np.zeros(3), np.random.default_rng(3), size=64)
    plain = render_frame(right_hand, g, box, cam, cTo)
    styled = render_frame(right_hand, g, box, cam, cTo, a)
    bg = ~(styled.hand_mask | styled.object_mask)
    assert np.array_equal(styled.rgb[bg], a.background[bg])
    assert np.array_equal(styled.depth, plain.depth) and np.array_equal(styled.segmentation, plain.segmentation)
