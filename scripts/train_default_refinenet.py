#!/usr/bin/env python
"""Train the default refinement network (Cao et al. 2021, step 4) that ships as
assets/models/refinenet.pt, on hoitool's own synthetic corpus and the open hand.

    python scripts/train_default_refinenet.py --runs RUNS                 # prepare, train, install
    python scripts/train_default_refinenet.py --runs RUNS --no-install    # leave assets/ alone

Stages (each resumable: re-running the same command continues where it stopped):
  1. for each RECORDS:SEED of --corpora (default 800:0,1600:2), `hoitool prepare-data
     --synthetic RECORDS --seed SEED` into RUNS/corpus-seedSEED (skipped when already there);
     the benchmarks hold out `--seed 1`, so seed 1 is refused.
  2. `hoitool train refinenet` on all of them (default sizes and perturbation) into RUNS/refinenet
  3. unless --no-install: model.pt copied to assets/models/refinenet.pt (float32: it is small),
     and assets/models/training_refinenet.json with the commands and settings used.

Smoke test (about a minute on a CPU):
    python scripts/train_default_refinenet.py --runs /tmp/rn-smoke --corpora 16:0 --steps 20 --no-install
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


def corpora(spec: str) -> list[tuple[int, int]]:
    """[(records, seed)] of "RECORDS:SEED,..."."""
    out = [tuple(int(v) for v in part.split(":")) for part in spec.split(",") if part.strip()]
    if any(seed == 1 for _, seed in out):
        raise SystemExit("seed 1 is the benchmarks' held-out corpus: train on other seeds")
    return out


def commands(args) -> dict[str, list[str]]:
    runs = Path(args.runs)
    cmds = {}
    data = []
    for records, seed in corpora(args.corpora):
        folder = str(runs / f"corpus-seed{seed}")
        cmds[f"prepare_seed{seed}"] = HOITOOL + ["prepare-data", "--synthetic", str(records), "--seed", str(seed), "--out", folder,
                                                  "--no-preview"]
        data += ["--data", folder]
    cmds["train"] = HOITOOL + ["train", "refinenet", *data, "--out", str(runs / "refinenet"), "--steps", str(args.steps),
                               "--batch-size", "64", "--lr", "1e-3", "--seed", "0", "--checkpoint-every", "500",
                               "--log-every", "100", "--device", args.device]
    return cmds


def install(args, cmds: dict) -> None:
    out = ROOT / "assets" / "models"
    d = torch.load(Path(args.runs) / "refinenet" / "model.pt", map_location="cpu", weights_only=False)
    # the data paths stay as trained (benchmarks check them against their held-out folder)
    d["data_description"] = " + ".join(f"hoitool prepare-data --synthetic {r} --seed {s}" for r, s in corpora(args.corpora)) + " (the open hand)"
    torch.save(d, out / "refinenet.pt")
    log(f"installed {out / 'refinenet.pt'} (step {d['step']})")
    record = {"date": datetime.date.today().isoformat(),
              "commands": {k: " ".join(["hoitool"] + v[3:]) for k, v in cmds.items()},
              "corpora": args.corpora, "steps": args.steps, "batch_size": 64, "step": d["step"]}
    (out / "training_refinenet.json").write_text(json.dumps(record, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="runs/refinenet-default")
    ap.add_argument("--corpora", default="800:0,1600:2", help="Synthetic corpora to prepare and train on, RECORDS:SEED,...")
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-install", action="store_true", help="Do not copy the model into assets/models/.")
    args = ap.parse_args()
    cmds = commands(args)
    for name, cmd in cmds.items():
        folder = Path(cmd[cmd.index("--out") + 1])
        if name.startswith("prepare") and (folder / "index.jsonl").is_file():
            log(f"{folder} is prepared already")
            continue
        run(cmd)
    if not args.no_install:
        install(args, cmds)


if __name__ == "__main__":
    main()
