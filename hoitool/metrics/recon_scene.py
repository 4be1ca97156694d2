"""Scoring a hand-object reconstruction against its truth, frame by frame.

One protocol for `hoitool evaluate reconstruction` and the benchmarks
(scripts/bench_reconstruct.py, scripts/bench_video.py): a prediction and its truth are each a
`ReconScene` (a rigid object and a hand over F frames, F = 1 for a photograph), and
`evaluate_scenes` gives every figure of `METRICS` per frame and averaged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import trimesh

from hoitool.geometry.transforms import np_apply
from hoitool.metrics.reconstruction import (ALIGN_MODES, chamfer_cm2, hand_scores, object_scores, palm_transform,
                                            sample_surface)

#: Every figure of `evaluate_scenes`: name -> (unit, definition). Means over the evaluated frames.
METRICS: dict[str, tuple[str, str]] = {
    "chamfer_mm": ("mm", "object Chamfer distance after --align: (mean nearest distance pred -> true + mean true -> pred) / 2"),
    "cd_cm2": ("cm^2", "the same in G-HOP's convention: mean squared nearest distance pred -> true + true -> pred"),
    "f5": ("", "object F-score at 5 mm after --align (harmonic mean of precision and recall of the surface points)"),
    "f10": ("", "object F-score at 10 mm after --align"),
    "scale": ("", "scale factor the alignment applied to the predicted object (1: right size)"),
    "camera_chamfer_mm": ("mm", "object Chamfer distance where it was placed (camera frame, no alignment)"),
    "camera_cd_cm2": ("cm^2", "the same, G-HOP's squared convention"),
    "camera_f5": ("", "object F-score at 5 mm, camera frame, no alignment"),
    "camera_f10": ("", "object F-score at 10 mm, camera frame, no alignment"),
    "cd_h_cm2": ("cm^2", "CD_h (G-HOP): squared Chamfer of the objects, each in its own hand's frame, no alignment"),
    "mpjpe_mm": ("mm", "hand keypoint error, both wrists moved to the origin (root-aligned)"),
    "mpjpe_abs_mm": ("mm", "hand keypoint error as placed (camera frame)"),
    "mpjpe_index_mcp_mm": ("mm", "hand keypoint error centred on the index knuckle (G-HOP's, which it gives in cm)"),
    "auc": ("", "area under PCK of the index-knuckle-centred errors over 0-50 mm, divided by 50 mm (1: all exact)"),
    "intersection_cm3": ("cm^3", "predicted object's 5 mm voxels inside the predicted hand x pitch^3"),
    "max_depth_cm": ("cm", "deepest predicted hand vertex inside the predicted object"),
    "contact": ("", "share of frames where a predicted hand vertex is within 5 mm of the object or inside"),
}


@dataclass
class ReconScene:
    """A hand and a rigid object over F frames (F = 1 for a photograph), metres, camera frame
    (OpenCV). A prediction and its truth are both given this way."""

    object_mesh: trimesh.Trimesh
    """The object in its own frame o (the camera frame itself when cTo is the identity)."""
    cTo: np.ndarray
    """(F, 4, 4) rigid: object frame -> camera, per frame."""
    keypoints: np.ndarray
    """(F, 21, 3) hand keypoints in the camera frame, OpenPose order, as the hand is placed."""
    cTh: np.ndarray | None = None
    """(F, 4, 4) rigid: the hand model's own frame h (zero global_orient and transl) -> camera,
    before hand_scale; None when the hand is known by its keypoints only."""
    hand_scale: np.ndarray | None = None
    """(F,) the hand, its frame included, is scaled by this about the camera centre (the one-image
    depth-size ambiguity of `hoitool reconstruct`); None: 1."""
    hand_meshes: list[trimesh.Trimesh] | None = None
    """Per frame, the hand's surface in the camera frame (scale included); None: unknown."""
    frames: list[str] | None = None
    """Frame labels; default "0", "1", ..."""

    def __post_init__(self):
        self.cTo = np.asarray(self.cTo, dtype=np.float64).reshape(-1, 4, 4)
        F = len(self.cTo)
        self.keypoints = np.asarray(self.keypoints, dtype=np.float64).reshape(F, 21, 3)
        if self.cTh is not None:
            self.cTh = np.asarray(self.cTh, dtype=np.float64).reshape(F, 4, 4)
        self.hand_scale = np.ones(F) if self.hand_scale is None else np.asarray(self.hand_scale, dtype=np.float64).reshape(F)
        if self.hand_meshes is not None and len(self.hand_meshes) != F:
            raise ValueError(f"{len(self.hand_meshes)} hand meshes for {F} frames")
        self.frames = [str(i) for i in range(F)] if self.frames is None else [str(f) for f in self.frames]

    @property
    def num_frames(self) -> int:
        return len(self.cTo)

    def select(self, idx: list[int]) -> "ReconScene":
        """The scene on frames idx only."""
        return ReconScene(self.object_mesh, self.cTo[idx], self.keypoints[idx], None if self.cTh is None else self.cTh[idx],
                          self.hand_scale[idx], None if self.hand_meshes is None else [self.hand_meshes[i] for i in idx],
                          [self.frames[i] for i in idx])

    def hand_from_camera(self, f: int) -> np.ndarray | None:
        """(4, 4) camera -> the hand model's own frame at frame f (the hand's scale undone), or None."""
        if self.cTh is None:
            return None
        S = np.diag([1.0 / self.hand_scale[f]] * 3 + [1.0])
        return np.linalg.inv(self.cTh[f]) @ S


