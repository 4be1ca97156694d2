"""Evaluating a reconstruction against its truth: a `hoitool reconstruct` folder and a truth
folder read into `ReconScene`s, matched frame by frame, and scored by `evaluate_scenes`.

Truth layout (metres, OpenCV camera frame of the image or frames):
- a photograph: `object.obj` (the true object in the camera frame) and `hand.json`, the hand as
  MANO-convention parameters {side, global_orient[3], hand_pose[45], betas[10], transl[3]} (flat
  axis-angle, flat hand at zero) or as keypoints {side, keypoints_3d[21][3]} (OpenPose order);
- a clip: `object.obj` (the object in its own frame) and `truth.jsonl`, one line per annotated
  frame {index | stem, hand: {as hand.json}, cTo[4][4]} (cTo: object frame -> camera).
TRUTH may also name the hand.json or truth.jsonl file itself, with the object mesh beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import trimesh

from hoitool.errors import InputError
from hoitool.geometry.mesh import load_mesh
from hoitool.hand.model import HandModel, HandParams
from hoitool.metrics.recon_scene import METRICS, EvalConfig, ReconScene, evaluate_scenes

#: Object mesh names looked for in a truth folder, in this order.
OBJECT_NAMES = tuple(f"object.{e}" for e in ("obj", "ply", "stl", "off", "glb"))
HAND_FIELDS = {"global_orient": 3, "hand_pose": 45, "betas": 10, "transl": 3}


# -- scenes from hoitool's own results (also used by the benchmarks) ---------------------------
def hand_frames(hand: HandModel, params: HandParams) -> np.ndarray:
    """(B, 4, 4) cTh of hand parameters: the hand model's own frame -> the parameters' frame."""
    with torch.no_grad():
        return hand.frame_from_hand(params.to(hand.device)).cpu().double().numpy()


def scene_from_hand(hand: HandModel, params: HandParams, object_mesh: trimesh.Trimesh, cTo: np.ndarray,
                    hand_scale=None, meshes: bool = True, frames: list | None = None) -> ReconScene:
    """A scene whose hand is the hand model under params (B frames, camera frame), scaled by
    hand_scale (B,) about the camera centre (default 1); with `meshes`, the hand's surfaces too."""
    B = params.batch_size
    c = np.ones(B) if hand_scale is None else np.asarray(hand_scale, dtype=np.float64).reshape(B)
    with torch.no_grad():
        out = hand(params.to(hand.device))
    kp = out.keypoints.cpu().double().numpy() * c[:, None, None]
    hm = None
    if meshes:
        faces = hand.faces.cpu().numpy()
        v = out.vertices.cpu().double().numpy() * c[:, None, None]
        hm = [trimesh.Trimesh(v[b], faces, process=False) for b in range(B)]
    return ReconScene(object_mesh, cTo, kp, hand_frames(hand, params), c, hm, frames)


def _rigid(T: np.ndarray) -> np.ndarray:
    """(4, 4) -> the same with the uniform scale of its linear part divided out."""
    T = np.array(T, dtype=np.float64)
    T[:3, :3] /= np.cbrt(np.linalg.det(T[:3, :3]))
    return T


def scene_from_image_state(hand: HandModel, state, mesh: trimesh.Trimesh, in_camera: bool = True) -> ReconScene:
    """The scene of one single-image result (`image_recon.SceneState` of the template `mesh`):
    the object in the camera frame (in_camera, as `hoitool reconstruct` writes object.obj) or
    in the template's frame scaled by the state's scale, posed by its rotation and translation."""
    cTo = np.eye(4)
    cTo[:3, :3], cTo[:3, 3] = state.s * state.R, state.t
    om = mesh.copy()
    if in_camera:
        om.apply_transform(cTo)
        cTo = np.eye(4)
    else:
        om.apply_scale(state.s)
        cTo = _rigid(cTo)
    return scene_from_hand(hand, state.hand, om, cTo[None], [state.hand_scale])


