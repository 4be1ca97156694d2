"""Benchmark of Cao et al.'s refinement network (`hoitool train refinenet`) on held-out grasps.

Every chosen record of a held-out prepared folder (ground-truth right hands in the object frame;
left records mirrored with their object, as in training) is perturbed `--perturbations` times with
Gaussian noise (by default the perturbation stored in the model file, i.e. as in training), each
sample from its own generator (seed, record id, k), and refined. Rows:

- ground truth: the unperturbed hands (the reference for penetration and contact);
- perturbed: the refinement's inputs;
- iteration i: the hand after i refinement steps (the last one is the network's output).

Columns: MPJPE of the 21 keypoints in the object frame (mm) and wrist-relative (mm), mean vertex
error (mm), penetration (deepest hand vertex inside the object, mm; intersection volume cm^3,
object voxels of 5 mm inside the hand), contact (hoitool.metrics.grasp: a hand vertex within 5 mm
of the surface or inside), fingers in contact (of 5) and holds (thumb in contact opposing another
contact, penetration under 1 cm: the grasp ranking's tier 0), all measured on the object's real
mesh; "better" is the share of hands whose vertex error fell (by over 0.01 mm) from the input. Seconds per hand
of the refinement alone (batches of `--perturbations`, after a warm-up call): the median over
records (robust to a shared CPU), the mean kept in the JSON.

    python scripts/bench_refinenet.py --model runs/refinenet --heldout bench_results/heldout --records 64 --perturbations 4

With --grasp, also compares on `--grasp-objects` held-out objects: grasps after SDS only, after
SDS + the current mesh refinement (`hoitool grasp`'s stage 2), after SDS + the network, and after
SDS + mesh refinement + the network (same evaluation, no simulation). The grasp pipeline's frame
is the object's metric frame and GraspObject keeps the canonical grid (sdf_u) and uTo the network
reads, so no frame conversion is needed.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from hoitool.data.prepared import load_record, read_index
from hoitool.errors import HoiError
from hoitool.geometry.mesh import load_mesh
from hoitool.hand.model import HandModel, HandParams, hand_fingerprint
from hoitool.metrics.grasp import contact_quality, grasp_metrics
from hoitool.refine import load_refinenet, refine_hand
from hoitool.refine.data import Perturbation, RefineData, perturb
from hoitool.utils.seeding import torch_generator

#: A hand is "better" when its vertex error fell by more than this (mm; rotations round-trip
#: through axis-angles, so an unchanged hand can differ by 1e-4 mm).
BETTER_MM = 0.01

#: Table columns: (JSON key, header, format).
COLUMNS = [("mpjpe_mm", "MPJPE mm", "{:.2f}"), ("mpjpe_wrist_mm", "MPJPE wrist-rel mm", "{:.2f}"),
           ("vertex_mm", "vertex mm", "{:.2f}"), ("max_depth_mm", "max depth mm", "{:.2f}"),
           ("intersection_cm3", "intersection cm3", "{:.2f}"), ("contact_ratio", "contact", "{:.2f}"),
           ("fingers_in_contact", "fingers (of 5)", "{:.2f}"), ("holds", "holds", "{:.2f}"),
           ("better", "better", "{:.2f}")]


def _mirror_x(mesh):
    """The mesh mirrored through x = 0 (trimesh flips the faces of a reflection)."""
    m = mesh.copy()
    m.apply_transform(np.diag([-1.0, 1.0, 1.0, 1.0]))
    return m


def evaluate(hand: HandModel, params: HandParams, mesh, gt: HandParams | None) -> dict[str, np.ndarray]:
    """Per-hand figures (K,) of right hands `params` in the mesh's frame; errors against `gt` (1 or K)."""
    with torch.no_grad():
        out = hand(params.to(hand.device))
        v, kp = out.vertices.cpu(), out.keypoints.cpu()
        if gt is not None:
            ref = hand(gt.to(hand.device))
            gv, gk = ref.vertices.cpu(), ref.keypoints.cpu()
    faces = hand.faces.cpu().numpy()
    gm = grasp_metrics(v.numpy(), faces, mesh, simulate=False)
    q = contact_quality(hand, mesh, params.to(hand.device), object_in_hand=False)
    r = {"max_depth_mm": 10.0 * gm.max_depth_cm, "intersection_cm3": gm.intersection_cm3,
         "contact_ratio": gm.contact.astype(np.float64), "fingers_in_contact": q.fingers.sum(1).astype(np.float64),
         "holds": (q.fingers[:, 0] & q.opposed & (q.penetration_m < 0.01)).astype(np.float64)}
    if gt is not None:
        r["vertex_mm"] = 1000.0 * (v - gv).norm(dim=-1).mean(-1).numpy()
        r["mpjpe_mm"] = 1000.0 * (kp - gk).norm(dim=-1).mean(-1).numpy()
        rel = (kp - kp[:, :1]) - (gk - gk[:, :1])
        r["mpjpe_wrist_mm"] = 1000.0 * rel.norm(dim=-1).mean(-1).numpy()
    return r


