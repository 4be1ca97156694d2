"""A differentiable soft rasteriser for silhouettes and depth, in plain PyTorch (CPU and CUDA).

Two silhouette models (`silhouette=`):

- "distance" (default): coverage = sigmoid(D / sigma), D the signed distance (pixels, +
  inside) from the pixel centre to the outline of the mesh's projected silhouette S (the
  union of its triangles). D is 0 exactly on the outline, so the coverage there is 0.5 and
  the soft silhouette of a straight edge has the hard one's area (unbiased: the optimum of a
  soft IoU against a hard mask sits at the true pose); inside S there are no seams between
  triangles, because only the outline (the contour edges: mesh edges whose adjacent
  triangles fold onto the same side on screen, and open boundary edges) enters D. Pixels of
  S farther than the margin from any pixel outside S count as covered (this keeps contours
  that lie inside S, e.g. a finger in front of the palm, from darkening it). Depth: soft
  z-buffer softmax_f(-z_f / gamma) over the triangles that contain the pixel centre; outside
  S, the depth of the nearest outline point.
- "softras": SoftRas's form. Each triangle covers a pixel with probability
  sigmoid(+-d^2 / sigma), d the pixel centre's distance (pixels) to the triangle, + inside
  and - outside; silhouette 1 - prod_f (1 - p_f); depth softmax_f(log p_f - z_f / gamma).
  Biased: at sigma 0.5 px^2 the outline is ~0.6 px fat, and where back faces are culled
  the interior edges between triangles leave seams of coverage 0.75.

As sigma and gamma go to zero both are the hard render; the tests compare it with pyrender.

Only (pixel, triangle) pairs within the triangle's screen box (plus, for "softras", the
distance at which p falls below `eps`) and (pixel, outline edge) pairs within the edge's box
plus that distance are formed, so the cost grows with the covered area, not with
pixels x triangles: a 778-vertex hand at 128 x 128 px is about 10^5 pairs.

    ras = SoftRasterizer(128, 128, sigma=1.0)
    out = ras(cam.project(v), v[..., 2], faces)     # out.silhouette, out.depth: (B, 128, 128)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: Triangles nearer than this (metres) are dropped (behind or at the camera).
NEAR_M = 1e-3

SILHOUETTES = ("distance", "softras")


@dataclass
class SoftRender:
    silhouette: torch.Tensor
    """(B, H, W) coverage in [0, 1]."""
    depth: torch.Tensor
    """(B, H, W) metres along z; 0 where no triangle comes near the pixel."""


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _segment_t(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    ab = b - a
    return (((p - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-12)).clamp(0, 1)


def _segment_d2(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    t = _segment_t(p, a, b)
    return ((a + t[..., None] * (b - a) - p) ** 2).sum(-1)


def _pairs(lo: torch.Tensor, hi: torch.Tensor, ok: torch.Tensor, height: int, width: int):
    """(pixel, primitive) pairs: every pixel centre inside the screen box [lo, hi] (N, 2) of
    primitive n where ok[n]. Returns (primitive index, px, py) of the pairs (P,) long."""
    x0 = lo[..., 0].ceil().clamp(0, width).long()
    y0 = lo[..., 1].ceil().clamp(0, height).long()
    x1 = hi[..., 0].floor().clamp(-1, width - 1).long()
    y1 = hi[..., 1].floor().clamp(-1, height - 1).long()
    w = (x1 - x0 + 1).clamp_min(0)
    h = (y1 - y0 + 1).clamp_min(0)
    n = w * h * ok
    total = int(n.sum())
    prim = torch.repeat_interleave(torch.arange(len(n), device=lo.device), n)
    start = torch.cumsum(n, 0) - n
    local = torch.arange(total, device=lo.device) - start[prim]
    wf = w[prim].clamp_min(1)
    return prim, x0[prim] + local % wf, y0[prim] + local // wf


def _argmin_per_pixel(value: torch.Tensor, pix: torch.Tensor, npix: int) -> torch.Tensor:
    """(npix,) index of the pair with the smallest value at each pixel, -1 where none."""
    vmin = torch.full((npix,), torch.inf, device=value.device, dtype=value.dtype).scatter_reduce(0, pix, value, "amin")
    is_min = value == vmin[pix]
    idx = torch.arange(len(value), device=value.device)
    return torch.full((npix,), -1, device=value.device, dtype=torch.long).scatter_reduce(0, pix[is_min], idx[is_min], "amax")


def _all_inside(inside: torch.Tensor, b: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """(N,) bool: the four pixel centres around each point uv (N, 2) of image b (N,) are all
    in the image and in the mask inside (B, H, W) bool."""
    B, H, W = inside.shape
    u0, v0 = uv[..., 0].floor().long(), uv[..., 1].floor().long()
    res = torch.ones(uv.shape[:-1], dtype=torch.bool, device=uv.device)
    for du in (0, 1):
        for dv in (0, 1):
            u, v = u0 + du, v0 + dv
            ok = (u >= 0) & (u < W) & (v >= 0) & (v < H)
            res &= ok & inside[b, v.clamp(0, H - 1), u.clamp(0, W - 1)]
    return res


def mesh_edges(faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Undirected edges of a triangle mesh faces (F, 3) long.

    Returns edges (E, 2) (vertex indices, smaller first), and for each of the 3F
    face-corners: its edge index (3F,), the vertex opposite that edge (3F,), and its face
    index (3F,)."""
    F_ = faces.shape[0]
    a = faces.reshape(-1)
    b = faces[:, [1, 2, 0]].reshape(-1)
    c = faces[:, [2, 0, 1]].reshape(-1)
    key = torch.stack([torch.minimum(a, b), torch.maximum(a, b)], 1)
    edges, inv = torch.unique(key, dim=0, return_inverse=True)
    face = torch.arange(F_, device=faces.device).repeat_interleave(3)
    return edges, inv, c, face


