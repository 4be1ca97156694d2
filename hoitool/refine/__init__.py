"""Cao et al.'s (2021) refinement network: iterative updates of a hand's pose from hand-to-object
distance features sampled from the object's SDF grid.

    from hoitool.refine import load_refinenet, refine_hand
    net, info = load_refinenet("runs/refine")
    res = refine_hand(net, hand, params, sdf, uTo, iterations=3)   # res.params: HandParams
"""

from hoitool.refine.features import HandPoints, SDFFeatures, sdf_features
from hoitool.refine.model import RefineConfig, RefineNet, RefineResult, load_refinenet, refine_hand, refine_steps

__all__ = ["HandPoints", "SDFFeatures", "sdf_features", "RefineConfig", "RefineNet", "RefineResult", "load_refinenet",
           "refine_hand", "refine_steps"]
