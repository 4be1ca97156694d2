"""Files of a clip reconstruction: the object mesh (its frame), per-frame hand and object meshes
(camera frame), params.json, the losses, an overlay video and a turntable of the key frame."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import trimesh

from hoitool.hand.model import HandModel
from hoitool.pipelines.video_recon import StageResult, VideoResult, hand_keypoints, hand_vertices
from hoitool.render.offscreen import HAND_COLOR, OBJECT_COLOR, RenderMesh, render, render_camera
from hoitool.utils.io import atomic_path, write_json

FRAME_NOTE = ("camera (OpenCV: x right, y down, z forward), metres, fixed over the clip; hand vertices = hand_model(params); "
              "object vertices (camera) = cTo[:3, :3] @ object.obj vertex + cTo[:3, 3]; hTo = the object's pose in the hand's "
              "own frame (hand_model with zero global_orient and transl)")


def _obj(path: Path, mesh: trimesh.Trimesh) -> Path:
    with atomic_path(path) as tmp:
        mesh.export(tmp, file_type="obj")
    return path


def _posed(mesh: trimesh.Trimesh, T: np.ndarray) -> trimesh.Trimesh:
    m = mesh.copy()
    m.apply_transform(T)
    return m


def params_json(result: VideoResult, stage: StageResult, hand: HandModel, indices: list[int], stems: list[str], extra: dict) -> dict:
    import torch

    from hoitool.hand.model import HandParams

    params = HandParams.cat([f.hand for f in stage.frames])
    kp = hand_keypoints(hand, params)
    with torch.no_grad():
        cTh = hand.frame_from_hand(params.to(hand.device)).cpu().double().numpy()
    frames = []
    for t, f in enumerate(stage.frames):
        p = f.hand.numpy()
        frames.append({"index": int(indices[t]), "stem": stems[t],
                       "hand": {**{k: v[0].round(6).tolist() for k, v in p.items()}, "side": f.hand.side,
                                "keypoints_3d": kp[t].round(6).tolist()},
                       "cTo": np.round(f.cTo, 6).tolist(), "hTo": np.round(np.linalg.inv(cTh[t]) @ f.cTo, 6).tolist()})
    return {"frame": FRAME_NOTE, "camera": result.camera.to_dict(), "category": result.category,
            "key_frame": int(indices[result.key_frame]), "metrics": stage.metrics,
            "stages": {n: {**s.metrics, "seconds": round(s.seconds, 2)} for n, s in result.stages.items()},
            "frames": frames, **extra}


def overlay_frames(result: VideoResult, stage: StageResult, hand: HandModel, images: np.ndarray) -> list[np.ndarray]:
    from hoitool.hand.model import HandParams

    hv = hand_vertices(hand, HandParams.cat([f.hand for f in stage.frames]))
    faces = hand.faces.cpu().numpy()
    out = []
    for t, f in enumerate(stage.frames):
        o = _posed(stage.mesh, f.cTo)
        out.append(render_camera([RenderMesh(hv[t], faces, HAND_COLOR), RenderMesh(o.vertices, o.faces, OBJECT_COLOR)],
                                 result.camera, image=images[t]).color)
    return out


def turntable(hand_mesh: trimesh.Trimesh, object_mesh: trimesh.Trimesh, views: int = 36, size: int = 320) -> list[np.ndarray]:
    """`views` renders circling the scene about the camera's vertical axis (image up = -y)."""
    meshes = [RenderMesh(hand_mesh.vertices, hand_mesh.faces, HAND_COLOR), RenderMesh(object_mesh.vertices, object_mesh.faces, OBJECT_COLOR)]
    out = []
    for a in np.linspace(0, 2 * np.pi, views, endpoint=False):
        out.append(render(meshes, direction=(np.sin(a), -0.25, -np.cos(a)), up=(0.0, -1.0, 0.0), size=size))
    return out


def write_outputs(folder: Path, result: VideoResult, hand: HandModel, images: np.ndarray, indices: list[int], stems: list[str],
                  fps: float, extra: dict, save_stages: bool = False, video_format: str = "mp4") -> list[Path]:
    """Write the result into `folder`; returns what was written."""
    from hoitool.data.video_inputs import write_video
    from hoitool.hand.model import HandParams

    final = result.final
    written = [_obj(folder / "object.obj", final.mesh)]
    hv = hand_vertices(hand, HandParams.cat([f.hand for f in final.frames]))
    faces = hand.faces.cpu().numpy()
    meshes = folder / "meshes"
    meshes.mkdir()
    for t, f in enumerate(final.frames):
        _obj(meshes / f"hand_{stems[t]}.obj", trimesh.Trimesh(hv[t], faces, process=False))
        _obj(meshes / f"object_{stems[t]}.obj", _posed(final.mesh, f.cTo))
    written.append(meshes)
    written.append(write_json(folder / "params.json", params_json(result, final, hand, indices, stems, extra)))
    with atomic_path(folder / "losses.jsonl") as tmp:
        Path(tmp).write_text("".join(json.dumps(r) + "\n" for r in result.losses))
    written.append(folder / "losses.jsonl")
    written.append(write_video(folder / f"overlay.{video_format}", overlay_frames(result, final, hand, images), fps))
    k = result.key_frame
    key_hand = trimesh.Trimesh(hv[k], faces, process=False)
    written.append(write_video(folder / f"turntable.{video_format}", turntable(key_hand, _posed(final.mesh, final.frames[k].cTo)), 12.0))
    if save_stages:
        for i, (name, st) in enumerate(result.stages.items()):
            d = folder / "stages" / f"{i}_{name}"
            d.mkdir(parents=True)
            _obj(d / "object.obj", st.mesh)
            write_json(d / "params.json", params_json(result, st, hand, indices, stems, {}))
            write_video(d / f"overlay.{video_format}", overlay_frames(result, st, hand, images), fps)
        written.append(folder / "stages")
    return written
