"""The refinement network's task for hoitool.train.loop: perturbed ground-truth grasps, refined
`iterations` times, vertex L2 to the ground truth after every iteration."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from hoitool.errors import InputError
from hoitool.geometry.rotations import axis_angle_to_matrix, matrix_to_rot6d
from hoitool.hand.model import HandModel, HandParams, hand_fingerprint
from hoitool.hand.subset import even_subset
from hoitool.refine.data import Perturbation, RefineData, perturb
from hoitool.refine.model import RefineConfig, RefineNet, refine_steps
from hoitool.utils.seeding import torch_generator


def vertex_error(hand: HandModel, a: HandParams, b: HandParams) -> torch.Tensor:
    """(B,) mean Euclidean distance (metres) between corresponding vertices of two hands."""
    return (hand(a).vertices - hand(b).vertices).norm(dim=-1).mean(-1)


def param_error(a: HandParams, b: HandParams) -> torch.Tensor:
    """(B,) mean square of articulation, rotation (6D) and translation (decimetres) differences."""
    da = (a.hand_pose - b.hand_pose).square().mean(-1)
    dr = (matrix_to_rot6d(axis_angle_to_matrix(a.global_orient)) - matrix_to_rot6d(axis_angle_to_matrix(b.global_orient))).square().mean(-1)
    dt = ((a.transl - b.transl) * 10).square().mean(-1)
    return da + dr + dt


class RefineTask:
    """Loss = mean over iterations of the vertex L2 (metres) to the ground truth, plus
    `param_weight` times the parameter term (param_error)."""

    name = "refinenet"

    def __init__(self, data: str | Path | list, model: RefineConfig | None = None, perturbation: Perturbation | None = None,
                 param_weight: float = 0.01, mano_dir: str | Path | None = None):
        from hoitool.train.tasks import data_config, prepared_hand

        self.model_cfg = model or RefineConfig()
        self.perturbation = perturbation or Perturbation()
        self.param_weight = float(param_weight)
        self.data = RefineData(data)
        self.roots = self.data.roots
        self._data_config = data_config(self.roots, None)
        self.hand = prepared_hand(self.roots[0], mano_dir)
        self.hand_sha = hand_fingerprint(self.hand)
        for root in self.roots[1:]:
            other = prepared_hand(root, mano_dir)
            if hand_fingerprint(other) != self.hand_sha:
                raise InputError(f"{root} was prepared with {other.source}, {self.roots[0]} with {self.hand.source}: "
                                 "prepare every --data folder with the same hand model")
        self.vertex_ids = torch.as_tensor(even_subset(self.hand, self.model_cfg.surface_points))

    def config(self) -> dict:
        return {"model": {**asdict(self.model_cfg), "hand": self.hand_sha}, **self._data_config,
                "perturbation": asdict(self.perturbation), "param_weight": self.param_weight, "hand": self.hand.source,
                "records": len(self.data)}

    def build(self, device: torch.device) -> nn.Module:
        return RefineNet(self.model_cfg, self.vertex_ids)

    def size(self) -> int:
        return len(self.data)

    def pairs(self, idx, keys: list, device: torch.device | str = "cpu") -> tuple[HandParams, HandParams, torch.Tensor, torch.Tensor]:
        """(perturbed input, ground truth, SDF grids, uTo) of records `idx`, sample i drawn from keys[i]."""
        gt, sdf, uTo = self.data.batch(idx, device)
        x = perturb(gt, [torch_generator(*k, "perturb") for k in keys], self.perturbation)
        return x, gt, sdf, uTo

    def loss(self, model, idx, keys, device):
        x, gt, sdf, uTo = self.pairs(idx, keys, device)
        hand = self.hand.to(device)
        steps = refine_steps(model, hand, x, sdf, uTo)
        verts_gt = hand(gt).vertices
        v = torch.stack([(hand(s).vertices - verts_gt).norm(dim=-1).mean() for s in steps])
        p = torch.stack([param_error(s, gt).mean() for s in steps])
        loss = v.mean() + self.param_weight * p.mean()
        with torch.no_grad():
            v0 = (hand(x).vertices - verts_gt).norm(dim=-1).mean()
        return loss, {"vertex_in_mm": 1000 * v0.item(), "vertex_out_mm": 1000 * v[-1].item()}

    def export(self, model: nn.Module) -> dict:
        return {"config": asdict(self.model_cfg), "perturbation": asdict(self.perturbation), **self._data_config,
                "hand": self.hand.source, "hand_sha": self.hand_sha}