@dataclass
class EvalConfig:
    """How `evaluate_scenes` scores."""

    align: str | None = "translation-scale"
    """Alignment of the predicted object onto the true one before the shape figures (chamfer_mm,
    cd_cm2, f5, f10), one of `ALIGN_MODES` (None: the caller picks one by the input's kind):
    "none"; "translation-scale" (EasyHOI: centring, then an ICP of a uniform
    scale and a translation, in the camera frame, per frame); "similarity" (G-HOP: ICP of
    rotation, scale and translation from `rotations` starts, once, on the objects in their own
    frames, since a rigid move of either changes nothing)."""
    points: int = 10000
    """Surface points sampled on each object, area-uniform (G-HOP: 10k)."""
    rotations: int = 10
    """Initial rotations of the similarity alignment (G-HOP: 10)."""
    seed: int = 0
    """Seed of the surface sampling (the same for both objects)."""
    interaction: bool = True
    """Score intersection volume, penetration depth and contact of the predicted hand and object
    (needs the prediction's hand meshes)."""


@dataclass
class SceneEvaluation:
    metrics: dict
    """Every figure of `METRICS` computed, averaged over the frames."""
    per_frame: list[dict] = field(default_factory=list)
    """The same per frame, with its label under "frame"."""
    cd_h_frame: str = "hand parameters"
    """How prediction and truth hands were put in one frame for CD_h: "hand parameters" (each
    scene's hand-model frame, G-HOP) or "palm keypoints" (the rigid fit of the predicted palm
    keypoints onto the true ones, when a scene has no hand parameters)."""


def _interaction(pred: ReconScene, f: int) -> dict:
    from hoitool.metrics.grasp import grasp_metrics

    hm = pred.hand_meshes[f]
    v = np_apply(np.linalg.inv(pred.cTo[f]), np.asarray(hm.vertices, dtype=np.float64))  # into the object's frame
    g = grasp_metrics(v[None], np.asarray(hm.faces), pred.object_mesh, simulate=False)
    return {"intersection_cm3": float(g.intersection_cm3[0]), "max_depth_cm": float(g.max_depth_cm[0]),
            "contact": float(g.contact[0])}


def _cd_h(pred: ReconScene, truth: ReconScene, f: int, p_c: np.ndarray, g_c: np.ndarray) -> float:
    """CD_h at frame f of the camera-frame object points p_c (prediction) and g_c (truth)."""
    hp, ht = pred.hand_from_camera(f), truth.hand_from_camera(f)
    if hp is not None and ht is not None:
        return chamfer_cm2(np_apply(hp, p_c), np_apply(ht, g_c))
    cp, ct = pred.hand_scale[f], truth.hand_scale[f]
    P = palm_transform(pred.keypoints[f] / cp, truth.keypoints[f] / ct)
    return chamfer_cm2(np_apply(P, p_c / cp), g_c / ct)


def evaluate_scenes(pred: ReconScene, truth: ReconScene, cfg: EvalConfig | None = None, progress=None) -> SceneEvaluation:
    """Score `pred` against `truth` (the same F frames, in order): object shape after
    cfg.align, object placement, CD_h, hand keypoints and (cfg.interaction, with the
    prediction's hand meshes) intersection and contact; see `METRICS`.

    progress: optional callback(done, total) over the frames.
    """
    cfg = cfg or EvalConfig()
    if cfg.align not in ALIGN_MODES:
        raise ValueError(f"unknown alignment {cfg.align!r}: use one of {', '.join(ALIGN_MODES)}")
    F = truth.num_frames
    if pred.num_frames != F:
        raise ValueError(f"the prediction has {pred.num_frames} frames, the truth {F}")
    p_o = sample_surface(pred.object_mesh, cfg.points, cfg.seed)
    g_o = sample_surface(truth.object_mesh, cfg.points, cfg.seed)
    shape = object_scores(p_o, g_o, "similarity", cfg.rotations) if cfg.align == "similarity" else None
    interaction = cfg.interaction and pred.hand_meshes is not None
    rows = []
    for f in range(F):
        p_c, g_c = np_apply(pred.cTo[f], p_o), np_apply(truth.cTo[f], g_o)
        cam = object_scores(p_c, g_c, "none")
        row = {"frame": truth.frames[f]}
        row.update(shape or (cam if cfg.align == "none" else object_scores(p_c, g_c, cfg.align, cfg.rotations)))
        row.update({f"camera_{k}": cam[k] for k in ("chamfer_mm", "cd_cm2", "f5", "f10")})
        row["cd_h_cm2"] = _cd_h(pred, truth, f, p_c, g_c)
        row.update(hand_scores(pred.keypoints[f], truth.keypoints[f]))
        if interaction:
            row.update(_interaction(pred, f))
        rows.append(row)
        if progress is not None:
            progress(f + 1, F)
    metrics = {k: float(np.mean([r[k] for r in rows])) for k in METRICS if k in rows[0]}
    metrics.update(hand_scores(pred.keypoints, truth.keypoints))  # pooled over every frame's joints
    frame = "hand parameters" if pred.cTh is not None and truth.cTh is not None else "palm keypoints"
    return SceneEvaluation(metrics, rows, frame)