class SoftRasterizer(torch.nn.Module):
    """Soft silhouettes and depth of triangle meshes given in pixel coordinates.

    Args:
        height, width: image size in pixels.
        sigma: sharpness. "distance": pixels, the logistic scale of the signed distance to the
            outline (coverage 0.5 on the outline, 0.73 one sigma inside, 0.27 one sigma
            outside); "softras": pixels^2 (p = 0.5 on a triangle's edge, 0.73 one pixel inside
            for sigma 1).
        gamma: depth softness, metres (the soft z-buffer's temperature).
        eps: pairs whose coverage is below eps are not formed.
        max_pairs: refuse renders needing more pairs than this (memory guard).
        cull_back: skip triangles facing away from the camera (their winding seen on screen);
            for closed, outward-oriented meshes the silhouette and the nearest depth are
            unchanged and the work halves.
        silhouette: "distance" (unbiased, the default) or "softras" (see the module docstring).
    """

    def __init__(self, height: int, width: int, sigma: float = 1.0, gamma: float = 1e-3, eps: float = 1e-4, max_pairs: int = 30_000_000,
                 cull_back: bool = False, silhouette: str = "distance"):
        super().__init__()
        if silhouette not in SILHOUETTES:
            raise ValueError(f"silhouette must be one of {SILHOUETTES}, got {silhouette!r}")
        self.silhouette = silhouette
        self.cull_back = bool(cull_back)
        self.height, self.width = int(height), int(width)
        self.sigma, self.gamma, self.eps, self.max_pairs = float(sigma), float(gamma), float(eps), int(max_pairs)
        if silhouette == "softras":
            self.margin = math.sqrt(self.sigma * math.log(1.0 / self.eps))
        else:
            self.margin = self.sigma * math.log(1.0 / self.eps)

    def forward(self, xy: torch.Tensor, z: torch.Tensor, faces: torch.Tensor) -> SoftRender:
        """Render. xy: (B, V, 2) pixel coordinates (OpenCV: pixel centres at integers),
        z: (B, V) camera depth in metres, faces: (F, 3) long."""
        if self.silhouette == "softras":
            return self._softras(xy, z, faces)
        return self._distance(xy, z, faces)

    def _check(self, total: int) -> None:
        if total > self.max_pairs:
            raise RuntimeError(f"soft render needs {total} pixel-triangle pairs (limit {self.max_pairs}): lower the resolution or simplify the mesh")

    def _valid_faces(self, tri: torch.Tensor, tz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, F) bool of usable triangles (in front of the camera, not degenerate), and their
        doubled signed screen areas (B, F)."""
        area2 = _cross(tri[..., 1, :] - tri[..., 0, :], tri[..., 2, :] - tri[..., 0, :])
        return (tz.amin(-1) > NEAR_M) & (area2.abs() > 1e-9), area2

    def _distance(self, xy: torch.Tensor, z: torch.Tensor, faces: torch.Tensor) -> SoftRender:
        B, V = z.shape
        H, W = self.height, self.width
        F_ = faces.shape[0]
        npix = B * H * W
        dev, dt = xy.device, xy.dtype
        tri = xy[:, faces]  # (B,F,3,2)
        tz = z[:, faces]  # (B,F,3)
        # -- triangles: which pixel centres lie inside S, and their depth ----------------------
        with torch.no_grad():
            valid, area2 = self._valid_faces(tri, tz)
            ok = valid & (area2 < 0) if self.cull_back else valid  # outward normal away from the camera = positive area (y down)
            pair, px, py = _pairs(tri.amin(2).reshape(-1, 2), tri.amax(2).reshape(-1, 2), ok.reshape(-1), H, W)
            self._check(len(pair))
            pix = ((pair // F_) * H + py) * W + px
        p = torch.stack([px, py], -1).to(dt)
        t = tri.reshape(-1, 3, 2)[pair]
        a, b, c = t[:, 0], t[:, 1], t[:, 2]
        area = _cross(b - a, c - a)
        l0 = _cross(b - p, c - p) / area
        l1 = _cross(c - p, a - p) / area
        bary = torch.stack([l0, l1, 1.0 - l0 - l1], -1)
        with torch.no_grad():
            inside_pair = (bary >= 0).all(-1)
        bary, pix_in = bary[inside_pair], pix[inside_pair]
        zp = 1.0 / (bary / tz.reshape(-1, 3)[pair[inside_pair]]).sum(-1)
        inside = torch.zeros(npix, dtype=torch.bool, device=dev)
        inside[pix_in] = True
        logit = -zp / self.gamma
        with torch.no_grad():
            m = torch.full((npix,), -torch.inf, device=dev, dtype=dt).scatter_reduce(0, pix_in, logit, "amax")
        e = torch.exp(logit - m[pix_in])
        den = torch.zeros(npix, device=dev, dtype=dt).index_add(0, pix_in, e)
        num = torch.zeros(npix, device=dev, dtype=dt).index_add(0, pix_in, e * zp)
        depth_in = num / den.clamp_min(1e-30)
        # -- outline edges: signed distance of every pixel near them -------------------------------
        with torch.no_grad():
            edges, inv, opp, face = mesh_edges(faces)
            E = edges.shape[0]
            ea, eb = xy[:, edges[:, 0]], xy[:, edges[:, 1]]  # (B,E,2)
            side = torch.sign(_cross(eb[:, inv] - ea[:, inv], xy[:, opp] - ea[:, inv]))  # (B,3F)
            fv = valid[:, face]
            idx = inv[None].expand(B, -1)
            count = lambda m: torch.zeros(B, E, device=dev, dtype=torch.float32).scatter_add(1, idx, m.float()) > 0  # noqa: E731
            pos, neg, used = count(fv & (side > 0)), count(fv & (side < 0)), count(fv)
            contour = used & ~(pos & neg)  # no triangles on both sides: the edge can bound S
            de = eb - ea
            n_out = torch.stack([-de[..., 1], de[..., 0]], -1) / de.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            n_out = torch.where(pos, -1.0, 1.0)[..., None] * n_out  # (B,E,2) screen normal away from the triangles
            lo = torch.minimum(ea, eb) - self.margin
            hi = torch.maximum(ea, eb) + self.margin
            epair, ex, ey = _pairs(lo.reshape(-1, 2), hi.reshape(-1, 2), contour.reshape(-1), H, W)
            self._check(len(pair) + len(epair))
            epix = ((epair // E) * H + ey) * W + ex
        q = torch.stack([ex, ey], -1).to(dt)
        qa = xy[:, edges[:, 0]].reshape(-1, 2)[epair]
        qb = xy[:, edges[:, 1]].reshape(-1, 2)[epair]
        tq = _segment_t(q, qa, qb)
        near = qa + tq[:, None] * (qb - qa)
        d2 = ((near - q) ** 2).sum(-1)
        with torch.no_grad():
            # the pixel's nearest point on a contour edge with S all round the point one pixel
            # out of it is inside S (a fold, or a part in front of another), not on the outline
            hidden = _all_inside(inside.reshape(B, H, W), epair // E, near + n_out.reshape(-1, 2)[epair])
            sel = _argmin_per_pixel(torch.where(hidden, torch.inf, d2), epix, npix)
            has = sel >= 0
            has[has.clone()] = ~hidden[sel[has]]
        dist = torch.full((npix,), torch.inf, device=dev, dtype=dt)
        dist[has] = d2[sel[has]].clamp_min(1e-12).sqrt()
        # outline depth: perspective-correct along the edge (1/z is affine on screen)
        za = z[:, edges[:, 0]].reshape(-1)[epair[sel[has]]]
        zb = z[:, edges[:, 1]].reshape(-1)[epair[sel[has]]]
        ts = tq[sel[has]]
        depth_out = torch.zeros(npix, device=dev, dtype=dt)
        depth_out[has] = 1.0 / ((1 - ts) / za.clamp_min(NEAR_M) + ts / zb.clamp_min(NEAR_M))
        # pixels of S with no pixel outside S within the margin are covered, whatever contour is near
        with torch.no_grad():
            r = int(math.ceil(self.margin)) + 1
            out = (~inside).reshape(B, 1, H, W).to(dt)
            out = torch.nn.functional.pad(out, (r, r, r, r), value=1.0)  # beyond the image: possibly outside
            near_out = torch.nn.functional.max_pool2d(out, 2 * r + 1, stride=1)[:, 0].reshape(-1) > 0
            deep = inside & ~near_out
        signed = torch.where(inside, dist, -dist)
        sil = torch.sigmoid(signed / self.sigma)
        sil = torch.where(deep, torch.ones_like(sil), sil)
        depth = torch.where(inside, depth_in, depth_out)
        return SoftRender(sil.reshape(B, H, W), depth.reshape(B, H, W))

    def _softras(self, xy: torch.Tensor, z: torch.Tensor, faces: torch.Tensor) -> SoftRender:
        B, V = z.shape
        H, W = self.height, self.width
        F_ = faces.shape[0]
        tri = xy[:, faces]  # (B,F,3,2)
        tz = z[:, faces]  # (B,F,3)
        with torch.no_grad():
            ok, area2 = self._valid_faces(tri, tz)
            if self.cull_back:  # outward normal pointing away from the camera = positive area (y down)
                ok &= area2 < 0
            pair, px, py = _pairs((tri.amin(2) - self.margin).reshape(-1, 2), (tri.amax(2) + self.margin).reshape(-1, 2), ok.reshape(-1), H, W)
            self._check(len(pair))
            batch = pair // F_
            pix = (batch * H + py) * W + px
        p = torch.stack([px, py], -1).to(xy.dtype)
        t = tri.reshape(-1, 3, 2)[pair]  # (P,3,2)
        a, b, c = t[:, 0], t[:, 1], t[:, 2]
        area = _cross(b - a, c - a)
        # barycentric coordinates of the pixel centre
        l0 = _cross(b - p, c - p) / area
        l1 = _cross(c - p, a - p) / area
        l2 = 1.0 - l0 - l1
        bary = torch.stack([l0, l1, l2], -1)
        inside = (bary >= 0).all(-1)
        d2 = torch.minimum(torch.minimum(_segment_d2(p, a, b), _segment_d2(p, b, c)), _segment_d2(p, c, a))
        prob = torch.sigmoid(torch.where(inside, d2, -d2) / self.sigma)
        # depth at the nearest point of the triangle, perspective-correct (1/z is affine on screen)
        bc = bary.clamp_min(0)
        bc = bc / bc.sum(-1, keepdim=True)
        zt = tz.reshape(-1, 3)[pair]
        zp = 1.0 / (bc / zt).sum(-1)

        npix = B * H * W
        log_empty = torch.zeros(npix, device=xy.device, dtype=xy.dtype).index_add(0, pix, torch.log1p(-prob.clamp(max=1 - 1e-6)))
        sil = 1.0 - torch.exp(log_empty)
        logit = torch.log(prob.clamp_min(1e-12)) - zp / self.gamma
        with torch.no_grad():
            m = torch.full((npix,), -torch.inf, device=xy.device, dtype=xy.dtype).scatter_reduce(0, pix, logit, "amax")
        e = torch.exp(logit - m[pix])
        den = torch.zeros(npix, device=xy.device, dtype=xy.dtype).index_add(0, pix, e)
        num = torch.zeros(npix, device=xy.device, dtype=xy.dtype).index_add(0, pix, e * zp)
        depth = num / den.clamp_min(1e-30)
        return SoftRender(sil.reshape(B, H, W), depth.reshape(B, H, W))


def render_mesh(ras: SoftRasterizer, camera, vertices: torch.Tensor, faces: torch.Tensor) -> SoftRender:
    """Render camera-frame vertices (B, V, 3), metres, through a `Camera`."""
    return ras(camera.project(vertices), vertices[..., 2], faces)


def splat_points(uv: torch.Tensor, height: int, width: int, dilate: int = 1) -> torch.Tensor:
    """Hard occupancy (B, H, W) float of projected points uv (B, N, 2): each point marks its
    pixel, then a (2 dilate + 1)^2 max filter closes the gaps. Not differentiable; used to
    score many candidate poses at once."""
    B, N, _ = uv.shape
    u = uv[..., 0].round().long()
    v = uv[..., 1].round().long()
    ok = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    idx = (torch.arange(B, device=uv.device)[:, None] * height + v.clamp(0, height - 1)) * width + u.clamp(0, width - 1)
    occ = torch.zeros(B * height * width, device=uv.device)
    occ[idx[ok]] = 1.0
    occ = occ.reshape(B, 1, height, width)
    if dilate > 0:
        occ = torch.nn.functional.max_pool2d(occ, 2 * dilate + 1, stride=1, padding=dilate)
    return occ[:, 0]