def scene_from_clip_stage(hand: HandModel, stage, frames: list[int]) -> ReconScene:
    """The scene of one stage of a clip result (`video_recon.StageResult`) on the frames `frames`."""
    params = HandParams.cat([stage.frames[t].hand for t in frames])
    cTo = np.stack([stage.frames[t].cTo for t in frames])
    return scene_from_hand(hand, params, stage.mesh, cTo, meshes=False, frames=frames)


# -- reading files -------------------------------------------------------------------------------
def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read {what} {path}: {type(e).__name__}: {e}") from None


def _array(value, shape: tuple, where: str) -> np.ndarray:
    """`value` as a finite float array of `shape`, or an InputError naming `where`."""
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{where}: not numbers") from None
    if a.size != int(np.prod(shape)):
        raise InputError(f"{where}: expected {' x '.join(map(str, shape))} numbers, got {a.size}")
    if not np.isfinite(a).all():
        raise InputError(f"{where}: NaN or infinite values")
    return a.reshape(shape)


def _side(d: dict, where: str, default: str) -> str:
    s = d.get("side", default)
    if s not in ("right", "left"):
        raise InputError(f"{where}: side must be right or left, got {s!r}")
    return s


def _hand_params(d: dict, where: str, side: str) -> HandParams:
    a = {k: _array(d[k], (n,), f"{where}: {k}") for k, n in HAND_FIELDS.items()}
    return HandParams.from_numpy(a, side)


def _rigid_pose(value, where: str) -> np.ndarray:
    T = _array(value, (4, 4), where)
    R = T[:3, :3]
    if not (np.allclose(R @ R.T, np.eye(3), atol=1e-3) and np.linalg.det(R) > 0 and np.allclose(T[3], [0, 0, 0, 1])):
        raise InputError(f"{where}: not a rigid transform (a rotation and a translation in metres, last row 0 0 0 1)")
    return T


def _load(path: Path, what: str, scale: float = 1.0) -> trimesh.Trimesh:
    if not path.is_file():
        raise InputError(f"{what} {path} is missing")
    return load_mesh(path, scale=scale)[0]


def _cTh_from_written(go: np.ndarray, transl: np.ndarray, wrist: np.ndarray) -> np.ndarray:
    """(4, 4) cTh from written hand parameters and the posed wrist keypoint (scale undone): the
    hand model turns the hand about its rest wrist joint J0, so the posed wrist is J0 + transl
    and the frame's translation is wrist - R (wrist - transl). Needs no hand model."""
    from scipy.spatial.transform import Rotation

    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(go).as_matrix()
    T[:3, 3] = wrist - T[:3, :3] @ (wrist - transl)
    return T


@dataclass
class Prediction:
    kind: str
    """"image" or "clip"."""
    scene: ReconScene
    side: str
    index: list[int] = field(default_factory=list)
    """Per frame, the frame number written by reconstruct (clips)."""
    stem: list[str] = field(default_factory=list)


def _pred_hand(h, where: str) -> tuple[dict, str, np.ndarray]:
    if not isinstance(h, dict):
        raise InputError(f"{where}: no hand entry")
    side = _side(h, where, "right")
    missing = [k for k in (*HAND_FIELDS, "keypoints_3d") if k not in h]
    if missing:
        raise InputError(f"{where}: no {', '.join(missing)}")
    p = {k: _array(h[k], (n,), f"{where}: {k}") for k, n in HAND_FIELDS.items()}
    return p, side, _array(h["keypoints_3d"], (21, 3), f"{where}: keypoints_3d")


