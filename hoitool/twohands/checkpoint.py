"""Loading two-hand models: a run folder of `hoitool train twohands`, its model.pt, or the default
shipped in assets/models/twohands.pt."""

from __future__ import annotations

from pathlib import Path

import torch

from hoitool.twohands.model import TwoHandDiffusion
from hoitool.utils.modelfile import read_model


def load_twohand_model(path: str | Path | None = None, device: str | torch.device = "cpu") -> TwoHandDiffusion:
    d = read_model(path, "twohands")
    m = TwoHandDiffusion.from_config(d["config"], d["normaliser"])
    m.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in d["state_dict"].items()})
    m.source, m.step, m.type_names, m.hand = d["path"], d.get("step"), d.get("type_names", []), d.get("hand")
    return m.eval().to(device)


def load_feature_model(path: str | Path | None = None, device: str | torch.device = "cpu"):
    from hoitool.models.pointnet2 import pointnet2_from_dict
    from hoitool.twohands.features import TwoHandFeatures
    from hoitool.twohands.params import VectorNormaliser

    d = read_model(path, "twohands_features")
    sd = {k: v.float() if v.is_floating_point() else v for k, v in d["state_dict"].items()}
    m = TwoHandFeatures(pointnet2_from_dict(d["config"]).config, VectorNormaliser.from_state(d["normaliser"]),
                        {"right": sd["ids_right"], "left": sd["ids_left"]})
    m.load_state_dict(sd)
    m.source, m.step = d["path"], d.get("step")
    return m.eval().to(device)
