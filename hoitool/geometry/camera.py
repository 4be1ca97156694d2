"""A pinhole camera in the OpenCV convention: x right, y down, z forward, pixel centres at
integer coordinates (pixel (u, v) covers [u - 0.5, u + 0.5] x [v - 0.5, v + 0.5]).

    cam = Camera.default(640, 480)                  # focal from DEFAULT_FOV_DEG
    uv = cam.project(points_c)                      # (..., N, 2) pixels
    crop = cam.crop(x0, y0, side, 128)              # the same camera seen through a 128 px crop
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

#: Default field of view across the longer image side when no focal length is given: a
#: typical phone or webcam photo (50 degrees gives f = 1.07 x the longer side).
DEFAULT_FOV_DEG = 50.0


@dataclass(frozen=True)
class Camera:
    """Intrinsics of one image: focal lengths and principal point in pixels, image size."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self):
        for k in ("fx", "fy", "cx", "cy"):
            object.__setattr__(self, k, float(getattr(self, k)))
        for k in ("width", "height"):
            object.__setattr__(self, k, int(getattr(self, k)))

    @classmethod
    def default(cls, width: int, height: int, focal: float | None = None) -> "Camera":
        """Principal point at the image centre; focal in pixels, else from DEFAULT_FOV_DEG."""
        f = default_focal(width, height) if focal is None else float(focal)
        return cls(f, f, (width - 1) / 2.0, (height - 1) / 2.0, int(width), int(height))

    def K(self, device=None, dtype=torch.float32) -> torch.Tensor:
        return torch.tensor([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], device=device, dtype=dtype)

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """Pixel coordinates (..., N, 2) of camera-frame points (..., N, 3), metres."""
        z = points[..., 2:3].clamp_min(1e-6)
        xy = points[..., :2] / z
        return torch.stack([xy[..., 0] * self.fx + self.cx, xy[..., 1] * self.fy + self.cy], -1)

    def rays(self, uv: torch.Tensor) -> torch.Tensor:
        """Unit directions (..., N, 3) of the rays through pixels uv (..., N, 2)."""
        d = torch.stack([(uv[..., 0] - self.cx) / self.fx, (uv[..., 1] - self.cy) / self.fy, torch.ones_like(uv[..., 0])], -1)
        return d / d.norm(dim=-1, keepdim=True)

    def crop(self, x0: float, y0: float, side: float, size: int) -> "Camera":
        """The camera of the square window [x0, x0 + side) x [y0, y0 + side) resampled to
        size x size pixels."""
        s = size / side
        return Camera(self.fx * s, self.fy * s, (self.cx - x0 + 0.5) * s - 0.5, (self.cy - y0 + 0.5) * s - 0.5, size, size)

    def to_dict(self) -> dict:
        return asdict(self)


def default_focal(width: int, height: int) -> float:
    """Focal length (pixels) giving DEFAULT_FOV_DEG across the longer side."""
    return max(width, height) / (2.0 * math.tan(math.radians(DEFAULT_FOV_DEG) / 2.0))


def square_window(mask: np.ndarray, pad: float = 0.15, min_side: int = 16) -> tuple[int, int, int]:
    """(x0, y0, side): a square around the True pixels of mask (H, W), padded by `pad` of its
    side on each edge (the window may extend past the image)."""
    ys, xs = np.nonzero(mask)
    x_lo, x_hi, y_lo, y_hi = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    side = max(x_hi - x_lo, y_hi - y_lo, min_side)
    side = int(math.ceil(side * (1 + 2 * pad)))
    cx, cy = (x_lo + x_hi) / 2.0, (y_lo + y_hi) / 2.0
    return int(round(cx - side / 2)), int(round(cy - side / 2)), side


def crop_mask(mask: np.ndarray, x0: int, y0: int, side: int, size: int) -> np.ndarray:
    """Area-resample the window of a (H, W) mask (any dtype) to a (size, size) float32 image
    in [0, 1]; outside the image counts as 0 (see `crop_inside` for where that is)."""
    import cv2

    H, W = mask.shape
    canvas = np.zeros((side, side), np.float32)
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + side, W), min(y0 + side, H)
    if xb > xa and yb > ya:
        canvas[ya - y0:yb - y0, xa - x0:xb - x0] = mask[ya:yb, xa:xb]
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)


def crop_inside(height: int, width: int, x0: int, y0: int, side: int, size: int) -> np.ndarray:
    """(size, size) float32 in [0, 1]: the share of each pixel of the window (as `crop_mask`
    resamples it) that lies inside the (height, width) image. Pixels past the image border
    are unknown, not background: mask losses must ignore them."""
    return crop_mask(np.ones((height, width), np.float32), x0, y0, side, size)
