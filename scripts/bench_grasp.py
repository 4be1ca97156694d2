"""Benchmark of grasp synthesis: hoitool's grasps (all, top and bottom 10 % by rank),
refinement alone from the same random starts (no prior), and the synthetic corpus's own grasps.
The top/bottom 10 % are chosen twice: by the ranking score `hoitool grasp` ships (hold tier,
likelihood, penetration, contact) and by the prior's likelihood score alone (G-HOP's order);
both select among the same grasps, so the rows compare the two rankings only.

    python scripts/bench_grasp.py --heldout data/heldout --objects 5 --n 16 --ycb ../shared/external/objects/ycb

Objects: the first `--objects` held-out corpus objects of distinct categories (`hoitool
prepare-data --synthetic N --seed 1`; their own grasps are the "corpus" rows), the demo meshes
in assets/meshes/, and with --ycb every OBJ under that folder (one per subfolder; the category
from the folder's name). Metrics are pooled over all grasps of all objects. Displacement is
reported under gravity along -z of the object frame (the papers') and as the mean over the six
directions +-x, +-y, +-z (a scan's -z is arbitrary). "touching nothing above a touching grasp"
counts, per object, the grasps with no contact ranked above some grasp in contact.
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
from hoitool.pipelines.grasp import GraspConfig, GraspObject, synthesise_grasps
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
    ap.add_argument("--ycb", type=Path, default=None, help="folder of scans, one OBJ per subfolder")
    ap.add_argument("--no-refine-only", action="store_true", help="skip the refinement-only baseline")
    ap.add_argument("--out", type=Path, default=Path("bench_grasp.json"))
    args = ap.parse_args()
    torch.manual_seed(0)
    prior = load_prior(args.model)
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
    if args.ycb is not None:
        from hoitool.data.vocab import category_or_text

        for d in sorted(q for q in args.ycb.iterdir() if q.is_dir()):
            objs = sorted(d.glob("*.obj"))
            if objs:
                objects.append((f"ycb:{d.name}", category_or_text(d.name.removeprefix("Ycb")), str(objs[0]), 1.0, []))

    rows = {"hoitool": [], "hoitool_top": [], "hoitool_bottom": [], "refine_only": [], "corpus": []}
    groups = {"top": [], "bottom": [], "top_lik": [], "bottom_lik": []}
    misranked = []
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
        gl = rep.groups(res.likelihood, args.n)
        groups["top_lik"].append(gl["top10"])
        groups["bottom_lik"].append(gl["bottom10"])
        rank = np.empty(args.n, int)
        rank[res.order] = np.arange(args.n)
        worst_touching = rank[m.contact].max() if m.contact.any() else -1
        misranked.append(int(((~m.contact) & (rank < worst_touching)).sum()))
        if not args.no_refine_only:
            base = synthesise_grasps(prior, obj, cat, GraspConfig(n=args.n, steps=0, rank_steps=1))
            rows["refine_only"].append(evaluate(base.params, mesh, sim))
        entry = {"object": oid, "category": cat, "seconds": seconds[-1], "hoitool": m.aggregate(),
                 "top10": m.aggregate(g["top10"]), "bottom10": m.aggregate(g["bottom10"]),
                 "touching_nothing_above_a_touching_grasp": misranked[-1],
                 "refine_only": rows["refine_only"][-1].aggregate() if not args.no_refine_only else None}
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

    n_held = len(picked)
    n_ycb = sum(o[0].startswith("ycb:") for o in objects)
    table = {
        "hoitool (all)": pooled(rows["hoitool"]),
        "hoitool (top 10% by rank)": pooled(rows["hoitool"], groups["top"]),
        "hoitool (bottom 10% by rank)": pooled(rows["hoitool"], groups["bottom"]),
        "hoitool (top 10% by likelihood alone)": pooled(rows["hoitool"], groups["top_lik"]),
        "hoitool (bottom 10% by likelihood alone)": pooled(rows["hoitool"], groups["bottom_lik"]),
        "refinement only": pooled(rows["refine_only"]) if rows["refine_only"] else None,
        "hoitool (all, held-out objects)": pooled(rows["hoitool"][:n_held]),
        "hoitool (all, demo meshes)": pooled(rows["hoitool"][n_held:len(objects) - n_ycb]),
        "hoitool (all, YCB scans)": pooled(rows["hoitool"][len(objects) - n_ycb:]) if n_ycb else None,
        "refinement only (held-out objects)": pooled(rows["refine_only"][:n_held]) if rows["refine_only"] else None,
        "corpus grasps (held-out objects)": pooled(rows["corpus"]) if rows["corpus"] else None,
    }
    result = {"objects": [o[0] for o in objects], "n_per_object": args.n, "steps": args.steps, "model": prior.source,
              "seconds_per_object": float(np.mean(seconds)), "table": table,
              "touching_nothing_above_a_touching_grasp": int(sum(misranked)), "per_object": per_object}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    cols = [k for k, _ in rep.COLUMNS]
    print("| grasps | n | " + " | ".join(cols) + " |")
    print("|" + "---|" * (len(cols) + 2))
    for name, row in table.items():
        if row:
            print(f"| {name} | {row['grasps']} | " + " | ".join(f"{row[k]:.3f}" for k in cols) + " |")
    print(f"grasps touching nothing ranked above a touching grasp: {sum(misranked)} (over {len(objects)} objects)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