def read_prediction(folder: Path, hand_for) -> Prediction:
    """A folder written by `hoitool reconstruct` (a photograph's or a clip's, or one of their
    stages/ folders). hand_for(side) gives the hand model that poses clip hands when their meshes
    are not in the folder."""
    folder = Path(folder)
    not_recon = "not a folder written by hoitool reconstruct"
    if not folder.is_dir():
        raise InputError(f"{folder} is {'missing' if not folder.exists() else 'a file'}: PRED is a folder written by hoitool reconstruct")
    pj = folder / "params.json"
    if not pj.is_file():
        raise InputError(f"{folder} has no params.json: {not_recon}")
    d = _read_json(pj, "prediction")
    where = str(pj)
    if not isinstance(d, dict):
        raise InputError(f"{where}: {not_recon}")
    if "frames" in d:
        return _read_clip(folder, d, where, hand_for)
    if "hand" in d and "object" in d:
        p, side, kp = _pred_hand(d["hand"], f"{where}: hand")
        c = _array(d["hand"].get("scale", 1.0), (1,), f"{where}: hand.scale")
        if c[0] <= 0:
            raise InputError(f"{where}: hand.scale must be positive, got {c[0]}")
        cTh = _cTh_from_written(p["global_orient"], p["transl"], kp[0] / c[0])
        obj = _load(folder / "object.obj", "the predicted object")
        hm = _load(folder / "hand.obj", "the predicted hand")
        return Prediction("image", ReconScene(obj, np.eye(4)[None], kp[None], cTh[None], c, [hm], ["image"]), side)
    if "right" in d and "left" in d:
        raise InputError(f"{folder} is a two-hand reconstruction (no object): evaluate reconstruction needs a hand and an object")
    raise InputError(f"{where}: neither a photograph's nor a clip's parameters: {not_recon}")


def _read_clip(folder: Path, d: dict, where: str, hand_for) -> Prediction:
    frames = d["frames"]
    if not isinstance(frames, list) or not frames:
        raise InputError(f"{where}: no frames")
    obj = _load(folder / "object.obj", "the predicted object")
    kps, cTh, cTo, index, stem, sides, params = [], [], [], [], [], set(), []
    for i, fr in enumerate(frames):
        w = f"{where}: frames[{i}]"
        if not isinstance(fr, dict) or "cTo" not in fr or not isinstance(fr.get("index"), int):
            raise InputError(f"{w}: needs index (a frame number), hand and cTo")
        p, side, kp = _pred_hand(fr.get("hand"), w + ".hand")
        sides.add(side)
        params.append(p)
        kps.append(kp)
        cTh.append(_cTh_from_written(p["global_orient"], p["transl"], kp[0]))
        cTo.append(_rigid_pose(fr["cTo"], f"{w}: cTo"))
        index.append(fr["index"])
        stem.append(str(fr.get("stem", fr["index"])))
    if len(sides) > 1:
        raise InputError(f"{where}: frames of both sides")
    side = sides.pop()
    if (folder / "meshes").is_dir():
        hm = [_load(folder / "meshes" / f"hand_{s}.obj", "the predicted hand") for s in stem]
    else:  # a stages/ folder: pose the written parameters
        hand = hand_for(side)
        batch = HandParams.from_numpy({k: np.stack([p[k] for p in params]) for k in HAND_FIELDS}, side)
        hm = scene_from_hand(hand, batch, obj, np.stack(cTo)).hand_meshes
    scene = ReconScene(obj, np.stack(cTo), np.stack(kps), np.stack(cTh), None, hm, stem)
    return Prediction("clip", scene, side, index, stem)


@dataclass
class Truth:
    scene: ReconScene
    keys: list
    """Per frame, the frame it annotates: an int (frame number) or a str (frame stem); [None] for a photograph."""
    hand: str
    """"parameters" or "keypoints"."""


