"""Files of a two-hand reconstruction: both hands' meshes in the camera frame, a .glb scene,
params.json, an overlay of both hands on the image, and optionally every stage's results."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import trimesh

from hoitool.hand.model import HandModel
from hoitool.pipelines.twohand_recon import SIDES, TwoHandReconResult, TwoHandStage
from hoitool.utils.io import atomic_path, write_json

log = logging.getLogger(__name__)


def stage_meshes(hands: dict[str, HandModel], stage: TwoHandStage) -> dict[str, trimesh.Trimesh]:
    """{"right": mesh, "left": mesh} in the camera frame, metres."""
    out = {}
    with torch.no_grad():
        for s in SIDES:
            v = hands[s](getattr(stage, s)).vertices[0].cpu().numpy()
            out[s] = trimesh.Trimesh(v, hands[s].faces.cpu().numpy(), process=False)
    return out


def params_json(result: TwoHandReconResult, hands: dict[str, HandModel], stage: TwoHandStage, extra: dict) -> dict:
    d = {}
    with torch.no_grad():
        for s in SIDES:
            p = getattr(stage, s)
            d[s] = {**{k: v[0].tolist() for k, v in p.numpy().items()}, "side": s,
                    "keypoints_3d": hands[s](p).keypoints[0].cpu().numpy().round(6).tolist(),
                    "reprojection_px": stage.reprojection_px[s]}
    d["camera"] = result.camera.to_dict()
    d["frame"] = "camera (OpenCV: x right, y down, z forward), metres; vertices = hand_model(params) of each side"
    d["losses"] = stage.losses
    d["stages"] = {name: {"losses": st.losses, "reprojection_px": st.reprojection_px, "seconds": round(st.seconds, 3)}
                   for name, st in result.stages.items()}
    d["prior"] = result.prior
    d.update(extra)
    return d


def overlay(meshes: dict[str, trimesh.Trimesh], result: TwoHandReconResult, image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: both hands rendered through the image's camera over the image."""
    from hoitool.render.offscreen import RenderMesh, render_camera
    from hoitool.twohands.scene import LEFT_COLOR, RIGHT_COLOR

    return render_camera([RenderMesh(meshes["right"].vertices, meshes["right"].faces, RIGHT_COLOR),
                          RenderMesh(meshes["left"].vertices, meshes["left"].faces, LEFT_COLOR)], result.camera, image=image).color


def _write_stage(folder: Path, result: TwoHandReconResult, hands: dict[str, HandModel], stage: TwoHandStage, image: np.ndarray,
                 extra: dict) -> list[Path]:
    from PIL import Image

    from hoitool.twohands.scene import scene

    meshes = stage_meshes(hands, stage)
    written = []
    for s in SIDES:
        with atomic_path(folder / f"{s}_hand.obj") as p:
            meshes[s].export(p, file_type="obj")
        written.append(folder / f"{s}_hand.obj")
    with atomic_path(folder / "scene.glb") as p:
        scene(meshes["right"].vertices, meshes["right"].faces, meshes["left"].vertices, meshes["left"].faces).export(p, file_type="glb")
    written.append(folder / "scene.glb")
    written.append(write_json(folder / "params.json", params_json(result, hands, stage, extra)))
    try:
        img = overlay(meshes, result, image)
    except Exception as e:  # noqa: BLE001 - a broken GL stack must not fail the reconstruction
        log.warning("overlay.png not rendered (%s: %s); see `hoitool doctor`", type(e).__name__, e)
    else:
        with atomic_path(folder / "overlay.png") as p:
            Image.fromarray(img).save(p, format="PNG")
        written.append(folder / "overlay.png")
    return written


def write_outputs(folder: Path, result: TwoHandReconResult, hands: dict[str, HandModel], image: np.ndarray, extra: dict,
                  save_stages: bool = False) -> list[Path]:
    """Write the result into `folder`; returns the files written."""
    written = _write_stage(folder, result, hands, result.final, image, extra)
    if save_stages:
        for i, (name, st) in enumerate(result.stages.items()):
            d = folder / "stages" / f"{i}_{name}"
            d.mkdir(parents=True, exist_ok=True)
            _write_stage(d, result, hands, st, image, {})
        written.append(folder / "stages")
    return written
