#!/usr/bin/env python
"""Benchmark: `hoitool prepare-data --synthetic N` end to end (objects, grasp planning, SDF
grids, hand-centric grids, preview), with the grasp planner's acceptance and quality figures.

Target: 1,000 records in <= 10 minutes on the 2-core reference machine.
Run: `make bench` or `python scripts/bench_prepare.py [--records 1000] [--workers 2] [--out DIR]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, help="keep the prepared data here (default: a temporary folder)")
    args = ap.parse_args(argv)
    from hoitool.data.prepare import PrepareConfig, prepare

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "synthetic"
        last = [time.time()]

        def progress(done, total):
            if time.time() - last[0] > 30 or done == total:
                last[0] = time.time()
                print(f"  {done}/{total} records", flush=True)

        t = time.time()
        res = prepare(PrepareConfig(out=out, synthetic=args.records, workers=args.workers), progress)
        wall = time.time() - t
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        s = res.stats
        print(json.dumps({"records": res.records, "objects": res.objects, "workers": args.workers, "wall_s": round(wall, 1),
                          "s_per_record": round(wall / max(res.records, 1), 3), "disk_mb": round(size / 2**20, 1),
                          "planner": s["planner"], "penetration_mm": s["penetration_mm"],
                          "fingers_in_contact_mean": s["fingers_in_contact_mean"], "opposed_share": s["opposed_share"],
                          "categories": s["categories"]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
