"""Generating two hands interacting, with or without an object (InterHandGen).

    res = generate_twohands(TwoHandsConfig(n=16, out="pairs/"))

Output folder (written to a hidden sibling, renamed when complete):
    000/right_hand.obj, 000/left_hand.obj, 000/scene.glb   per sample (the first `meshes_max`, 100)
    samples.npz         x_a, x_b (N, 64), right_* / left_* hand parameters (reference frame), seed
    contact_sheet.png   the first 16
    config.yaml
Frames: with no object, the right hand's own frame with its middle knuckle at the origin; with
an object, the object mesh's frame (metres, after --scale).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import trimesh

from hoitool.hand.model import HandModel
from hoitool.twohands.params import from_vectors
from hoitool.utils.io import atomic_path, save_npz


@dataclass
class TwoHandsConfig:
    out: Path
    n: int = 16
    seed: int = 0
    steps: int = 42
    guidance: float = 0.0
    """Classifier-free guidance on the second hand's relative pose (0: none; InterHandGen used 0.1,
    which lowered the proximity ratio here: see README)."""
    penetration: float = 400.0
    """Anti-penetration guidance weight (0: none)."""
    proximity: float = 0.3
    """Weight of the pull on hands more than 1.5 cm apart (sphere energy only; 0: none)."""
    penetration_energy: str = "spheres"
    """'spheres' (skeleton spheres' overlap) or 'vertices' (InterHandGen's nearest-vertex test)."""
    object_mesh: Path | None = None
    scale: float = 1.0
    model: Path | None = None
    device: str = "auto"
    batch_size: int = 1000
    meshes_max: int = 100
    """Per-sample mesh folders for the first this many samples (samples.npz holds all)."""
    sheet: bool = True
    mano_dir: str | None = None


@dataclass
class TwoHandsResult:
    out: Path
    n: int
    seconds: float
    sampling_seconds: float
    model: str
    written: list[Path] = field(default_factory=list)
    penetration_cm3: np.ndarray | None = None
    """Intersection volume of the first samples (up to 64), cm^3."""
    distance_cm: np.ndarray | None = None


def load_object(path: Path, scale: float):
    """The object mesh (metres), its object->reference transform and surface points in the reference frame."""
    from hoitool.geometry.mesh import load_mesh
    from hoitool.twohands.prepare import OBJECT_POINTS, _object_frame, check_object_size

    mesh, _ = load_mesh(path, scale)
    check_object_size(mesh, str(path))
    T = _object_frame(mesh)
    pts, _ = trimesh.sample.sample_surface(mesh, OBJECT_POINTS, seed=0)
    return mesh, T, torch.as_tensor(pts @ T[:3, :3].T + T[:3, 3], dtype=torch.float32)


def check_hand(model, right: HandModel) -> None:
    """Refuse a hand model other than the one the two-hand model was trained with (its vectors
    would mean other shapes and joint positions)."""
    from hoitool.errors import InputError
    from hoitool.hand.model import hand_fingerprint

    rec = getattr(model, "hand", None) or {}
    want = rec.get("fingerprint")
    if want and want != hand_fingerprint(right):
        raise InputError(f"{model.source} was trained with {rec.get('source')}, but the hand found now is {right.source}: "
                         "pass the --mano-dir its data was prepared with")


def generate_twohands(cfg: TwoHandsConfig, progress: Callable[[int, int], None] | None = None,
                      model=None) -> TwoHandsResult:
    from hoitool.data.grasps import staged_folder
    from hoitool.metrics.twohands import pair_metrics
    from hoitool.train.loop import resolve_device
    from hoitool.twohands.checkpoint import load_twohand_model
    from hoitool.twohands.guidance import PenetrationGuide
    from hoitool.twohands.sample import sample_vectors
    from hoitool.twohands.scene import render_sheet, scene
    from hoitool.utils.config import save_config

    t0 = time.time()
    dev = resolve_device(cfg.device)
    model = model or load_twohand_model(cfg.model, dev)
    obj_mesh = T = pts = None
    if cfg.object_mesh is not None:
        if not model.has_object:
            from hoitool.errors import InputError

            raise InputError(f"the model {model.source} was trained without objects: pass --model trained on data with bimanual grasps")
        obj_mesh, T, pts = load_object(Path(cfg.object_mesh), cfg.scale)
    hands = {s: HandModel(s, cfg.mano_dir).to(dev) for s in ("right", "left")}
    check_hand(model, hands["right"])
    guide = PenetrationGuide(hands["right"], hands["left"], energy=cfg.penetration_energy,
                             proximity=cfg.proximity if cfg.penetration_energy == "spheres" else 0.0).to(dev) if cfg.penetration > 0 else None
    ts = time.time()
    xa, xb = sample_vectors(model, cfg.n, cfg.seed, cfg.steps, cfg.guidance, cfg.penetration,
                            None if pts is None else pts.to(dev), guide, cfg.batch_size, progress=progress)
    sampling = time.time() - ts
    with torch.no_grad():
        right, left = from_vectors(hands["right"], hands["left"], xa, xb)
        if T is not None:  # back from the box-centred reference frame to the mesh's own frame
            from hoitool.twohands.params import transform_params

            oTr = torch.as_tensor(np.linalg.inv(T), dtype=torch.float32, device=dev)
            right = transform_params(hands["right"], right, oTr)
            left = transform_params(hands["left"], left, oTr)
        k = min(cfg.n, cfg.meshes_max)
        vr = hands["right"](right[:k]).vertices.cpu().numpy()
        vl = hands["left"](left[:k]).vertices.cpu().numpy()
    fr, fl = hands["right"].faces.cpu().numpy(), hands["left"].faces.cpu().numpy()
    m = min(k, 64)
    q = pair_metrics(vr[:m], fr, vl[:m], fl)
    out = Path(cfg.out)
    written: list[Path] = []
    with staged_folder(out) as tmp:
        for i in range(k):
            d = tmp / (f"{i:03d}" if k <= 1000 else f"{i:05d}")
            d.mkdir()
            for name, v, f in (("right_hand.obj", vr[i], fr), ("left_hand.obj", vl[i], fl)):
                with atomic_path(d / name) as p:
                    trimesh.Trimesh(v, f, process=False).export(p, file_type="obj")
            with atomic_path(d / "scene.glb") as p:
                scene(vr[i], fr, vl[i], fl, obj_mesh).export(p, file_type="glb")
        if obj_mesh is not None:
            with atomic_path(tmp / "object.obj") as p:
                obj_mesh.export(p, file_type="obj")
        if cfg.sheet and k:
            try:
                s = min(k, 16)
                render_sheet(vr[:s], fr, vl[:s], fl, [obj_mesh] * s, [f"{i:03d}" for i in range(s)], tmp / "contact_sheet.png")
            except Exception as e:  # noqa: BLE001 - rendering is optional; the meshes are the result
                import logging

                logging.getLogger(__name__).warning("contact sheet not rendered (%s: %s); see `hoitool doctor`", type(e).__name__, e)
        save_config({**{k2: (str(v) if isinstance(v, Path) else v) for k2, v in cfg.__dict__.items()}, "model_file": model.source},
                    tmp / "config.yaml")
        arrays = {"xa": xa.cpu().numpy(), "xb": xb.cpu().numpy(), "seed": np.int64(cfg.seed), "index": np.arange(cfg.n),
                  "has_object": np.bool_(obj_mesh is not None), "model": np.array(model.source)}
        arrays.update({f"right_{n}": v for n, v in right.numpy().items()})
        arrays.update({f"left_{n}": v for n, v in left.numpy().items()})
        if T is not None:
            arrays.update(rTo=T, object_mesh=np.array(str(Path(cfg.object_mesh).resolve())), object_scale=np.float64(cfg.scale))
        save_npz(tmp / "samples.npz", **arrays)
        written = sorted(tmp.iterdir())
    written = [out / p.name for p in written]
    return TwoHandsResult(out, cfg.n, time.time() - t0, sampling, model.source, written,
                          q["penetration_volume_cm3"], q["distance_cm"])
