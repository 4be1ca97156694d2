"""Benchmark of two-hand reconstruction from 2D keypoints (`hoitool reconstruct --two-hands`), with
and without the two-hand prior's score distillation.

Test cases come from a prepared two-hand folder (`hoitool prepare-data --two-hands N`), taking
pairs without an object from the end of its records. Note: `hoitool train twohands` trains on every
record of its --data, so pairs from the corpus the model was trained on are not held out; prepare
a separate folder (another --seed) for a held-out test. Each pair is placed in front of a random
camera (square image, field of view 40-55 degrees, the pair filling 50-70 % of the half image, all
42 keypoints in view); the keypoints are projected, Gaussian pixel noise added, and a few
keypoints per hand dropped (confidence 0). The image is a plain background: keypoints are the
input. Every case is reconstructed without the prior (`no_prior`: one-hand fits + joint refinement
with reprojection, joint limits and penetration) and with it (`prior`); `single` is the one-hand
fits both start from. Scores per mode:
- MPJPE per hand (mm) of the 21 keypoints, root-relative (wrist) and absolute (camera frame);
- relative pose of the left hand w.r.t. the right: translation error (cm) of the left middle MCP
  relative to the right's (MRRPE, camera frame), and rotation error (degrees) of R_r^T R_l;
- penetration volume (cm^3) of the two meshes; seconds per case.

    python scripts/bench_twohand_recon.py --data /work/data/th2400 --model /work/data/runs/twohands --cases 12 --json bench_results/twohand_recon.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from hoitool.data.synthetic.images import random_camera
from hoitool.geometry.rotations import axis_angle_to_matrix, rotation_angle
from hoitool.hand.model import HandModel, HandParams
from hoitool.metrics.reconstruction import mpjpe_mm
from hoitool.metrics.twohands import intersection_volume_cm3
from hoitool.pipelines.twohand_recon import SIDES, TwoHandReconConfig, reconstruct_two_hands
from hoitool.twohands.params import from_vectors, knuckle, transform_params
from hoitool.twohands.prepare import read_prepared
from hoitool.utils.seeding import numpy_rng

KEYS = ("mpjpe_right_mm", "mpjpe_left_mm", "mpjpe_abs_right_mm", "mpjpe_abs_left_mm", "rel_transl_cm", "rel_rot_deg",
        "penetration_cm3", "reprojection_px", "seconds")


def pick_pairs(data: Path, n: int, hands) -> list[tuple[int, dict[str, HandParams]]]:
    """The last n records without an object, as (index, {"right", "left"}) in the reference frame."""
    arr = read_prepared(data)
    ids = [i for i in range(len(arr["xa"]) - 1, -1, -1) if arr["object"][i] < 0][:n]
    xa = torch.as_tensor(arr["xa"][ids], dtype=torch.float32)
    xb = torch.as_tensor(arr["xb"][ids], dtype=torch.float32)
    with torch.no_grad():
        r, l = from_vectors(hands["right"], hands["left"], xa, xb)
    return [(i, {"right": r[k], "left": l[k]}) for k, i in enumerate(ids)]


def make_case(hands, pair: dict[str, HandParams], rng: np.random.Generator, size: int, noise_px: float, drop: int, tries: int = 50):
    """(params in the camera frame, uv (2, 21, 2) noisy pixels, conf (2, 21), camera)."""
    with torch.no_grad():
        kp = np.concatenate([hands[s](pair[s]).keypoints[0].numpy() for s in SIDES])
    centre = (kp.max(0) + kp.min(0)) / 2
    radius = float(np.linalg.norm(kp - centre, axis=1).max()) + 0.02
    for _ in range(tries):
        cam, cTo = random_camera(centre, radius, size, rng, (40.0, 55.0), (0.5, 0.7))
        T = torch.as_tensor(cTo, dtype=torch.float32)
        pc = {s: transform_params(hands[s], pair[s], T) for s in SIDES}
        with torch.no_grad():
            uv = torch.stack([cam.project(hands[s](pc[s]).keypoints[0]) for s in SIDES]).numpy()
        if (uv > 2).all() and (uv < size - 3).all():
            break
    else:
        raise RuntimeError("no camera kept the pair in view")
    uv = (uv + rng.normal(scale=noise_px, size=uv.shape)).astype(np.float32)
    conf = np.ones((2, 21), np.float32)
    for i in range(2):
        conf[i, rng.choice(np.arange(1, 21), size=drop, replace=False)] = 0.0  # never the wrist
    return pc, uv, conf, cam


def scores(hands, pred: dict[str, HandParams], gt: dict[str, HandParams]) -> dict:
    with torch.no_grad():
        out = {s: hands[s](pred[s]) for s in SIDES}
        ref = {s: hands[s](gt[s]) for s in SIDES}
        d = {}
        for s in SIDES:
            a, b = out[s].keypoints[0].numpy(), ref[s].keypoints[0].numpy()
            d[f"mpjpe_{s}_mm"] = mpjpe_mm(a, b)
            d[f"mpjpe_abs_{s}_mm"] = mpjpe_mm(a, b, None)
        rel = lambda p: knuckle(hands["left"], p["left"]) - knuckle(hands["right"], p["right"])  # noqa: E731
        d["rel_transl_cm"] = float((rel(pred) - rel(gt)).norm()) * 100
        Rrel = lambda p: axis_angle_to_matrix(p["right"].global_orient).transpose(1, 2) @ axis_angle_to_matrix(p["left"].global_orient)  # noqa: E731
        d["rel_rot_deg"] = float(torch.rad2deg(rotation_angle(Rrel(pred).transpose(1, 2) @ Rrel(gt))))
        d["penetration_cm3"] = intersection_volume_cm3(out["right"].vertices[0].numpy(), hands["right"].faces.numpy(),
                                                       out["left"].vertices[0].numpy(), hands["left"].faces.numpy())
    return d


def summarise(rows: list[dict]) -> dict:
    out = {}
    modes = list(dict.fromkeys(r["mode"] for r in rows if r["mode"] != "truth")) + ["truth"]
    for mode in modes:
        rs = [r for r in rows if r["mode"] == mode]
        if rs:
            out[mode] = {k: {"mean": float(np.mean([r[k] for r in rs])), "median": float(np.median([r[k] for r in rs]))}
                         for k in KEYS if k in rs[0]}
    return out


def print_table(summary: dict) -> None:
    head = ["mode", "MPJPE R/L mm", "abs R/L mm", "rel T cm", "rel R deg", "pen cm3", "reproj px", "s/case"]
    lines = [head]
    for mode, s in summary.items():
        m = lambda k: s[k]["mean"] if k in s else float("nan")  # noqa: E731
        lines.append([mode, f"{m('mpjpe_right_mm'):.1f} / {m('mpjpe_left_mm'):.1f}",
                      f"{m('mpjpe_abs_right_mm'):.1f} / {m('mpjpe_abs_left_mm'):.1f}", f"{m('rel_transl_cm'):.2f}",
                      f"{m('rel_rot_deg'):.1f}", f"{m('penetration_cm3'):.2f}", f"{m('reprojection_px'):.2f}", f"{m('seconds'):.1f}"])
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    for j, r in enumerate(lines):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
        if j == 0:
            print("  ".join("-" * w for w in widths))
    print("(means over cases; truth = the ground-truth pair's own penetration)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="Prepared two-hand folder (twohands.npz).")
    ap.add_argument("--model", type=Path, default=None, help="Two-hand model (run folder or model.pt; default: the shipped one).")
    ap.add_argument("--cases", type=int, default=12)
    ap.add_argument("--noise-px", type=float, default=2.0)
    ap.add_argument("--drop", type=int, default=2, help="Keypoints dropped per hand (confidence 0).")
    ap.add_argument("--size", type=int, default=480, help="Image side, pixels.")
    ap.add_argument("--steps", type=int, default=TwoHandReconConfig.steps, help="Joint refinement steps.")
    ap.add_argument("--w-sds", type=float, nargs="+", default=[TwoHandReconConfig.w_sds],
                    help="SDS weight(s): one 'prior' mode per value (named prior@W when several).")
    ap.add_argument("--sds-t", type=float, nargs=2, default=list(TwoHandReconConfig.sds_t), help="SDS timestep range (share of T).")
    ap.add_argument("--no-prior-only", action="store_true", help="Skip the runs with the prior (no model needed).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=Path("bench_results/bench_twohand_recon.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    hands = {s: HandModel(s) for s in SIDES}
    model = None
    if not args.no_prior_only:
        from hoitool.twohands.checkpoint import load_twohand_model

        model = load_twohand_model(args.model, "cpu")
    rows = []
    for k, (idx, pair) in enumerate(pick_pairs(args.data, args.cases, hands)):
        rng = numpy_rng(args.seed, "bench-twohand", k)
        gt, uv, conf, cam = make_case(hands, pair, rng, args.size, args.noise_px, args.drop)
        rows.append({"case": k, "record": idx, "mode": "truth", **scores(hands, gt, gt)})
        single = None
        runs = [("no_prior", 0.0)] + ([] if model is None else
                                      [("prior" if len(args.w_sds) == 1 else f"prior@{w:g}", w) for w in args.w_sds])
        for mode, w in runs:
            cfg = TwoHandReconConfig(steps=args.steps, use_prior=w > 0 or mode != "no_prior", w_sds=w, sds_t=tuple(args.sds_t), seed=args.seed)
            t0 = time.time()
            res = reconstruct_two_hands(cfg, None, uv, conf, cam, model=model, hands=hands, single=single)
            sec = time.time() - t0
            if single is None:  # the one-hand fits every mode starts from (their time counts in each mode's seconds)
                st = res.stages["single"]
                single = {"right": st.right, "left": st.left}
                fit_seconds = st.seconds
                rows.append({"case": k, "record": idx, "mode": "single", **scores(hands, single, gt),
                             "reprojection_px": float(np.mean(list(st.reprojection_px.values()))), "seconds": st.seconds})
            else:
                sec += fit_seconds
            rows.append({"case": k, "record": idx, "mode": mode, **scores(hands, {"right": res.right, "left": res.left}, gt),
                         "reprojection_px": float(np.mean(list(res.reprojection_px.values()))), "seconds": sec})
        done = {r["mode"]: r for r in rows if r["case"] == k}
        print(f"case {k} (record {idx}): " + " · ".join(f"{m} relT {r['rel_transl_cm']:.1f} cm MPJPE {r['mpjpe_right_mm']:.0f}/{r['mpjpe_left_mm']:.0f}"
                                                       for m, r in done.items() if m != "truth"), flush=True)
    summary = summarise(rows)
    print_table(summary)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                                     "model": None if model is None else model.source, "summary": summary, "rows": rows}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
