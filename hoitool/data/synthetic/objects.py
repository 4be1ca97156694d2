"""Procedural hand-held objects: watertight meshes in metres, one generator per category.

Every generator draws its dimensions from realistic ranges with the given numpy Generator,
builds the solid with manifold3d (revolved profiles, primitives, booleans, hulls), and returns
a watertight trimesh with the object standing along +z and its bounding box centred at the
origin, in one piece (handles reach into the body). Thin parts are at least ~4 mm thick: real
proportions, though walls that thin are below the 9.4 mm voxels of the interaction grid.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import trimesh
from manifold3d import CrossSection, Manifold, OpType

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
    rb = R * rng.uniform(0.9, 1.0)
    body = _revolve(_shell_profile(rb, R, H, wall, 0.007))
    a = rng.uniform(0.022, 0.032)  # handle half-height
    rh = rng.uniform(0.005, 0.0075)
    zc = H * rng.uniform(0.45, 0.6)
    handle = _torus_arc(a, rh, 180.0).rotate((90.0, 0.0, 0.0)).rotate((0.0, 90.0, 0.0))  # arc bulging to +x
    r_low = rb + (R - rb) * (zc - a) / H  # the wall is narrowest at the handle's lower end
    handle = handle.scale((rng.uniform(0.8, 1.1), 1.0, 1.0)).translate((r_low - wall / 2, 0.0, zc))
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


def _tube(points: np.ndarray, radii: np.ndarray, segments: int = 20) -> Manifold:
    """A swept tube: the union of hulls of consecutive spheres at `points` with `radii`."""
    balls = [Manifold.sphere(float(r), segments).translate(tuple(float(c) for c in p)) for p, r in zip(points, radii)]
    return Manifold.batch_boolean([Manifold.batch_hull([a, b]) for a, b in zip(balls[:-1], balls[1:])], OpType.Add)


def banana(rng: np.random.Generator) -> Manifold:
    R = rng.uniform(0.11, 0.16)  # radius of the curve
    span = np.deg2rad(rng.uniform(60.0, 85.0))
    r = rng.uniform(0.015, 0.02)
    t = np.linspace(-span / 2, span / 2, 9)
    pts = np.stack([R * np.sin(t), np.zeros_like(t), R * (1 - np.cos(t))], axis=1)
    radii = r * (0.35 + 0.65 * np.sin(np.linspace(0.15, np.pi - 0.15, 9)) ** 0.6)
    return _tube(pts, radii)


def drill(rng: np.random.Generator) -> Manifold:
    hh = rng.uniform(0.09, 0.12)  # grip height
    grip = _rounded_box(rng.uniform(0.028, 0.034), rng.uniform(0.04, 0.05), hh, 0.012)
    L = rng.uniform(0.14, 0.18)
    rb = rng.uniform(0.024, 0.03)
    barrel = Manifold.cylinder(L, rb, rb * 0.85, circular_segments=32).rotate((0.0, 90.0, 0.0)).translate((-L * 0.35, 0.0, hh / 2 + rb * 0.7))
    chuck = Manifold.cylinder(rng.uniform(0.03, 0.045), rng.uniform(0.011, 0.014), 0.008, circular_segments=24)
    chuck = chuck.rotate((0.0, 90.0, 0.0)).translate((L * 0.65 - 0.002, 0.0, hh / 2 + rb * 0.7))
    battery = _rounded_box(rng.uniform(0.06, 0.075), rng.uniform(0.055, 0.07), rng.uniform(0.025, 0.035), 0.01).translate((0.005, 0.0, -hh / 2))
    return grip + barrel + chuck + battery


def scissors(rng: np.random.Generator) -> Manifold:
    L = rng.uniform(0.08, 0.11)
    w = rng.uniform(0.01, 0.014)
    t = rng.uniform(0.004, 0.005)
    blade2d = CrossSection([np.array([[0.0, -w / 2], [L, -0.0015], [L, 0.0015], [0.0, w / 2]])])
    blade = Manifold.extrude(blade2d, t).translate((0.0, 0.0, -t / 2))
    a = rng.uniform(6.0, 14.0)
    ring_R, ring_r = rng.uniform(0.011, 0.015), rng.uniform(0.0032, 0.004)
    parts = []
    for sgn in (-1.0, 1.0):
        ring = Manifold.revolve(CrossSection.circle(ring_r, 16).translate((ring_R, 0.0)), 36).scale((1.25, 1.0, 1.0))
        # the arm bends away from the axis so each ring sits on its own side
        arm = _box(0.034, 0.006, 2 * ring_r).rotate((0.0, 0.0, sgn * 30.0)).translate((-0.015, -sgn * 0.008, 0.0))
        handle = arm + ring.translate((-0.03 - ring_R * 1.1, -sgn * (ring_R + 0.006), 0.0))
        parts.append((blade + handle).rotate((0.0, 0.0, sgn * a / 2)).translate((0.0, 0.0, sgn * t / 2)))
    return parts[0] + parts[1] + Manifold.cylinder(2 * t, 0.005, circular_segments=16, center=True)


def screwdriver(rng: np.random.Generator) -> Manifold:
    Lh = rng.uniform(0.08, 0.11)
    rh = rng.uniform(0.012, 0.017)
    Ls = rng.uniform(0.07, 0.13)
    rs = rng.uniform(0.003, 0.0042)
    prof = [(0.0, 0.0), (rh * 0.7, 0.0), (rh, 0.008), (rh, Lh - 0.012), (rh * 0.8, Lh), (rs, Lh), (rs, Lh + Ls),
            (rs * 0.5, Lh + Ls + 0.006), (0.0, Lh + Ls + 0.006)]
    return _revolve(prof, 32)


def flashlight(rng: np.random.Generator) -> Manifold:
    r = rng.uniform(0.012, 0.019)
    L = rng.uniform(0.11, 0.19)
    rh = r * rng.uniform(1.25, 1.7)
    Lh = rng.uniform(0.025, 0.04)
    prof = [(0.0, 0.0), (r * 0.9, 0.0), (r, 0.003), (r, L), (rh, L + Lh * 0.6), (rh, L + Lh), (0.0, L + Lh)]
    return _revolve(prof)


def remote(rng: np.random.Generator) -> Manifold:
    x, y, z = rng.uniform(0.04, 0.055), rng.uniform(0.15, 0.2), rng.uniform(0.015, 0.024)
    body = _rounded_box(x, y, z, 0.012)
    buttons = [Manifold.cylinder(0.004, rng.uniform(0.004, 0.006), circular_segments=16).translate((bx, by, z / 2 - 0.001))
               for bx in (-x / 4, x / 4) for by in (y / 4, y / 8, 0.0)]
    return body + Manifold.batch_boolean(buttons, OpType.Add)


def toothbrush(rng: np.random.Generator) -> Manifold:
    L = rng.uniform(0.15, 0.18)
    t = rng.uniform(0.006, 0.009)
    handle = _rounded_box(L, rng.uniform(0.011, 0.016), t, 0.005)
    hh = rng.uniform(0.009, 0.012)
    head = _box(rng.uniform(0.022, 0.028), rng.uniform(0.01, 0.012), hh)
    return handle + head.translate((L / 2 - 0.018, 0.0, t / 2 + hh / 2 - 0.002))  # sunk 2 mm into the handle


def pen(rng: np.random.Generator) -> Manifold:
    r = rng.uniform(0.0045, 0.0065)
    L = rng.uniform(0.12, 0.15)
    body = _revolve([(0.0, 0.0), (r * 0.3, 0.0), (r, 0.02), (r, L), (0.0, L)], 24)
    clip = _box(0.003, 0.004, rng.uniform(0.035, 0.05)).translate((r + 0.001, 0.0, L - 0.03))
    return body + clip


def mouse(rng: np.random.Generator) -> Manifold:
    a, b, c = rng.uniform(0.028, 0.035), rng.uniform(0.05, 0.062), rng.uniform(0.03, 0.042)
    shell = Manifold.sphere(1.0, SEGMENTS).scale((a, b, c))
    return shell - _box(3 * a, 3 * b, 2 * c).translate((0.0, 0.0, -c * rng.uniform(1.05, 1.25)))


def sprayer(rng: np.random.Generator) -> Manifold:
    R = rng.uniform(0.028, 0.04)
    H = rng.uniform(0.11, 0.16)
    rn = rng.uniform(0.011, 0.014)
    body = _revolve([(0.0, 0.0), (R * 0.95, 0.0), (R, 0.004), (R, H), (rn, H + 0.02), (rn, H + 0.035), (0.0, H + 0.035)])
    head = _rounded_box(rng.uniform(0.055, 0.07), rng.uniform(0.024, 0.03), rng.uniform(0.035, 0.045), 0.008)
    head = head.translate((0.012, 0.0, H + 0.05))
    trigger = _box(0.008, 0.014, rng.uniform(0.035, 0.045)).rotate((0.0, -15.0, 0.0)).translate((0.03, 0.0, H + 0.02))
    return body + head + trigger


def pitcher(rng: np.random.Generator) -> Manifold:
    R = rng.uniform(0.05, 0.065)
    H = rng.uniform(0.15, 0.21)
    wall = rng.uniform(0.004, 0.006)
    rb, rt = R * rng.uniform(1.0, 1.12), R * rng.uniform(0.85, 1.0)
    body = _revolve(_shell_profile(rb, rt, H, wall, 0.008))
    a = rng.uniform(0.04, 0.055)
    handle = _torus_arc(a, rng.uniform(0.007, 0.009), 180.0).rotate((90.0, 0.0, 0.0)).rotate((0.0, -90.0, 0.0))  # bulges to -x
    r_min = min(rb + (rt - rb) * (H * 0.55 + dz) / H for dz in (-a, a))  # both ends reach into the wall
    handle = handle.scale((rng.uniform(0.7, 0.9), 1.0, 1.0)).translate((-(r_min - wall / 2), 0.0, H * 0.55))
    return body + handle


def jar(rng: np.random.Generator) -> Manifold:
    R = rng.uniform(0.033, 0.05)
    H = rng.uniform(0.07, 0.13)
    rn = R * rng.uniform(0.75, 0.9)
    lid = rng.uniform(0.012, 0.02)
    c = 0.004
    return _revolve([(0.0, 0.0), (R - c, 0.0), (R, c), (R, H - 0.015), (rn, H), (rn + 0.002, H), (rn + 0.002, H + lid),
                     (0.0, H + lid)])


def teapot(rng: np.random.Generator) -> Manifold:
    R = rng.uniform(0.06, 0.08)
    Hb = R * rng.uniform(1.1, 1.4)
    body = Manifold.sphere(1.0, SEGMENTS).scale((R, R, Hb / 2)).translate((0.0, 0.0, Hb / 2))
    body = body - _box(3 * R, 3 * R, Hb).translate((0.0, 0.0, -Hb / 2 + 0.006))
    a = Hb * rng.uniform(0.25, 0.32)
    handle = _torus_arc(a, rng.uniform(0.006, 0.008), 180.0).rotate((90.0, 0.0, 0.0)).rotate((0.0, -90.0, 0.0))
    # the ends sit at heights Hb/2 +- a, where the body's radius is R sqrt(1 - (2a / Hb)^2) >= 0.77 R
    handle = handle.translate((-R * np.sqrt(1.0 - (2 * a / Hb) ** 2) + 0.004, 0.0, Hb * 0.5))
    spout = Manifold.cylinder(R * 1.0, 0.014, 0.007, circular_segments=24).rotate((0.0, 45.0, 0.0)).translate((R * 0.65, 0.0, Hb * 0.35))
    knob = Manifold.sphere(rng.uniform(0.01, 0.014), 24).translate((0.0, 0.0, Hb + 0.004))
    return body + handle + spout + knob


def wineglass(rng: np.random.Generator) -> Manifold:
    rf = rng.uniform(0.028, 0.038)
    stem = rng.uniform(0.06, 0.09)
    rs = rng.uniform(0.004, 0.005)
    Rb = rng.uniform(0.035, 0.045)
    Hb = rng.uniform(0.07, 0.1)
    wall = rng.uniform(0.0035, 0.0045)
    t = np.linspace(0.0, np.pi / 2, 10)
    outer = [(rs + (Rb - rs) * np.sin(a), stem + Hb * 0.6 * (1 - np.cos(a))) for a in t] + [(Rb * 0.92, stem + Hb)]
    inner = [(Rb * 0.92 - wall, stem + Hb)] + [(max(rs + (Rb - rs) * np.sin(a) - wall, 0.0), stem + Hb * 0.6 * (1 - np.cos(a)) + wall)
                                               for a in t[::-1][:-1]]
    prof = [(0.0, 0.0), (rf, 0.0), (rf, 0.004), (rs, 0.008), *outer, *inner, (0.0, stem + wall * 2)]
    return _revolve(prof)


GENERATORS: dict[str, Callable[[np.random.Generator], Manifold]] = {
    "mug": mug, "cup": cup, "bottle": bottle, "bowl": bowl, "can": can, "box": box, "knife": knife,
    "hammer": hammer, "spoon": spoon, "plate": plate, "phone": phone, "ball": ball, "pan": pan, "kettle": kettle,
    "banana": banana, "drill": drill, "scissors": scissors, "screwdriver": screwdriver, "flashlight": flashlight,
    "remote": remote, "toothbrush": toothbrush, "pen": pen, "mouse": mouse, "sprayer": sprayer, "pitcher": pitcher,
    "jar": jar, "teapot": teapot, "wineglass": wineglass,
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
