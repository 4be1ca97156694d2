"""Procedural hand-held objects: watertight meshes in metres, one generator per category.

Every generator draws its dimensions from realistic ranges with the given numpy Generator,
builds the solid with manifold3d (revolved profiles, primitives, booleans, hulls), and returns
a watertight trimesh with the object standing along +z and its bounding box centred at the
origin. Thin parts are at least ~4 mm thick so a 64^3 grid resolves them.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import trimesh
from manifold3d import CrossSection, Manifold

SEGMENTS = 48


def _revolve(profile: list[tuple[float, float]], segments: int = SEGMENTS) -> Manifold:
    """Solid of revolution about z of a closed (r, z) polygon with r >= 0."""
    return Manifold.revolve(CrossSection([np.asarray(profile, dtype=np.float64)]), segments)


def _torus_arc(major: float, minor: float, degrees: float = 180.0) -> Manifold:
    """Part of a torus in the xy plane, starting on +x and sweeping counter-clockwise."""
    circle = CrossSection.circle(minor, 24).translate((major, 0.0))
    return Manifold.revolve(circle, SEGMENTS, degrees)


def _box(x: float, y: float, z: float) -> Manifold:
    return Manifold.cube((x, y, z), center=True)


def _rounded_box(x: float, y: float, z: float, r: float) -> Manifold:
    """A box with rounded vertical edges (hull of four cylinders)."""
    r = min(r, x / 2 - 1e-4, y / 2 - 1e-4)
    cyls = [Manifold.cylinder(z, r, circular_segments=24, center=True).translate((sx * (x / 2 - r), sy * (y / 2 - r), 0.0))
            for sx in (-1, 1) for sy in (-1, 1)]
    return Manifold.batch_hull(cyls)


def _shell_profile(r_bottom: float, r_top: float, height: float, wall: float, base: float) -> list[tuple[float, float]]:
    """(r, z) outline of an open-topped tapered vessel with a flat bottom."""
    return [(0.0, 0.0), (r_bottom, 0.0), (r_top, height), (r_top - wall, height),
            (r_bottom - wall + (r_top - r_bottom) * base / height, base), (0.0, base)]


def mug(rng: np.random.Generator) -> Manifold:
    R = rng.uniform(0.035, 0.048)
    H = rng.uniform(0.08, 0.115)
    wall = rng.uniform(0.004, 0.006)
    body = _revolve(_shell_profile(R * rng.uniform(0.9, 1.0), R, H, wall, 0.007))
    a = rng.uniform(0.022, 0.032)  # handle half-height
    rh = rng.uniform(0.005, 0.0075)
    handle = _torus_arc(a, rh, 180.0).rotate((90.0, 0.0, 0.0)).rotate((0.0, 90.0, 0.0))  # arc bulging to +x
    handle = handle.scale((rng.uniform(0.8, 1.1), 1.0, 1.0)).translate((R - wall / 2, 0.0, H * rng.uniform(0.45, 0.6)))
    return body + handle


def cup(rng: np.random.Generator) -> Manifold:
    r_top = rng.uniform(0.033, 0.045)
    r_bot = r_top * rng.uniform(0.65, 0.9)
    H = rng.uniform(0.08, 0.13)
    return _revolve(_shell_profile(r_bot, r_top, H, rng.uniform(0.0035, 0.005), 0.005))


def bottle(rng: np.random.Generator) -> Manifold:
    R = rng.uniform(0.027, 0.042)
    body = rng.uniform(0.10, 0.17)
    shoulder = rng.uniform(0.02, 0.045)
    rn = rng.uniform(0.009, 0.014)
    neck = rng.uniform(0.02, 0.04)
    cap = rng.uniform(0.012, 0.02)
    prof = [(0.0, 0.0), (R * 0.95, 0.0), (R, 0.004), (R, body), (rn, body + shoulder), (rn, body + shoulder + neck),
            (rn + 0.0015, body + shoulder + neck), (rn + 0.0015, body + shoulder + neck + cap), (0.0, body + shoulder + neck + cap)]
    return _revolve(prof)


def bowl(rng: np.random.Generator) -> Manifold:
    R = rng.uniform(0.06, 0.085)
    depth = rng.uniform(0.04, 0.065)
    wall = rng.uniform(0.004, 0.006)
    foot = rng.uniform(0.025, 0.04)
    t = np.linspace(0.0, np.pi / 2, 12)
    outer = [(foot + (R - foot) * np.sin(a), depth * (1 - np.cos(a))) for a in t]
    inner = [(max(foot + (R - foot) * np.sin(a) - wall, 0.0), depth * (1 - np.cos(a)) + wall) for a in t[::-1]]
    prof = [(0.0, 0.0)] + outer + inner + [(0.0, wall)]
    return _revolve(prof)


def can(rng: np.random.Generator) -> Manifold:
    R = rng.uniform(0.026, 0.045)
    H = rng.uniform(0.06, 0.15)
    c = 0.003
    return _revolve([(0.0, 0.0), (R - c, 0.0), (R, c), (R, H - c), (R - c, H), (0.0, H)])


def box(rng: np.random.Generator) -> Manifold:
    dims = np.sort(rng.uniform([0.03, 0.05, 0.07], [0.07, 0.12, 0.21]))
    rng.shuffle(dims)
    return _box(*dims)


def knife(rng: np.random.Generator) -> Manifold:
    L_handle = rng.uniform(0.09, 0.12)
    L_blade = rng.uniform(0.09, 0.16)
    w = rng.uniform(0.018, 0.024)
    handle = _rounded_box(L_handle, w, rng.uniform(0.014, 0.02), 0.006).translate((-L_handle / 2, 0.0, 0.0))
    bw = rng.uniform(0.018, 0.03)
    blade2d = CrossSection([np.array([[0.0, -w / 2 + 0.002], [L_blade * 0.8, -w / 2 + 0.002], [L_blade, bw - w / 2],
                                      [0.0, bw - w / 2 + 0.002]])])
    blade = Manifold.extrude(blade2d, rng.uniform(0.004, 0.005)).translate((0.0, 0.0, -0.0025))
    return handle + blade


def hammer(rng: np.random.Generator) -> Manifold:
    L = rng.uniform(0.2, 0.3)
    r = rng.uniform(0.011, 0.016)
    handle = Manifold.cylinder(L, r, circular_segments=32).rotate((0.0, 90.0, 0.0))
    head = _box(rng.uniform(0.025, 0.035), rng.uniform(0.08, 0.12), rng.uniform(0.022, 0.03)).translate((L, 0.0, 0.0))
    return handle + head


def spoon(rng: np.random.Generator) -> Manifold:
    L = rng.uniform(0.11, 0.16)
    handle = _rounded_box(L, rng.uniform(0.011, 0.015), rng.uniform(0.004, 0.006), 0.004).translate((-L / 2, 0.0, 0.0))
    bowl_ = Manifold.sphere(1.0, 32).scale((rng.uniform(0.022, 0.03), rng.uniform(0.015, 0.02), rng.uniform(0.005, 0.007)))
    return handle + bowl_.translate((0.015, 0.0, 0.0))


def plate(rng: np.random.Generator) -> Manifold:
    R = rng.uniform(0.09, 0.13)
    t = rng.uniform(0.006, 0.009)
    rim = rng.uniform(0.012, 0.02)
    base = R * rng.uniform(0.5, 0.65)
    return _revolve([(0.0, 0.0), (base, 0.0), (R, rim), (R, rim + t * 0.6), (R - t, rim + t * 0.6), (base - t * 0.3, t), (0.0, t)])


def phone(rng: np.random.Generator) -> Manifold:
    return _rounded_box(rng.uniform(0.064, 0.078), rng.uniform(0.13, 0.165), rng.uniform(0.0075, 0.0105), 0.008)


def ball(rng: np.random.Generator) -> Manifold:
    return Manifold.sphere(rng.uniform(0.028, 0.05), SEGMENTS)


def pan(rng: np.random.Generator) -> Manifold:
    R = rng.uniform(0.08, 0.11)
    H = rng.uniform(0.03, 0.05)
    body = _revolve(_shell_profile(R * 0.9, R, H, 0.005, 0.006))
    L = rng.uniform(0.14, 0.19)
    handle = _rounded_box(L, rng.uniform(0.018, 0.026), rng.uniform(0.012, 0.018), 0.008)
    handle = handle.rotate((0.0, -rng.uniform(5.0, 15.0), 0.0)).translate((R + L / 2 - 0.01, 0.0, H * 0.8))
    return body + handle


def kettle(rng: np.random.Generator) -> Manifold:
    R = rng.uniform(0.06, 0.08)
    H = rng.uniform(0.11, 0.15)
    t = np.linspace(0.0, np.pi, 14)
    prof = [(0.0, 0.0)] + [(R * (0.75 + 0.25 * np.sin(a)) if 0 < a < np.pi else R * 0.75, H * (1 - np.cos(a)) / 2) for a in t] + [(0.0, H)]
    prof[-2] = (R * 0.45, H)
    body = _revolve(prof)
    a = R * rng.uniform(0.55, 0.75)
    handle = _torus_arc(a, rng.uniform(0.007, 0.009), 180.0).rotate((90.0, 0.0, 0.0)).translate((0.0, 0.0, H * 0.95))
    spout = Manifold.cylinder(R * 0.9, 0.012, 0.007, circular_segments=24).rotate((0.0, 50.0, 0.0)).translate((R * 0.7, 0.0, H * 0.35))
    return body + handle + spout


GENERATORS: dict[str, Callable[[np.random.Generator], Manifold]] = {
    "mug": mug, "cup": cup, "bottle": bottle, "bowl": bowl, "can": can, "box": box, "knife": knife,
    "hammer": hammer, "spoon": spoon, "plate": plate, "phone": phone, "ball": ball, "pan": pan, "kettle": kettle,
}


def to_trimesh(m: Manifold) -> trimesh.Trimesh:
    mesh = m.to_mesh()
    tm = trimesh.Trimesh(np.asarray(mesh.vert_properties)[:, :3].astype(np.float64), np.asarray(mesh.tri_verts, dtype=np.int64), process=True)
    lo, hi = tm.bounds
    tm.apply_translation(-(lo + hi) / 2)
    return tm


def make_object(category: str, rng: np.random.Generator) -> trimesh.Trimesh:
    """A random watertight object of `category`, metres, bounding box centred at the origin."""
    if category not in GENERATORS:
        raise KeyError(f"no synthetic generator for {category!r}; have {', '.join(GENERATORS)}")
    return to_trimesh(GENERATORS[category](rng))
