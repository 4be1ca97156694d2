#!/usr/bin/env python
"""Train the default HOIDiffusion image model that ships as assets/models/hoidiff.pt: the small
pixel-space model (64 px, MiniLM text), no Stable Diffusion weights anywhere.

    python scripts/train_default_hoidiff.py --runs RUNS                  # render, train, install
    python scripts/train_default_hoidiff.py --runs RUNS --no-install     # leave assets/ alone
    python scripts/train_default_hoidiff.py --runs RUNS --renders R      # reuse a render folder

Stages (each resumable: re-running the same command continues where it stopped):
  1. `hoitool render --synthetic N --seed 0` into RUNS/renders (unless --renders is given)
  2. `hoitool train hoidiff` (default model, fixed settings) into RUNS/hoidiff
  3. unless --no-install: model.pt copied (weights in half precision) to assets/models/hoidiff.pt,
     and assets/models/training_hoidiff.json with the commands and settings used.

Smoke test (a minute or two on a CPU):
    python scripts/train_default_hoidiff.py --runs /tmp/hd-smoke --trajectories 2 --steps 20 --no-install
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
HOITOOL = [sys.executable, "-m", "hoitool"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list[str]) -> None:
    log(" ".join(["hoitool"] + cmd[3:]) if cmd[:3] == HOITOOL else " ".join(cmd))
    subprocess.run(cmd, check=True)


def commands(args) -> dict[str, list[str]]:
    renders = str(args.renders or Path(args.runs) / "renders")
    return {
        "render": HOITOOL + ["render", "--synthetic", str(args.trajectories), "--seed", "0", "--out", renders,
                             "--size", "256", "-j", str(args.workers)],
        "train": HOITOOL + ["train", "hoidiff", "--data", renders, "--out", str(Path(args.runs) / "hoidiff"),
                            "--steps", str(args.steps), "--batch-size", "16", "--lr", "2e-4", "--resolution", "64",
                            "--seed", "0", "--device", args.device],
    }


def install(args, cmds: dict) -> None:
    out = ROOT / "assets" / "models"
    d = torch.load(Path(args.runs) / "hoidiff" / "model.pt", map_location="cpu", weights_only=False)
    if d["config"].get("base"):
        raise SystemExit("refusing to install a model on a Stable Diffusion base: only the default model ships")
    d["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in d["state_dict"].items()}
    d["data"] = f"hoitool render --synthetic {args.trajectories} --seed 0 (256 px, 8 frames per trajectory)"
    torch.save(d, out / "hoidiff.pt")
    log(f"installed {out / 'hoidiff.pt'} (step {d['step']})")
    record = {"date": datetime.date.today().isoformat(),
              "commands": {k: " ".join(["hoitool"] + v[3:]) for k, v in cmds.items()},
              "trajectories": args.trajectories, "steps": args.steps, "batch_size": 16}
    (out / "training_hoidiff.json").write_text(json.dumps(record, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="runs/hoidiff-default")
    ap.add_argument("--renders", default=None, help="A render folder to reuse instead of rendering one.")
    ap.add_argument("--trajectories", type=int, default=320, help="Synthetic trajectories to render (8 frames each).")
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-install", action="store_true", help="Do not copy the model into assets/models/.")
    args = ap.parse_args()
    cmds = commands(args)
    if args.renders is None:
        run(cmds["render"])
    run(cmds["train"])
    if not args.no_install:
        install(args, cmds)


if __name__ == "__main__":
    main()
