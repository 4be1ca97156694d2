"""Measures of generated HOI images (hoitool.metrics.hoi_images) against answers worked out by hand
and slow per-pixel references."""

import numpy as np
import pytest

from hoitool.metrics.hoi_images import (
    BACKGROUND,
    HAND,
    OBJECT,
    FrameDifference,
    contact_recall,
    dilate,
    keypoint_box_size,
    pck,
    regions_touch,
    segmentation_iou,
    segmentation_labels,
    static_pixels,
    temporal_consistency,
)
from hoitool.render.conditions import SEG_HAND, SEG_OBJECT, segmentation_image

# ---------------------------------------------------------------- segmentation


def test_segmentation_labels_round_trip_with_condition_colours():
    rng = np.random.default_rng(0)
    hand = rng.random((2, 9, 7)) < 0.3
    obj = rng.random((2, 9, 7)) < 0.4
    seg = np.stack([segmentation_image(h, o) for h, o in zip(hand, obj)])
    lab = segmentation_labels(seg)
    expect = np.where(hand, HAND, np.where(obj, OBJECT, BACKGROUND))  # the hand wins where both are set
    np.testing.assert_array_equal(lab, expect)
    assert tuple(seg[0][hand[0]][0]) == SEG_HAND
    odd = np.full((1, 1, 3), 5, np.uint8)  # an unknown colour is background
    assert segmentation_labels(odd)[0, 0] == BACKGROUND


def test_iou_perfect_and_half_overlap():
    t = np.zeros((4, 4), np.uint8)
    t[:, :2] = HAND  # left half hand, right half background, no object
    r = segmentation_iou(t, t)
    np.testing.assert_allclose(r.iou[:2], [1.0, 1.0])
    assert np.isnan(r.iou[OBJECT])  # absent in both: left out of the mean
    assert r.miou == pytest.approx(1.0)
    p = np.zeros((4, 4), np.uint8)
    p[:, :1] = HAND  # predicts half of the hand; the other half is called background
    r = segmentation_iou(p, t)
    # hand: 4 / 8; background: 8 / 12
    assert r.iou[HAND] == pytest.approx(0.5)
    assert r.iou[BACKGROUND] == pytest.approx(8 / 12)
    assert r.miou == pytest.approx((0.5 + 8 / 12) / 2)


def test_iou_matches_per_pixel_reference_and_pools_images():
    rng = np.random.default_rng(1)
    p = rng.integers(0, 3, (3, 10, 12))
    t = rng.integers(0, 3, (3, 10, 12))
    r = segmentation_iou(p, t)
    for c in range(3):
        inter = sum(1 for a, b in zip(p.ravel(), t.ravel()) if a == c and b == c)
        union = sum(1 for a, b in zip(p.ravel(), t.ravel()) if a == c or b == c)
        assert r.iou[c] == pytest.approx(inter / union)
    assert r.confusion.sum() == p.size
    assert r.confusion[OBJECT, HAND] == int(((t == OBJECT) & (p == HAND)).sum())  # rows are the target


