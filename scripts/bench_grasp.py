"""Benchmark of grasp synthesis: hoitool's grasps (all, top and bottom 10 % by the prior's score),
refinement alone from the same random starts (no prior), and the synthetic corpus's own grasps.
The top/bottom 10 % are chosen twice: by the score of the refined grasps (what `hoitool grasp`
ships) and by the score of the same grasps before refinement (G-HOP's order); both select among
the same refined grasps, so the rows compare the two rankings only.

    python scripts/bench_grasp.py --heldout data/heldout --objects 5 --n 16 --out bench_grasp.json

Objects: the first `--objects` held-out corpus objects of distinct categories (`hoitool
prepare-data --synthetic 224 --seed 1`; their own grasps are the "corpus" rows) plus the demo
meshes in assets/meshes/. Metrics are pooled over all grasps of all objects.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from hoitool.assets import asset_dir
from hoitool.data.grasps import GraspSet
from hoitool.data.prepared import load_record, read_index
from hoitool.geometry.mesh import load_mesh
from hoitool.hand.model import HandParams
from hoitool.metrics.grasp import GraspMetrics, grasp_metrics
from hoitool.pipelines import grasp_report as rep
from hoitool.pipelines.grasp import GraspConfig, GraspObject, score_grasps, synthesise_grasps
from hoitool.prior.checkpoint import load_prior


def pooled(ms: list[GraspMetrics], masks: list[np.ndarray] | None = None) -> dict:
    cat = GraspMetrics(*[np.concatenate([getattr(m, k) for m in ms]) for k in GraspMetrics.FIELDS])
    mask = None if masks is None else np.concatenate(masks)
    return cat.aggregate(mask)


def evaluate(params: HandParams, mesh, simulate: bool) -> GraspMetrics:
    v, f = rep.hand_vertices(GraspSet(params))
    return grasp_metrics(v, f, mesh, simulate=simulate)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heldout", type=Path, required=True)
    ap.add_argument("--objects", type=int, default=5)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--no-sim", action="store_true")
    ap.add_argument("--demo", type=int, default=None, help="use only the first N demo meshes (default: all)")
    ap.add_argument("--out", type=Path, default=Path("bench_grasp.json"))
    args = ap.parse_args()
    torch.manual_seed(0)
    prior = load_prior(args.model)
    from hoitool.hand.model import HandModel

    hand = HandModel("right").to(prior.device)
    index = read_index(args.heldout)
    picked, seen = [], set()
    for e in index:
        if e["category"] not in seen and len(picked) < args.objects:
            seen.add(e["category"])
            picked.append(e["object_id"])
    objects = []
    for oid in picked:
        recs = [load_record(args.heldout, e["id"], index=index) for e in index if e["object_id"] == oid]
        objects.append((oid, recs[0].category, recs[0].object_mesh, recs[0].scale, recs))
    for p in sorted((asset_dir() / "meshes").glob("*.obj"))[:args.demo]:
        objects.append((f"demo:{p.stem}", p.stem, str(p), 1.0, []))

    rows = {"hoitool": [], "hoitool_top": [], "hoitool_bottom": [], "refine_only": [], "corpus": []}
    groups = {"top": [], "bottom": [], "top_pre": [], "bottom_pre": []}
    per_object, seconds = [], []
    sim = not args.no_sim
    for oid, cat, path, scale, recs in objects:
        mesh, _ = load_mesh(path, scale=scale)
        obj = GraspObject.from_mesh(mesh, oid)
        t = time.perf_counter()
        res = synthesise_grasps(prior, obj, cat, GraspConfig(n=args.n, steps=args.steps))
        seconds.append(time.perf_counter() - t)
        m = evaluate(res.params, mesh, sim)
        g = rep.groups(res.score, args.n)
        rows["hoitool"].append(m)
        groups["top"].append(g["top10"])
        groups["bottom"].append(g["bottom10"])
        cfg = GraspConfig()
        pre = score_grasps(prior, hand, obj, res.stage1_params, cat, cfg.rank_steps, cfg.rank_noises, cfg.guidance.guidance,
                           batch_size=cfg.batch_size)
        gp = rep.groups(pre, args.n)
        groups["top_pre"].append(gp["top10"])
        groups["bottom_pre"].append(gp["bottom10"])
        base = synthesise_grasps(prior, obj, cat, GraspConfig(n=args.n, steps=0, rank_steps=1))
        rows["refine_only"].append(evaluate(base.params, mesh, sim))
        entry = {"object": oid, "category": cat, "seconds": seconds[-1], "hoitool": m.aggregate(),
                 "top10": m.aggregate(g["top10"]), "bottom10": m.aggregate(g["bottom10"]),
                 "refine_only": rows["refine_only"][-1].aggregate()}
        by_side: dict[str, list] = {}
        for r in recs:
            by_side.setdefault(r.side, []).append(r.hand)
        if by_side:
            cm = [evaluate(HandParams.cat(ps), mesh, sim) for ps in by_side.values()]
            cm = GraspMetrics(*[np.concatenate([getattr(c, k) for c in cm]) for k in GraspMetrics.FIELDS])
            rows["corpus"].append(cm)
            entry["corpus"] = cm.aggregate()
        per_object.append(entry)
        print(f"{oid}: {seconds[-1]:.0f} s; all {entry['hoitool']}; top {entry['top10']}; bottom {entry['bottom10']}", flush=True)

    table = {
        "hoitool (all)": pooled(rows["hoitool"]),
        "hoitool (top 10%)": pooled(rows["hoitool"], groups["top"]),
        "hoitool (bottom 10%)": pooled(rows["hoitool"], groups["bottom"]),
        "hoitool (top 10% by the score before refinement)": pooled(rows["hoitool"], groups["top_pre"]),
        "hoitool (bottom 10% by the score before refinement)": pooled(rows["hoitool"], groups["bottom_pre"]),
        "refinement only": pooled(rows["refine_only"]),
        "hoitool (all, held-out objects)": pooled(rows["hoitool"][:len(picked)]),
        "refinement only (held-out objects)": pooled(rows["refine_only"][:len(picked)]),
        "corpus grasps (held-out objects)": pooled(rows["corpus"]) if rows["corpus"] else None,
    }
    result = {"objects": [o[0] for o in objects], "n_per_object": args.n, "steps": args.steps, "model": prior.source,
              "seconds_per_object": float(np.mean(seconds)), "table": table, "per_object": per_object}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    cols = [k for k, _ in rep.COLUMNS]
    print("| grasps | n | " + " | ".join(cols) + " |")
    print("|" + "---|" * (len(cols) + 2))
    for name, row in table.items():
        if row:
            print(f"| {name} | {row['grasps']} | " + " | ".join(f"{row[k]:.3f}" for k in cols) + " |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
