#!/usr/bin/env python
"""Benchmark: signed distances on a 64^3 grid, hoitool vs mesh-to-sdf (the reference baseline).

For each mesh (a 5k-face sphere, a box, a torus, synthetic corpus objects, and the YCB scans
in ../shared/external when present, as scanned and decimated to 5k faces), normalised the
way mesh_to_sdf.mesh_to_voxels normalises it, on the same 64^3 grid over [-1, 1]^3:
  - hoitool exact  : hoitool.geometry.sdf.sdf_grid, no truncation
  - hoitool trunc  : the same, truncated at 0.3 (what prepare-data uses is 6 cm metric,
                     i.e. 0.3-1.3 of these units for hand-held objects)
  - mesh_to_voxels : mesh_to_sdf.mesh_to_voxels(mesh, 64) with its defaults
Reported: seconds (best of N for hoitool), speed-up over mesh_to_voxels, max |error| against
the analytic SDF (primitives) or hoitool exact (meshes), and the number of wrong signs more
than one voxel from the surface.

Run: `make bench` or `python scripts/bench_sdf.py [--quick] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
import numpy as np  # noqa: E402
import trimesh  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EXTERNAL = ROOT.parent / "shared" / "external" / "objects" / "ycb"


def meshes(quick: bool):
    from hoitool.data.synthetic.objects import make_object

    out = [
        ("sphere (5120 faces)", trimesh.creation.icosphere(subdivisions=4, radius=1.0), "sphere"),
        ("box (12 faces)", trimesh.creation.box((1.0, 0.6, 0.4)), "box"),
        ("torus (5120 faces)", trimesh.creation.torus(1.0, 0.35, major_sections=64, minor_sections=40), "torus"),
    ]
    for cat in (["mug"] if quick else ["mug", "kettle", "knife"]):
        out.append((f"synthetic {cat}", make_object(cat, np.random.default_rng(0)), None))
    if EXTERNAL.is_dir():
        names = ["YcbMustardBottle"] if quick else ["YcbMustardBottle", "YcbPowerDrill", "YcbBanana"]
        for n in names:
            m = trimesh.load(EXTERNAL / n / "textured_simple_reoriented.obj", force="mesh")
            m.merge_vertices()
            out.append((f"YCB {n} ({len(m.faces)} faces)", m, None))
            if not quick:
                d = m.simplify_quadric_decimation(face_count=5000)
                out.append((f"YCB {n} (decimated to {len(d.faces)} faces)", d, None))
    return out


def normalise(mesh):
    from mesh_to_sdf.utils import scale_to_unit_sphere

    return scale_to_unit_sphere(mesh)


def analytic(kind, P, mesh, normalised):
    """The exact SDF of a primitive, in the normalised mesh's coordinates."""
    if kind is None:
        return None
    c0, c1 = mesh.bounding_box.centroid, normalised.bounding_box.centroid
    s = normalised.extents.max() / mesh.extents.max()
    return _analytic(kind, (P - c1) / s + c0) * s


def _analytic(kind, P):
    if kind == "sphere":
        return np.linalg.norm(P, axis=1) - 1.0
    if kind == "box":
        q = np.abs(P) - np.array([0.5, 0.3, 0.2])
        return np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(1), 0)
    if kind == "torus":
        q = np.stack([np.linalg.norm(P[:, :2], axis=1) - 1.0, P[:, 2]], 1)
        return np.linalg.norm(q, axis=1) - 0.35
    return None


def timed(fn, repeats):
    best, out = np.inf, None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer meshes")
    ap.add_argument("--no-baseline", action="store_true", help="skip mesh_to_sdf (slow)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = ap.parse_args(argv)
    if not args.no_baseline:
        import mesh_to_sdf  # must come before anything imports pyrender/OpenGL
    from hoitool.geometry.sdf import grid_points, sdf_grid

    R = 64
    P = grid_points(R).reshape(-1, 3)
    voxel = 2.0 / (R - 1)
    rows = []
    print(f"{'mesh':42s} {'faces':>6s} {'exact s':>8s} {'trunc s':>8s} {'m2s s':>7s} {'speed-up':>8s} "
          f"{'err exact':>9s} {'err m2s':>8s} {'bad signs (exact/trunc/m2s)':>28s}")
    for name, mesh, kind in meshes(args.quick):
        m = normalise(mesh)
        t_exact, g = timed(lambda: sdf_grid(m, R), 3)
        t_trunc, gt = timed(lambda: sdf_grid(m, R, truncation=0.3), 3)
        g, gt = g.reshape(-1), gt.reshape(-1)
        ref = analytic(kind, P, mesh, m) if kind else g
        far = np.abs(ref) > voxel
        row = {"mesh": name, "faces": int(len(m.faces)), "hoitool_exact_s": t_exact, "hoitool_trunc_s": t_trunc,
               "err_exact": float(np.abs(g - ref).max()), "bad_signs_exact": int((np.sign(g) != np.sign(ref))[far].sum()),
               "bad_signs_trunc": int((np.sign(gt) != np.sign(ref))[far].sum())}
        if not args.no_baseline:
            t = time.perf_counter()
            v = mesh_to_sdf.mesh_to_voxels(m, R).reshape(-1)
            row["mesh_to_voxels_s"] = time.perf_counter() - t
            row["err_m2s"] = float(np.abs(v - ref).max())
            row["bad_signs_m2s"] = int((np.sign(v) != np.sign(ref))[far].sum())
            row["speedup_exact"] = row["mesh_to_voxels_s"] / t_exact
        rows.append(row)
        m2s = f"{row.get('mesh_to_voxels_s', float('nan')):7.1f}"
        print(f"{name:42s} {row['faces']:6d} {t_exact:8.3f} {t_trunc:8.3f} {m2s} {row.get('speedup_exact', float('nan')):7.0f}x "
              f"{row['err_exact']:9.4f} {row.get('err_m2s', float('nan')):8.3f} "
              f"{row['bad_signs_exact']:>10d}/{row['bad_signs_trunc']}/{row.get('bad_signs_m2s', '-')}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