def _truth_hand(h, where: str, side_default: str):
    """(params or None, keypoints (21, 3) or None, side) of a truth hand entry."""
    if not isinstance(h, dict):
        raise InputError(f"{where}: the hand must be an object with MANO parameters or keypoints_3d")
    side = _side(h, where, side_default)
    given = [k for k in HAND_FIELDS if k in h]
    if given:
        missing = [k for k in HAND_FIELDS if k not in h]
        if missing:
            raise InputError(f"{where}: MANO parameters without {', '.join(missing)}")
        return _hand_params(h, where, side), None, side
    if "keypoints_3d" in h:
        return None, _array(h["keypoints_3d"], (21, 3), f"{where}: keypoints_3d"), side
    raise InputError(f"{where}: no hand: give global_orient, hand_pose, betas, transl (MANO) or keypoints_3d (21 x 3)")


def _truth_scene(mesh, hands: list, cTo: np.ndarray, side: str, hand_for, labels) -> tuple[ReconScene, str]:
    if all(p is not None for p, _ in hands):
        params = HandParams.cat([p for p, _ in hands])
        return scene_from_hand(hand_for(side), params, mesh, cTo, meshes=False, frames=labels), "parameters"
    if any(p is not None for p, _ in hands):
        raise InputError("the truth gives some frames' hands as parameters and others as keypoints: use one form")
    return ReconScene(mesh, cTo, np.stack([k for _, k in hands]), frames=labels), "keypoints"


def _truth_files(path: Path, name: str) -> tuple[Path, Path]:
    """(annotation file, object mesh) of a truth folder or file."""
    path = Path(path)
    if path.is_dir():
        ann, folder = path / name, path
    elif path.is_file():
        ann, folder = path, path.parent
    else:
        raise InputError(f"the truth {path} does not exist")
    if not ann.is_file():
        raise InputError(f"the truth folder {path} has no {name}")
    mesh = next((folder / n for n in OBJECT_NAMES if (folder / n).is_file()), None)
    if mesh is None:
        raise InputError(f"the truth has no object mesh: put {OBJECT_NAMES[0]} beside {ann.name} in {folder}")
    return ann, mesh


def read_truth(path: Path, pred: Prediction, hand_for, scale: float = 1.0) -> Truth:
    """The truth of a photograph (object.obj + hand.json) or of a clip (object.obj + truth.jsonl)."""
    name = "hand.json" if pred.kind == "image" else "truth.jsonl"
    path = Path(path)
    if path.is_file() and path.suffix != Path(name).suffix:
        raise InputError(f"the prediction is a {'photograph' if pred.kind == 'image' else 'clip'}'s: its truth is a {name} "
                         f"({'one hand' if pred.kind == 'image' else 'one line per frame'}), not {path.name}")
    ann, mesh_path = _truth_files(path, name)
    mesh = load_mesh(mesh_path, scale=scale)[0]
    if pred.kind == "image":
        d = _read_json(ann, "truth")
        p, k, side = _truth_hand(d, str(ann), pred.side)
        _same_side(side, pred.side, str(ann))
        scene, form = _truth_scene(mesh, [(p, k)], np.eye(4)[None], side, hand_for, ["image"])
        return Truth(scene, [None], form)
    hands, cTo, keys, side = [], [], [], pred.side
    try:
        lines = ann.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read the truth {ann}: {e}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        w = f"{ann}:{n}"
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{w}: not JSON ({e.msg})") from None
        if not isinstance(d, dict) or not ("index" in d or "stem" in d) or "cTo" not in d or "hand" not in d:
            raise InputError(f"{w}: each line needs index (or stem), hand and cTo")
        key = d["stem"] if "index" not in d else d["index"]
        if "index" in d and not isinstance(d["index"], int):
            raise InputError(f"{w}: index must be a whole number (the frame number), got {d['index']!r}")
        if key in keys:
            raise InputError(f"{w}: frame {key!r} annotated twice")
        p, k, side = _truth_hand(d["hand"], f"{w}: hand", pred.side)
        _same_side(side, pred.side, w)
        hands.append((p, k))
        cTo.append(_rigid_pose(d["cTo"], f"{w}: cTo"))
        keys.append(key)
    if not hands:
        raise InputError(f"the truth {ann} has no frames")
    scene, form = _truth_scene(mesh, hands, np.stack(cTo), side, hand_for, [str(k) for k in keys])
    return Truth(scene, keys, form)


