#!/usr/bin/env python
"""The README's figure of prior samples: one row per category, hand and decoded object.

    python scripts/render_prior_samples.py --categories mug,bottle,scissors,teapot --n 4 --out assets/docs/prior_samples.png

Uses the shipped prior (or --model) with `hoitool sample`'s defaults (DDIM 100 steps, guidance 4).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--categories", default="mug,bottle,scissors,teapot")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--out", type=Path, default=ROOT / "assets" / "docs" / "prior_samples.png")
    args = ap.parse_args(argv)

    from hoitool.prior.checkpoint import load_prior
    from hoitool.prior.sample import sample_interactions
    from hoitool.render.offscreen import OBJECT_COLOR, RenderMesh, contact_sheet, render

    prior = load_prior(args.model)
    images, labels = [], []
    for c in args.categories.split(","):
        res = sample_interactions(prior, c, args.n, steps=args.steps, seed=args.seed)
        for i in range(args.n):
            meshes = [RenderMesh(res.hand_vertices[i], res.hand_faces)]
            if res.objects[i] is not None:
                meshes.append(RenderMesh(res.objects[i].vertices, res.objects[i].faces, OBJECT_COLOR))
            images.append(render(meshes, size=args.size))
            labels.append(f"{c} {i}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(images, cols=args.n, labels=labels).save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
