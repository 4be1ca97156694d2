"""A differentiable soft rasteriser for silhouettes and depth, in plain PyTorch (CPU and CUDA).

Each triangle covers a pixel with probability sigmoid(+-d^2 / sigma), d the pixel centre's
distance (pixels) to the projected triangle, + inside and - outside (SoftRas's form). The
silhouette is 1 - prod_f (1 - p_f); depth is a soft z-buffer, softmax_f(log p_f - z_f / gamma)
over the perspective-correct depths z_f. As sigma and gamma go to zero this is the hard
render; the tests compare it with pyrender.

Only (pixel, triangle) pairs within the triangle's screen box plus the distance at which
p falls below `eps` are formed, so the cost grows with the covered area, not with
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


@dataclass
class SoftRender:
    silhouette: torch.Tensor
    """(B, H, W) coverage in [0, 1]."""
    depth: torch.Tensor
    """(B, H, W) metres along z; 0 where no triangle comes near the pixel."""


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _segment_d2(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    ab = b - a
    t = (((p - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-12)).clamp(0, 1)
    return ((a + t[..., None] * ab - p) ** 2).sum(-1)


class SoftRasterizer(torch.nn.Module):
    """Soft silhouettes and depth of triangle meshes given in pixel coordinates.

    Args:
        height, width: image size in pixels.
        sigma: sharpness, pixels^2 (p = 0.5 on the edge, 0.73 one pixel inside for sigma 1).
        gamma: depth softness, metres (the soft z-buffer's temperature).
        eps: pairs whose coverage is below eps are not formed.
        max_pairs: refuse renders needing more pairs than this (memory guard).
        cull_back: skip triangles facing away from the camera (their winding seen on screen);
            for closed, outward-oriented meshes the silhouette and the nearest depth are
            unchanged and the work halves.
    """

    def __init__(self, height: int, width: int, sigma: float = 1.0, gamma: float = 1e-3, eps: float = 1e-4, max_pairs: int = 30_000_000,
                 cull_back: bool = False):
        super().__init__()
        self.cull_back = bool(cull_back)
        self.height, self.width = int(height), int(width)
        self.sigma, self.gamma, self.eps, self.max_pairs = float(sigma), float(gamma), float(eps), int(max_pairs)
        self.margin = math.sqrt(self.sigma * math.log(1.0 / self.eps))

    def forward(self, xy: torch.Tensor, z: torch.Tensor, faces: torch.Tensor) -> SoftRender:
        """Render. xy: (B, V, 2) pixel coordinates (OpenCV: pixel centres at integers),
        z: (B, V) camera depth in metres, faces: (F, 3) long."""
        B, V = z.shape
        H, W = self.height, self.width
        F_ = faces.shape[0]
        tri = xy[:, faces]  # (B,F,3,2)
        tz = z[:, faces]  # (B,F,3)
        with torch.no_grad():
            lo = tri.amin(2) - self.margin
            hi = tri.amax(2) + self.margin
            x0 = lo[..., 0].ceil().clamp(0, W).long()
            y0 = lo[..., 1].ceil().clamp(0, H).long()
            x1 = hi[..., 0].floor().clamp(-1, W - 1).long()
            y1 = hi[..., 1].floor().clamp(-1, H - 1).long()
            w = (x1 - x0 + 1).clamp_min(0)
            h = (y1 - y0 + 1).clamp_min(0)
            area2 = _cross(tri[..., 1, :] - tri[..., 0, :], tri[..., 2, :] - tri[..., 0, :])
            ok = (tz.amin(-1) > NEAR_M) & (area2.abs() > 1e-9)
            if self.cull_back:  # outward normal pointing away from the camera = positive area (y down)
                ok &= area2 < 0
            n = (w * h * ok).reshape(-1)
            total = int(n.sum())
            if total > self.max_pairs:
                raise RuntimeError(f"soft render needs {total} pixel-triangle pairs (limit {self.max_pairs}): lower the resolution or simplify the mesh")
            pair = torch.repeat_interleave(torch.arange(B * F_, device=xy.device), n)
            start = torch.cumsum(n, 0) - n
            local = torch.arange(total, device=xy.device) - start[pair]
            wf, x0f, y0f = w.reshape(-1)[pair], x0.reshape(-1)[pair], y0.reshape(-1)[pair]
            px = x0f + local % wf.clamp_min(1)
            py = y0f + local // wf.clamp_min(1)
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
