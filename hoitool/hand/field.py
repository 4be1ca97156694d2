"""The skeletal distance field (G-HOP's hand channels) and its inverse.

Field: 20 channels, one per keypoint except the wrist (OpenPose order, thumb1 ... little4);
at each point of the n-frame grid (16^3 by default) the squared distance to the keypoint in
n units, clamped at 0.12. All zeros means "no hand".

Inverse, in two steps, each hand on its own (hand i's pose depends only on field i):
1. a robust start: each channel's values well inside the clamp are squared distances, so the
   keypoint solves a linear least-squares problem (|x|^2 - f(x) = 2 x.k - |k|^2 at those grid
   points x), solved with iteratively reweighted (Cauchy) least squares so noisy or wrong
   values do not drag it; inverse kinematics on these keypoints gives a first pose;
2. the pose whose whole clamped field matches the given field (every voxel of every channel,
   a robust pseudo-Huber loss), optimised with Adam per hand. G-HOP also fits the whole field,
   with 1e4 x MSE + 0.1 x pose MSE; the pseudo-Huber loss is what measured robust to noisy voxels.
"""

from __future__ import annotations

import torch

from hoitool.geometry.grid import GRID_HALF_EXTENT, HAND_CLAMP, LATENT_RES, grid_coords, nTh_from_joints
from hoitool.geometry.transforms import apply_transform, invert_transform
from hoitool.hand.fitting import fit_to_keypoints
from hoitool.hand.model import HandModel, HandParams
from hoitool.hand.prior import PosePrior

NUM_FIELD_CHANNELS = 20


def skeletal_field(keypoints_n: torch.Tensor, res: int = LATENT_RES) -> torch.Tensor:
    """(B, 21, 3) keypoints in n -> (B, 20, res, res, res) clamped squared distances."""
    pts = grid_coords(res, device=keypoints_n.device, dtype=keypoints_n.dtype).reshape(-1, 3)
    k = keypoints_n[:, 1:]
    # |p - k|^2 = |p|^2 - 2 p.k + |k|^2 as one matrix product: a tenth of the time and memory of
    # the broadcast difference, forward and backward (measured with 100 hands at 16^3)
    d2 = (pts * pts).sum(-1) - 2 * k @ pts.T + (k * k).sum(-1, keepdim=True)
    return d2.clamp(0, HAND_CLAMP).reshape(keypoints_n.shape[0], NUM_FIELD_CHANNELS, res, res, res)


def hand_field(hand: HandModel, params: HandParams, res: int = LATENT_RES) -> torch.Tensor:
    """Field of hands given in their own frame h (global_orient and transl are ignored)."""
    local = HandParams(torch.zeros_like(params.global_orient), params.hand_pose, params.betas,
                       torch.zeros_like(params.transl), params.side)
    out = hand(local)
    nTh = nTh_from_joints(out.joints)
    return skeletal_field(apply_transform(nTh, out.keypoints), res)


