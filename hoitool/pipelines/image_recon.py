"""Hand and object from one image (EasyHOI, and Cao et al. 2021's joint losses).

Everything lives in the camera frame c (OpenCV). The hand is the hand model posed by
HandParams in c and then scaled by `hand_scale` about the camera centre (which leaves its
projection unchanged: the depth-size ambiguity of one image is this one number). The
object is its mesh mapped by x -> s R x + t.

Stages (each kept in `ReconResult.stages`):
1. `hand`: the hand model fitted to the 2D keypoints (perspective, pose and shape priors).
2. `object`: object pose by mask fitting (Cao et al.): many rotations scored at once by
   splatting surface points (scale and 2D position set from the mask), the best
   `candidates` optimised with the soft rasteriser (occlusion-aware soft IoU, plus a
   Sinkhorn divergence while the masks barely overlap), top `top_k` kept. EasyHOI's
   "camera set-up" stage is this stage in the camera frame (its focal-length refinement is
   `refine_focal`, off by default). Every mask loss ignores pixels outside the image.
3. `contact`: EasyHOI's contact alignment: the hand's translation fitted to its mask, then
   contact pixels (hand over the rendered object, object over the rendered hand), rays
   through them, object hits by depth peeling (nearest / farthest), hand hits on palmar
   faces only, and an iterated ICP (scale about the camera + translation) moving the hand
   onto the object.
4. `refine`: EasyHOI's refinement (hand mask IoU, penetration, contact, pose regulariser,
   plus the keypoint reprojection) for all top-k hypotheses at once; the best is kept.
   With method "cao" this stage is instead Cao et al.'s joint optimisation of hand and
   object (both masks, ordinal depth, interaction, penetration).
5. `refinenet` (when a refinement network is given: `reconstruct --refinenet default|RUN`):
   Cao et al.'s step 4, the network's pose updates of the kept hypothesis's hand
   from the object's SDF (hoitool.refine.scene); the object and the hand's scale stay. Its
   `loss` is the previous stage's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np
import torch
import trimesh

from hoitool.geometry.camera import Camera, crop_inside, crop_mask, square_window
from hoitool.geometry.grid import SDFVolume, canonical_sdf
from hoitool.geometry.icp import icp
from hoitool.geometry.mesh import decimate
from hoitool.geometry.raycast import nearest_farthest, ray_hits
from hoitool.geometry.rotations import matrix_to_rot6d, rot6d_to_matrix
from hoitool.hand.fitting import fit_to_2d_keypoints
from hoitool.hand.model import HandModel, HandParams
from hoitool.hand.prior import PosePrior
from hoitool.losses.contact import zone_distances
from hoitool.losses.masks import mask_points, sinkhorn_divergence, soft_iou
from hoitool.losses.ordinal_depth import ordinal_depth_loss
from hoitool.data.image_inputs import ImageInputs
from hoitool.render.soft import SoftRasterizer, splat_points
from hoitool.utils.seeding import torch_generator

#: Stage names in order ("joint" replaces "contact" and "refine" with method "cao"; "refinenet"
#: follows when a refinement network is given).
STAGES = ("pose", "contact", "refine", "joint", "refinenet")


@dataclass
class ReconstructConfig:
    """Settings of single-image reconstruction (defaults: about 20-40 s per image on 2 CPU cores)."""

    method: str = "easyhoi"
    """"easyhoi" (contact alignment + refinement) or "cao" (joint optimisation)."""
    side: str = "right"
    render_size: int = 96
    """Side (pixels) of the square crop around both masks that the optimisation renders."""
    sigma: float = 0.5
    """Soft rasteriser sharpness: the logistic scale, crop pixels, of the signed distance to
    the rendered outline (render/soft.py "distance" silhouettes: unbiased, coverage 0.5 on
    the outline)."""
    rotations: int = 1000
    """Object rotations scored by splatting (Cao et al.: 1000)."""
    candidates: int = 12
    """Best-scoring rotations optimised with the soft rasteriser."""
    top_k: int = 3
    """Object hypotheses carried through the later stages; the best is kept."""
    pose_steps: int = 60
    """Adam steps of the object mask fit."""
    refine_focal: bool = False
    """Also optimise the focal length (one factor on fx and fy) in the object mask fit, as
    EasyHOI's camera stage does; the best hypothesis's focal is kept and the hand is refitted
    to its keypoints under it. Off by default: one image gives the focal only through
    perspective, which the mask barely shows; on 6 synthetic benchmark images the refined
    focal drifted up by 5-17 % whatever the start (true focal given: object Chamfer 5.4 ->
    13.2 mm; 1.2 x given: 38.7 -> 67.3 mm; 0.8 x given: 44.7 -> 22.8 mm, by that drift)."""
    object_faces: int = 600
    """Triangles of the simplified object mesh that is rendered."""
    hand_steps: int = 40
    """Adam steps fitting the hand's translation to its mask (contact stage)."""
    icp_iters: int = 20
    refine_steps: int = 150
    """Adam steps of the refinement (or the joint optimisation)."""
    template_scale_prior: float = 30.0
    """Weight of (log object scale)^2 for a metric template (--object-mesh)."""
    category_scale_prior: float = 0.05
    """The same for a category template, whose size is only typical."""
    contact_radius_m: float = 0.02
    """Contact zones this close to the object after alignment are pulled onto it."""
    penetration_tol_m: float = 0.002
    w_contact: float = 5.0
    w_penetration: float = 10.0
    w_hand_mask: float = 5.0
    w_object_mask: float = 5.0
    w_pose: float = 0.1
    w_keypoints: float = 1.0
    w_ordinal: float = 1.0
    """Cao: ordinal depth (softplus of the depth order violation in cm)."""
    w_interaction: float = 20.0
    """Cao: distance (metres) between the hand's and the object's vertex means."""
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        if self.method not in ("easyhoi", "cao"):
            raise ValueError(f"method must be 'easyhoi' or 'cao', got {self.method!r}")