def aggregate(per: list[dict[str, np.ndarray]], base: list[dict[str, np.ndarray]] | None = None) -> dict:
    """Means over all hands of a row; `better` against the `base` row's vertex errors."""
    keys = per[0].keys()
    cat = {k: np.concatenate([p[k] for p in per]) for k in keys}
    out = {"hands": int(len(next(iter(cat.values()))))}
    out.update({k: float(np.mean(v)) for k, v in cat.items()})
    if base is not None and "vertex_mm" in cat:
        b = np.concatenate([p["vertex_mm"] for p in base])
        out["better"] = float(np.mean(cat["vertex_mm"] < b - BETTER_MM))
    return out


def print_table(title: str, table: dict[str, dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    t.add_column("hands")
    t.add_column("n", justify="right")
    cols = [c for c in COLUMNS if any(c[0] in row for row in table.values())]
    for _, head, _ in cols:
        t.add_column(head, justify="right")
    for name, row in table.items():
        t.add_row(name, str(row["hands"]), *[fmt.format(row[k]) if k in row else "-" for k, _, fmt in cols])
    Console(width=200).print(t)


def pick_records(n_all: int, n: int) -> list[int]:
    """n record positions spread evenly over the folder (so over its objects and categories)."""
    n = min(n, n_all)
    return sorted({int(i) for i in np.linspace(0, n_all - 1, n).round()}) if n > 0 else []


def time_refine(net, hand, params, sdf, uTo, device) -> tuple:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    res = refine_hand(net, hand, params, sdf, uTo)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return res, time.perf_counter() - t


def bench_records(args, net, hand: HandModel, p: Perturbation, device) -> dict:
    data = RefineData(args.heldout)
    index = read_index(args.heldout)
    picked = pick_records(len(data), args.records)
    K = args.perturbations
    iters = net.cfg.iterations
    names = ["ground truth", "perturbed"] + [f"iteration {i + 1}" for i in range(iters)]
    rows: dict[str, list] = {k: [] for k in names}
    meshes: dict[tuple[str, bool], object] = {}
    per_record, per_hand = [], []
    hand_dev = copy.deepcopy(hand).to(device)  # the refinement's copy; figures on the CPU one
    # warm-up (first-call overheads are not the network's cost)
    gt0, sdf0, uTo0 = data.batch(torch.tensor([picked[0]]))
    refine_hand(net, hand_dev, gt0, sdf0, uTo0)
    for n, i in enumerate(picked):
        rec = load_record(args.heldout, i, index=index)
        gt, sdf, uTo = data.batch(torch.tensor([i]))
        key = (rec.object_id, rec.mirrored)
        if key not in meshes:
            mesh, _ = load_mesh(rec.object_mesh, rec.scale)
            meshes[key] = _mirror_x(mesh) if rec.mirrored else mesh
        mesh = meshes[key]
        gts = gt[[0] * K]
        x = perturb(gts, [torch_generator(args.seed, "bench-refinenet", rec.id, k) for k in range(K)], p)
        res, dt = time_refine(net, hand_dev, x, sdf, uTo, device)
        per_hand.append(dt / K)
        # one evaluation call per record: ground truth, inputs, every iteration
        allp = HandParams.cat([gt, x, *res.steps])
        figs = evaluate(hand, allp, mesh, HandParams.cat([gt] * (1 + K * (1 + iters))))
        s = 0
        entry = {"record": rec.id, "category": rec.category, "mirrored": rec.mirrored, "seconds": dt}
        for name, size in zip(names, [1, K] + [K] * iters):
            part = {k: v[s:s + size] for k, v in figs.items()}
            s += size
            rows[name].append(part)
            entry[name] = {k: float(np.mean(v)) for k, v in part.items()}
        per_record.append(entry)
        last = entry[names[-1]]
        print(f"[{n + 1}/{len(picked)}] {rec.id}: vertex {entry['perturbed']['vertex_mm']:.1f} -> {last['vertex_mm']:.1f} mm, "
              f"depth {entry['perturbed']['max_depth_mm']:.1f} -> {last['max_depth_mm']:.1f} mm "
              f"(ground truth {entry['ground truth']['max_depth_mm']:.1f})", flush=True)
    table = {name: aggregate(rows[name], None if name in ("ground truth", "perturbed") else rows["perturbed"]) for name in names}
    return {"records": [e["record"] for e in per_record], "perturbations": K, "iterations": iters, "table": table,
            "seconds_per_hand": float(np.median(per_hand)), "seconds_per_hand_mean": float(np.mean(per_hand)),
            "per_record": per_record}


def bench_grasps(args, net, hand: HandModel, device) -> dict:
    """SDS, SDS + mesh refinement (the current stage 2), SDS + network, SDS + mesh refinement + network."""
    from hoitool.pipelines.grasp import GraspConfig, GraspObject, synthesise_grasps
    from hoitool.prior.checkpoint import load_prior

    prior = load_prior(args.prior, device)
    index = read_index(args.heldout)
    picked, seen = [], set()
    for e in index:
        if e["category"] not in seen and len(picked) < args.grasp_objects:
            seen.add(e["category"])
            picked.append(e)
    names = ["SDS only", "SDS + mesh refinement (current)", "SDS + refinenet", "SDS + mesh refinement + refinenet"]
    rows: dict[str, list] = {k: [] for k in names}
    sec = {"mesh_refinement": 0.0, "refinenet": 0.0}
    hand_dev = copy.deepcopy(hand).to(device)
    n = 0
    per_object = []
    for e in picked:
        rec = load_record(args.heldout, e["id"], index=index)
        mesh, _ = load_mesh(rec.object_mesh, rec.scale)
        obj = GraspObject.from_mesh(mesh, rec.object_id)
        cfg = GraspConfig(n=args.grasp_n, steps=args.grasp_steps, query_every=min(50, max(args.grasp_steps, 1)),
                          refine_steps=args.grasp_refine_steps, rank_steps=1, batch_size=args.grasp_n, seed=args.seed)
        t = time.perf_counter()
        res = synthesise_grasps(prior, obj, rec.category, cfg, hand=copy.deepcopy(hand))  # it moves the hand to the prior's device
        synth_s = time.perf_counter() - t
        sds = res.stage1_params
        a, ta = time_refine(net, hand_dev, sds, obj.sdf_u, obj.uTo, device)
        b, _ = time_refine(net, hand_dev, res.params, obj.sdf_u, obj.uTo, device)
        sec["mesh_refinement"] += res.seconds["refine"]
        sec["refinenet"] += ta
        n += len(sds.transl)
        figs = evaluate(hand, HandParams.cat([sds, res.params, a.params, b.params]), mesh, None)
        K = len(sds.transl)
        entry = {"object": rec.object_id, "category": rec.category, "synthesis_seconds": synth_s}
        for j, name in enumerate(names):
            part = {k: v[j * K:(j + 1) * K] for k, v in figs.items()}
            rows[name].append(part)
            entry[name] = {k: float(np.mean(v)) for k, v in part.items()}
        per_object.append(entry)
        print(f"grasp {rec.object_id}: {K} grasps in {synth_s:.0f} s; depth SDS {entry[names[0]]['max_depth_mm']:.1f}, "
              f"mesh {entry[names[1]]['max_depth_mm']:.1f}, refinenet {entry[names[2]]['max_depth_mm']:.1f} mm", flush=True)
    table = {name: aggregate(rows[name]) for name in names}
    return {"objects": [e["object_id"] for e in picked], "n_per_object": args.grasp_n, "sds_steps": args.grasp_steps,
            "refine_steps": args.grasp_refine_steps, "prior": prior.source, "table": table,
            "seconds_per_grasp": {k: v / max(n, 1) for k, v in sec.items()}, "per_object": per_object}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="run folder or model.pt of hoitool train refinenet (default: the shipped one)")
    ap.add_argument("--heldout", type=Path, default=Path("bench_results/heldout"))
    ap.add_argument("--records", type=int, default=64, help="held-out records, spread evenly over the folder")
    ap.add_argument("--perturbations", type=int, default=4, help="perturbed copies per record")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--articulation-noise", type=float, default=None, help="rad per component (default: as in training)")
    ap.add_argument("--rotation-noise", type=float, default=None, help="rad per axis (default: as in training)")
    ap.add_argument("--translation-noise", type=float, default=None, help="metres per axis (default: as in training)")
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    ap.add_argument("--grasp", action="store_true", help="also compare mesh refinement and the network after SDS")
    ap.add_argument("--prior", type=Path, default=None, help="G-HOP prior for --grasp (default: the shipped one)")
    ap.add_argument("--grasp-objects", type=int, default=1)
    ap.add_argument("--grasp-n", type=int, default=4)
    ap.add_argument("--grasp-steps", type=int, default=100, help="SDS iterations for --grasp")
    ap.add_argument("--grasp-refine-steps", type=int, default=100, help="mesh refinement iterations for --grasp")
    ap.add_argument("--out", type=Path, default=Path("bench_results/bench_refinenet.json"))
    args = ap.parse_args()
    if args.records < 1 or args.perturbations < 1:
        print("--records and --perturbations must be at least 1", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    try:
        net, info = load_refinenet(args.model, device)
        from hoitool.train.tasks import prepared_hand

        hand = prepared_hand(args.heldout)
        if info.get("hand_sha") and hand_fingerprint(hand) != info["hand_sha"]:
            print(f"{info['path']} was trained with {info.get('hand')}, {args.heldout} was prepared with {hand.source}: "
                  "benchmark on a folder prepared with the same hand", file=sys.stderr)
            return 2
    except HoiError as e:
        print(str(e), file=sys.stderr)
        return 2
    trained = info.get("perturbation") or {}
    p = Perturbation(**trained) if trained else Perturbation()
    p = Perturbation(p.articulation if args.articulation_noise is None else args.articulation_noise,
                     p.rotation if args.rotation_noise is None else args.rotation_noise,
                     p.translation_m if args.translation_noise is None else args.translation_noise)
    as_trained = trained == asdict(p)
    train_data = info.get("data")
    train_dirs = [str(Path(d).resolve()) for d in (train_data if isinstance(train_data, list) else [train_data]) if d]
    if str(args.heldout.resolve()) in train_dirs:
        print(f"note: {args.heldout} is among the model's training folders: these grasps are not held out", flush=True)

    result = {"model": info["path"], "step": info.get("step"), "config": info.get("config"), "trained_on": train_data,
              "heldout": str(args.heldout), "seed": args.seed, "device": str(device),
              "perturbation": asdict(p), "perturbation_as_in_training": as_trained}
    result.update(bench_records(args, net, hand, p, device))
    title = (f"refinenet on {len(result['records'])} held-out records x {args.perturbations} perturbations "
             f"({p.articulation} rad, {p.rotation} rad, {100 * p.translation_m:g} cm{', as in training' if as_trained else ''}); "
             f"{1000 * result['seconds_per_hand']:.1f} ms per hand on {device}")
    print_table(title, result["table"])
    if args.grasp:
        result["grasp"] = bench_grasps(args, net, hand, device)
        g = result["grasp"]
        sp = g["seconds_per_grasp"]
        print_table(f"after SDS ({g['sds_steps']} steps), {len(g['objects'])} objects x {g['n_per_object']} grasps; "
                    f"s per grasp: mesh refinement {sp['mesh_refinement']:.3f}, refinenet {sp['refinenet']:.3f}", g["table"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