def _same_side(truth_side: str, pred_side: str, where: str) -> None:
    if truth_side != pred_side:
        raise InputError(f"{where}: the truth's hand is a {truth_side} hand, the prediction's a {pred_side} hand")


def match_frames(pred: Prediction, truth: Truth) -> tuple[list[int], list[int], list]:
    """(prediction frame ids, truth frame ids, truth keys not in the prediction)."""
    if pred.kind == "image":
        return [0], [0], []
    pi, ti, missing = [], [], []
    for j, key in enumerate(truth.keys):
        names = pred.index if isinstance(key, int) else pred.stem
        if key in names:
            pi.append(names.index(key))
            ti.append(j)
        else:
            missing.append(key)
    if not pi:
        raise InputError(f"no truth frame is in the prediction (truth frames {truth.keys[:5]}..., predicted frame numbers "
                         f"{pred.index[:5]}..., stems {pred.stem[:5]}...)")
    return pi, ti, missing


@dataclass
class EvaluationInputs:
    """A prediction and its truth, read, checked and matched frame by frame."""

    pred: ReconScene
    truth: ReconScene
    kind: str
    """"image" or "clip"."""
    side: str
    truth_hand: str
    """How the truth gives the hand: "parameters" or "keypoints"."""
    hand_model: str | None
    """The hand model(s) that posed parameters, if any did."""
    frames_not_predicted: list
    """Truth frames (numbers or stems) the prediction does not have."""
    paths: tuple[str, str]


def read_inputs(pred_dir: Path, truth_path: Path, mano_dir=None, scale: float = 1.0) -> EvaluationInputs:
    """Read a `hoitool reconstruct` folder and its truth (module docstring), check them and match
    their frames; InputError on anything unusable."""
    models: dict[str, HandModel] = {}

    def hand_for(side: str) -> HandModel:
        if side not in models:
            models[side] = HandModel(side, mano_dir)
        return models[side]

    pred = read_prediction(pred_dir, hand_for)
    truth = read_truth(truth_path, pred, hand_for, scale)
    pi, ti, missing = match_frames(pred, truth)
    return EvaluationInputs(pred.scene.select(pi), truth.scene.select(ti), pred.kind, pred.side, truth.hand,
                            ", ".join(f"{s}: {m.source}" for s, m in models.items()) or None, missing,
                            (str(pred_dir), str(truth_path)))


def evaluate_reconstruction(inputs: EvaluationInputs, cfg: EvalConfig | None = None, progress=None) -> dict:
    """Score matched inputs; returns the report that metrics.json holds (nothing is written).
    cfg.align None: translation-scale for a photograph (EasyHOI), similarity for a clip (G-HOP)."""
    from dataclasses import asdict, replace

    cfg = cfg or EvalConfig(align=None)
    if cfg.align is None:
        cfg = replace(cfg, align="translation-scale" if inputs.kind == "image" else "similarity")
    res = evaluate_scenes(inputs.pred, inputs.truth, cfg, progress)
    return {
        "prediction": inputs.paths[0], "truth": inputs.paths[1], "kind": inputs.kind, "side": inputs.side,
        "truth_hand": inputs.truth_hand, "hand_model": inputs.hand_model, "cd_h_frame": res.cd_h_frame,
        "settings": asdict(cfg), "frames": inputs.pred.frames, "frames_not_predicted": inputs.frames_not_predicted,
        "metrics": res.metrics, "per_frame": res.per_frame,
        "units": {k: u for k, (u, _) in METRICS.items() if k in res.metrics},
        "definitions": {k: d for k, (_, d) in METRICS.items() if k in res.metrics},
    }
