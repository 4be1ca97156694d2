"""Benchmark of `hoitool reconstruct` on synthetic photographs with known 3D truth.

Grasps of a held-out synthetic corpus (`hoitool prepare-data --synthetic 224 --seed 1`) are
rendered from random cameras (pyrender, 320 px, field of view 35-60 degrees, the true focal
passed as --focal would be); keypoints are the projected truth plus Gaussian noise; masks
are the rendered visible masks. Each image is reconstructed with the true mesh as template
(easyhoi and cao) and with the category's library template (easyhoi), and every stage is
scored (cao's "joint" is the Cao path without the refinement network, its "refinenet" with it: the
shipped network runs after cao's joint stage unless --refinenet none, while `reconstruct` runs it
only when asked):
- object: Chamfer distance (mm) and F-score at 5 / 10 mm in the camera frame, and F-score
  after EasyHOI's translation + scale ICP (shape alone);
- hand: MPJPE (mm) root-relative and absolute (camera frame);
- interaction: intersection volume (cm^3) and contact ratio (a hand vertex within 5 mm);
also CD_h (cm^2) and AUC in the JSON rows. The figures are those of `hoitool evaluate
reconstruction` (`hoitool.metrics.recon_scene.evaluate_scenes`), renamed.

    python scripts/bench_reconstruct.py --heldout bench_results/heldout --images 50 --cao-every 5 --refinenet none --out bench_results/bench_reconstruct.json
    python scripts/bench_reconstruct.py --heldout bench_results/heldout --images 16 --runs template/cao --out bench_results/bench_cao_refinenet.json
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
from hoitool.metrics.recon_scene import EvalConfig, ReconScene, evaluate_scenes
from hoitool.pipelines.evaluate_recon import scene_from_hand, scene_from_image_state
from hoitool.pipelines.image_recon import ReconstructConfig, reconstruct_image

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


POINTS = 5000
"""Surface points per object."""


def score(hand, truth: ReconScene, mesh, state) -> dict:
    """`hoitool evaluate reconstruction`'s figures of one stage (the object in the camera frame, as
    reconstruct writes it), under this benchmark's names: chamfer_mm, f5, f10 where the object was
    placed; f5_aligned, f10_aligned after EasyHOI's translation + scale ICP."""
    m = evaluate_scenes(scene_from_image_state(hand, state, mesh), truth, EvalConfig(align="translation-scale", points=POINTS)).metrics
    return {"chamfer_mm": m["camera_chamfer_mm"], "f5": m["camera_f5"], "f10": m["camera_f10"], "f5_aligned": m["f5"],
            "f10_aligned": m["f10"], "mpjpe_mm": m["mpjpe_mm"], "mpjpe_abs_mm": m["mpjpe_abs_mm"],
            "intersection_cm3": m["intersection_cm3"], "contact": m["contact"], "cd_h_cm2": m["cd_h_cm2"], "auc": m["auc"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heldout", type=Path, required=True)
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--noise-px", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cao-every", type=int, default=1, help="Run the cao method on every k-th image only (it is the slowest).")
    ap.add_argument("--runs", default=",".join(f"{p}/{m}" for p, m in RUNS), help="Comma-separated PATH/METHOD pairs to run.")
    ap.add_argument("--refinenet", default="default", help="The refinement network after cao's joint stage: default, none, or a model.")
    ap.add_argument("--out", type=Path, default=Path("bench_results/bench_reconstruct.json"))
    args = ap.parse_args()
    runs = [tuple(r.split("/")) for r in args.runs.split(",")]
    hand = HandModel("right")
    net = None
    if args.refinenet != "none":
        from hoitool.refine.model import load_refinenet

        net = load_refinenet(None if args.refinenet == "default" else args.refinenet)[0]
    rng = np.random.default_rng(args.seed)
    rows = []
    times = defaultdict(list)
    for i, rec in enumerate(pick_records(args.heldout / "manifest.jsonl", args.images)):
        mesh, _ = load_mesh(rec.object_mesh)
        view = random_view(hand, mesh, rec.hand_params(), rng, keypoint_noise_px=args.noise_px)
        gt = mesh.copy()
        gt.apply_transform(view.cTo)
        truth = scene_from_hand(hand, view.hand, gt, np.eye(4)[None], meshes=False)
        for path, method in runs:
            if method == "cao" and i % args.cao_every:
                continue
            obj = mesh if path == "template" else category_template(rec.category)[0]
            t = time.time()
            res = reconstruct_image(view.inputs, obj, view.camera, ReconstructConfig(method=method, seed=i), template=path == "template",
                                    hand=hand, refinenet=net if method == "cao" else None)
            times[(path, method)].append(time.time() - t)
            for stage, st in res.stages.items():
                rows.append({"image": i, "id": rec.id, "category": rec.category, "path": path, "method": method, "stage": stage,
                             **score(hand, truth, obj, st)})
        print(f"{i + 1}/{args.images} {rec.id} " + " ".join(f"{p}/{m} {times[(p, m)][-1]:.1f}s" for p, m in runs if (p, m) in times), flush=True)
        report(rows, times, args, runs)


def report(rows: list[dict], times: dict, args, runs: list) -> None:
    """Write the JSON and print the tables of everything scored so far."""
    keys = ["chamfer_mm", "f5", "f10", "f5_aligned", "f10_aligned", "mpjpe_mm", "mpjpe_abs_mm", "intersection_cm3", "contact"]
    table = []
    for path, method in runs:  # noqa: B007
        for stage in ("pose", "contact", "refine", "joint", "refinenet"):
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
