"""The grasp ranking score: hold tiers first, then likelihood, penetration and contact."""

import numpy as np
import pytest
import trimesh

from hoitool.hand.model import HandModel
from hoitool.metrics.grasp import ContactQuality
from hoitool.pipelines.grasp import RankWeights, rank_grasps, rank_score


def _quality(fingers, palm, opposed, pen_mm):
    f = np.asarray(fingers, bool)
    return ContactQuality(np.asarray(pen_mm, float) / 1000, np.full(len(f), np.nan), f, np.asarray(palm, bool),
                          np.asarray(opposed, bool))


def test_a_grasp_touching_nothing_ranks_below_every_grasp_that_touches_whatever_its_likelihood():
    q = _quality([[1, 1, 1, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 0], [1, 1, 0, 0, 0]],
                 [0, 0, 0, 1], [1, 0, 0, 1], [2, 0, 0, 15])
    score, tier = rank_score(np.array([5.0, 3.0, -100.0, 0.0]), q)  # the empty one is the prior's favourite
    assert list(tier) == [0, 1, 2, 1]  # the last one opposes but penetrates 1.5 cm: it only touches
    assert np.argsort(score)[-1] == 2
    assert score[0] < score[1] and score[0] < score[3]


def test_within_a_tier_the_likelihood_decides_when_contact_and_depth_are_equal():
    q = _quality([[1, 1, 1, 1, 1]] * 3, [1, 1, 1], [1, 1, 1], [1, 1, 1])
    score, tier = rank_score(np.array([2.0, 0.5, 1.0]), q)
    assert list(tier) == [0, 0, 0]
    assert list(np.argsort(score)) == [1, 2, 0]
    assert np.all((score >= 0) & (score < 1))


def test_with_the_likelihood_weight_alone_the_order_inside_a_tier_is_the_likelihoods():
    rng = np.random.default_rng(0)
    lik = rng.normal(size=20)
    q = _quality(np.ones((20, 5)), np.ones(20), np.ones(20), rng.uniform(0, 5, 20))
    score, _ = rank_score(lik, q, RankWeights(likelihood=1.0, penetration=0.0, contact=0.0))
    assert list(np.argsort(score)) == list(np.argsort(lik))


def test_equal_likelihoods_get_equal_scores_and_negative_weights_are_refused():
    q = _quality([[1, 1, 1, 1, 1]] * 3, [1, 1, 1], [1, 1, 1], [2, 2, 2])
    score, _ = rank_score(np.array([0.7, 0.7, 0.7]), q)
    assert np.ptp(score) == 0
    with pytest.raises(ValueError, match="weights"):
        rank_score(np.zeros(3), q, RankWeights(likelihood=-1.0))


def test_a_hand_touching_with_a_vertex_outside_the_contact_zones_only_touches():
    q = _quality([[0, 0, 0, 0, 0]] * 2, [0, 0], [0, 0], [0, 0])
    q.nearest_m = np.array([0.002, 0.02])  # e.g. the back of the hand against the object; the other 2 cm away
    _, tier = rank_score(np.zeros(2), q)
    assert list(tier) == [1, 2]


def test_a_nan_likelihood_ranks_last_in_its_tier():
    q = _quality([[1, 1, 1, 1, 1]] * 3, [1, 1, 1], [1, 1, 1], [0, 0, 0])
    score, _ = rank_score(np.array([1.0, np.nan, 2.0]), q)
    assert np.argsort(score)[-1] == 1 and np.isfinite(score).all()


def test_rank_grasps_on_meshes_does_not_depend_on_where_the_scene_sits():
    """Tiers come from exact mesh distances: a hand far from the box touches nothing; moving
    hand and box together changes nothing."""
    from hoitool.hand.model import HandParams

    hand = HandModel("right")
    box = trimesh.creation.box((0.05, 0.07, 0.12))
    p = HandParams.zeros(2, "right")
    p.transl[1] += 1.0  # a metre away
    score, tier = rank_grasps(hand, box, p, np.zeros(2))
    assert tier[1] == 2
    moved = box.copy()
    moved.apply_translation([0.3, -0.2, 0.5])
    p2 = HandParams(p.global_orient.clone(), p.hand_pose.clone(), p.betas.clone(), p.transl + torch_tensor([0.3, -0.2, 0.5]), "right")
    score2, tier2 = rank_grasps(hand, moved, p2, np.zeros(2))
    assert list(tier2) == list(tier) and np.allclose(score2, score, atol=1e-6)


def torch_tensor(x):
    import torch

    return torch.tensor(x, dtype=torch.float32)