@dataclass
class SceneState:
    """One reconstruction (camera frame): hand parameters + scale about the camera, object pose."""

    hand: HandParams
    hand_scale: float
    R: np.ndarray
    """(3, 3) object rotation."""
    t: np.ndarray
    """(3,) object translation, metres."""
    s: float
    """Object scale (1 = the mesh's own size)."""
    metrics: dict = field(default_factory=dict)

    def object_vertices(self, mesh: trimesh.Trimesh) -> np.ndarray:
        return self.s * np.asarray(mesh.vertices) @ self.R.T + self.t

    def to_json(self) -> dict:
        p = self.hand.numpy()
        return {
            "hand": {**{k: v[0].tolist() for k, v in p.items()}, "side": self.hand.side, "scale": self.hand_scale},
            "object": {"rotation": self.R.tolist(), "translation": self.t.tolist(), "scale": self.s},
            "metrics": self.metrics,
        }


@dataclass
class ReconResult:
    stages: dict[str, SceneState]
    """Results after each stage, in order; the last is the answer."""
    camera: Camera
    mesh: trimesh.Trimesh
    """The object mesh (its own frame) the poses refer to."""
    hypotheses: list[SceneState]
    """The top-k object hypotheses after the last stage (best first)."""

    @property
    def final(self) -> SceneState:
        return list(self.stages.values())[-1]


