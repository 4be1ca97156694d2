"""Training pairs of the refinement network, built on the fly from prepared folders: each
record's ground-truth hand (right hands; left records mirrored with their object) perturbed at
random, the target being the ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from hoitool.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from hoitool.hand.model import HandParams
from hoitool.prior.data import InteractionData, _object_transform

#: x-mirror of the object frame (left records' hands are mirrored into right hands).
_MIRROR = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))


@dataclass
class Perturbation:
    """Gaussian noise that turns a ground-truth hand into a training input."""

    articulation: float = 0.15
    """Standard deviation (rad) of the noise on each of the 45 articulation components."""
    rotation: float = 0.1
    """Standard deviation (rad) of each component of an axis-angle turn about the wrist (object
    frame); 0.1 per axis is about 9 degrees in all on average."""
    translation_m: float = 0.01
    """Standard deviation (metres) of the shift along each axis."""


def perturb(params: HandParams, generators: list[torch.Generator], p: Perturbation) -> HandParams:
    """Perturbed copies of hands (B), sample i drawn from generators[i] only (on the CPU, then moved)."""
    noise = torch.stack([torch.randn(51, generator=g) for g in generators]).to(params.transl)
    R = axis_angle_to_matrix(noise[:, 45:48] * p.rotation) @ axis_angle_to_matrix(params.global_orient)
    # global_orient turns about the wrist: a new rotation with the same transl turns the hand about it
    return HandParams(matrix_to_axis_angle(R), params.hand_pose + noise[:, :45] * p.articulation, params.betas,
                      params.transl + noise[:, 48:51] * p.translation_m, params.side)


class RefineData:
    """The records of prepared folders as (right hand, object SDF, uTo) triples.

    Attributes:
        hand: (N) ground-truth right-hand parameters in the (mirrored, for left records) object frame.
        uTo: (N, 4, 4) that frame -> the object's unit-ball frame u.
    """

    def __init__(self, roots: str | Path | list):
        self.data = InteractionData(roots)
        self.roots = self.data.roots
        d = self.data
        uTo = torch.stack([torch.as_tensor(_object_transform(d.roots[k], o), dtype=torch.float32) for k, o in d.objects])
        uTo = uTo[d.object_index]
        # uTn = uTo @ hTo^-1 @ nTh^-1 turns handedness exactly when hTo holds the x-mirror
        mirrored = torch.linalg.det(d.uTn[:, :3, :3]) < 0
        self.uTo = torch.where(mirrored[:, None, None], uTo @ _MIRROR, uTo)
        self.hand = d.hand

    def __len__(self) -> int:
        return len(self.data)

    def batch(self, idx: torch.Tensor, device: torch.device | str = "cpu") -> tuple[HandParams, torch.Tensor, torch.Tensor]:
        """(ground-truth hands (B), SDF grids (B, 1, R, R, R), uTo (B, 4, 4)) on `device`."""
        idx = torch.as_tensor(idx)
        sdf = torch.stack([self.data.object_sdf(int(o), device) for o in self.data.object_index[idx]])
        return self.hand[idx].to(device), sdf, self.uTo[idx].to(device)
