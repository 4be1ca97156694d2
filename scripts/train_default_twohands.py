#!/usr/bin/env python
"""Train the default two-hand models that ship in assets/models/ (InterHandGen + its FHID features).

    python scripts/train_default_twohands.py --runs RUNS              # everything
    python scripts/train_default_twohands.py --runs RUNS --install    # then copy into assets/models/

Stages (each resumable: re-running the same command continues where it stopped):
  1. `hoitool prepare-data --two-hands PAIRS --seed 0` into RUNS/data (unless --data is given)
  2. `hoitool train twohands` (cascaded, object encoder) into RUNS/twohands
  3. `hoitool train twohand-features` into RUNS/features
  4. --install: half-precision copies as assets/models/twohands.pt and twohands_features.pt, and
     assets/models/training_twohands.json with the commands and options used.
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
    log(" ".join(cmd[2:]) if cmd[:2] == HOITOOL[:2] else " ".join(cmd))
    subprocess.run(cmd, check=True)


def half(sd: dict) -> dict:
    return {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}


def commands(args) -> dict[str, list[str]]:
    data = str(args.data or Path(args.runs) / "data")
    return {
        "prepare": HOITOOL + ["prepare-data", "--two-hands", str(args.pairs), "--seed", "0", "--out", data, "-j", str(args.workers)],
        "twohands": HOITOOL + ["train", "twohands", "--data", data, "--out", str(Path(args.runs) / "twohands"),
                               "--steps", str(args.steps), "--batch-size", "256", "--device", args.device],
        "features": HOITOOL + ["train", "twohand-features", "--data", data, "--out", str(Path(args.runs) / "features"),
                               "--steps", str(args.feature_steps), "--batch-size", "32", "--device", args.device],
    }


def install(args, cmds: dict) -> None:
    out = ROOT / "assets" / "models"
    for name, run_dir in (("twohands.pt", "twohands"), ("twohands_features.pt", "features")):
        d = torch.load(Path(args.runs) / run_dir / "model.pt", map_location="cpu", weights_only=False)
        d["state_dict"] = half(d["state_dict"])
        d["data"] = "synthetic two-hand corpus (prepare-data --two-hands, seed 0)"
        torch.save(d, out / name)
        log(f"installed {out / name} (step {d['step']})")
    record = {"date": datetime.date.today().isoformat(), "commands": {k: " ".join(["hoitool"] + v[3:]) for k, v in cmds.items()},
              "pairs": args.pairs, "steps": args.steps, "feature_steps": args.feature_steps}
    (out / "training_twohands.json").write_text(json.dumps(record, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="runs/twohands-defaults")
    ap.add_argument("--data", default=None, help="A prepared two-hand folder to reuse.")
    ap.add_argument("--pairs", type=int, default=2400)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--feature-steps", type=int, default=1500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--install", action="store_true")
    args = ap.parse_args()
    cmds = commands(args)
    if args.data is None:
        run(cmds["prepare"])
    run(cmds["twohands"])
    run(cmds["features"])
    if args.install:
        install(args, cmds)


if __name__ == "__main__":
    main()
