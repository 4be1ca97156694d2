#!/usr/bin/env python
"""Two-hand generation, measured on a held-out synthetic corpus (InterHandGen's Table 1a / 3b columns).

    python scripts/bench_twohands.py --heldout HELDOUT --model RUN --joint-model JOINT_RUN \
        --features FEATURES_RUN --n 1000 --json bench_results/bench_twohands.json

Rows (samples of hand-hand interactions, no object, compared with the held-out hand-hand records):
  cascaded with / without anti-penetration guidance (APG), joint (non-cascaded) with / without.
Columns: FHID, KHID (x1000), diversity, precision, recall (k = 5), penetration volume (cm^3) and
depth (cm), proximity ratio (hands within 2 cm), contact ratio (within 5 mm).
Object rows: for each held-out bimanual object, samples with and without the object condition:
hand-object penetration, contact ratios, two-hand metrics, FHID against that object's records.
Speed: the time to draw --speed-n samples with the default settings (sampling only).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hoitool.geometry.mesh import load_mesh  # noqa: E402
from hoitool.hand.model import HandModel  # noqa: E402
from hoitool.twohands.checkpoint import load_feature_model, load_twohand_model  # noqa: E402
from hoitool.twohands.evaluate import distribution_metrics, physical_metrics, physical_summary  # noqa: E402
from hoitool.twohands.guidance import PenetrationGuide  # noqa: E402
from hoitool.twohands.params import from_vectors, transform_params  # noqa: E402
from hoitool.twohands.prepare import read_prepared  # noqa: E402
from hoitool.twohands.sample import DEFAULT_GUIDANCE, DEFAULT_PENETRATION, DEFAULT_PROXIMITY, sample_vectors  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def row(model, hands, guide, fm, ref, n: int, penetration: float, seed: int, physical: int, points=None, obj=None, oTr=None,
        guidance: float = DEFAULT_GUIDANCE) -> dict:
    t = time.time()
    xa, xb = sample_vectors(model, n, seed=seed, guidance=guidance, penetration=penetration, guide=guide, object_points=points,
                            batch_size=1000)
    secs = time.time() - t
    with torch.no_grad():
        r, l = from_vectors(hands["right"], hands["left"], xa[:physical], xb[:physical])
        if oTr is not None:
            r, l = transform_params(hands["right"], r, oTr), transform_params(hands["left"], l, oTr)
    out = physical_summary(physical_metrics(hands, r, l, obj))
    out.update(distribution_metrics(fm, hands, xa, xb, ref, seed=seed))
    out["sampling_s"] = secs
    out["n"] = n
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heldout", required=True)
    ap.add_argument("--model", default=None, help="Cascaded model (default: the shipped one).")
    ap.add_argument("--joint-model", default=None)
    ap.add_argument("--features", default=None)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--physical", type=int, default=300, help="Samples per row for penetration and contact.")
    ap.add_argument("--objects", type=int, default=5, help="Held-out bimanual objects for the object rows.")
    ap.add_argument("--per-object", type=int, default=40)
    ap.add_argument("--speed-n", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", default="", help="Comma-separated parts to skip: rows, joint, objects, speed, corpus.")
    ap.add_argument("--json", default="bench_results/bench_twohands.json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    skip = set(filter(None, args.skip.split(",")))
    hands = {s: HandModel(s) for s in ("right", "left")}
    guide = PenetrationGuide(hands["right"], hands["left"])
    vguide = PenetrationGuide(hands["right"], hands["left"], energy="vertices")
    pguide = PenetrationGuide(hands["right"], hands["left"], proximity=DEFAULT_PROXIMITY)
    fm = load_feature_model(args.features)
    arr = read_prepared(args.heldout)
    no_obj = arr["object"] < 0
    ref = (torch.as_tensor(arr["xa"][no_obj]), torch.as_tensor(arr["xb"][no_obj]))
    res: dict = {"heldout": str(args.heldout), "heldout_hand_hand": int(no_obj.sum()), "n": args.n, "rows": {}}
    cascaded = load_twohand_model(args.model)
    res["model"], res["features"] = cascaded.source, fm.source
    models = {"cascaded": cascaded}
    if args.joint_model and "joint" not in skip:
        models["joint"] = load_twohand_model(args.joint_model)

    if "corpus" not in skip:  # the held-out records themselves: the floor of the distances and their plausibility
        with torch.no_grad():
            r, l = from_vectors(hands["right"], hands["left"], ref[0][:args.physical], ref[1][:args.physical])
        corpus = physical_summary(physical_metrics(hands, r, l))
        corpus.update(distribution_metrics(fm, hands, ref[0], ref[1], None, seed=args.seed))
        res["heldout_records"] = corpus
        log(f"held-out records: {json.dumps({k: corpus[k] for k in ('proximity_ratio', 'contact_ratio', 'diversity')})}")

    if "rows" not in skip:
        w, c = DEFAULT_PENETRATION, DEFAULT_GUIDANCE
        settings = [(f" APG {w:g} + proximity {DEFAULT_PROXIMITY:g}, CFG {c:g} (defaults)", pguide, w, c), (" w/o APG", None, 0.0, c),
                    (f" APG {w:g}, no proximity, CFG {c:g}", guide, w, c),
                    (f" APG {w:g}, CFG 0.1", guide, w, 0.1), (" w/o APG, CFG 0.1", None, 0.0, 0.1),
                    (f" APG 100, CFG {c:g}", guide, 100.0, c), (f" APG vertices 7, CFG {c:g}", vguide, 7.0, c)]
        for name, m in models.items():
            for suffix, g, pen, cfg in (settings if name == "cascaded" else settings[:3]):
                key = name + suffix
                log(f"row {key}")
                res["rows"][key] = row(m, hands, g, fm, ref, args.n, pen, args.seed, args.physical, guidance=cfg)
                log(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in res["rows"][key].items() if not isinstance(v, dict)}))

    if "objects" not in skip and cascaded.has_object:
        from hoitool.pipelines.twohands import load_object

        metas = sorted(set(arr["object_meshes"].tolist()))[: args.objects]
        res["objects"] = {}
        for path in metas:
            mesh, T, pts = load_object(Path(path), 1.0)
            oid = list(arr["object_meshes"]).index(path)
            sel = arr["object"] == oid
            oref = (torch.as_tensor(arr["xa"][sel]), torch.as_tensor(arr["xb"][sel]))
            oTr = torch.as_tensor(np.linalg.inv(T), dtype=torch.float32)
            entry = {}
            for cond in ("object", "no object"):
                log(f"object {Path(path).name}: {cond}")
                entry[cond] = row(cascaded, hands, pguide, fm, oref if sel.sum() >= 6 else None, args.per_object, DEFAULT_PENETRATION, args.seed,
                                  args.per_object, pts if cond == "object" else None, mesh, oTr)
                entry[cond].pop("sampling_s", None)
            res["objects"][Path(path).name] = entry
        for cond in ("object", "no object"):
            vals = [e[cond] for e in res["objects"].values()]
            res.setdefault("objects_mean", {})[cond] = {
                k: float(np.mean([v[k]["mean"] if isinstance(v[k], dict) else v[k] for v in vals]))
                for k in ("object_penetration_cm3", "object_contact_ratio", "object_both_hands_contact_ratio", "penetration_volume_cm3")}
        log(json.dumps(res["objects_mean"]))

    if "speed" not in skip:
        t = time.time()
        sample_vectors(cascaded, args.speed_n, seed=args.seed, guide=pguide, batch_size=1000)
        res["speed"] = {"samples": args.speed_n, "seconds": time.time() - t, "threads": torch.get_num_threads()}
        log(f"{args.speed_n} samples in {res['speed']['seconds']:.1f} s")

    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    cols = ["fhid", "khid_x1000", "diversity", "precision", "recall", "penetration_volume_cm3", "penetration_depth_cm", "proximity_ratio", "contact_ratio"]
    print("| row | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for k, v in res["rows"].items():
        vals = [v[c]["mean"] if isinstance(v.get(c), dict) else v.get(c, float("nan")) for c in cols]
        print(f"| {k} | " + " | ".join(f"{x:.3f}" for x in vals) + " |")


if __name__ == "__main__":
    main()