def test_iou_rejects_bad_input():
    with pytest.raises(ValueError):
        segmentation_iou(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(ValueError):
        segmentation_iou(np.full((2, 2), 3), np.zeros((2, 2), int))


# ---------------------------------------------------------------- touching regions


def _touch_reference(hand, obj, r):
    ys, xs = np.nonzero(hand)
    oy, ox = np.nonzero(obj)
    return any(max(abs(y - a), abs(x - b)) <= r for y, x in zip(ys, xs) for a, b in zip(oy, ox))


def test_touch_by_distance():
    for gap, touching in ((0, True), (1, False), (2, False)):
        hand = np.zeros((5, 10), bool)
        obj = np.zeros((5, 10), bool)
        hand[:, :3] = True
        obj[:, 3 + gap:] = True  # gap 0: adjacent columns; gap 1: one empty column between
        assert bool(regions_touch(hand, obj)) is touching, gap
    # diagonal neighbours touch (Chebyshev distance 1)
    hand = np.zeros((4, 4), bool)
    obj = np.zeros((4, 4), bool)
    hand[1, 1], obj[2, 2] = True, True
    assert regions_touch(hand, obj)
    # with radius 2 a one-pixel gap still touches
    hand = np.zeros((1, 6), bool)
    obj = np.zeros((1, 6), bool)
    hand[0, 0], obj[0, 2] = True, True
    assert not regions_touch(hand, obj) and regions_touch(hand, obj, radius=2)


def test_touch_no_wrap_around_and_batched_reference():
    hand = np.zeros((6, 6), bool)
    obj = np.zeros((6, 6), bool)
    hand[:, 0], obj[:, 5] = True, True  # opposite borders: must not wrap
    assert not regions_touch(hand, obj)
    rng = np.random.default_rng(2)
    h = rng.random((20, 7, 7)) < 0.06
    o = rng.random((20, 7, 7)) < 0.06
    got = regions_touch(h, o)
    assert got.shape == (20,)
    ref = [_touch_reference(a, b, 1) for a, b in zip(h, o)]
    assert list(got) == ref
    assert 0 < sum(ref) < 20  # the random cases include both answers


def test_dilate_square():
    m = np.zeros((7, 7), bool)
    m[3, 3] = True
    d = dilate(m, 2)
    assert d.sum() == 25 and d[1:6, 1:6].all()


def test_contact_recall():
    ref = np.array([True, True, True, False, False])
    tst = np.array([True, False, True, True, False])
    r = contact_recall(ref, tst)
    assert r.recall == pytest.approx(2 / 3)
    assert (r.positives, r.hits, r.frames, r.test_contacts) == (3, 2, 5, 3)
    assert np.isnan(contact_recall([False], [True]).recall)


# ---------------------------------------------------------------- PCK


def _hand(n=4, size=40.0, seed=3):
    rng = np.random.default_rng(seed)
    kp = rng.uniform(0, size, (n, 21, 2))
    kp[:, 0] = 0.0
    kp[:, 1] = [size, size / 2]  # box: max side exactly `size`
    return kp


def test_box_size():
    kp = np.array([[[0, 0], [10, 3], [4, 30]]], float)
    assert keypoint_box_size(kp)[0] == pytest.approx(30.0)


def test_pck_threshold_is_alpha_times_box():
    t = _hand(1)  # box 40 px: alpha 0.1 -> 4 px, 0.2 -> 8 px
    p = t.copy()
    p[0, :10] += [3.0, 0.0]  # 10 keypoints 3 px off: inside 4 px
    p[0, 10:15] += [0.0, 6.0]  # 5 keypoints 6 px off: inside 8, outside 4
    p[0, 15:] += [6.0, 8.0]  # 6 keypoints 10 px off: outside both
    assert pck(p, t, 0.1).pck_detected == pytest.approx(10 / 21)
    assert pck(p, t, 0.2).pck_detected == pytest.approx(15 / 21)


def test_pck_misses_count_as_wrong():
    t = _hand(4)
    p = t.copy()
    p[1] += 1000.0  # a detection far off
    det = np.array([True, True, False, False])  # two misses; their (garbage) keypoints are ignored
    p[2:] = 0.0
    r = pck(p, t, 0.1, det)
    assert (r.images, r.detected) == (4, 2)
    assert r.detection_rate == pytest.approx(0.5)
    assert r.pck_detected == pytest.approx(0.5)  # one right image, one wrong
    assert r.pck_all == pytest.approx(0.25)  # misses count as wrong
    none = pck(p, t, 0.1, np.zeros(4, bool))
    assert np.isnan(none.pck_detected) and none.pck_all == 0.0


def test_pck_scale_invariant():
    t = _hand(3)
    p = t + np.random.default_rng(4).normal(0, 3, t.shape)
    a = pck(p, t, 0.1)
    b = pck(p * 2.5, t * 2.5, 0.1)  # same hands at another image size
    assert a.pck_all == pytest.approx(b.pck_all)


# ---------------------------------------------------------------- temporal consistency


def test_static_pixels_exclude_hand_in_either_frame():
    hand = np.zeros((2, 1, 4), bool)
    obj = np.zeros((2, 1, 4), bool)
    obj[:, 0, 2:] = True  # object on columns 2, 3 (static)
    hand[0, 0, 0] = True  # hand on column 0 in frame 0
    hand[1, 0, 3] = True  # ... and on column 3 in frame 1 (occluding the object)
    s = static_pixels(hand, obj)
    np.testing.assert_array_equal(s.object[0, 0], [False, False, True, False])
    np.testing.assert_array_equal(s.background[0, 0], [False, True, False, False])


def test_consistency_zero_for_static_and_known_for_flicker():
    rng = np.random.default_rng(5)
    T, H, W = 4, 6, 8
    base = rng.integers(0, 256, (H, W, 3)).astype(np.float64)
    frames = np.repeat(base[None], T, 0)
    hand = np.zeros((T, H, W), bool)
    obj = np.zeros((T, H, W), bool)
    obj[:, :, 4:] = True
    for t in range(T):  # the hand moves; its pixels change colour
        hand[t, t, :2] = True
        frames[t][hand[t]] = rng.integers(0, 256, (2, 3))
    r = temporal_consistency(frames, hand, obj)
    assert r.object.mean == 0.0 and r.background.mean == 0.0
    assert r.object.pixels == (T - 1) * H * 4
    # every object pixel brightens by 10 every frame: the mean difference is 10
    flick = frames.copy()
    for t in range(T):
        flick[t][obj[t]] += 10 * t
    r = temporal_consistency(flick, hand, obj)
    assert r.object.mean == pytest.approx(10.0) and r.background.mean == 0.0
    # one channel off by 30 on one background pixel of one pair: 10 over the channel mean
    noisy = frames.copy()
    noisy[1, 5, 0, 0] += 30
    r = temporal_consistency(noisy, hand, obj)
    n = r.background.pixels
    assert r.background.total == pytest.approx(20.0)  # 10 in pair (0, 1), 10 in pair (1, 2)
    assert r.background.mean == pytest.approx(20.0 / n)


def test_frame_differences_pool_by_pixels():
    a, b = FrameDifference(10.0, 2), FrameDifference(0.0, 8)
    assert (a + b).mean == pytest.approx(1.0)
    assert np.isnan(FrameDifference(0.0, 0).mean)


def test_static_pixels_margin_leaves_out_the_hand_outline():
    hand = np.zeros((2, 1, 7), bool)
    obj = np.zeros((2, 1, 7), bool)
    obj[:, 0, 4:] = True
    hand[:, 0, 2] = True  # the same hand pixel in both frames
    s0, s1 = static_pixels(hand, obj), static_pixels(hand, obj, margin=1)
    np.testing.assert_array_equal(s0.background[0, 0], [1, 1, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(s1.background[0, 0], [1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(s0.object[0, 0], [0, 0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(s1.object[0, 0], [0, 0, 0, 0, 1, 1, 1])
    # an outline pixel that changes colour counts without the margin only
    frames = np.zeros((2, 1, 7, 3))
    frames[1, 0, 3] = 90.0
    assert temporal_consistency(frames, hand, obj).background.total == pytest.approx(90.0)
    assert temporal_consistency(frames, hand, obj, margin=1).background.total == 0.0
