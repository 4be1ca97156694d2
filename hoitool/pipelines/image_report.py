"""Files of a single-image reconstruction: meshes in the camera frame, params.json, an
overlay of the result on the image, a second view, the masks used, and per-stage results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from hoitool.hand.model import HandModel
from hoitool.pipelines.image_recon import ReconResult, SceneState, hand_keypoints, hand_vertices
from hoitool.render.offscreen import HAND_COLOR, OBJECT_COLOR, RenderMesh, render, render_camera
from hoitool.utils.io import atomic_path, write_json


def _meshes(hand: HandModel, result: ReconResult, state: SceneState) -> tuple[trimesh.Trimesh, trimesh.Trimesh]:
    hm = trimesh.Trimesh(hand_vertices(hand, state), hand.faces.cpu().numpy(), process=False)
    om = trimesh.Trimesh(state.object_vertices(result.mesh), np.asarray(result.mesh.faces), process=False)
    return hm, om


def overlay(hand_mesh: trimesh.Trimesh, object_mesh: trimesh.Trimesh, result: ReconResult, image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: the reconstruction rendered through the image's camera over the image."""
    r = render_camera([RenderMesh(hand_mesh.vertices, hand_mesh.faces, HAND_COLOR),
                       RenderMesh(object_mesh.vertices, object_mesh.faces, OBJECT_COLOR)], result.camera, image=image)
    return r.color


def side_view(hand_mesh: trimesh.Trimesh, object_mesh: trimesh.Trimesh, size: int = 480) -> np.ndarray:
    """A view from the camera's right (90 degrees about the scene's vertical), image up = -y."""
    return render([RenderMesh(hand_mesh.vertices, hand_mesh.faces, HAND_COLOR),
                   RenderMesh(object_mesh.vertices, object_mesh.faces, OBJECT_COLOR)],
                  direction=(1.0, -0.25, 0.0), up=(0.0, -1.0, 0.0), size=size)


def mask_view(image: np.ndarray, hand_mask: np.ndarray, object_mask: np.ndarray, box: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8: the image with the hand mask tinted in the hand's colour, the object mask in
    the object's (the overlay's colours), their outlines, and the object box (x0, y0, x1, y1) in green."""
    import cv2

    out = image.astype(np.float32)
    for m, c in ((hand_mask, HAND_COLOR), (object_mask, OBJECT_COLOR)):
        out[m] = 0.45 * out[m] + 0.55 * 255 * np.asarray(c[:3], np.float32)
    out = out.clip(0, 255).astype(np.uint8)
    t = max(1, round(max(image.shape[:2]) / 400))
    for m, c in ((hand_mask, HAND_COLOR), (object_mask, OBJECT_COLOR)):
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, tuple(int(0.6 * 255 * v) for v in c[:3]), t)
    if box is not None:
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), (40, 200, 60), t)
    return out


def _png(path: Path, arr: np.ndarray) -> Path:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")
    return path


def _obj(path: Path, mesh: trimesh.Trimesh) -> Path:
    with atomic_path(path) as tmp:
        mesh.export(tmp, file_type="obj")
    return path


def params_json(result: ReconResult, hand: HandModel, state: SceneState, extra: dict) -> dict:
    d = state.to_json()
    d["hand"]["keypoints_3d"] = hand_keypoints(hand, state).round(6).tolist()
    d["camera"] = result.camera.to_dict()
    d["frame"] = ("camera (OpenCV: x right, y down, z forward), metres; hand vertices = scale x hand_model(params) "
                  "(scaled about the camera centre); object vertices = scale x R x mesh + translation")
    d["stages"] = {name: s.metrics for name, s in result.stages.items()}
    d["hypotheses"] = [h.to_json()["object"] | {"metrics": h.metrics} for h in result.hypotheses]
    d.update(extra)
    return d


def write_outputs(folder: Path, result: ReconResult, hand: HandModel, image: np.ndarray, extra: dict,
                  save_stages: bool = False, masks: tuple[np.ndarray, np.ndarray] | None = None,
                  box: np.ndarray | None = None) -> list[Path]:
    """Write the result into `folder`; returns the files written.

    masks: the (hand, object) masks (H, W) bool the reconstruction used, written as
    hand_mask.png and object_mask.png (white = inside) and shown over the image in masks.png
    with the object `box` (x0, y0, x1, y1 pixels) when given."""
    written = []
    hm, om = _meshes(hand, result, result.final)
    written += [_obj(folder / "hand.obj", hm), _obj(folder / "object.obj", om)]
    written.append(write_json(folder / "params.json", params_json(result, hand, result.final, extra)))
    written.append(_png(folder / "overlay.png", overlay(hm, om, result, image)))
    written.append(_png(folder / "side.png", side_view(hm, om)))
    if masks is not None:
        for name, m in zip(("hand_mask.png", "object_mask.png"), masks):
            written.append(_png(folder / name, np.where(m, 255, 0).astype(np.uint8)))
        written.append(_png(folder / "masks.png", mask_view(image, *masks, box)))
    if save_stages:
        for i, (name, st) in enumerate(result.stages.items()):
            d = folder / "stages" / f"{i}_{name}"
            d.mkdir(parents=True, exist_ok=True)
            h, o = _meshes(hand, result, st)
            _obj(d / "hand.obj", h)
            _obj(d / "object.obj", o)
            write_json(d / "params.json", params_json(result, hand, st, {}))
            _png(d / "overlay.png", overlay(h, o, result, image))
            _png(d / "side.png", side_view(h, o, size=320))
        written.append(folder / "stages")
    return written