def keypoints_from_field(field: torch.Tensor, margin: float = 0.5, iters: int = 4, scale: float = 0.01,
                         candidates: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Invert the field channel by channel, robustly.

    1. Of the `candidates` grid points with the lowest values, keep the one whose clamped
       field (the keypoint put there) best matches the whole channel (`field_loss`), so a
       few wrong low values elsewhere cannot win.
    2. Solve the linear least-squares problem |x|^2 - f(x) = 2 x.k - |k|^2 on the grid points
       near it whose values are below margin * 0.12 (well inside the clamp, so field noise
       near the clamp cannot pass for a distance), reweighting them by their residual (Cauchy
       weights 1 / (1 + (r / scale)^2)) for `iters` rounds.

    Args:
        field: (B, 20, R, R, R) clamped squared distances, n units^2.
        margin: grid points with values below margin * 0.12 enter the solve.
        iters: reweighting rounds after the first (plain) solve.
        scale: residual scale of the Cauchy weights, n units^2.
        candidates: grid points tried as the keypoint's rough position.
    Returns:
        keypoints (B, 20, 3) in n, and valid (B, 20) bool (>= 4 grid points entered).
    """
    B, C, R = field.shape[0], field.shape[1], field.shape[-1]
    x = grid_coords(R, device=field.device, dtype=field.dtype).reshape(-1, 3)  # (N,3)
    xx = (x * x).sum(-1)  # (N,)
    f = field.reshape(B, C, -1)
    # 1. rough position: the best-matching low grid point
    idx = f.topk(min(candidates, f.shape[-1]), dim=-1, largest=False).indices  # (B,C,K)
    cand = x[idx]  # (B,C,K,3)
    score = torch.stack([field_loss(
        (xx - 2 * cand[:, :, j] @ x.T + (cand[:, :, j] ** 2).sum(-1, keepdim=True)).clamp(0, HAND_CLAMP).flatten(0, 1)[:, None],
        f.flatten(0, 1)[:, None]).reshape(B, C) for j in range(cand.shape[2])], -1)  # (B,C,K)
    rough = cand.gather(2, score.argmin(-1)[..., None, None].expand(-1, -1, 1, 3))[:, :, 0]  # (B,C,3)
    # 2. robust linear solve on the low values around it (half a cell diagonal of slack)
    reach = (margin * HAND_CLAMP) ** 0.5 + 0.87 * 2 * GRID_HALF_EXTENT / (R - 1)
    near = ((x[None, None] - rough[:, :, None]) ** 2).sum(-1) < reach ** 2
    inside = ((f < margin * HAND_CLAMP) & near).to(field.dtype)  # (B,C,N)
    A = torch.cat([2 * x, -torch.ones_like(x[:, :1])], dim=1)  # (N,4) unknowns (k, |k|^2)
    b = xx[None, None] - f  # (B,C,N)
    eye = torch.eye(4, device=field.device, dtype=field.dtype)
    w = inside
    for it in range(iters + 1):
        Aw = A[None, None] * w[..., None]
        AtA = Aw.transpose(-1, -2) @ A[None, None]
        Atb = (Aw * b[..., None]).sum(-2)
        sol = torch.linalg.solve(AtA + 1e-6 * eye, Atb)  # (B,C,4)
        if it < iters:
            r = b - sol @ A.T  # (B,C,N)
            w = inside / (1 + (r / scale) ** 2)
    valid = inside.sum(-1) >= 4
    return sol[..., :3], valid


def field_loss(pred: torch.Tensor, target: torch.Tensor, delta: float = 0.01) -> torch.Tensor:
    """(B,) sum over voxels and channels of the pseudo-Huber loss delta^2 (sqrt(1 + (r /
    delta)^2) - 1) ~ r^2 / 2 of the residual r = pred - target (n units^2): quadratic for
    small r, linear beyond delta, so a few wrong voxels pull with bounded force. Units n^4."""
    r = (pred - target).flatten(1)
    return (delta ** 2 * (torch.sqrt(1 + (r / delta) ** 2) - 1)).sum(1)


def pose_from_field(hand: HandModel, field: torch.Tensor, betas: torch.Tensor | None = None, iters: int = 20,
                    steps: int = 150, lr: float = 0.005, prior_weight: float = 1e-5,
                    limit_weight: float = 1e-3) -> HandParams:
    """Hand parameters in the hand frame h (global_orient = transl = 0) whose field matches.

    Robust keypoints and inverse kinematics give a start (see the module docstring); Adam
    then fits the finger articulation to the whole field, each hand with its own loss
    (pseudo-Huber field residual plus a small pose prior), so hand i depends only on field i.
    Runs on the hand model's device and returns parameters there.

    Args:
        field: (B, 20, R, R, R) skeletal distance field, n units^2.
        betas: (B, 10) shape (zeros if None); it fixes where n sits in h.
        iters: L-BFGS iterations of the inverse kinematics start.
        steps: Adam steps of the full-field fit (0: keypoints and inverse kinematics only).
        lr: Adam step size, radians of anatomical angle.
        prior_weight: weight of the squared anatomical angles (radians^2) in the field fit,
            against the field loss in n^4 (moving one keypoint 1 mm costs ~3e-5 there).
        limit_weight: weight of the joint-limit violation (radians^2) in the field fit.
    """
    B, R = field.shape[0], field.shape[-1]
    dev, dt = hand.device, torch.float32
    field = field.detach().to(dev, dt)
    betas = torch.zeros(B, 10, device=dev, dtype=dt) if betas is None else betas.detach().to(dev, dt)
    kp_n, valid = keypoints_from_field(field)
    rest = hand.rest_joints(betas)
    nTh = nTh_from_joints(rest)  # the index MCP does not move with the fingers: nTh is fixed
    target = torch.zeros(B, 21, 3, device=dev, dtype=dt)
    target[:, 0] = rest[:, 0]  # wrist: fixed in h (zero global rotation)
    target[:, 1:] = apply_transform(invert_transform(nTh), kp_n)
    weights = torch.cat([torch.ones(B, 1, device=dev, dtype=dt), valid.to(dt)], dim=1)
    init = HandParams.zeros(B, hand.side, device=dev, dtype=dt)
    init.betas = betas
    prior = PosePrior.from_hand(hand).to(dev)
    start = fit_to_keypoints(hand, target, init, weights, prior=prior, iters=iters).params
    if steps <= 0:
        return start
    q = prior.to_anatomical(start.hand_pose).detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([q], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 0.05)
    best = torch.full((B,), float("inf"), device=dev, dtype=dt)
    best_q = q.detach().clone()
    for step in range(steps + 1):
        hp = prior.from_anatomical(q)
        kp = hand(hand_pose=hp, betas=betas).keypoints
        data = field_loss(skeletal_field(apply_transform(nTh, kp), R), field)
        loss = data + prior_weight * (q ** 2).sum((1, 2)) + limit_weight * prior.limit_violation(hp)  # (B,)
        with torch.no_grad():  # keep each hand's best iterate (Adam need not end at its lowest)
            better = loss < best
            best = torch.where(better, loss, best)
            best_q[better] = q[better]
        if step == steps:
            break
        opt.zero_grad()
        loss.sum().backward()  # a sum of per-hand losses: each hand's gradient is its own
        opt.step()
        sched.step()
    return HandParams(start.global_orient, prior.from_anatomical(best_q).detach(), betas, start.transl, hand.side)


__all__ = ["skeletal_field", "hand_field", "keypoints_from_field", "field_loss", "pose_from_field"]
