"""Write the demo object meshes in assets/meshes/ (procedural, metres, made by the project itself).

    python scripts/make_demo_meshes.py            # rewrites assets/meshes/*.obj deterministically
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hoitool.data.synthetic.objects import make_object

DEMOS = {"mug": 11, "bottle": 12, "box": 13, "hammer": 14, "bowl": 15}


def main() -> None:
    out = Path(__file__).resolve().parents[1] / "assets" / "meshes"
    out.mkdir(parents=True, exist_ok=True)
    for name, seed in DEMOS.items():
        m = make_object(name, np.random.default_rng(seed))
        m.vertices = np.round(m.vertices, 5)
        m.export(out / f"{name}.obj", file_type="obj", digits=5, include_normals=False)
        print(f"{out / (name + '.obj')}: {len(m.faces)} faces, {m.extents.round(3)} m, watertight {m.is_watertight}")


if __name__ == "__main__":
    main()
