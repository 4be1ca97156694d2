"""Stage 1 speed: frames per second of `hoitool render` (all maps, labels, GIF, files written).

    python scripts/bench_render.py --source PREPARED --trajectories 24 [--size 256] [--json out.json]

Renders the first N grasps of a prepared (or grasp / samples) folder into fresh folders, once
with one worker and once with two, and reports frames/s including process start-up, encoding
and writing. Run it alone: two heavy jobs on two cores slow each other.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, required=True)
    ap.add_argument("--trajectories", type=int, default=24)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from hoitool.pipelines.render import RenderOptions, collect_jobs, render_dataset

    results = {}
    for w in [int(x) for x in args.workers.split(",")]:
        opts = RenderOptions(frames=args.frames, size=args.size, workers=w, limit=args.trajectories, sheet=0)
        jobs, kind = collect_jobs(args.source, opts)
        tmp = Path(tempfile.mkdtemp(prefix="bench_render_"))
        try:
            t0 = time.perf_counter()
            res = render_dataset(jobs, tmp / "out", opts, str(args.source))
            dt = time.perf_counter() - t0
            size_mb = sum(p.stat().st_size for p in (tmp / "out").rglob("*") if p.is_file()) / 1e6
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        results[f"workers_{w}"] = {"frames": res.frames, "seconds": round(dt, 2), "frames_per_second": round(res.frames / dt, 2),
                                   "megabytes_per_frame": round(size_mb / res.frames, 3)}
        print(f"{kind} source, {w} worker(s): {res.frames} frames at {args.size}^2 in {dt:.1f} s = {res.frames / dt:.1f} frames/s "
              f"({size_mb / res.frames:.2f} MB per frame)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"size": args.size, "frames_per_trajectory": args.frames, **results}, indent=2))


if __name__ == "__main__":
    main()
