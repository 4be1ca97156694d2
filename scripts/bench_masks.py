"""Benchmark of the masks `hoitool reconstruct` derives without learned weights (GrabCut, hoitool.pipelines.grabcut).

Grasps of a held-out synthetic corpus (`hoitool prepare-data --synthetic 224 --seed 1`, the records that
scripts/bench_reconstruct.py picks) are rendered from random cameras (320 px, hoitool.data.synthetic.images) and
composited over real photographs: a random crop of one of scikit-image's sample photographs (coffee, astronaut,
chelsea, rocket, motorcycle; shipped with scikit-image, no download), the render's hand and object pixels in front.
Keypoints are the projected truth plus 2 px Gaussian noise; the object box is the true visible object's box widened
by 0-8 % of its size on each side (a hand-drawn box). Then:

- mask IoU against the rendered visible masks: the hand's fitted silhouette as it is, the GrabCut hand, and the
  object from the box alone, from the box with the silhouette as definitely not object, and as `hoitool
  reconstruct` derives it (see hoitool.pipelines.grabcut.derive_masks);
- on the first --recon-images images, `reconstruct_image` (easyhoi, the true mesh as template, defaults) with the
  true masks and with the derived ones, scored by scripts/bench_reconstruct.py's `score` (object Chamfer and
  F-scores in the camera frame and after translation + scale alignment, hand MPJPE, intersection volume, contact).

    python scripts/bench_masks.py --heldout bench_results/heldout --images 50 --recon-images 8 --out bench_results/bench_masks.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_reconstruct import pick_records, score  # noqa: E402

from hoitool.data.image_inputs import ImageInputs  # noqa: E402
from hoitool.data.synthetic.images import random_view  # noqa: E402
from hoitool.geometry.mesh import load_mesh  # noqa: E402
from hoitool.hand.model import HandModel  # noqa: E402
from hoitool.pipelines import grabcut as gc  # noqa: E402
from hoitool.pipelines.evaluate_recon import scene_from_hand  # noqa: E402
from hoitool.pipelines.image_recon import ReconstructConfig, reconstruct_image  # noqa: E402

#: scikit-image's colour sample photographs (in its wheel: no download).
PHOTOS = ("coffee", "astronaut", "chelsea", "rocket", "motorcycle")
#: Mask rows of the table: (key, what).
MASK_ROWS = [("hand_silhouette", "hand: the fitted hand's silhouette as it is"),
             ("hand", "hand: GrabCut from the silhouette (derived)"),
             ("object_box", "object: GrabCut from the box alone"),
             ("object_box_sil", "object: box, silhouette definitely not object"),
             ("object", "object: derived (box, silhouette probably not object, minus the hand)")]
RECON_KEYS = ["chamfer_mm", "f5", "f10", "f5_aligned", "f10_aligned", "mpjpe_mm", "mpjpe_abs_mm", "intersection_cm3", "contact"]


def photographs() -> dict[str, np.ndarray]:
    import skimage.data as sd

    return {"coffee": sd.coffee(), "astronaut": sd.astronaut(), "chelsea": sd.chelsea(), "rocket": sd.rocket(),
            "motorcycle": sd.stereo_motorcycle()[0]}


def background(photo: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random square crop (half to all of the shorter side) of a photograph, resized to size x size."""
    H, W = photo.shape[:2]
    side = int(rng.uniform(0.5, 1.0) * min(H, W))
    y0, x0 = int(rng.integers(0, H - side + 1)), int(rng.integers(0, W - side + 1))
    return cv2.resize(np.ascontiguousarray(photo[y0:y0 + side, x0:x0 + side, :3]), (size, size), interpolation=cv2.INTER_AREA)


