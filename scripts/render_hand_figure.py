#!/usr/bin/env python
"""Render the README figure of the open hand: several poses, both sides, shape extremes.

Run: `python scripts/render_hand_figure.py [--out assets/docs/open_hand.png]` (needs [render]).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "assets" / "docs" / "open_hand.png")
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args(argv)
    from hoitool.hand import HandModel, HandParams
    from hoitool.hand.mirror import mirror_params
    from hoitool.hand.prior import PosePrior
    from hoitool.render.offscreen import RenderMesh, contact_sheet, render

    right, left = HandModel("right"), HandModel("left")
    prior = PosePrior.from_hand(right)
    cases = []
    q = torch.zeros(1, 15, 3)
    cases.append(("flat (zero pose), palm", q.clone(), torch.zeros(1, 10), (0.15, -1.0, 0.35)))
    cases.append(("flat, back", q.clone(), torch.zeros(1, 10), (0.15, 1.0, 0.35)))
    relaxed = prior.to_anatomical(prior.sample(1, torch.Generator().manual_seed(3), closure=torch.tensor([[0.35]])))
    cases.append(("relaxed", relaxed, torch.zeros(1, 10), (0.3, -1.0, 0.6)))
    fist = prior.to_anatomical(prior.sample(1, torch.Generator().manual_seed(1), closure=torch.tensor([[1.0]])))
    cases.append(("fist", fist, torch.zeros(1, 10), (0.3, -1.0, 0.6)))
    half = prior.to_anatomical(prior.sample(1, torch.Generator().manual_seed(5), closure=torch.tensor([[0.65]])))
    cases.append(("half closed", half, torch.zeros(1, 10), (0.3, -1.0, 0.6)))
    b = torch.zeros(1, 10)
    b[0, 0] = 2.0
    b[0, 6] = 2.0
    cases.append(("beta: size +2, masculinity +2", q.clone(), b, (0.15, -1.0, 0.35)))
    b = torch.zeros(1, 10)
    b[0, 1] = 2.0
    b[0, 2] = -1.0
    cases.append(("beta: long, slender fingers", q.clone(), b, (0.15, -1.0, 0.35)))
    images, labels = [], []
    for name, qq, betas, view in cases:
        p = HandParams.zeros(1)
        p.hand_pose, p.betas = prior.from_anatomical(qq), betas
        with torch.no_grad():
            v = right(p).vertices[0].numpy()
        images.append(render([RenderMesh(v, right.faces.numpy())], direction=view, up=(0.0, 0.0, 1.0), size=args.size))
        labels.append(name)
    p = HandParams.zeros(1)
    p.hand_pose = prior.from_anatomical(relaxed)
    with torch.no_grad():
        v = left(mirror_params(p)).vertices[0].numpy()
    images.append(render([RenderMesh(v, left.faces.numpy())], direction=(-0.3, -1.0, 0.6), up=(0.0, 0.0, 1.0), size=args.size))
    labels.append("left hand (mirrored relaxed pose)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(images, cols=4, labels=labels).save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
