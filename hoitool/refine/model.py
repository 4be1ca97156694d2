"""The refinement network and its iterative application (Cao et al. 2021, section 3.4).

One step: the hand is posed, its refinement points (an even subset of surface vertices and the 21
keypoints) read the object's signed distance and gradient direction (turned into the hand's
frame); an MLP maps those features and the current articulation to a residual update of the
articulation (45), the global rotation (an axis-angle turn about the wrist, in the hand's frame)
and the translation (in the hand's frame). Nothing depends on where the object's frame is.
The same weights are applied `iterations` times, the features recomputed after every update. The
last layer starts at zero, so an untrained network leaves the hand where it is.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from hoitool.errors import InputError
from hoitool.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from hoitool.hand.model import HandModel, HandParams, hand_fingerprint
from hoitool.refine.features import hand_points, sdf_features


@dataclass
class RefineConfig:
    """Sizes and scales of the refinement network."""

    surface_points: int = 64
    """Hand surface vertices read (an even subset of the template), besides the 21 keypoints."""
    width: int = 256
    """Width of the hidden layers."""
    depth: int = 3
    """Hidden layers."""
    iterations: int = 3
    """Refinement steps (shared weights), as the paper uses."""
    clamp_m: float = 0.05
    """Signed distances are clamped to +-clamp_m metres and divided by it."""
    pose_step: float = 0.5
    """Articulation update per unit output, radians."""
    rotation_step: float = 0.5
    """Global rotation update per unit output, radians."""
    translation_step_m: float = 0.05
    """Translation update per unit output, metres."""

    @property
    def num_points(self) -> int:
        return self.surface_points + 21

    @property
    def in_dim(self) -> int:
        return self.num_points * 4 + 45


class RefineNet(nn.Module):
    """MLP over per-point distance features and the current pose -> a residual pose update.

    Args:
        config: sizes and scales.
        vertex_ids: (surface_points,) the hand vertices read (kept with the weights).
    """

    def __init__(self, config: RefineConfig, vertex_ids: torch.Tensor):
        super().__init__()
        self.cfg = config
        ids = torch.as_tensor(vertex_ids, dtype=torch.long)
        if ids.shape != (config.surface_points,):
            raise ValueError(f"{len(ids)} vertex ids for surface_points={config.surface_points}")
        self.register_buffer("vertex_ids", ids)
        layers: list[nn.Module] = []
        d = config.in_dim
        for _ in range(config.depth):
            layers += [nn.Linear(d, config.width), nn.SiLU()]
            d = config.width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d, 45 + 3 + 3)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def config(self) -> dict:
        return asdict(self.cfg)

    def forward(self, distance: torch.Tensor, direction_h: torch.Tensor, hand_pose: torch.Tensor) -> torch.Tensor:
        """Update (B, 51) = [articulation 45 (rad) | rotation 3 (axis-angle, hand frame, rad) |
        translation 3 (hand frame, metres)], already scaled.

        Args:
            distance: (B, N) signed distances, metres. direction_h: (B, N, 3) gradient directions in
            the hand's frame. hand_pose: (B, 45) articulation. The hand's place in the object's frame
            is not an input: the features and the update live in the hand's frame, so the network
            is equivariant to moving the object's frame (a mesh's origin and axes are arbitrary).
        """
        c = self.cfg
        d = (distance / c.clamp_m).clamp(-1.0, 1.0)
        x = torch.cat([d[..., None], direction_h], dim=-1).flatten(1)
        x = torch.cat([x, hand_pose], dim=-1)
        out = self.head(self.body(x))
        scale = out.new_tensor([c.pose_step] * 45 + [c.rotation_step] * 3 + [c.translation_step_m] * 3)
        return out * scale


def _inner(net: nn.Module) -> RefineNet:
    return net.module if hasattr(net, "module") else net


def refine_steps(net: nn.Module, hand: HandModel, params: HandParams, object_sdf: torch.Tensor, uTo: torch.Tensor,
                 iterations: int | None = None) -> list[HandParams]:
    """The hand after each of `iterations` refinement steps (differentiable; the training path).

    Args:
        net: a RefineNet (or a DDP wrapper of one).
        hand: the hand model the network was trained with (right hands).
        params: (B) hand parameters in the object frame.
        object_sdf: (B or 1, 1, R, R, R) or (R, R, R) canonical SDF grid, u units.
        uTo: (B, 4, 4) or (4, 4) object frame -> u.
    Returns:
        `iterations` HandParams; betas are kept.
    """
    inner = _inner(net)
    K = inner.cfg.iterations if iterations is None else int(iterations)
    grid = object_sdf if object_sdf.dim() == 5 else object_sdf.reshape(1, 1, *object_sdf.shape[-3:])
    out = []
    cur = params
    for _ in range(K):
        pts = hand_points(hand, cur, inner.vertex_ids)
        f = sdf_features(grid, uTo, pts.points)
        R = axis_angle_to_matrix(cur.global_orient)
        direction_h = f.direction @ R  # R^T n, row vectors
        upd = net(f.distance, direction_h, cur.hand_pose)
        R_new = R @ axis_angle_to_matrix(upd[:, 45:48])
        t_new = cur.transl + (R @ upd[:, 48:51, None])[..., 0]
        cur = HandParams(matrix_to_axis_angle(R_new), cur.hand_pose + upd[:, :45], cur.betas, t_new, cur.side)
        out.append(cur)
    return out


@dataclass
class RefineResult:
    """params: the refined hand (B); steps: the hand after every iteration."""

    params: HandParams
    steps: list[HandParams]


@torch.no_grad()
def refine_hand(net: RefineNet, hand: HandModel, params: HandParams, object_sdf, uTo, iterations: int | None = None) -> RefineResult:
    """Apply a trained refinement network to hands in an object's frame (no gradients).

    Args:
        net: RefineNet (its device is used; inputs are moved there and results come back on
            the input's device).
        hand: right hand model (the one the network was trained with).
        params: (B) right-hand parameters in the object frame, metres.
        object_sdf: (R, R, R) or (B or 1, 1, R, R, R) canonical SDF grid (u units), array or tensor.
        uTo: (4, 4) or (B, 4, 4) object frame -> u.
        iterations: steps (default: the network's own, 3).
    """
    if params.side != "right":
        raise InputError("the refinement network works on right hands: mirror left hands (hoitool.hand.mirror) first")
    want = getattr(net, "hand_sha", None)  # set by load_refinenet from the model file
    if want is not None and want != hand_fingerprint(hand):
        raise InputError(f"this refinement network was trained with {getattr(net, 'hand_source', 'another hand model')}, not "
                         f"{hand.source}: its surface points would be other vertices; train one with this hand (hoitool train refinenet)")
    dev = next(net.parameters()).device
    src = params.transl.device
    sdf = torch.as_tensor(object_sdf, dtype=torch.float32, device=dev)
    T = torch.as_tensor(uTo, dtype=torch.float32, device=dev)
    net.eval()
    if hand.device != dev:  # a copy: the caller's model stays where it is
        hand = copy.deepcopy(hand).to(dev)
    steps = refine_steps(net, hand, params.to(dev), sdf, T, iterations)
    steps = [s.to(src) for s in steps]
    return RefineResult(steps[-1] if steps else params, steps)


def load_refinenet(path: str | Path | None, device: str | torch.device = "cpu") -> tuple[RefineNet, dict]:
    """A trained refinement network from a run folder or model.pt of `hoitool train refinenet` (None:
    the shipped default), and the model file's other contents (config, perturbation, data, hand). A model of another
    kind is refused."""
    from hoitool.utils.modelfile import read_model

    d = read_model(path, "refinenet")
    try:
        net = RefineNet(RefineConfig(**d["config"]), d["state_dict"]["vertex_ids"])
        net.load_state_dict(d["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise InputError(f"{d['path']} is not a readable refinenet model ({type(e).__name__}): retrain it with hoitool train refinenet") from None
    net.hand_sha, net.hand_source = d.get("hand_sha"), d.get("hand")
    return net.to(device).eval(), d
