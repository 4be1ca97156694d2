"""Two hands from the 2D keypoints of one image, with the two-hand diffusion prior as a
score-distillation regulariser (InterHandGen's use of its prior for reconstruction).

    res = reconstruct_two_hands(TwoHandReconConfig(), image, uv, conf, camera, model=model)
    res.right, res.left          # HandParams in the camera frame (OpenCV), metres
    res.reprojection_px          # {"right": px, "left": px}

Everything lives in the camera frame c. Stages (each kept in `TwoHandReconResult.stages`):

1. `single`: each hand fitted alone to its 21 keypoints (`hoitool.hand.fitting.fit_to_2d_keypoints`,
   the left hand with the left hand model). Each hand's depth comes from its shape prior alone.
2. `joint`: both hands refined together with Adam (anatomical angles, global_orient, transl and
   betas of each hand, or one shared betas) on
   - the confidence-weighted robust reprojection of the 42 keypoints: a Charbonnier penalty of the
     pixel error (quadratic below `robust_px`, linear above), in units of each hand's 2D size as the
     one-hand fit's, so the two stages agree where nothing else pulls;
   - the one-hand fit's priors: squared anatomical angles, joint limits, squared betas;
   - the two-hand penetration energy (`PenetrationGuide.energy` of the pair's vectors; by default
     the nearest-vertex test on `penetration_vertices` vertices per hand: a sparser set flags
     touching hands as penetrating);
   - with the prior, score distillation: the pair as InterHandGen vectors in the right hand's frame
     (`to_vectors`), normalised to z, noised to z_t at t ~ U(sds_t) x T with noise from a generator
     seeded by (seed, step); the model's x0 prediction x0_hat (the anchor unconditional, the left
     hand conditioned on the current anchor, plus the model's conditioning-augmentation noise
     `cond_noise` when it was trained with one); the term w_sds ||z - sg(x0_hat)||^2 (mean over the
     numbers and the `sds_samples` draws), whose gradient 2 w_sds (z - x0_hat) is the SDS gradient of
     an x0-prediction model (with the weight sqrt(abar / (1 - abar)) of the eps form folded into a
     constant).

Missing keypoints (confidence 0 or NaN pixels) take no part; a hand with fewer than
`MIN_KEYPOINTS` present is refused (InputError).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from hoitool.errors import InputError
from hoitool.geometry.camera import Camera
from hoitool.hand.fitting import fit_to_2d_keypoints
from hoitool.hand.model import HandModel, HandParams
from hoitool.hand.prior import PosePrior
from hoitool.twohands.guidance import PenetrationGuide
from hoitool.twohands.params import DIM, to_vectors
from hoitool.utils.seeding import torch_generator

#: A hand needs at least this many keypoints with confidence > 0 (as the one-hand inputs).
MIN_KEYPOINTS = 6
SIDES = ("right", "left")
STAGES = ("single", "joint")


@dataclass
class TwoHandReconConfig:
    """Settings of two-hand reconstruction from keypoints (defaults: a few seconds per image on CPU)."""

    steps: int = 200
    """Adam steps of the joint refinement (0: the one-hand fits are the answer)."""
    fit_iters: int = 150
    """L-BFGS iterations of each one-hand fit (per PnP start)."""
    lr_pose: float = 0.01
    """Adam learning rate of the anatomical joint angles, radians."""
    lr_orient: float = 0.01
    """Of global_orient (axis-angle), radians."""
    lr_transl: float = 0.002
    """Of transl, metres."""
    lr_betas: float = 0.02
    """Of the shape coefficients."""
    shared_betas: bool = False
    """One shape for both hands (the same person); else each hand has its own."""
    robust_px: float = 10.0
    """Scale of the Charbonnier reprojection penalty, pixels: errors beyond it count linearly."""
    w_reprojection: float = 1.0
    """Weight of the reprojection term (100 x mean squared error in units of the hand's 2D size, as the one-hand fit)."""
    w_pose: float = 2e-3
    """Squared anatomical angles (the one-hand fit's pose prior)."""
    w_limits: float = 1.0
    """Squared joint-limit violation, radians^2."""
    w_shape: float = 1e-2
    """Squared betas."""
    w_penetration: float = 300.0
    """Two-hand penetration energy (about the sum of squared depths, m^2, of the penetrating checked
    vertices; a left hand pushed 1.5 cm into a touching right one scores ~6e-4 on 512 vertices, here
    0.18: as much as a 6 px error on every keypoint of a 150 px hand)."""
    penetration_energy: str = "vertices"
    """The guide's energy (hoitool.twohands.guidance.PenetrationGuide): 'vertices' (the nearest-vertex
    inside test) or 'spheres' (overlap of inscribed skeleton spheres). On 40 held-out touching pairs
    pushed 0 / 5 / 10 / 15 mm further together, 'vertices' on 512 vertices reads 0.38 / 1.5 / 3.5 /
    6.7 cm^2 (mean), 'spheres' 0.001 / 0.001 / 0.01 / 0.07 cm^2 (median 0 throughout): the inscribed
    spheres do not see the shallow overlaps the meshes' penetration volume counts."""
    penetration_vertices: int = 512
    """Vertices per hand of the 'vertices' test. It needs them dense: on 128 (the sampling guide's
    count) touching but disjoint corpus pairs show 'penetrations' of 1-4.5 cm, with more energy than
    the same pairs pushed 1.5 cm into each other; on 300 or more these false alarms nearly vanish."""
    w_sds: float = 0.2
    """Score distillation from the two-hand prior (mean squared normalised units). On 8 held-out
    synthetic pairs (scripts/bench_twohand_recon.py, a 3000-step model), 0.2 lowered the relative
    translation error from 4.0 to 3.1 cm with the reprojection at 2.2 px (1.9 without); 1.0 moved
    the hands off their keypoints (2.9 px) for no further gain."""
    sds_t: tuple[float, float] = (0.02, 0.5)
    """Range of the SDS timestep as a share of the model's training timesteps."""
    sds_samples: int = 4
    """Noise draws per step (their targets are averaged)."""
    use_prior: bool = True
    """Score distillation on (False: the ablation; no model is needed)."""
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        lo, hi = self.sds_t
        if not (0 <= lo <= hi <= 1):
            raise ValueError(f"sds_t must be 0 <= lo <= hi <= 1, got {self.sds_t}")
        if self.steps < 0 or self.sds_samples < 1:
            raise ValueError("steps must be >= 0 and sds_samples >= 1")


@dataclass
class TwoHandStage:
    """Both hands after one stage (camera frame) and the objective's terms there."""

    right: HandParams
    left: HandParams
    losses: dict[str, float]
    """Weighted terms of the joint objective at this stage's result ('sds' with a fixed draw), and 'total'."""
    reprojection_px: dict[str, float]
    """Per hand: confidence-weighted mean keypoint reprojection error, pixels."""
    seconds: float


@dataclass
class TwoHandReconResult:
    stages: dict[str, TwoHandStage]
    """Results after each stage, in order; the last is the answer."""
    camera: Camera
    history: list[dict[str, float]] = field(default_factory=list)
    """Per Adam step of the joint stage: the weighted terms and 'total'."""
    prior: str | None = None
    """The two-hand model used for score distillation (its file), None without."""

    @property
    def final(self) -> TwoHandStage:
        return list(self.stages.values())[-1]

    @property
    def right(self) -> HandParams:
        return self.final.right

    @property
    def left(self) -> HandParams:
        return self.final.left

    @property
    def reprojection_px(self) -> dict[str, float]:
        return self.final.reprojection_px


def clean_keypoints(uv: np.ndarray | torch.Tensor, conf: np.ndarray | torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(2, 21, 2) pixels with missing points zeroed and (2, 21) weights in [0, 1] (0 = missing:
    confidence 0 or NaN, or a non-finite pixel); InputError when a hand has too few points."""
    uv = torch.as_tensor(np.asarray(uv, dtype=np.float32))
    if uv.shape != (2, 21, 2):
        raise InputError(f"two-hand keypoints must be (2, 21, 2) pixels [right, left], got {tuple(uv.shape)}")
    w = torch.ones(2, 21) if conf is None else torch.as_tensor(np.asarray(conf, dtype=np.float32)).reshape(2, 21)
    w = torch.nan_to_num(w, nan=0.0, posinf=0.0, neginf=0.0).clamp(0, 1)
    finite = torch.isfinite(uv).all(-1)
    w = torch.where(finite, w, torch.zeros(()))
    uv = torch.where(finite[..., None], uv, torch.zeros(()))
    for i, side in enumerate(SIDES):
        n = int((w[i] > 0).sum())
        if n < MIN_KEYPOINTS:
            raise InputError(f"the {side} hand has {n} of 21 keypoints present (at least {MIN_KEYPOINTS} are needed): "
                             "check the keypoint file's confidences")
    return uv, w


def check_model_hand(model, hand: HandModel) -> None:
    """InputError when the two-hand model was trained on another hand model than `hand`."""
    from hoitool.hand.model import hand_fingerprint

    rec = getattr(model, "hand", None) or {}
    fp = rec.get("fingerprint") if isinstance(rec, dict) else None
    if fp and fp != hand_fingerprint(hand):
        raise InputError(f"the two-hand model was trained with the hand model '{rec.get('source')}', but this run uses "
                         f"'{hand.source}': pass the same --mano-dir / HOITOOL_MANO_DIR as its training, or another --model")


class _Objective:
    """The joint stage's terms for both hands (camera frame)."""

    def __init__(self, cfg: TwoHandReconConfig, hands: dict[str, HandModel], priors: dict[str, PosePrior], camera: Camera,
                 uv: torch.Tensor, w: torch.Tensor, model=None):
        self.cfg, self.hands, self.priors, self.camera, self.model = cfg, hands, priors, camera, model
        self.uv, self.w = uv, w
        # each hand's 2D size (diagonal of its present keypoints' box), as the one-hand fit
        self.size = torch.stack([((uv[i][w[i] > 0].amax(0) - uv[i][w[i] > 0].amin(0)).norm()).clamp_min(1.0) for i in range(2)])
        k = min(cfg.penetration_vertices, *(h.num_vertices for h in hands.values()))
        self.guide = PenetrationGuide(hands["right"], hands["left"], vertices=k, energy=cfg.penetration_energy).to(uv.device)
        if model is not None:
            from hoitool.twohands.model import train_scheduler

            self.sched = train_scheduler(model.schedule)
            T = model.schedule.num_train_timesteps
            lo = min(int(round(cfg.sds_t[0] * T)), T - 1)
            self.t_range = (lo, max(min(int(round(cfg.sds_t[1] * T)), T - 1), lo))
            self.obj, self.obj_mask = model.encode_object(None, cfg.sds_samples)

    def reprojection(self, kp: torch.Tensor, i: int) -> torch.Tensor:
        """(1,) robust reprojection term of hand i from its camera-frame keypoints (1, 21, 3)."""
        c = self.cfg.robust_px
        r2 = (self.camera.project(kp[0]) - self.uv[i]).square().sum(-1)
        rho = 2 * c * c * (torch.sqrt(1 + r2 / (c * c)) - 1)  # ~ r^2 below c, ~ 2 c r above
        w = self.w[i]
        return ((w * rho).sum() / w.sum().clamp_min(1) * 100 / self.size[i] ** 2)[None]

    def sds(self, xa: torch.Tensor, xb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """(1,) score-distillation term of the pair's vectors (1, 64) each (see the module doc)."""
        m, K = self.model, self.cfg.sds_samples
        dev = m.norm.mean_a.device
        za, zb = m.norm.norm_a(xa.to(dev)), m.norm.norm_b(xb.to(dev))
        lo, hi = self.t_range
        t = torch.randint(lo, hi + 1, (K,), generator=gen).to(dev)
        with torch.no_grad():
            if m.joint:
                z = torch.cat([za, zb], 1).detach().expand(K, 2 * DIM)
                eps = torch.randn(K, 2 * DIM, generator=gen).to(dev)
                x0 = m.predict(self.sched.add_noise(z, eps, t), t, None, self.obj, self.obj_mask)
                targets = [(torch.cat([za, zb], 1), x0)]
            else:
                ea, eb = torch.randn(K, DIM, generator=gen).to(dev), torch.randn(K, DIM, generator=gen).to(dev)
                ca = za.detach().expand(K, DIM)
                x0a = m.predict(self.sched.add_noise(ca, ea, t), t, None, self.obj, self.obj_mask)
                cond_noise = float(getattr(m, "cond_noise", 0.0) or 0.0)
                if cond_noise:  # the condition carries the noise the second stage was trained with
                    ca = ca + cond_noise * torch.randn(K, DIM, generator=gen).to(dev)
                x0b = m.predict(self.sched.add_noise(zb.detach().expand(K, DIM), eb, t), t, ca, self.obj, self.obj_mask)
                targets = [(za, x0a), (zb, x0b)]
        loss = sum(((z - x0.detach()).square().mean(-1)).mean() for z, x0 in targets)
        return loss.reshape(1).to(xa.device)

    def terms(self, params: dict[str, HandParams], q: dict[str, torch.Tensor], gen: torch.Generator | None) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        out = {"reprojection": 0.0, "pose": 0.0, "limits": 0.0, "shape": 0.0}
        for i, s in enumerate(SIDES):
            p = params[s]
            kp = self.hands[s](p).keypoints
            out["reprojection"] = out["reprojection"] + cfg.w_reprojection * self.reprojection(kp, i)
            out["pose"] = out["pose"] + cfg.w_pose * q[s].square().sum((1, 2))
            out["limits"] = out["limits"] + cfg.w_limits * self.priors[s].limit_violation(p.hand_pose)
            out["shape"] = out["shape"] + cfg.w_shape * p.betas.square().sum(-1)
        # the pair as vectors in the right hand's frame: the penetration energy and the prior see the same pair
        xa, xb = to_vectors(self.hands["right"], self.hands["left"], params["right"], params["left"])
        out["penetration"] = cfg.w_penetration * self.guide.energy(xa, xb)
        if self.model is not None and gen is not None:
            out["sds"] = cfg.w_sds * self.sds(xa, xb, gen)
        return out

    def reprojection_px(self, params: dict[str, HandParams]) -> dict[str, float]:
        res = {}
        with torch.no_grad():
            for i, s in enumerate(SIDES):
                kp = self.hands[s](params[s]).keypoints[0]
                e = (self.camera.project(kp) - self.uv[i]).norm(dim=-1)
                res[s] = float((e * self.w[i]).sum() / self.w[i].sum().clamp_min(1))
        return res


def _floats(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    d = {k: float(v.sum()) for k, v in terms.items()}
    d["total"] = sum(d.values())
    return d


def reconstruct_two_hands(cfg: TwoHandReconConfig, image: np.ndarray | None, uv, conf, camera: Camera, model=None,
                          progress: Callable[[str, int, int], None] | None = None,
                          hands: dict[str, HandModel] | None = None,
                          single: dict[str, HandParams] | None = None) -> TwoHandReconResult:
    """Both hands in the camera frame from their 2D keypoints.

    Args:
        image: (H, W, 3) uint8 (only its size is checked against the camera; the keypoints carry the evidence).
        uv: (2, 21, 2) pixels [right, left], OpenPose order. conf: (2, 21) in [0, 1], 0 = missing (None: all present).
        camera: the image's pinhole camera (hoitool.geometry.camera.Camera).
        model: a TwoHandDiffusion (hoitool.twohands.checkpoint.load_twohand_model); None with use_prior
            loads the shipped default.
        progress: callback(stage, done, total).
        hands: {"right": HandModel, "left": HandModel} (default: the default hand models).
        single: {"right", "left"} one-hand fits (camera frame) to start from instead of stage 1's
            (e.g. another run's `stages["single"]`: comparisons of settings then share their start).
    Raises:
        InputError: a hand with too few keypoints, a fit that diverged, a model of another hand.
    """
    progress = progress or (lambda s, d, t: None)
    dev = torch.device(cfg.device)
    if image is not None and tuple(image.shape[:2]) != (camera.height, camera.width):
        raise InputError(f"the image is {image.shape[1]}x{image.shape[0]} but the camera is {camera.width}x{camera.height}")
    uv, w = clean_keypoints(uv, conf)
    hands = hands or {s: HandModel(s) for s in SIDES}
    hands = {s: h.to(dev) for s, h in hands.items()}
    if cfg.use_prior:
        if model is None:
            from hoitool.twohands.checkpoint import load_twohand_model

            model = load_twohand_model(None, dev)
        check_model_hand(model, hands["right"])
        model = model.to(dev).eval()
    else:
        model = None
    priors = {s: PosePrior.from_hand(h).to(dev) for s, h in hands.items()}

    # 1. each hand alone
    t0 = time.time()
    if single is None:
        single = {}
        for i, s in enumerate(SIDES):
            progress("single", i, 2)
            try:
                single[s] = fit_to_2d_keypoints(hands[s], uv[i], camera, w[i], iters=cfg.fit_iters, prior=priors[s]).params
            except ValueError as e:
                raise InputError(f"the {s} hand: {e}") from None
    else:
        single = {s: single[s].detach() for s in SIDES}
    progress("single", 2, 2)
    uv, w = uv.to(dev), w.to(dev)
    obj = _Objective(cfg, hands, priors, camera, uv, w, model)
    eval_gen = lambda: torch_generator(cfg.seed, "twohand-sds-eval")  # noqa: E731 - the same draw for every stage's report

    def report(params, q, seconds) -> TwoHandStage:
        with torch.no_grad():
            losses = _floats(obj.terms(params, q, eval_gen() if model is not None else None))
        return TwoHandStage(params["right"].detach(), params["left"].detach(), losses, obj.reprojection_px(params), seconds)

    q0 = {s: priors[s].to_anatomical(single[s].hand_pose.to(dev)) for s in SIDES}
    stages = {"single": report({s: single[s].to(dev) for s in SIDES}, q0, time.time() - t0)}

    # 2. both hands together
    t1 = time.time()
    q = {s: q0[s].clone().requires_grad_(True) for s in SIDES}
    go = {s: single[s].global_orient.to(dev).clone().requires_grad_(True) for s in SIDES}
    tr = {s: single[s].transl.to(dev).clone().requires_grad_(True) for s in SIDES}
    if cfg.shared_betas:
        b = ((single["right"].betas + single["left"].betas) / 2).to(dev).requires_grad_(True)
        betas = {s: b for s in SIDES}
        beta_vars = [b]
    else:
        betas = {s: single[s].betas.to(dev).clone().requires_grad_(True) for s in SIDES}
        beta_vars = list(betas.values())
    opt = torch.optim.Adam([{"params": list(q.values()), "lr": cfg.lr_pose}, {"params": list(go.values()), "lr": cfg.lr_orient},
                            {"params": list(tr.values()), "lr": cfg.lr_transl}, {"params": beta_vars, "lr": cfg.lr_betas}])

    def current():
        return {s: HandParams(go[s], priors[s].from_anatomical(q[s]), betas[s], tr[s], s) for s in SIDES}

    history = []
    for step in range(cfg.steps):
        gen = torch_generator(cfg.seed, "twohand-sds", step) if model is not None else None
        terms = obj.terms(current(), q, gen)
        total = sum(v.sum() for v in terms.values())
        if not torch.isfinite(total):
            raise InputError("the two-hand refinement diverged (NaN): check that the keypoints belong to this image")
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append(_floats({k: v.detach() for k, v in terms.items()}))
        progress("joint", step + 1, cfg.steps)
    stages["joint"] = report({s: p.detach() for s, p in current().items()}, {s: v.detach() for s, v in q.items()}, time.time() - t1)
    return TwoHandReconResult(stages, camera, history, None if model is None else str(getattr(model, "source", "model")))
