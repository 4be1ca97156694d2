"""Synthetic interaction clips: rendered masks, noisy keypoints, dropped frames, the rigid
grasp over the clip, and the folder written for `hoitool reconstruct`."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from hoitool.data.synthetic.clips import make_clip, read_truth, write_clip
from hoitool.data.synthetic.objects import make_object
from hoitool.hand.model import HandParams

NOISE = 2.0
FRAMES = 6


def _grasp(hand) -> HandParams:
    """A slightly curled hand, turned and placed beside the can (not a planned grasp: the
    clip only needs a rigid hand-object arrangement)."""
    p = HandParams.zeros(1)
    p.hand_pose[0, 2::3] = 0.3  # flex every finger joint a little
    p.global_orient = torch.tensor([[0.3, -0.4, 0.8]])
    with torch.no_grad():
        c = hand(p).vertices[0].mean(0)
    p.transl = (torch.tensor([0.0, 0.0, 0.045]) - c)[None]
    return p


@pytest.fixture(scope="module")
def can():
    return make_object("can", np.random.default_rng(3))


@pytest.fixture(scope="module")
def clip(right_hand, can):
    return make_clip(right_hand, can, _grasp(right_hand), "can", np.random.default_rng(0), frames=FRAMES, size=96,
                     noise_px=NOISE, drop=0.34, source="test-can")


def test_clip_shapes_and_masks(clip):
    T = FRAMES
    assert clip.frames.shape == (T, 96, 96, 3) and clip.frames.dtype == np.uint8
    assert clip.hand_masks.shape == clip.object_masks.shape == (T, 96, 96) and clip.hand_masks.dtype == bool
    assert clip.keypoints.shape == (T, 21, 2) and clip.keypoints.dtype == np.float32
    assert clip.confidence.shape == (T, 21) and clip.cTo.shape == (T, 4, 4)
    assert clip.hand_vertices.shape == (T, 778, 3) and clip.keypoints3d.shape == (T, 21, 3)
    assert clip.hand.batch_size == T
    assert (clip.hand_masks.sum((1, 2)) > 0).all() and (clip.object_masks.sum((1, 2)) > 0).all()
    assert not (clip.hand_masks & clip.object_masks).any()
    # the frames are not all the same picture: the scene moves
    assert np.abs(clip.frames[0].astype(int) - clip.frames[-1]).sum() > 0


def test_keypoints_noise_and_dropped_frames(clip):
    cam = clip.camera
    uv = cam.project(torch.as_tensor(clip.keypoints3d)).numpy()
    dropped = clip.dropped
    assert len(dropped) == round(0.34 * FRAMES) and 0 not in dropped
    for t in range(FRAMES):
        if t in dropped:
            assert (clip.confidence[t] == 0).all() and np.isnan(clip.keypoints[t]).all()
        else:
            assert (clip.confidence[t] == 1).all()
            err = np.linalg.norm(clip.keypoints[t] - uv[t], axis=-1)
            assert err.max() < 3 * NOISE + 1
    kept = np.setdiff1d(np.arange(FRAMES), dropped)
    err = clip.keypoints[kept] - uv[kept]
    assert 0.3 * NOISE < err.std() < 2 * NOISE  # the noise is there, with about the set size


def test_grasp_is_rigid_and_truth_consistent(clip, right_hand):
    with torch.no_grad():
        cTh = right_hand.frame_from_hand(clip.hand).double().numpy()
        out = right_hand(clip.hand)
    hTo = np.linalg.inv(cTh) @ clip.cTo
    assert np.abs(hTo - hTo[:1]).max() < 1e-5  # the hand-object pose is the same in every frame
    # the hand parameters reproduce the stored vertices and keypoints
    assert np.abs(out.vertices.numpy() - clip.hand_vertices).max() < 1e-5
    assert np.abs(out.keypoints.numpy() - clip.keypoints3d).max() < 1e-5
    # and the grasp in the object frame moved by cTo gives the same vertices
    with torch.no_grad():
        hv_o = right_hand(clip.grasp).vertices[0].double().numpy()
    hv = np.einsum("tij,vj->tvi", clip.cTo[:, :3, :3], hv_o) + clip.cTo[:, None, :3, 3]
    assert np.abs(hv - clip.hand_vertices).max() < 1e-5
    # cTo is rigid and the body turns over the clip
    R = clip.cTo[:, :3, :3]
    assert np.allclose(R @ R.transpose(0, 2, 1), np.eye(3), atol=1e-9)
    turn = np.degrees(np.arccos(np.clip((np.trace(R[0].T @ R[-1]) - 1) / 2, -1, 1)))
    assert 25 < turn < 65


def test_same_seed_same_clip(right_hand, can, clip):
    again = make_clip(right_hand, can, _grasp(right_hand), "can", np.random.default_rng(0), frames=FRAMES, size=96,
                      noise_px=NOISE, drop=0.34)
    assert np.array_equal(again.cTo, clip.cTo) and np.array_equal(again.frames, clip.frames)
    assert np.array_equal(again.dropped, clip.dropped)


def test_write_clip_and_read_truth(clip, tmp_path, right_hand):
    d = tmp_path / "clip"
    write_clip(clip, d)
    for sub in ("frames", "hand_masks", "object_masks"):
        names = sorted(p.name for p in (d / sub).iterdir())
        assert names == [f"{i:05d}.png" for i in range(FRAMES)]
    img = np.asarray(Image.open(d / "frames" / "00000.png"))
    assert np.array_equal(img, clip.frames[0])
    hm = np.asarray(Image.open(d / "hand_masks" / "00003.png"))
    assert np.array_equal(hm > 127, clip.hand_masks[3]) and set(np.unique(hm)) <= {0, 255}
    om = np.asarray(Image.open(d / "object_masks" / "00003.png"))
    assert np.array_equal(om > 127, clip.object_masks[3])
    kps = json.loads((d / "keypoints.json").read_text())
    assert len(kps) == FRAMES
    for t, k in enumerate(kps):
        if t in clip.dropped:
            assert k is None
        else:
            assert np.asarray(k).shape == (21, 3) and all(c == 1.0 for _, _, c in k)
            assert np.allclose(np.asarray(k)[:, :2], clip.keypoints[t], atol=1e-4)
    info = json.loads((d / "clip.json").read_text())
    assert info["category"] == "can" and info["frames"] == FRAMES and info["focal"] == pytest.approx(clip.camera.fx)
    assert info["source"] == "test-can" and info["dropped"] == clip.dropped.tolist()

    tr = read_truth(d)
    assert tr["camera"] == clip.camera
    for k in ("cTo", "hand_vertices", "keypoints3d"):
        assert np.allclose(tr[k], getattr(clip, k))
    assert np.allclose(tr["keypoints2d"], clip.keypoints, equal_nan=True)
    assert np.array_equal(tr["confidence"], clip.confidence)
    for k in HandParams.TENSORS:
        assert torch.equal(getattr(tr["hand"], k), getattr(clip.hand, k))
        assert torch.equal(getattr(tr["grasp"], k), getattr(clip.grasp, k))
    assert tr["hand"].side == "right" and tr["side"] == "right"
    assert np.allclose(tr["mesh"].vertices, clip.mesh.vertices, atol=1e-6)
    assert np.array_equal(tr["mesh"].faces, clip.mesh.faces)


def test_impossible_clip_raises(right_hand, can):
    with pytest.raises(RuntimeError, match="no trajectory"):
        make_clip(right_hand, can, _grasp(right_hand), "can", np.random.default_rng(0), frames=3, size=64,
                  min_pixels=10 ** 6, tries=2)
    with pytest.raises(ValueError):
        make_clip(right_hand, can, HandParams.zeros(2), "can", np.random.default_rng(0))


@pytest.mark.slow
def test_full_size_clip(right_hand, can):
    clip = make_clip(right_hand, can, _grasp(right_hand), "can", np.random.default_rng(5), frames=32, size=256)
    assert clip.frames.shape == (32, 256, 256, 3)
    assert len(clip.dropped) == 3 and 0 not in clip.dropped
    assert (clip.hand_masks.sum((1, 2)) >= 60).all() and (clip.object_masks.sum((1, 2)) >= 60).all()