def loose_box(mask: np.ndarray, rng: np.random.Generator, widen: float = 0.08) -> np.ndarray:
    """(4,) x0, y0, x1, y1: the mask's box widened by 0-`widen` of its size on each side, inside the image."""
    ys, xs = np.nonzero(mask)
    H, W = mask.shape
    w, h = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    m = rng.uniform(0, widen, 4) * [w, h, w, h]
    return np.array([max(xs.min() - m[0], 0), max(ys.min() - m[1], 0), min(xs.max() + m[2], W - 1), min(ys.max() + m[3], H - 1)])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heldout", type=Path, required=True, help="A prepared synthetic corpus (its manifest.jsonl).")
    ap.add_argument("--images", type=int, default=50, help="Composited photographs scored for mask IoU.")
    ap.add_argument("--recon-images", type=int, default=8, help="Of those, the first N are also reconstructed (true vs derived masks).")
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--noise-px", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("bench_results/bench_masks.json"))
    args = ap.parse_args()
    hand = HandModel("right")
    photos = photographs()
    cfg = gc.GrabCutConfig()
    rng = np.random.default_rng(args.seed)
    rows, recon = [], []
    for i, rec in enumerate(pick_records(args.heldout / "manifest.jsonl", args.images)):
        mesh, _ = load_mesh(rec.object_mesh)
        view = random_view(hand, mesh, rec.hand_params(), rng, size=args.size, keypoint_noise_px=args.noise_px)
        name = PHOTOS[i % len(PHOTOS)]
        hm, om = view.inputs.hand_mask, view.inputs.object_mask
        image = np.where((hm | om)[..., None], view.inputs.image, background(photos[name], args.size, rng)).astype(np.uint8)
        box = loose_box(om, rng)
        uv, conf = view.inputs.keypoints, view.inputs.confidence
        t = time.time()
        masks = gc.derive_masks(image, view.camera, hand, uv, conf, box, cfg=cfg)
        seconds = time.time() - t
        sil = masks.hand_silhouette
        row = {"image": i, "id": rec.id, "category": rec.category, "photo": name, "box": box.round(1).tolist(), "seconds": seconds,
               "hand_silhouette": iou(sil, hm), "hand": iou(masks.hand, hm),
               "object_box": iou(gc.object_mask_from_box(image, box, cfg=cfg), om),
               "object_box_sil": iou(gc.object_mask_from_box(image, box, sil, cfg=cfg), om), "object": iou(masks.object, om)}
        rows.append(row)
        line = f"{i + 1}/{args.images} {rec.id} {name}: hand {row['hand']:.2f} object {row['object']:.2f} ({seconds:.1f} s)"
        if i < args.recon_images:
            gt = mesh.copy()
            gt.apply_transform(view.cTo)
            truth = scene_from_hand(hand, view.hand, gt, np.eye(4)[None], meshes=False)
            for kind, (h, o) in (("true", (hm, om)), ("derived", (masks.hand, masks.object))):
                inputs = ImageInputs(image, h, o, uv, conf)
                t = time.time()
                res = reconstruct_image(inputs, mesh, view.camera, ReconstructConfig(seed=i), template=True, hand=hand,
                                        hand_params=masks.hand_params)
                dt = time.time() - t
                recon.append({"image": i, "masks": kind, "seconds": dt, **score(hand, truth, mesh, res.final)})
                line += f" · recon {kind} {dt:.0f} s"
        print(line, flush=True)
        report(rows, recon, args)


def _stats(v: list[float]) -> dict:
    a = np.asarray(v, float)
    return {"mean": float(a.mean()), "median": float(np.median(a)), "p10": float(np.percentile(a, 10)),
            "above_0.8": float((a > 0.8).mean())}


def report(rows: list[dict], recon: list[dict], args) -> None:
    """Write the JSON and print the tables of everything scored so far."""
    masks = {k: _stats([r[k] for r in rows]) for k, _ in MASK_ROWS}
    per_photo = {p: {k: float(np.mean([r[k] for r in rows if r["photo"] == p])) for k in ("hand", "object")} | {
        "images": sum(r["photo"] == p for r in rows)} for p in PHOTOS if any(r["photo"] == p for r in rows)}
    table = [{"masks": kind, "images": len(sel), **{k: float(np.mean([r[k] for r in sel])) for k in RECON_KEYS},
              "chamfer_mm_median": float(np.median([r["chamfer_mm"] for r in sel])),
              "seconds": float(np.mean([r["seconds"] for r in sel]))}
             for kind in ("true", "derived") if (sel := [r for r in recon if r["masks"] == kind])]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"masks": masks, "per_photo": per_photo, "reconstruction": table,
                                    "mask_seconds": _stats([r["seconds"] for r in rows]), "rows": rows, "recon_rows": recon,
                                    "args": {k: str(v) for k, v in vars(args).items()}}, indent=1))
    print(f"| mask ({len(rows)} images) | mean IoU | median | 10th percentile | IoU > 0.8 |")
    print("|---|---|---|---|---|")
    for k, what in MASK_ROWS:
        s = masks[k]
        print(f"| {what} | {s['mean']:.3f} | {s['median']:.3f} | {s['p10']:.3f} | {100 * s['above_0.8']:.0f} % |")
    print("per photograph (mean IoU hand / object): " + ", ".join(
        f"{p} {v['hand']:.2f} / {v['object']:.2f} ({v['images']})" for p, v in per_photo.items()))
    print(f"seconds per image for both masks (hand fit included): {np.mean([r['seconds'] for r in rows]):.2f} mean")
    if table:
        print("| masks | images | CD mm | CD mm median | F5 | F10 | F5 aligned | F10 aligned | MPJPE mm | abs MPJPE mm | "
              "intersection cm3 | contact | s/image |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in table:
            print(f"| {r['masks']} | {r['images']} | {r['chamfer_mm']:.1f} | {r['chamfer_mm_median']:.1f} | {r['f5']:.2f} | {r['f10']:.2f} | "
                  f"{r['f5_aligned']:.2f} | "
                  f"{r['f10_aligned']:.2f} | {r['mpjpe_mm']:.1f} | {r['mpjpe_abs_mm']:.1f} | {r['intersection_cm3']:.2f} | "
                  f"{r['contact']:.2f} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
