#!/usr/bin/env python
"""Benchmark: peak memory (RSS) of `train ghop` against the number of prepared records.

A small synthetic prepared folder (its objects and shards) is indexed N times over (records
repeated under new ids), so a folder of 1k or 10k records costs no planning. For each N, a
fresh process builds the prior's task on it (encoding every record with the shipped VQ-VAE
into the latent cache), trains a few steps of a small UNet, and prints its peak RSS and its
peak anonymous memory (RssAnon, sampled every 20 ms: heap and tensors, without the pages of
memory-mapped files, which the kernel can drop and read again); a second process then starts
from the cache the first one wrote (the resumed-run case).

Run: `python scripts/bench_train_memory.py [--records 1000 10000] [--copies 1]`. To measure
another checkout (e.g. the previous release), pass `--code ROOT`: its `hoitool` is imported.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, threading, time
from pathlib import Path
import torch

peak = {"anon": 0}
def sample():  # anonymous memory (heap, tensors): what a memory-mapped file does not count in
    while True:
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                peak["anon"] = max(peak["anon"], int(line.split()[1]))
        time.sleep(0.02)
threading.Thread(target=sample, daemon=True).start()
torch.set_num_threads(2)
from hoitool.models.unet3d import UNetConfig
from hoitool.train.loop import TrainConfig, train
from hoitool.train.tasks import GHOPTask, PriorOptions

data, run, copies = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
cache = run / "latents"
if not hasattr(__import__("hoitool.train.tasks", fromlist=["x"]), "CACHE_VERSION"):
    cache = run / "latents.pt"  # the previous release's single-file cache
t0 = time.time()
task = GHOPTask(data, None, UNetConfig(channels=8), PriorOptions(copies=copies), cache=cache)
t1 = time.time()
train(task, TrainConfig(out=str(run), steps=3, batch_size=4, device="cpu",
                        checkpoint_every=1000, log_every=1000))
time.sleep(0.1)
import hoitool
print(json.dumps({"code": str(Path(hoitool.__file__).parents[1]), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak_anon_mb": peak["anon"] / 1024,
                  "encode_s": t1 - t0, "train_s": time.time() - t1}))
"""


def replicate(base: Path, out: Path, n: int) -> Path:
    """A prepared folder of n records: base's index repeated under new ids (same shards, objects)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in ("objects", "shards"):
        os.symlink(base.resolve() / name, out / name)
    shutil.copy(base / "config.yaml", out / "config.yaml")
    index = [json.loads(x) for x in (base / "index.jsonl").read_text().splitlines()]
    with open(out / "index.jsonl", "w") as f:
        for i in range(n):
            e = dict(index[i % len(index)])
            e["id"] = f"{e['id']}-x{i:06d}"
            f.write(json.dumps(e) + "\n")
    return out


def child(code: Path, data: Path, run: Path, copies: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "2"}
    # run outside any checkout: `python -c` puts the working folder ahead of PYTHONPATH
    r = subprocess.run([sys.executable, "-c", CHILD, str(data), str(run), str(copies)], capture_output=True, text=True, env=env,
                       cwd=run.parent)
    if r.returncode != 0:
        raise SystemExit(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--copies", type=int, default=1, help="encoded copies per record (the CLI's default is 4)")
    ap.add_argument("--code", type=Path, default=ROOT, help="checkout whose hoitool is measured")
    ap.add_argument("--base", type=Path, help="a prepared folder to replicate (default: 32 synthetic records, made here)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="hoitool-mem-"))
    try:
        base = args.base
        if base is None:
            base = work / "base"
            subprocess.run([sys.executable, "-m", "hoitool", "prepare-data", "--synthetic", "32", "--out", str(base),
                            "--no-preview", "--workers", "1"], check=True, capture_output=True,
                           env={**os.environ, "PYTHONPATH": str(args.code)}, cwd=work)
        rows = []
        print(f"{'records':>8s} {'copies':>6s} {'first run: peak RSS / anon MB':>30s} {'encode s':>9s} {'cached run: peak RSS / anon MB':>31s}")
        for n in args.records:
            data = replicate(base, work / f"data{n}", n)
            run = work / f"run{n}"
            first = child(args.code, data, run, args.copies)
            shutil.rmtree(run / "checkpoints", ignore_errors=True)  # the cache stays: a second run maps it
            second = child(args.code, data, run, args.copies)
            assert Path(first["code"]).resolve() == args.code.resolve(), f"measured {first['code']}, not {args.code}"
            rows.append({"records": n, "copies": args.copies, "first": first, "cached": second})
            print(f"{n:8d} {args.copies:6d} {first['peak_rss_mb']:22.0f} / {first['peak_anon_mb']:5.0f} {first['encode_s']:9.1f} "
                  f"{second['peak_rss_mb']:23.0f} / {second['peak_anon_mb']:5.0f}", flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
