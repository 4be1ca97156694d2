"""`hoitool evaluate twohands`: plausibility, diversity and distribution metrics of generated pairs.

Per sample (the first `physical_max`): intersection volume of the two closed hand meshes (cm^3),
the deepest vertex inside the other hand (cm), the distance between the hands; proximity = the
hands within 2 cm (InterHandGen's proximity ratio), contact = within 5 mm. With an object: each
hand's intersection volume with the object and whether either hand is within 5 mm of it.
In the feature space of the shipped feature network (hoitool.twohands.features): diversity (mean
L2 over 200 random pairs) and, against a reference prepared folder, FHID, KHID (cubic polynomial
kernel, x1000 as reported), precision and recall (k = 5, on up to 1000 of each).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from hoitool.errors import InputError
from hoitool.hand.model import HandModel, HandParams

KHID_SCALE = 1000.0


@dataclass
class TwoHandSamples:
    xa: torch.Tensor
    xb: torch.Tensor
    right: HandParams
    left: HandParams
    object_mesh: str | None = None
    object_scale: float = 1.0


def read_samples(folder: str | Path) -> TwoHandSamples:
    folder = Path(folder)
    p = folder / "samples.npz" if folder.is_dir() else folder
    if not p.is_file():
        raise InputError(f"{folder} has no samples.npz: pass a folder written by hoitool twohands")
    try:
        z = dict(np.load(p, allow_pickle=False))
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{p} is unreadable ({type(e).__name__}): pass a folder written by hoitool twohands") from None
    need = ["xa", "xb"] + [f"{s}_{k}" for s in ("right", "left") for k in HandParams.TENSORS]
    missing = [k for k in need if k not in z]
    if missing:
        raise InputError(f"{p} is not a two-hand sample file (missing {', '.join(missing[:3])}): pass a folder written by hoitool twohands")
    xa, xb = torch.as_tensor(z["xa"]), torch.as_tensor(z["xb"])
    if not (torch.isfinite(xa).all() and torch.isfinite(xb).all()):
        raise InputError(f"{p} holds NaN or infinite parameters: sample again")
    hand = lambda s: HandParams.from_numpy({k: z[f"{s}_{k}"] for k in HandParams.TENSORS}, side=s)  # noqa: E731
    mesh = str(z["object_mesh"]) if "object_mesh" in z else None
    return TwoHandSamples(xa, xb, hand("right"), hand("left"), mesh, float(z.get("object_scale", 1.0)))


def _summary(values: np.ndarray) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "median": float(np.median(v)), "max": float(v.max())} if len(v) else {}


def physical_metrics(hands: dict[str, HandModel], right: HandParams, left: HandParams, object_mesh=None,
                     progress: Callable[[int, int], None] | None = None, chunk: int = 64) -> dict[str, np.ndarray]:
    from hoitool.metrics.twohands import intersection_volume_cm3, mesh_distance_m, pair_metrics

    fr, fl = hands["right"].faces.numpy(), hands["left"].faces.numpy()
    out: dict[str, list] = {}
    n = right.batch_size
    for s in range(0, n, chunk):
        with torch.no_grad():
            vr = hands["right"](right[s:s + chunk]).vertices.numpy()
            vl = hands["left"](left[s:s + chunk]).vertices.numpy()
        m = pair_metrics(vr, fr, vl, fl)
        for k, v in m.items():
            out.setdefault(k, []).append(v)
        if object_mesh is not None:
            ov, of = np.asarray(object_mesh.vertices), np.asarray(object_mesh.faces)
            for i in range(len(vr)):
                vols = [intersection_volume_cm3(v[i], f, ov, of) for v, f in ((vr, fr), (vl, fl))]
                dists = [mesh_distance_m(v[i], f, ov, of) for v, f in ((vr, fr), (vl, fl))]
                out.setdefault("object_penetration_cm3", []).append([sum(vols)])
                out.setdefault("object_contact", []).append([min(dists) < 0.005])
                out.setdefault("object_both_hands_contact", []).append([max(dists) < 0.005])
        if progress:
            progress(min(n, s + chunk), n)
    return {k: np.concatenate([np.asarray(x).reshape(-1) for x in v]) for k, v in out.items()}


def evaluate_twohands(folder: str | Path, reference: str | Path | None = None, feature_model: str | Path | None = None,
                      physical_max: int = 1000, distribution_max: int = 10000, mano_dir: str | None = None, seed: int = 0,
                      progress: Callable[[int, int], None] | None = None) -> dict:
    from hoitool.twohands.checkpoint import load_feature_model

    smp = read_samples(folder)
    hands = {s: HandModel(s, mano_dir) for s in ("right", "left")}
    obj = None
    if smp.object_mesh:
        from hoitool.geometry.mesh import load_mesh

        # the copy written beside the samples (object frame, metres) first, then the original
        copy = Path(folder) / "object.obj" if Path(folder).is_dir() else None
        if copy is not None and copy.is_file():
            obj, _ = load_mesh(copy, 1.0)
        elif Path(smp.object_mesh).is_file():
            obj, _ = load_mesh(smp.object_mesh, smp.object_scale)
        else:
            raise InputError(f"the samples' object mesh {smp.object_mesh} is missing (and no object.obj beside them): the hand-object metrics need it")
    # the feature network and the reference are checked before the long penetration pass
    fm = load_feature_model(feature_model)
    ref = None
    res: dict = {"samples": smp.right.batch_size}
    if reference is not None:
        from hoitool.twohands.prepare import read_prepared

        arr = read_prepared(reference)
        # like with like: samples without an object against the reference's pairs without one, and so on
        keep = (arr["object"] >= 0) if smp.object_mesh else (arr["object"] < 0)
        if not keep.any():
            keep = np.ones(len(arr["object"]), dtype=bool)
        ref = (torch.as_tensor(arr["xa"][keep]), torch.as_tensor(arr["xb"][keep]))
        res["reference"] = str(reference)
        res["reference_subset"] = ("pairs with an object" if smp.object_mesh else "pairs without an object") if not keep.all() else "all pairs"
    n = smp.right.batch_size
    k = min(n, physical_max)
    phys = physical_metrics(hands, smp.right[:k], smp.left[:k], obj, progress)
    res.update({"physical_on": k, **physical_summary(phys), "feature_model": fm.source})
    m = min(n, distribution_max)
    res.update(distribution_metrics(fm, hands, smp.xa[:m], smp.xb[:m], ref, distribution_max, seed))
    return res


def distribution_metrics(fm, hands: dict[str, HandModel], xa: torch.Tensor, xb: torch.Tensor,
                         reference: tuple[torch.Tensor, torch.Tensor] | None = None, limit: int = 10000, seed: int = 0) -> dict:
    """Diversity of samples (x_a, x_b) in the feature space; with reference vectors: FHID, KHID
    (x1000), precision and recall (k = 5, on up to 1000 of each) and the reference's own diversity."""
    from hoitool.metrics.generative import diversity, frechet_distance, kernel_distance, precision_recall

    feats = fm.features(hands, xa[:limit], xb[:limit]).double().numpy()
    out = {}
    if len(feats) >= 2:
        out["diversity"] = diversity(feats, pairs=200, seed=seed)
    if reference is None:
        return out
    rng = np.random.default_rng(seed)
    ra, rb = reference
    sel = np.sort(rng.permutation(len(ra))[:limit])
    ref = fm.features(hands, ra[sel], rb[sel]).double().numpy()
    if len(feats) < 6 or len(ref) < 6:
        raise InputError(f"distribution metrics need at least 6 samples on each side (have {len(feats)} and {len(ref)}): sample more")
    out["reference_records"] = int(len(ref))
    out["fhid"] = frechet_distance(ref, feats)
    kid, kid_std = kernel_distance(ref, feats, seed=seed)
    out["khid_x1000"] = KHID_SCALE * kid
    out["khid_std_x1000"] = KHID_SCALE * kid_std
    a = rng.permutation(len(ref))[:1000]
    b = rng.permutation(len(feats))[:1000]
    out["precision"], out["recall"] = precision_recall(ref[a], feats[b], k=5)
    out["reference_diversity"] = diversity(ref, pairs=200, seed=seed)
    return out


def physical_summary(phys: dict[str, np.ndarray]) -> dict:
    res = {"penetration_volume_cm3": _summary(phys["penetration_volume_cm3"]),
           "penetration_depth_cm": _summary(phys["penetration_depth_cm"]),
           "distance_cm": _summary(phys["distance_cm"]),
           "proximity_ratio": float(phys["proximity"].mean()), "contact_ratio": float(phys["contact"].mean())}
    if "object_penetration_cm3" in phys:
        res["object_penetration_cm3"] = _summary(phys["object_penetration_cm3"])
        res["object_contact_ratio"] = float(phys["object_contact"].mean())
        res["object_both_hands_contact_ratio"] = float(phys["object_both_hands_contact"].mean())
    return res