class _Context:
    """Crop, targets and geometry shared by the stages."""

    def __init__(self, inputs: ImageInputs, mesh: trimesh.Trimesh, camera: Camera, cfg: ReconstructConfig, hand: HandModel):
        self.cfg, self.hand, self.camera, self.mesh = cfg, hand, camera, mesh
        dev = torch.device(cfg.device)
        self.dev = dev
        S = cfg.render_size
        x0, y0, side = square_window(inputs.hand_mask | inputs.object_mask)
        self.window = (x0, y0, side)
        self.ccam = camera.crop(x0, y0, side, S)
        t = lambda a: torch.as_tensor(a, dtype=torch.float32, device=dev)  # noqa: E731
        # the window may extend past the image: pixels there are unknown, not background
        H, W = inputs.object_mask.shape
        inside = crop_inside(H, W, x0, y0, side, S)

        def crop(m: np.ndarray) -> np.ndarray:  # the mask's mean over the part of each pixel inside the image
            c = crop_mask(m.astype(np.float32), x0, y0, side, S)
            return np.clip(np.where(inside > 0, c / np.maximum(inside, 1e-6), 0.0), 0.0, 1.0)

        self.inside = t(inside)
        """(S, S) share of each crop pixel inside the image."""
        self.obj_mask = t(crop(inputs.object_mask))
        self.hand_mask = t(crop(inputs.hand_mask))
        hm, om = (self.hand_mask > 0.5).float(), (self.obj_mask > 0.5).float()
        self.valid_obj = self.inside * (1.0 - hm * (1.0 - om))
        """(S, S) weights of the object mask losses: inside the image, not where the hand hides the object."""
        self.valid_hand = self.inside * (1.0 - om * (1.0 - hm))
        """(S, S) weights of the hand mask losses: inside the image, not where the object hides the hand."""
        self.uv = t(inputs.keypoints)
        self.conf = t(inputs.confidence)
        self.kp_size = float((self.uv[self.conf > 0].amax(0) - self.uv[self.conf > 0].amin(0)).norm()) or 1.0
        self.ras = SoftRasterizer(S, S, sigma=cfg.sigma, silhouette="distance")
        self.ras_hand = SoftRasterizer(S, S, sigma=cfg.sigma, cull_back=True, silhouette="distance")
        # object: centred at its vertex mean; a simplified copy for rendering, points for splatting
        self.centre = np.asarray(mesh.vertices).mean(0)
        simple = decimate(mesh, cfg.object_faces)
        self.ov = t(np.asarray(simple.vertices) - self.centre)
        self.of = torch.as_tensor(np.asarray(simple.faces), dtype=torch.long, device=dev)
        pts, _ = trimesh.sample.sample_surface(mesh, 1500, seed=cfg.seed)
        self.opts = t(np.asarray(pts) - self.centre)
        grid, uTo = canonical_sdf(mesh, 48)
        self.sdf = SDFVolume(grid, uTo).to(dev)
        self.prior = PosePrior.from_hand(hand).to(dev)
        md = hand.metadata
        zones = [np.asarray(z) for z in md.contact_zones.values() if len(z)]
        width = max(len(z) for z in zones)
        self.zone_index = torch.as_tensor(np.stack([np.resize(z, width) for z in zones]), device=dev)
        self.palmar_faces = torch.as_tensor(md.palmar_faces, device=dev)

    # -- geometry ---------------------------------------------------------------------------
    def object_verts(self, R: torch.Tensor, t: torch.Tensor, s: torch.Tensor, pts: torch.Tensor | None = None) -> torch.Tensor:
        """(K, N, 3) camera-frame points of the (centred) object under K poses."""
        p = self.ov if pts is None else pts
        return s[:, None, None] * torch.einsum("kij,nj->kni", R, p) + t[:, None]

    def object_sdf(self, points_c: torch.Tensor, R: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """(K, N) metric signed distances of camera-frame points to K posed objects."""
        local = torch.einsum("kji,knj->kni", R, points_c - t[:, None]) / s[:, None, None] + torch.as_tensor(self.centre, dtype=torch.float32, device=self.dev)
        return self.sdf(local) * s[:, None]

    def keypoint_loss(self, kp: torch.Tensor) -> torch.Tensor:
        err = (((self.camera.project(kp) - self.uv) / self.kp_size) ** 2).sum(-1)
        return (self.conf * err).sum(-1) / self.conf.sum().clamp_min(1) * 100

    def set_camera(self, camera: Camera) -> None:
        """Use other intrinsics (a refined focal) for the image and its crop."""
        x0, y0, side = self.window
        self.camera, self.ccam = camera, camera.crop(x0, y0, side, self.cfg.render_size)

    def project_crop(self, v: torch.Tensor, focal_scale: torch.Tensor | None = None) -> torch.Tensor:
        """(K, N, 2) crop pixels of camera-frame points (K, N, 3), with the focal lengths
        multiplied by focal_scale (K,) when given."""
        uv = self.ccam.project(v)
        if focal_scale is None:
            return uv
        c = torch.tensor([self.ccam.cx, self.ccam.cy], device=v.device, dtype=v.dtype)
        return c + focal_scale[:, None, None] * (uv - c)

    def in_image(self, v: torch.Tensor, focal_scale: torch.Tensor | None = None) -> torch.Tensor:
        """(K, N) bool: camera-frame points (K, N, 3) that project inside the image."""
        uv = self.camera.project(v)
        if focal_scale is not None:
            c = torch.tensor([self.camera.cx, self.camera.cy], device=v.device, dtype=v.dtype)
            uv = c + focal_scale[:, None, None] * (uv - c)
        W, H = self.camera.width, self.camera.height
        return (uv[..., 0] > -0.5) & (uv[..., 0] < W - 0.5) & (uv[..., 1] > -0.5) & (uv[..., 1] < H - 0.5)

    def render_obj(self, R, t, s, focal_scale: torch.Tensor | None = None):
        v = self.object_verts(R, t, s)
        return self.ras(self.project_crop(v, focal_scale), v[..., 2], self.of)

    def render_hand(self, verts):
        return self.ras_hand(self.ccam.project(verts), verts[..., 2], self.hand.faces)


def _state(ctx: _Context, params: HandParams, hand_scale, R, t, s, k: int = 0, **metrics) -> SceneState:
    """A SceneState for hypothesis k; the object translation refers to the mesh's own origin."""
    Rk = R[k].detach().cpu().double().numpy()
    tk = t[k].detach().cpu().double().numpy() - float(s[k]) * Rk @ ctx.centre
    return SceneState(params[k].detach().to("cpu"), float(hand_scale[k]) if torch.is_tensor(hand_scale) else float(hand_scale),
                      Rk, tk, float(s[k]), {k_: float(v) for k_, v in metrics.items()})


def _random_rotations(n: int, g: torch.Generator) -> torch.Tensor:
    from hoitool.geometry.rotations import quaternion_to_matrix

    return quaternion_to_matrix(torch.randn(n, 4, generator=g))


# -- stage 2: object pose by mask fitting ------------------------------------------------------
class PoseFit(NamedTuple):
    """The top-k object hypotheses of the mask fit (best first)."""

    R: torch.Tensor
    """(K, 3, 3) rotations."""
    t: torch.Tensor
    """(K, 3) translations of the centred mesh, metres."""
    s: torch.Tensor
    """(K,) scales."""
    iou: torch.Tensor
    """(K,) soft IoU with the object mask."""
    focal_scale: torch.Tensor
    """(K,) refined focal length / given focal length (ones unless cfg.refine_focal)."""


#: An object pose x -> s R x + t of the mesh given (its own coordinates): R (3, 3), t (3,) metres, s.
InitPose = tuple[np.ndarray, np.ndarray, float]


def fit_object_pose(ctx: _Context, depth: float, template: bool, g: torch.Generator, init: InitPose | None = None) -> PoseFit:
    """Top-k object poses by mask fitting (and the focal length with cfg.refine_focal).
    Pixels outside the image and where the hand hides the object are ignored.

    init: a pose of the mesh given (SceneState's convention: x -> s R x + t of the mesh's own
    coordinates), always optimised, as candidate 0, besides the `cfg.candidates` best random
    rotations; it competes with them on the same loss (its scale prior is about its own scale
    for a category template, about 1 for a metric one) and by the same final IoU."""
    cfg, cc, S = ctx.cfg, ctx.ccam, ctx.cfg.render_size
    valid = ctx.valid_obj
    target = ctx.obj_mask
    ys, xs = torch.nonzero(target > 0.5, as_tuple=True)
    m_uv = torch.stack([xs.float().mean(), ys.float().mean()])
    m_area = float((target > 0.5).sum())
    Rs = _random_rotations(cfg.rotations, g).to(ctx.dev)
    scores, ss, ts = [], [], []
    z = torch.tensor([0.0, 0.0, depth], device=ctx.dev)
    for R in Rs.split(250):
        p = torch.einsum("kij,nj->kni", R, ctx.opts)
        occ = splat_points(cc.project(p + z), S, S)
        s = (m_area / occ.flatten(1).sum(1).clamp_min(1.0)).sqrt()
        p = s[:, None, None] * p
        uv = cc.project(p + z)
        shift = (m_uv - uv.mean(1)) * depth / torch.tensor([cc.fx, cc.fy], device=ctx.dev)
        t = torch.cat([shift, torch.full((len(R), 1), depth, device=ctx.dev)], 1)
        occ = splat_points(cc.project(p + t[:, None]), S, S)
        scores.append(soft_iou(occ, target[None], valid[None]))
        ss.append(s)
        ts.append(t)
    score, s, t = torch.cat(scores), torch.cat(ss), torch.cat(ts)
    best = score.argsort(descending=True)[: cfg.candidates]
    R0, t0, s0 = Rs[best], t[best], s[best]
    if template:  # metric template: keep its size, move it along the rays instead
        t0, s0 = t0 / s0[:, None], torch.ones_like(s0)
    if init is not None:  # candidate 0: the pose given, moved to the mesh centred at its vertex mean (as ctx.ov)
        Ri, ti, si = np.asarray(init[0], dtype=np.float64), np.asarray(init[1], dtype=np.float64), float(init[2])
        f = lambda a: torch.as_tensor(a, dtype=torch.float32, device=ctx.dev)[None]  # noqa: E731
        R0, t0, s0 = torch.cat([f(Ri), R0]), torch.cat([f(ti + si * Ri @ ctx.centre), t0]), torch.cat([f(si), s0])
    w_scale = cfg.template_scale_prior if template else cfg.category_scale_prior
    log_s_ref = torch.zeros_like(s0) if template else s0.log()
    d6 = torch.nn.Parameter(matrix_to_rot6d(R0))
    tt = torch.nn.Parameter(t0.clone())
    ls = torch.nn.Parameter(s0.log())
    lf = torch.nn.Parameter(torch.zeros_like(s0))  # log focal factor
    groups = [{"params": [d6], "lr": 0.03}, {"params": [tt], "lr": 0.003}, {"params": [ls], "lr": 0.02}]
    if cfg.refine_focal:
        groups.append({"params": [lf], "lr": 0.01})
    opt = torch.optim.Adam(groups)
    tgt_pts, tgt_w = mask_points(target, 400, g)
    tgt_pts, tgt_w = tgt_pts.to(ctx.dev), tgt_w.to(ctx.dev)
    sub = ctx.opts[:300]
    for _ in range(cfg.pose_steps):
        R, sc, fs = rot6d_to_matrix(d6), ls.exp(), lf.exp()
        sil = ctx.render_obj(R, tt, sc, fs).silhouette
        iou = soft_iou(sil, target[None], valid[None])
        loss = 1 - iou + w_scale * (ls - log_s_ref) ** 2
        far = (1 - iou) > 0.9
        if far.any():  # masks barely overlap: transport pulls the projected points onto the mask
            v = ctx.object_verts(R[far], tt[far], sc[far], sub)
            uv = ctx.project_crop(v, fs[far]) / S
            # points projecting outside the image have no mask to go to: they do not count
            w = ctx.in_image(v.detach(), fs[far].detach()).float()
            w = torch.where(w.sum(1, keepdim=True) > 0, w, torch.ones_like(w))
            w = w / w.sum(1, keepdim=True)
            loss = loss.clone()
            loss[far] = loss[far] + sinkhorn_divergence(uv, w, tgt_pts[None].expand(len(uv), -1, -1), tgt_w[None].expand(len(uv), -1)) * 10
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
    with torch.no_grad():
        R, sc, fs = rot6d_to_matrix(d6), ls.exp(), lf.exp()
        iou = soft_iou(ctx.render_obj(R, tt, sc, fs).silhouette, target[None], valid[None])
        top = iou.argsort(descending=True)[: cfg.top_k]
    return PoseFit(R[top].detach(), tt[top].detach(), sc[top].detach(), iou[top], fs[top].detach())


def adopt_focal(ctx: _Context, fit: PoseFit) -> tuple[Camera, torch.Tensor]:
    """Switch the context to the best hypothesis's refined focal. Returns the new camera and
    the translations (K, 3) of all hypotheses re-placed so that each keeps its image under that
    focal: u = f x / z stays when z scales by fs_0 / fs_k (the apparent size) and x, y stay."""
    k0 = float(fit.focal_scale[0])
    cam = ctx.camera
    refined = Camera(cam.fx * k0, cam.fy * k0, cam.cx, cam.cy, cam.width, cam.height)
    ctx.set_camera(refined)
    t = fit.t.clone()
    t[:, 2] = t[:, 2] * (k0 / fit.focal_scale)
    return refined, t


# -- stage 3: contact alignment ----------------------------------------------------------------
def fit_hand_to_mask(ctx: _Context, params: HandParams) -> HandParams:
    """Translate the hand so that its silhouette matches the hand mask (occlusion-aware,
    pixels outside the image ignored)."""
    valid = ctx.valid_hand
    delta = torch.nn.Parameter(torch.zeros(1, 3, device=ctx.dev))
    opt = torch.optim.Adam([delta], lr=1e-3)
    with torch.no_grad():
        v0 = ctx.hand(params).vertices
    for _ in range(ctx.cfg.hand_steps):
        sil = ctx.render_hand(v0 + delta[:, None]).silhouette
        loss = 10 * (1 - soft_iou(sil, ctx.hand_mask[None], valid[None])).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    p = params.clone()
    p.transl = p.transl + delta.detach()
    return p


def contact_points(ctx: _Context, hand_v: torch.Tensor, obj_v: torch.Tensor, max_rays: int = 150) -> tuple[np.ndarray, np.ndarray]:
    """Matching-free contact point sets (hand points, object points) from the image: rays
    through pixels where the hand mask covers the rendered object (hand in front: far palmar
    hand hit, near object hit) and where the object mask covers the rendered hand (object in
    front: near palmar hand hit, far object hit)."""
    with torch.no_grad():
        so = ctx.ras(ctx.ccam.project(obj_v[None]), obj_v[None, :, 2], ctx.of).silhouette[0] > 0.5
        sh = ctx.render_hand(hand_v[None]).silhouette[0] > 0.5
    hm, om = ctx.hand_mask > 0.5, ctx.obj_mask > 0.5
    front = hm & so & ~om
    back = om & sh & ~hm
    H, O = [], []
    palm = ctx.hand.faces[ctx.palmar_faces]
    for pix, hand_front in ((front, True), (back, False)):
        idx = torch.nonzero(pix)
        if len(idx) == 0:
            continue
        if len(idx) > max_rays:
            idx = idx[torch.linspace(0, len(idx) - 1, max_rays).long()]
        uv = idx.flip(1).float()
        d = ctx.ccam.rays(uv)
        o = torch.zeros_like(d)
        nh, fh, okh = nearest_farthest(ray_hits(o, d, hand_v, palm))
        no, fo, oko = nearest_farthest(ray_hits(o, d, obj_v, ctx.of))
        ok = okh & oko
        th = fh if hand_front else nh
        to = no if hand_front else fo
        H.append((d * th[:, None])[ok])
        O.append((d * to[:, None])[ok])
    if not H:
        return np.zeros((0, 3)), np.zeros((0, 3))
    return torch.cat(H).cpu().double().numpy(), torch.cat(O).cpu().double().numpy()


def align_contact(ctx: _Context, params: HandParams, R, t, s) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Per hypothesis k: hand scale about the camera and a translation (applied after the
    scale) from an iterated ICP of hand contact points onto object contact points. Falls back
    to the hand's contact zones vs the object surface when no contact pixel exists.
    Returns scale (K,), translation (K, 3), contact pixel-ray counts."""
    with torch.no_grad():
        hv = ctx.hand(params).vertices[0]
    scales, trans, counts = [], [], []
    zone_pts = hv[ctx.zone_index.flatten()].cpu().double().numpy()
    for k in range(len(R)):
        with torch.no_grad():
            ov = ctx.object_verts(R[k:k + 1], t[k:k + 1], s[k:k + 1])[0]
        Hp, Op = contact_points(ctx, hv, ov)
        counts.append(len(Hp))
        if len(Hp) >= 5:
            res = icp(Hp, Op, mode="ray", iters=ctx.cfg.icp_iters)
        else:
            surf = ctx.object_verts(R[k:k + 1], t[k:k + 1], s[k:k + 1], ctx.opts)[0].cpu().double().numpy()
            res = icp(zone_pts, surf, mode="ray", iters=ctx.cfg.icp_iters, trim=0.3)
        T = res.transform
        sc = float(np.clip(T[0, 0], 0.5, 2.0))
        scales.append(sc)
        trans.append(T[:3, 3])
    return (torch.tensor(scales, dtype=torch.float32, device=ctx.dev),
            torch.as_tensor(np.stack(trans), dtype=torch.float32, device=ctx.dev), counts)


# -- stage 4: refinement ----------------------------------------------------------------------
def refine(ctx: _Context, params: HandParams, hscale: torch.Tensor, htrans: torch.Tensor, R, t, s, template: bool,
           progress: Callable[[int], None] | None = None):
    """EasyHOI refinement ("easyhoi": object fixed) or Cao's joint optimisation ("cao"),
    batched over the K hypotheses. Returns the best state per hypothesis and its loss."""
    cfg, K = ctx.cfg, len(R)
    joint = cfg.method == "cao"
    prior = ctx.prior
    q0 = prior.to_anatomical(params.hand_pose).expand(K, -1, -1).clone()
    q = torch.nn.Parameter(q0.clone())
    betas = torch.nn.Parameter(params.betas.expand(K, -1).clone())
    go = torch.nn.Parameter(params.global_orient.expand(K, -1).clone())
    # hand vertices: c * (V(params) + d): the ICP's translation becomes d = trans / scale
    d = torch.nn.Parameter(params.transl.expand(K, -1) + htrans / hscale[:, None])
    lhs = torch.nn.Parameter(hscale.log().clone())
    d6 = torch.nn.Parameter(matrix_to_rot6d(R).clone())
    tt = torch.nn.Parameter(t.clone())
    ls = torch.nn.Parameter(s.log().clone())
    groups = [{"params": [q], "lr": 1e-2}, {"params": [betas], "lr": 1e-3}, {"params": [go], "lr": 3e-3},
              {"params": [d], "lr": 1e-3}, {"params": [lhs], "lr": 3e-3}]
    if joint:
        groups += [{"params": [d6], "lr": 5e-3}, {"params": [tt], "lr": 1e-3}, {"params": [ls], "lr": 5e-3}]
    opt = torch.optim.Adam(groups)
    valid_h, valid_o = ctx.valid_hand, ctx.valid_obj
    w_scale = cfg.template_scale_prior if template else cfg.category_scale_prior
    ls_ref = ls.detach().clone() if not template else torch.zeros_like(ls)
    near = None
    best_loss = torch.full((K,), torch.inf, device=ctx.dev)
    best = {}
    for it in range(cfg.refine_steps + 1):
        hp = prior.from_anatomical(q)
        out = ctx.hand(global_orient=go, hand_pose=hp, betas=betas, transl=d)
        c = lhs.exp()
        hv = c[:, None, None] * out.vertices
        kp = c[:, None, None] * out.keypoints
        R_, s_ = rot6d_to_matrix(d6), ls.exp()
        sdf = ctx.object_sdf(hv, R_, tt, s_)
        zd = zone_distances(sdf, ctx.zone_index)  # (K, Z) metres
        if near is None:
            near = (zd < cfg.contact_radius_m).float().detach()
        contact = (near * zd.clamp_min(0)).sum(1) / near.sum(1).clamp_min(1) * 100
        depth = (-sdf - cfg.penetration_tol_m).clamp_min(0)
        pen = depth.sum(1) / (depth > 0).float().sum(1).clamp_min(1) * 100
        hr = ctx.render_hand(hv)
        iou_h = soft_iou(hr.silhouette, ctx.hand_mask[None], valid_h[None])
        loss = (cfg.w_penetration * pen + cfg.w_hand_mask * (1 - iou_h) + cfg.w_pose * (q - q0).abs().sum((1, 2))
                + cfg.w_keypoints * ctx.keypoint_loss(kp) + 10 * prior.limit_violation(hp) + 1e-2 * (betas ** 2).sum(1))
        if joint:
            orr = ctx.render_obj(R_, tt, s_)
            iou_o = soft_iou(orr.silhouette, ctx.obj_mask[None], valid_o[None])
            ordinal = ordinal_depth_loss(hr.silhouette, hr.depth, orr.silhouette, orr.depth, ctx.hand_mask, ctx.obj_mask)
            inter = (hv.mean(1) - ctx.object_verts(R_, tt, s_).mean(1)).norm(dim=-1)
            loss = loss + cfg.w_object_mask * (1 - iou_o) + cfg.w_ordinal * ordinal + cfg.w_interaction * inter + w_scale * (ls - ls_ref) ** 2
        else:
            loss = loss + cfg.w_contact * contact
        with torch.no_grad():
            better = loss < best_loss
            best_loss = torch.where(better, loss, best_loss)
            snap = {"q": q, "betas": betas, "go": go, "d": d, "lhs": lhs, "d6": d6, "tt": tt, "ls": ls}
            for k_, v in snap.items():
                prev = best.get(k_, v.detach().clone())
                m = better.reshape(-1, *([1] * (v.dim() - 1)))
                best[k_] = torch.where(m, v.detach(), prev)
        if it == cfg.refine_steps:
            break
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
        if progress:
            progress(1)
    hp = prior.from_anatomical(best["q"])
    params_k = HandParams(best["go"], hp, best["betas"], best["d"], params.side)
    return params_k, best["lhs"].exp(), rot6d_to_matrix(best["d6"]), best["tt"], best["ls"].exp(), best_loss


# -- metrics of a state (for params.json and the stage table) -----------------------------------
@torch.no_grad()
def state_metrics(ctx: _Context, params: HandParams, hscale: torch.Tensor, R, t, s) -> dict[str, torch.Tensor]:
    out = ctx.hand(params)
    hv = hscale[:, None, None] * out.vertices
    kp = hscale[:, None, None] * out.keypoints
    valid_h, valid_o = ctx.valid_hand, ctx.valid_obj
    hr = ctx.render_hand(hv)
    orr = ctx.render_obj(R, t, s)
    sdf = ctx.object_sdf(hv, R, t, s)
    px = ((ctx.camera.project(kp) - ctx.uv).norm(dim=-1) * ctx.conf).sum(-1) / ctx.conf.sum()
    return {
        "hand_iou": soft_iou((hr.silhouette > 0.5).float(), (ctx.hand_mask > 0.5).float()[None], valid_h[None]),
        "object_iou": soft_iou((orr.silhouette > 0.5).float(), (ctx.obj_mask > 0.5).float()[None], valid_o[None]),
        "keypoint_error_px": px,
        "max_penetration_mm": (-sdf).clamp_min(0).amax(1) * 1000,
        "min_distance_mm": sdf.amin(1).clamp_min(0) * 1000,
    }


def reconstruct_image(inputs: ImageInputs, mesh: trimesh.Trimesh, camera: Camera, cfg: ReconstructConfig | None = None,
                      template: bool = True, hand: HandModel | None = None,
                      progress: Callable[[str, int, int], None] | None = None,
                      hand_params: HandParams | None = None, refinenet=None, init_pose: InitPose | None = None) -> ReconResult:
    """Reconstruct hand and object from one image.

    Args:
        mesh: the object's mesh, metres (a metric template when `template`, else a category
            template whose scale is free).
        progress: callback(stage, done, total).
        hand_params: the hand already fitted to `inputs.keypoints` under `camera` (as
            hoitool.pipelines.grabcut.fit_hand does for the masks); stage 1's fit is then skipped.
        init_pose: an object pose (R, t, s) of `mesh`, x -> s R x + t, that stage 2 always
            optimises besides the random rotations (`PriorShapes.init_pose`: where the prior put it).
        refinenet: a trained hoitool.refine.RefineNet (of the right hand model of `hand`'s
            source): applied to the kept hypothesis after the last stage, as a stage of its own
            ("refinenet"; Cao et al.'s step 4).
    """
    cfg = cfg or ReconstructConfig()
    hand = (hand or HandModel(cfg.side)).to(cfg.device)
    g = torch_generator(cfg.seed, "reconstruct")
    tick = progress or (lambda *a: None)
    ctx = _Context(inputs, mesh, camera, cfg, hand)
    stages: dict[str, SceneState] = {}
    one = torch.ones(1, device=ctx.dev)

    def record(name, params, hs, R, t, s):
        """Keep hypothesis 0 (the best object pose so far) as the stage's result."""
        if params.batch_size != len(R):
            params = _expand(params, len(R))
        m = state_metrics(ctx, params, hs, R, t, s)
        stages[name] = _state(ctx, params, hs, R, t, s, 0, **{k: v[0] for k, v in m.items()})

    # 1. hand from keypoints
    tick("hand", 0, 1)
    if hand_params is None:
        hand_params = fit_to_2d_keypoints(hand, ctx.uv.cpu(), camera, ctx.conf.cpu()).params
    params = hand_params.to(ctx.dev)
    tick("hand", 1, 1)
    # 2. object pose by mask fitting
    tick("object", 0, 1)
    depth = float(hand(params).vertices[0, :, 2].median())
    pose = fit_object_pose(ctx, depth, template, g, init_pose)
    R, t, s = pose.R, pose.t, pose.s
    if cfg.refine_focal:  # the hand was fitted under the given focal: fit it again under the refined one
        camera, t = adopt_focal(ctx, pose)
        fit = fit_to_2d_keypoints(hand, ctx.uv.cpu(), camera, ctx.conf.cpu())
        params = fit.params.to(ctx.dev)
    K = len(R)
    record("pose", params, one.expand(K), R, t, s)
    tick("object", 1, 1)
    # 3. contact alignment (EasyHOI) or nothing (Cao: the joint optimisation does it)
    tick("contact", 0, 1)
    if cfg.method == "easyhoi":
        params = fit_hand_to_mask(ctx, params)
        hs, ht, counts = align_contact(ctx, params, R, t, s)
        pk = _expand(params, K)
        pk.transl = pk.transl + ht / hs[:, None]
        record("contact", pk, hs, R, t, s)
        stages["contact"].metrics["contact_rays"] = float(counts[0])
    else:
        hs, ht = torch.ones(K, device=ctx.dev), torch.zeros(K, 3, device=ctx.dev)
    tick("contact", 1, 1)
    # 4. refinement / joint optimisation
    done = [0]

    def step(n):
        done[0] += n
        tick("refine", done[0], cfg.refine_steps)

    pk, hs, R, t, s, loss = refine(ctx, params, hs, ht, R, t, s, template, step)
    order = rank_hypotheses(ctx, loss, R, t, s).tolist()
    m = state_metrics(ctx, pk, hs, R, t, s)
    hyps = [_state(ctx, pk, hs, R, t, s, k, loss=loss[k], **{n: v[k] for n, v in m.items()}) for k in order]
    stages["refine" if cfg.method == "easyhoi" else "joint"] = hyps[0]
    # 5. Cao et al.'s refinement network on the kept hypothesis (the others stay as the last stage left them)
    if refinenet is not None:
        from hoitool.refine.scene import refine_in_camera, scaled_object_sdf

        tick("refinenet", 0, 1)
        k = order[0]
        one_k = slice(k, k + 1)
        right = hand if hand.side == "right" else HandModel("right", hand.mano_dir).to(ctx.dev)
        t_mesh = t[one_k] - s[one_k, None] * (R[one_k] @ torch.as_tensor(ctx.centre, dtype=torch.float32, device=ctx.dev))
        grid, uTo = scaled_object_sdf(mesh, float(s[k] / hs[k]))
        pr = refine_in_camera(refinenet, hand, right, pk[k].to(ctx.dev), hs[one_k], R[one_k], t_mesh, s[one_k], grid, uTo)
        m = state_metrics(ctx, pr, hs[one_k], R[one_k], t[one_k], s[one_k])
        hyps[0] = _state(ctx, pr, hs[one_k], R[one_k], t[one_k], s[one_k], 0, loss=loss[k], **{n: v[0] for n, v in m.items()})
        stages["refinenet"] = hyps[0]
        tick("refinenet", 1, 1)
    return ReconResult(stages, camera, mesh, hyps)


@torch.no_grad()
def rank_hypotheses(ctx: _Context, loss: torch.Tensor, R, t, s) -> torch.Tensor:
    """Order (K,) of the hypotheses, best first, by their final refinement loss (K,); with
    "easyhoi", whose refinement keeps the object fixed, plus w_object_mask x (1 - soft IoU)
    of the object in its final pose ("cao"'s loss already holds that term, at its kept step)."""
    score = loss
    if ctx.cfg.method == "easyhoi":
        iou = soft_iou(ctx.render_obj(R, t, s).silhouette, ctx.obj_mask[None], ctx.valid_obj[None])
        score = loss + ctx.cfg.w_object_mask * (1 - iou)
    return score.argsort()


def _expand(params: HandParams, K: int) -> HandParams:
    return HandParams(*(getattr(params, k).expand(K, -1).clone() for k in HandParams.TENSORS), side=params.side)


def hand_vertices(hand: HandModel, state: SceneState) -> np.ndarray:
    """(V, 3) camera-frame hand vertices of a state."""
    with torch.no_grad():
        return (state.hand_scale * hand(state.hand.to(hand.device)).vertices[0]).cpu().double().numpy()


def hand_keypoints(hand: HandModel, state: SceneState) -> np.ndarray:
    with torch.no_grad():
        return (state.hand_scale * hand(state.hand.to(hand.device)).keypoints[0]).cpu().double().numpy()



@torch.no_grad()
def object_mask_iou(inputs: ImageInputs, camera: Camera, meshes: list[trimesh.Trimesh | None], cfg: ReconstructConfig | None = None) -> np.ndarray:
    """(M,) hard IoU of each camera-frame mesh's rendered silhouette with the object mask, in the
    same crop, rasteriser and weights as the mask fit (pixels outside the image and where the hand
    hides the object are ignored); 0 for a missing mesh."""
    cfg = cfg or ReconstructConfig()
    dev, S = torch.device(cfg.device), cfg.render_size
    x0, y0, side = square_window(inputs.hand_mask | inputs.object_mask)
    ccam = camera.crop(x0, y0, side, S)
    H, W = inputs.object_mask.shape
    inside = crop_inside(H, W, x0, y0, side, S)

    def crop(m: np.ndarray) -> torch.Tensor:
        c = crop_mask(m.astype(np.float32), x0, y0, side, S)
        c = np.clip(np.where(inside > 0, c / np.maximum(inside, 1e-6), 0.0), 0.0, 1.0)
        return torch.as_tensor(c, dtype=torch.float32, device=dev)

    obj, hm = (crop(inputs.object_mask) > 0.5).float(), (crop(inputs.hand_mask) > 0.5).float()
    valid = torch.as_tensor(inside, dtype=torch.float32, device=dev) * (1.0 - hm * (1.0 - obj))
    ras = SoftRasterizer(S, S, sigma=cfg.sigma, silhouette="distance")
    out = np.zeros(len(meshes))
    for i, m in enumerate(meshes):
        if m is None or len(m.faces) == 0:
            continue
        simple = decimate(m, cfg.object_faces)
        v = torch.as_tensor(np.asarray(simple.vertices), dtype=torch.float32, device=dev)[None]
        if not bool((v[..., 2] > 1e-3).all()):
            continue  # reaches behind the camera
        f = torch.as_tensor(np.asarray(simple.faces), dtype=torch.long, device=dev)
        sil = ras(ccam.project(v), v[..., 2], f).silhouette
        out[i] = float(soft_iou((sil > 0.5).float(), obj[None], valid[None])[0])
    return out


@dataclass
class PriorShapes:
    """Object shapes drawn from the prior for the hand fitted to the image, ranked by mask agreement."""

    meshes: list[trimesh.Trimesh]
    """The `keep` best shapes (best first), camera frame, metres, placed by the prior relative to the fitted hand."""
    index: list[int]
    """Their sample indices."""
    iou: np.ndarray
    """(N,) hard IoU of every sample's silhouette with the object mask (0 without a surface)."""
    hand_params: HandParams
    """The hand fitted to the keypoints (stage 1), which the shapes were drawn for."""
    category: str

    @property
    def init_pose(self) -> InitPose:
        """The placement the prior drew, as `reconstruct_image(init_pose=...)` takes it for any of
        `meshes`: they are already in the camera frame, so the identity (R = I, t = 0, s = 1)."""
        return np.eye(3), np.zeros(3), 1.0


def prior_object_shapes(inputs: ImageInputs, camera: Camera, prior, category: str, shape_cfg=None,
                        cfg: ReconstructConfig | None = None, hand: HandModel | None = None,
                        hand_params: HandParams | None = None, keep: int = 1,
                        progress: Callable[[int, int], None] | None = None) -> PriorShapes:
    """Fit the hand to the keypoints (unless given), draw `shape_cfg.samples` object shapes of the
    category from the prior with the hand channels fixed to that hand's field, place them with the
    hand in the camera frame and keep the `keep` best by silhouette IoU with the object mask."""
    from hoitool.prior.shape import sample_shapes_for_hand

    cfg = cfg or ReconstructConfig()
    hand = (hand or HandModel(cfg.side)).to(cfg.device)
    if hand_params is None:
        hand_params = fit_to_2d_keypoints(hand, torch.as_tensor(inputs.keypoints, dtype=torch.float32), camera,
                                          torch.as_tensor(inputs.confidence, dtype=torch.float32)).params
    hand_params = hand_params.to(cfg.device)
    res = sample_shapes_for_hand(prior, category, hand, hand_params, shape_cfg, progress)
    placed = res.placed(hand, hand_params)
    iou = object_mask_iou(inputs, camera, placed, cfg)
    order = [int(i) for i in np.argsort(-iou, kind="stable") if placed[i] is not None][:keep]
    if not order:
        from hoitool.errors import InputError

        raise InputError(f"none of the {len(placed)} {category} shapes drawn from the prior has a surface (their grids have "
                         "no zero crossing): draw more with --shape-samples (or another --seed), or use --shape template")
    return PriorShapes([placed[i] for i in order], order, iou, hand_params.to("cpu"), category)


def final_score(state: SceneState, cfg: ReconstructConfig) -> float:
    """A reconstruction's score for choosing among object shapes (lower is better): the last
    optimisation's loss, plus w_object_mask x (1 - the object's mask IoU) with "easyhoi", whose
    refinement keeps the object fixed (as rank_hypotheses orders the poses of one shape)."""
    m = state.metrics
    score = float(m["loss"])
    if cfg.method == "easyhoi":
        score += cfg.w_object_mask * (1.0 - float(m["object_iou"]))
    return score


def reconstruct_with_shapes(inputs: ImageInputs, shapes: PriorShapes, camera: Camera, cfg: ReconstructConfig | None = None,
                            hand: HandModel | None = None, refinenet=None,
                            progress: Callable[[int, str, int, int], None] | None = None) -> tuple[ReconResult, int, list[float]]:
    """Run the stages once per kept prior shape (each from the prior's placement and the same
    fitted hand) and keep the best by `final_score`. Returns (result, its index in
    `shapes.meshes`, every shape's score). progress: callback(shape index, stage, done, total)."""
    cfg = cfg or ReconstructConfig()
    results, scores = [], []
    for i, mesh in enumerate(shapes.meshes):
        tick = (lambda stage, done, total, i=i: progress(i, stage, done, total)) if progress else None
        res = reconstruct_image(inputs, mesh, camera, cfg, template=False, hand=hand, progress=tick,
                                hand_params=shapes.hand_params, refinenet=refinenet, init_pose=shapes.init_pose)
        results.append(res)
        scores.append(final_score(res.final, cfg))
    best = int(np.argmin(scores))
    return results[best], best, scores
