"""Random appearance for rendered HOI data: backgrounds, object materials, skin tones, lights.

    look = random_appearance(rng, size=256)
    frame = render_frame(hand, params_o, mesh, camera, cTo, appearance=look)

Backgrounds are procedural (two-colour gradients, stripes, checkers, smooth noise) or crops of
the photographs scikit-image ships (no download), tinted at random. Everything is drawn from
the generator given, so a seed gives the same look.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

#: scikit-image sample photographs that ship inside the package (no download).
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "brick", "grass", "gravel", "moon", "camera")
#: Skin tones (RGB, 0-1), light to dark.
SKIN_TONES = ((0.96, 0.80, 0.69), (0.90, 0.72, 0.60), (0.80, 0.60, 0.47), (0.65, 0.46, 0.34), (0.48, 0.33, 0.24), (0.35, 0.24, 0.17))


@dataclass
class Appearance:
    background: np.ndarray
    """(H, W, 3) uint8 image behind the hand and object."""
    hand_color: tuple
    """RGBA, 0-1."""
    object_color: tuple
    light_intensity: float
    """Directional light (from the camera) intensity; pyrender units."""
    ambient: float
    """Ambient light level, 0-1."""


def _photo(name: str) -> np.ndarray:
    import skimage.data

    im = getattr(skimage.data, name)()
    if im.ndim == 2:
        im = np.repeat(im[..., None], 3, axis=2)
    return im[..., :3]


def _resize(im: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR))


def random_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) uint8: a procedural pattern or a tinted crop of a shipped photograph."""
    kind = rng.choice(["gradient", "stripes", "checker", "noise", "photo", "photo"])
    c0, c1 = (rng.uniform(0, 255, 3) for _ in range(2))
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    if kind == "gradient":
        a = rng.uniform(0, 2 * np.pi)
        t = (np.cos(a) * xx + np.sin(a) * yy)
        t = (t - t.min()) / max(np.ptp(t), 1e-6)
    elif kind == "stripes":
        a, f = rng.uniform(0, np.pi), rng.uniform(4, 20)
        t = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * f * (np.cos(a) * xx + np.sin(a) * yy)))
    elif kind == "checker":
        n = int(rng.integers(4, 16))
        t = ((np.floor(xx * n) + np.floor(yy * n)) % 2).astype(float)
    elif kind == "noise":
        k = int(rng.integers(4, 12))
        coarse = rng.uniform(0, 1, (k, k))
        t = _resize((coarse * 255).astype(np.uint8), size).astype(float) / 255
    else:
        im = _photo(str(rng.choice(PHOTOS)))
        h, w = im.shape[:2]
        side = int(rng.uniform(0.4, 1.0) * min(h, w))
        y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = _resize(np.ascontiguousarray(im[y0:y0 + side, x0:x0 + side]), size).astype(float)
        tint = rng.uniform(0.7, 1.15, 3)
        return np.clip(crop * tint, 0, 255).astype(np.uint8)
    return np.clip(c0 * (1 - t[..., None]) + c1 * t[..., None], 0, 255).astype(np.uint8)


def random_object_color(rng: np.random.Generator) -> tuple:
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.2, 0.9), rng.uniform(0.35, 0.95))
    return (r, g, b, 1.0)


def random_appearance(rng: np.random.Generator, size: int) -> Appearance:
    skin = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]
    return Appearance(random_background(rng, size), (*skin, 1.0), random_object_color(rng),
                      float(rng.uniform(1.5, 4.0)), float(rng.uniform(0.2, 0.5)))
