"""Shared pieces of the dataset-converter tests: true grasps to build miniature datasets from,
random rigid poses, and the round trip (converted record -> hand mesh == the fixture's hand).

The grasps are the `tiny_prepared` synthetic corpus's (hand parameters in each object's frame,
right hands; `left_grasp` mirrors one). A fixture writes them into a dataset's documented
layout in some other frame (a camera, the world), with that dataset's pose convention (PCA
coefficients, mean-relative poses, ...) computed from the stand-in MANO folder of
`fake_mano.make_fake_mano_dir`, whose mean pose and PCA basis are non-trivial.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh

from hoitool.data.records import read_manifest
from hoitool.hand.mano_io import read_model_file
from hoitool.hand.mirror import mirror_params
from hoitool.hand.model import HandModel, HandParams, transform_params


@dataclass
class Grasp:
    mesh: trimesh.Trimesh
    """The object, metres, in its own frame."""
    params: HandParams
    """One hand (batch of one) in the object's frame."""
    category: str


def grasps(tiny_prepared: Path) -> list[Grasp]:
    """The tiny corpus's grasps (right hands), each with its object mesh."""
    out = []
    for r in read_manifest(tiny_prepared / "manifest.jsonl"):
        mesh = trimesh.load(r.object_mesh, force="mesh", process=False)
        out.append(Grasp(mesh, r.hand_params(), r.category))
    return out


def left_grasp(g: Grasp) -> Grasp:
    """The mirror image of a right-hand grasp: a left hand on the mirrored object."""
    m = g.mesh.copy()
    m.vertices = m.vertices * np.array([-1.0, 1.0, 1.0])
    m.invert()  # mirroring flips the winding
    return Grasp(m, mirror_params(g.params), g.category)


def random_pose(rng: np.random.Generator, distance: float = 0.5) -> np.ndarray:
    """(4, 4) a random rotation and a translation of about `distance` metres."""
    from scipy.spatial.transform import Rotation

    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=int(rng.integers(1 << 31))).as_matrix()
    T[:3, 3] = rng.normal(0, distance / 2, 3) + np.array([0, 0, distance])
    return T


def move(hand: HandModel, params: HandParams, T: np.ndarray) -> HandParams:
    """The hand moved by T (what a dataset stores when its frame is not the object's)."""
    with torch.no_grad():
        return transform_params(hand, params, torch.as_tensor(T, dtype=torch.float32))


def vertices(hand: HandModel, params: HandParams) -> np.ndarray:
    with torch.no_grad():
        return hand(params).vertices[0].double().numpy()


def pca_and_mean(mano_dir: Path, side: str) -> tuple[np.ndarray, np.ndarray]:
    """(components (45, 45) rows, mean (45,)) of the stand-in MANO file."""
    a = read_model_file(Path(mano_dir) / f"MANO_{side.upper()}.pkl")
    return a["hands_components"].astype(np.float64), a["hands_mean"].astype(np.float64).reshape(45)


def to_pca(mano_dir: Path, side: str, hand_pose: torch.Tensor, flat_mean: bool) -> np.ndarray:
    """45 PCA coefficients of a flat-mean articulation, for a MANO layer with use_pca (and
    flat_hand_mean as given): what DexYCB-style annotations store."""
    comps, mean = pca_and_mean(mano_dir, side)
    a = hand_pose.double().numpy().reshape(45) - (0 if flat_mean else mean)
    return np.linalg.solve(comps.T, a)


def assert_round_trip(out: Path, expected: dict[str, np.ndarray], mano_dir: Path, atol: float = 2e-4) -> None:
    """Every expected record id was converted and its hand mesh (in the object frame, posed by
    the MANO folder's model) equals the fixture's, within `atol` metres."""
    recs = {r.id: r for r in read_manifest(out / "dataset" / "records.jsonl")}
    assert set(expected) <= set(recs), f"missing records: {sorted(set(expected) - set(recs))[:5]}"
    hands = {}
    for rid, want in expected.items():
        r = recs[rid]
        hand = hands.setdefault(r.side, HandModel(r.side, mano_dir))
        got = vertices(hand, r.hand_params())
        err = np.abs(got - want).max()
        assert err < atol, f"{rid}: hand mesh off by {err * 1000:.3f} mm"


def assert_twohand_round_trip(out: Path, expected: dict, mano_dir: Path, atol: float = 2e-4) -> None:
    """Every expected two-hand record was converted and both of its hand meshes equal the
    fixture's (expected: id -> {"right": (V, 3), "left": (V, 3)}), within `atol` metres."""
    from hoitool.twohands.records import read_twohand_manifest

    recs = {r.id: r for r in read_twohand_manifest(out / "dataset" / "records.jsonl")}
    assert set(expected) <= set(recs), f"missing records: {sorted(set(expected) - set(recs))[:5]}"
    hands = {s: HandModel(s, mano_dir) for s in ("right", "left")}
    for rid, want in expected.items():
        for s in ("right", "left"):
            err = np.abs(vertices(hands[s], recs[rid].hand_params(s)) - want[s]).max()
            assert err < atol, f"{rid} ({s}): hand mesh off by {err * 1000:.3f} mm"


def write_obj(path: Path, mesh: trimesh.Trimesh, scale: float = 1.0) -> Path:
    """Save a mesh (coordinates multiplied by `scale`, e.g. 1000 for millimetres)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    m = mesh.copy()
    m.vertices = m.vertices * scale
    m.export(path)
    return path


def dump_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path
