"""Files of a single-image reconstruction: meshes in the camera frame, params.json, an
overlay of the result on the image, a second view, and per-stage results."""

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
                  save_stages: bool = False) -> list[Path]:
    """Write the result into `folder`; returns the files written."""
    written = []
    hm, om = _meshes(hand, result, result.final)
    written += [_obj(folder / "hand.obj", hm), _obj(folder / "object.obj", om)]
    written.append(write_json(folder / "params.json", params_json(result, hand, result.final, extra)))
    written.append(_png(folder / "overlay.png", overlay(hm, om, result, image)))
    written.append(_png(folder / "side.png", side_view(hm, om)))
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
