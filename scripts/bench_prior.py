#!/usr/bin/env python
"""Benchmark the G-HOP models: VQ-VAE reconstruction, prior sample quality, speed.

    python scripts/bench_prior.py --heldout HELDOUT --train TRAIN [--model RUN] [--samples 32] [--steps 100]
    python scripts/bench_prior.py ... --write      # also write assets/models/metrics.json and the model card

HELDOUT: a prepared synthetic folder with other objects than training (e.g.
`hoitool prepare-data --synthetic 224 --seed 1`); TRAIN: the training folder (for the
nearest-neighbour classifier and the data's own diversity).

Figures:
- VQ-VAE: SDF L1 (grid units in [-1, 1]; x 40 = mm) over the whole grid and within the
  unclamped band (|sdf| < 4 cm), occupancy IoU (sdf < 0), on held-out and training records.
- Prior, per category, `--samples` samples with DDIM `--steps` and guidance 4: share with an
  object surface, share with hand-object contact (a finger or the palm within 5 mm) and
  penetration < 1 cm; accuracy of a 1-nearest-neighbour classifier (object grids, 32^3 L2,
  against the training records) at recognising the prompted category; diversity (mean
  pairwise keypoint distance of the hands, mean pairwise L1 of object grids). The same for
  the untrained model (same VQ-VAE, freshly initialised denoiser) and for training data.
- Speed: training steps/s of both models at their default batch; seconds to sample 16.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


#: Categories whose walls are thinner than the 9.4 mm voxels of the 64^3 grid.
THIN_WALLED = ("mug", "cup", "bowl", "pan", "plate")


def vqvae_figures(vq, root: Path, limit: int = 256) -> dict:
    """Reconstruction figures over up to `limit` records spread over the folder (every k-th)."""
    from hoitool.prior.data import InteractionData

    d = InteractionData(root)
    picks = np.unique(np.linspace(0, len(d) - 1, min(limit, len(d))).round().astype(int))
    l1, band, iou = [], [], []
    with torch.no_grad():
        for s in range(0, len(picks), 8):
            idx = torch.as_tensor(picks[s:s + 8])
            g = d.object_grids(idx)
            r = vq.decode_latent(vq.encode(g)).clamp(-1, 1)
            err = (r - g).abs()
            l1.extend(err.mean(dim=(1, 2, 3, 4)).tolist())
            m = g.abs() < 1
            band.extend(((err * m).sum(dim=(1, 2, 3, 4)) / m.sum(dim=(1, 2, 3, 4)).clamp_min(1)).tolist())
            a, b = g < 0, r < 0
            iou.extend(((a & b).sum(dim=(1, 2, 3, 4)) / (a | b).sum(dim=(1, 2, 3, 4)).clamp_min(1)).tolist())
    cats = [d.categories[i] for i in picks]
    per = {c: float(np.mean([v for v, k in zip(iou, cats) if k == c])) for c in sorted(set(cats))}
    thin = [v for v, k in zip(iou, cats) if k in THIN_WALLED]
    return {"records": len(picks), "l1": float(np.mean(l1)), "l1_mm": float(40 * np.mean(l1)), "l1_band": float(np.mean(band)),
            "l1_band_mm": float(40 * np.mean(band)), "iou": float(np.mean(iou)), "iou_min": float(np.min(iou)),
            "iou_thin_walled": float(np.mean(thin)) if thin else None, "iou_per_category": per}


def reconstruction_sheet(vq, root: Path, path: Path) -> Path:
    """One held-out object per category: its 64^3 grid's mesh (left) and the autoencoder's (right)."""
    from hoitool.prior.data import InteractionData
    from hoitool.prior.sample import grid_to_mesh
    from hoitool.render.offscreen import OBJECT_COLOR, RenderMesh, contact_sheet, render

    d = InteractionData(root)
    first = {}
    for i, c in enumerate(d.categories):
        first.setdefault(c, i)
    images, labels = [], []
    with torch.no_grad():
        for c, i in sorted(first.items()):
            g = d.object_grids(torch.tensor([i]))
            r = vq.decode_latent(vq.encode(g)).clamp(-1, 1)
            for grid, tag in ((g, "data"), (r, "autoencoder")):
                m = grid_to_mesh(grid[0, 0].numpy(), np.eye(4))
                images.append(render([RenderMesh(m.vertices, m.faces, OBJECT_COLOR)], size=160) if m is not None
                              else np.full((160, 160, 3), 255, np.uint8))
                labels.append(f"{c} {tag}")
    path.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(images, cols=8, labels=labels).save(path)
    return path


def pool(grids: torch.Tensor) -> torch.Tensor:
    return F.avg_pool3d(grids.reshape(-1, 1, 64, 64, 64).float(), 2).reshape(len(grids), -1)


def pairwise_mean(x: torch.Tensor, p: int = 2) -> float:
    if len(x) < 2:
        return float("nan")
    d = torch.cdist(x, x, p=p)
    n = len(x)
    return float(d.sum() / (n * (n - 1)))


def prior_figures(prior, hand, categories, n, steps, seed, train_feats, train_cats, clipped_eps: bool | None = None) -> dict:
    from hoitool.prior.sample import decode_interactions

    per, pens = {}, []
    for c in categories:
        t = time.time()
        kw = {} if clipped_eps is None else {"clipped_eps": clipped_eps}  # None: DDIM as shipped
        x = prior.sample([c] * n, steps=steps, guidance=4.0, seed=seed, **kw)
        res = decode_interactions(prior, x, hand, [c] * n, seed)
        has = np.array([o is not None for o in res.objects])
        good = has & res.contact & (np.nan_to_num(res.penetration_mm, nan=1e9) < 10)
        pens.extend(np.asarray(res.penetration_mm)[has].tolist())
        feats = pool(res.object_grid)
        nn = torch.cdist(feats, train_feats).argmin(1)
        acc = float(np.mean([train_cats[i] == c for i in nn.tolist()]))
        with torch.no_grad():
            kp = hand(res.hand).keypoints.reshape(n, -1)
        per[c] = {"object": float(has.mean()), "contact_and_pen_lt_1cm": float(good.mean()), "nn_accuracy": acc,
                  "hand_diversity_cm": 100 * pairwise_mean(kp) / np.sqrt(21), "object_diversity_l1": pairwise_mean(feats, 1) / feats.shape[1],
                  "median_penetration_mm": float(np.nanmedian(res.penetration_mm)) if has.any() else None,
                  "seconds": round(time.time() - t, 1)}
        print(f"  {c}: {per[c]}", flush=True)
    keys = ["object", "contact_and_pen_lt_1cm", "nn_accuracy", "hand_diversity_cm", "object_diversity_l1"]
    return {"per_category": per, "mean": {k: float(np.mean([v[k] for v in per.values()])) for k in keys},
            "median_penetration_mm": float(np.nanmedian(pens)) if pens else None}


def data_diversity(root: Path, hand, categories, n) -> dict:
    from hoitool.prior.data import InteractionData

    d = InteractionData(root)
    out = {"hand_diversity_cm": [], "object_diversity_l1": []}
    for c in categories:
        idx = torch.tensor([i for i, k in enumerate(d.categories) if k == c][:n])
        with torch.no_grad():
            local = d.hand[idx]
            local.global_orient.zero_(), local.transl.zero_()
            kp = hand(local).keypoints.reshape(len(idx), -1)
        feats = pool(d.object_grids(idx))
        out["hand_diversity_cm"].append(100 * pairwise_mean(kp) / np.sqrt(21))
        out["object_diversity_l1"].append(pairwise_mean(feats, 1) / feats.shape[1])
    return {k: float(np.mean(v)) for k, v in out.items()}


def speed(train_root: Path, vqvae_path, steps: int = 6) -> dict:
    import tempfile

    from hoitool.train.loop import TrainConfig, train
    from hoitool.train.tasks import GHOPTask, VQVAETask

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, make, bs in (("vqvae", lambda: VQVAETask(train_root), 8),
                               ("ghop", lambda: GHOPTask(train_root, vqvae_path, options=None, cache=Path(tmp) / "latents"), 16)):
            task = make()
            times = []
            train(task, TrainConfig(out=f"{tmp}/{name}", steps=1, batch_size=bs, device="cpu"))  # warm-up
            t = time.time()
            train(task, TrainConfig(out=f"{tmp}/{name}", steps=1 + steps, batch_size=bs, device="cpu"))
            times.append(time.time() - t)
            out[f"{name}_steps_per_s"] = steps / times[0]
            out[f"{name}_batch"] = bs
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heldout", type=Path, required=True)
    ap.add_argument("--train", type=Path, required=True)
    ap.add_argument("--model", type=Path, help="prior run or model.pt (default: the shipped one)")
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--untrained-samples", type=int, default=8)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-timing", action="store_true", help="do not time sampling 16 interactions")
    ap.add_argument("--vqvae-json", type=Path, help="take the autoencoder's figures from this earlier report")
    ap.add_argument("--skip-untrained", action="store_true", help="no untrained-denoiser baseline")
    ap.add_argument("--write", action="store_true", help="write assets/models/metrics.json and refresh CARD.md")
    ap.add_argument("--ddim-unclipped-eps", action="store_true",
                    help="also sample the trained prior keeping the network's noise after clipping x0 (the old update)")
    ap.add_argument("--ddim-clipped-eps", action="store_true",
                    help="also sample the trained prior re-deriving the noise from the clipped x0 (the consistent update)")
    ap.add_argument("--prior-only", action="store_true", help="trained prior samples only (no VQ-VAE, baseline, speed)")
    ap.add_argument("--json", type=Path, help="also write the report here")
    ap.add_argument("--sheet", type=Path, help="write a contact sheet of held-out objects and their reconstructions here")
    ap.add_argument("--vqvae-only", action="store_true", help="only the autoencoder's figures")
    ap.add_argument("--categories", help="comma-separated subset of the prior's categories")
    ap.add_argument("--vqvae", type=Path, help="evaluate this autoencoder run or model.pt instead of the prior's")
    args = ap.parse_args(argv)

    from hoitool.hand.model import HandModel
    from hoitool.models.unet3d import UNet3D
    from hoitool.prior.checkpoint import load_prior
    from hoitool.prior.data import InteractionData

    torch.manual_seed(0)
    prior = load_prior(args.model)
    if args.vqvae is not None:
        from hoitool.prior.checkpoint import read_model, vqvae_from_model

        prior.vqvae = vqvae_from_model(read_model(args.vqvae, "vqvae")).eval()
    hand = HandModel("right")
    report = {"model": prior.source, "step": prior.step, "torch_threads": torch.get_num_threads(), "ddim_steps": args.steps, "guidance": 4.0,
              "samples_per_category": args.samples, "untrained_samples_per_category": args.untrained_samples}
    if args.vqvae_json is not None:  # the autoencoder's figures from an earlier --vqvae-only run of the same model
        report["vqvae"] = json.loads(args.vqvae_json.read_text())["vqvae"]
    elif not args.prior_only:
        print("VQ-VAE reconstruction ...", flush=True)
        report["vqvae"] = {"heldout": vqvae_figures(prior.vqvae, args.heldout), "train": vqvae_figures(prior.vqvae, args.train)}
        print(json.dumps(report["vqvae"], indent=1), flush=True)
        if args.sheet:
            print(f"wrote {reconstruction_sheet(prior.vqvae, args.heldout, args.sheet)}", flush=True)
    if args.vqvae_only:
        if args.json:
            args.json.write_text(json.dumps(report, indent=1) + "\n")
        return 0

    train_data = InteractionData(args.train)
    train_feats = torch.cat([pool(train_data.object_grids(torch.arange(s, min(len(train_data), s + 32))))
                             for s in range(0, len(train_data), 32)])
    cats = args.categories.split(",") if args.categories else prior.categories
    print("prior samples ...", flush=True)
    if not args.prior_only and not args.skip_timing:
        t = time.time()
        x = prior.sample(["mug"] * 16, steps=100, guidance=4.0, seed=0)
        t_sample = time.time() - t
        from hoitool.prior.sample import decode_interactions

        decode_interactions(prior, x, hand, ["mug"] * 16, 0)
        report["seconds_to_sample_16"] = {"denoise_100_steps": round(t_sample, 1), "with_decoding": round(time.time() - t, 1), "device": "cpu"}
    report["trained"] = prior_figures(prior, hand, cats, args.samples, args.steps, args.seed, train_feats, train_data.categories)
    if args.ddim_clipped_eps:
        print("trained prior, DDIM noise re-derived from the clipped x0 ...", flush=True)
        report["trained_clipped_eps"] = prior_figures(prior, hand, cats, args.samples, args.steps, args.seed, train_feats,
                                                      train_data.categories, clipped_eps=True)
        print("trained mean, clipped-x0 DDIM noise:", report["trained_clipped_eps"]["mean"],
              report["trained_clipped_eps"]["median_penetration_mm"])
    if args.ddim_unclipped_eps:
        print("trained prior, unclipped DDIM noise ...", flush=True)
        report["trained_unclipped_eps"] = prior_figures(prior, hand, cats, args.samples, args.steps, args.seed, train_feats,
                                                        train_data.categories, clipped_eps=False)
        print("trained mean, unclipped DDIM noise:", report["trained_unclipped_eps"]["mean"])
    if args.prior_only:
        print("trained mean:", report["trained"]["mean"], "median penetration (mm):", report["trained"]["median_penetration_mm"])
        if args.json:
            args.json.write_text(json.dumps(report, indent=1) + "\n")
        return 0
    if args.skip_untrained:
        report["training_data"] = data_diversity(args.train, hand, cats, args.samples)
        print("trained mean:", report["trained"]["mean"], "median penetration (mm):", report["trained"]["median_penetration_mm"])
        return _finish(report, args)
    untrained = load_prior(args.model)
    torch.manual_seed(0)
    untrained.unet = UNet3D(untrained.unet.config).eval()
    for p in untrained.unet.out.parameters():  # a zero output layer would make every sample the same clipped noise
        torch.nn.init.normal_(p, std=0.02)
    print("untrained baseline ...", flush=True)
    report["untrained"] = prior_figures(untrained, hand, cats, args.untrained_samples, args.steps, args.seed, train_feats,
                                        train_data.categories)
    report["training_data"] = data_diversity(args.train, hand, cats, args.samples)
    if not args.skip_speed:
        print("training speed ...", flush=True)
        report["speed"] = speed(args.train, None)
    print(json.dumps({k: v for k, v in report.items() if k not in ("trained", "untrained")}, indent=1))
    print("trained mean:", report["trained"]["mean"])
    print("untrained mean:", report["untrained"]["mean"])
    return _finish(report, args)


def _finish(report: dict, args) -> int:
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.write:
        out = ROOT / "assets" / "models" / "metrics.json"
        out.write_text(json.dumps(report, indent=1) + "\n")
        from train_default_prior import write_card

        print(f"wrote {out} and {write_card()}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
