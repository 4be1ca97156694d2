"""Benchmark of `hoitool reconstruct` on synthetic photographs with known 3D truth.

Grasps of a held-out synthetic corpus (`hoitool prepare-data --synthetic 224 --seed 1`) are
rendered from random cameras (pyrender, 320 px, field of view 35-60 degrees, the true focal
passed as --focal would be); keypoints are the projected truth plus Gaussian noise; masks
are the rendered visible masks. Each image is reconstructed with the true mesh as template
(easyhoi and cao) and with the category's library template (easyhoi), and every stage is
scored:
- object: Chamfer distance (mm) and F-score at 5 / 10 mm in the camera frame, and F-score
  after EasyHOI's translation + scale ICP (shape alone);
- hand: MPJPE (mm) root-relative and absolute (camera frame);
- interaction: intersection volume (cm^3) and contact ratio (a hand vertex within 5 mm).

    python scripts/bench_reconstruct.py --heldout bench_results/heldout --images 50 --cao-every 5 --out bench_results/bench_reconstruct.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from hoitool.data.records import read_manifest
from hoitool.data.synthetic.images import random_view
from hoitool.data.templates import category_template
from hoitool.geometry.mesh import load_mesh
from hoitool.hand.model import HandModel
from hoitool.metrics.grasp import grasp_metrics
from hoitool.metrics.reconstruction import aligned_chamfer_fscore, chamfer_fscore, mpjpe_mm, sample_surface
from hoitool.pipelines.image_recon import ReconstructConfig, hand_keypoints, hand_vertices, reconstruct_image

RUNS = [("template", "easyhoi"), ("category", "easyhoi"), ("template", "cao")]


def pick_records(manifest: Path, n: int) -> list:
    recs = read_manifest(manifest)
    by_obj = defaultdict(list)
    for r in recs:
        by_obj[r.object_mesh].append(r)
    order = []
    for g in range(max(len(v) for v in by_obj.values())):
        order += [v[g] for v in by_obj.values() if g < len(v)]
    return order[:n]


def score(hand, view, gt_pts, gt_mesh_c, mesh, state) -> dict:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = state.s * state.R, state.t
    om = mesh.copy()
    om.apply_transform(T)
    pts = sample_surface(om, 5000)
    cf = chamfer_fscore(pts, gt_pts)
    acf = aligned_chamfer_fscore(pts, gt_pts)
    kp = hand_keypoints(hand, state)
    hv = hand_vertices(hand, state)
    gm = grasp_metrics(hv[None], hand.faces.cpu().numpy(), om, simulate=False)
    return {"chamfer_mm": cf["chamfer_mm"], "f5": cf["f@5mm"], "f10": cf["f@10mm"], "f5_aligned": acf["f@5mm"],
            "f10_aligned": acf["f@10mm"], "mpjpe_mm": mpjpe_mm(kp, view.keypoints), "mpjpe_abs_mm": mpjpe_mm(kp, view.keypoints, None),
            "intersection_cm3": float(gm.intersection_cm3[0]), "contact": float(gm.contact[0])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heldout", type=Path, required=True)
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--noise-px", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cao-every", type=int, default=1, help="Run the cao method on every k-th image only (it is the slowest).")
    ap.add_argument("--out", type=Path, default=Path("bench_results/bench_reconstruct.json"))
    args = ap.parse_args()
    hand = HandModel("right")
    rng = np.random.default_rng(args.seed)
    rows = []
    times = defaultdict(list)
    for i, rec in enumerate(pick_records(args.heldout / "manifest.jsonl", args.images)):
        mesh, _ = load_mesh(rec.object_mesh)
        view = random_view(hand, mesh, rec.hand_params(), rng, keypoint_noise_px=args.noise_px)
        gt = mesh.copy()
        gt.apply_transform(view.cTo)
        gt_pts = sample_surface(gt, 5000)
        for path, method in RUNS:
            if method == "cao" and i % args.cao_every:
                continue
            obj = mesh if path == "template" else category_template(rec.category)[0]
            t = time.time()
            res = reconstruct_image(view.inputs, obj, view.camera, ReconstructConfig(method=method, seed=i), template=path == "template", hand=hand)
            times[(path, method)].append(time.time() - t)
            for stage, st in res.stages.items():
                rows.append({"image": i, "id": rec.id, "category": rec.category, "path": path, "method": method, "stage": stage,
                             **score(hand, view, gt_pts, gt, obj, st)})
        print(f"{i + 1}/{args.images} {rec.id} " + " ".join(f"{p}/{m} {times[(p, m)][-1]:.1f}s" for p, m in RUNS if (p, m) in times), flush=True)
        report(rows, times, args)


def report(rows: list[dict], times: dict, args) -> None:
    """Write the JSON and print the tables of everything scored so far."""
    keys = ["chamfer_mm", "f5", "f10", "f5_aligned", "f10_aligned", "mpjpe_mm", "mpjpe_abs_mm", "intersection_cm3", "contact"]
    table = []
    for path, method in RUNS:  # noqa: B007
        for stage in ("pose", "contact", "refine", "joint"):
            sel = [r for r in rows if r["path"] == path and r["method"] == method and r["stage"] == stage]
            if sel:
                table.append({"path": path, "method": method, "stage": stage, "images": len(sel),
                              **{k: float(np.mean([r[k] for r in sel])) for k in keys}})
    speed = {f"{p}/{m}": {"mean_s": float(np.mean(v)), "max_s": float(np.max(v)), "images": len(v)} for (p, m), v in times.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"table": table, "seconds_per_image": speed, "rows": rows, "args": {k: str(v) for k, v in vars(args).items()}}, indent=1))
    print("| path | method | stage | CD mm | F5 | F10 | F5 aligned | F10 aligned | MPJPE mm | abs MPJPE mm | intersection cm3 | contact |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['path']} | {r['method']} | {r['stage']} | {r['chamfer_mm']:.1f} | {r['f5']:.2f} | {r['f10']:.2f} | {r['f5_aligned']:.2f} | "
              f"{r['f10_aligned']:.2f} | {r['mpjpe_mm']:.1f} | {r['mpjpe_abs_mm']:.1f} | {r['intersection_cm3']:.2f} | {r['contact']:.2f} |")
    for k, v in speed.items():
        print(f"{k}: {v['mean_s']:.1f} s per image (max {v['max_s']:.1f})")


if __name__ == "__main__":
    main()
