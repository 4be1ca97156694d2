"""One rendered HOI frame with its exact labels (HOIDiffusion's stage 1), written and read back.

    frame = render_frame(hand, params_o, mesh, camera, cTo)    # hand params and mesh in the object frame
    write_frame(folder, frame, stem="000")                      # 000_rgb.png, 000_depth.npz, ... 000_labels.json
    frame = read_frame(folder, "000")                           # the same arrays and labels

Maps: colour (H, W, 3) uint8; depth (H, W) metres, 0 = background (stored as float32
in a compressed .npz: lossless); hand and object masks; segmentation in HOIDiffusion's colours;
surface normals (H, W, 3) in the camera frame (OpenCV), unit, 0 on background (rendered from
the meshes' vertex normals, split along sharp edges and interpolated across smooth ones; stored
as 8-bit (n + 1) / 2); the 2D skeleton image.
Labels: 21 3D keypoints (camera frame, metres) and their pixels, hand parameters (object and
camera frames), the object pose cTo, the intrinsics.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh

from hoitool.geometry.camera import Camera
from hoitool.geometry.transforms import np_apply
from hoitool.hand.model import HandModel, HandParams
from hoitool.utils.io import atomic_path

PNG_MAPS = ("rgb", "normals", "segmentation", "skeleton")
MAPS = ("rgb", "depth", "normals", "segmentation", "skeleton")


@dataclass
class HOIFrame:
    rgb: np.ndarray
    depth: np.ndarray
    hand_mask: np.ndarray
    object_mask: np.ndarray
    segmentation: np.ndarray
    normals: np.ndarray
    skeleton: np.ndarray
    labels: dict


def _params_to_camera(hand: HandModel, params_o: HandParams, cTo: np.ndarray) -> HandParams:
    from hoitool.hand.model import transform_params

    return transform_params(hand, params_o, torch.as_tensor(cTo, dtype=torch.float32))


def _normal_mesh(m: trimesh.Trimesh, split: bool):
    """A pyrender mesh whose colours encode `m`'s vertex normals; with `split`, vertices are split
    along sharp edges first (a box's faces keep their own normals; smooth surfaces need not)."""
    from hoitool.render.offscreen import _pyrender

    if split:
        m = m.smooth_shaded
    vn = m.vertex_normals
    colours = np.clip(np.round((vn + 1.0) * 127.5), 0, 255).astype(np.uint8)
    tm = trimesh.Trimesh(m.vertices, m.faces, vertex_colors=np.concatenate([colours, np.full((len(vn), 1), 255, np.uint8)], 1), process=False)
    return _pyrender().Mesh.from_trimesh(tm, smooth=True)


def _normal_map(meshes: list, camera: Camera) -> np.ndarray:
    """(H, W, 3) unit normals of the visible surfaces (camera frame), from an unlit render of
    vertex normals encoded as colours (`meshes`: from _normal_mesh, camera frame)."""
    from hoitool.render.offscreen import _opencv_to_opengl, _pyrender, _renderers

    pyrender = _pyrender()
    W, H = camera.width, camera.height
    key = ("camera", W, H)
    r = _renderers.get(key)
    if r is None:
        r = _renderers[key] = pyrender.OffscreenRenderer(W, H)
    scene = pyrender.Scene(bg_color=[0.0, 0.0, 0.0, 0.0], ambient_light=[1.0, 1.0, 1.0])
    for m in meshes:
        scene.add(m)
    cam = pyrender.IntrinsicsCamera(camera.fx, camera.fy, camera.cx + 0.5, camera.cy + 0.5, znear=0.005, zfar=20.0)
    scene.add(cam, pose=_opencv_to_opengl())
    colour, depth = r.render(scene, flags=pyrender.RenderFlags.FLAT)
    n = colour[..., :3].astype(np.float32) / 127.5 - 1.0
    n /= np.linalg.norm(n, axis=-1, keepdims=True).clip(1e-6)
    n[depth <= 0] = 0
    return n


def render_frame(hand: HandModel, params_o: HandParams, mesh: trimesh.Trimesh, camera: Camera, cTo: np.ndarray,
                 appearance=None, cache: dict | None = None) -> HOIFrame:
    """Render one hand (params in the object frame, batch 1) and the object through `camera`
    placed by cTo (object -> OpenCV camera); `appearance` (hoitool.render.appearance.Appearance)
    sets the background image, colours and lights (default: white, the usual colours). Frames of
    one trajectory (same mesh, camera and cTo) may share a `cache` dict: the object's normal
    mesh is then built once."""
    from hoitool.render.conditions import segmentation_image, skeleton_image
    from hoitool.render.offscreen import HAND_COLOR, OBJECT_COLOR, RenderMesh, render_camera

    params_c = _params_to_camera(hand, params_o, cTo)
    with torch.no_grad():
        out = hand(params_c)
    hv, kp = out.vertices[0].numpy(), out.keypoints[0].numpy()
    hand_c = trimesh.Trimesh(hv, hand.faces.numpy(), process=False)
    obj_c = trimesh.Trimesh(np_apply(cTo, np.asarray(mesh.vertices)), mesh.faces, process=False)
    look = appearance
    rc = render_camera([RenderMesh(hand_c.vertices, hand_c.faces, look.hand_color if look else HAND_COLOR),
                        RenderMesh(obj_c.vertices, obj_c.faces, look.object_color if look else OBJECT_COLOR)], camera,
                       **({"light_intensity": look.light_intensity, "ambient": look.ambient} if look else {}))
    hand_mask, obj_mask = rc.labels == 0, rc.labels == 1
    rgb = rc.color if look is None else np.where((rc.labels >= 0)[..., None], rc.color, look.background).astype(np.uint8)
    uv = camera.project(torch.as_tensor(kp)).numpy()
    labels = {
        "keypoints_3d_camera_m": kp.round(6).tolist(), "keypoints_2d_px": uv.round(3).tolist(),
        "hand_side": hand.side, "hand_source": hand.source,
        "hand_object_frame": {k: v[0].round(7).tolist() for k, v in params_o.numpy().items()},
        "hand_camera_frame": {k: v[0].round(7).tolist() for k, v in params_c.numpy().items()},
        "cTo": np.asarray(cTo).round(7).tolist(), "intrinsics": camera.to_dict(),
    }
    if cache is not None and "object_normals" in cache:
        obj_n = cache["object_normals"]
    else:
        obj_n = _normal_mesh(obj_c, split=True)
        if cache is not None:
            cache["object_normals"] = obj_n
    # the hand is smooth everywhere: its own vertex normals, no split
    normals = _normal_map([_normal_mesh(hand_c, split=False), obj_n], camera)
    return HOIFrame(rgb, rc.depth, hand_mask, obj_mask, segmentation_image(hand_mask, obj_mask),
                    normals, skeleton_image(uv, (camera.height, camera.width)), labels)


def _png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)  # fast; lossless at any level
    return buf.getvalue()


def encode_frame(frame: HOIFrame, stem: str) -> dict[str, bytes]:
    """A frame's files as {file name: bytes} (labels last): PNG maps, depth as float32 metres in
    a compressed .npz (lossless), labels as JSON. Encoding is deterministic, so the same frame
    gives the same bytes in any process."""
    normals = np.where((frame.depth > 0)[..., None], np.round((frame.normals + 1.0) * 127.5), 0).astype(np.uint8)
    arrays = {"rgb": frame.rgb, "normals": normals, "segmentation": frame.segmentation, "skeleton": frame.skeleton}
    files = {f"{stem}_{name}.png": _png_bytes(arrays[name]) for name in PNG_MAPS}
    buf = io.BytesIO()
    np.savez_compressed(buf, depth=frame.depth.astype(np.float32))
    files[f"{stem}_depth.npz"] = buf.getvalue()
    files[f"{stem}_labels.json"] = json.dumps(frame.labels).encode()
    return files


def write_files(folder: str | Path, files: dict[str, bytes]) -> list[Path]:
    """Write {name: bytes} into `folder`, each file atomically, in the order given."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in files.items():
        with atomic_path(folder / name) as tmp:
            tmp.write_bytes(data)
        paths.append(folder / name)
    return paths


def write_frame(folder: str | Path, frame: HOIFrame, stem: str) -> list[Path]:
    """Write a frame's maps and its labels (written last: a frame with labels is complete)."""
    return write_files(folder, encode_frame(frame, stem))


def read_frame(folder: str | Path, stem: str) -> HOIFrame:
    """Read a frame written by `write_frame` (or `hoitool render`): depth in metres as rendered,
    normals as unit vectors (0 on background), masks from the segmentation colours, labels as a dict."""
    from PIL import Image

    from hoitool.render.conditions import SEG_HAND, SEG_OBJECT

    folder = Path(folder)
    labels = json.loads((folder / f"{stem}_labels.json").read_text())
    img = {name: np.asarray(Image.open(folder / f"{stem}_{name}.png").convert("RGB")) for name in PNG_MAPS}
    with np.load(folder / f"{stem}_depth.npz") as z:
        depth = z["depth"].astype(np.float32)
    n = img["normals"].astype(np.float32) / 127.5 - 1.0
    n /= np.linalg.norm(n, axis=-1, keepdims=True).clip(1e-6)
    n[depth <= 0] = 0
    seg = img["segmentation"]
    return HOIFrame(img["rgb"], depth, (seg == SEG_HAND).all(-1), (seg == SEG_OBJECT).all(-1), seg, n, img["skeleton"], labels)


def render_trajectory(hand: HandModel, grasp_o: HandParams, mesh: trimesh.Trimesh, rng: np.random.Generator, frames: int = 8,
                      size: int = 256, vary: bool = True) -> tuple[list[HOIFrame], Camera, np.ndarray]:
    """The approach to a grasp (object frame, batch 1) rendered from one random look-at camera
    aimed at the object's bounding box centre: `frames` frames, the last the grasp. With `vary`,
    one random appearance (background, colours, lights) for the whole trajectory."""
    from hoitool.render.appearance import random_appearance
    from hoitool.render.trajectory import grasp_trajectory, look_at_camera

    centre = (np.asarray(mesh.bounds[0]) + np.asarray(mesh.bounds[1])) / 2
    camera, cTo = look_at_camera(centre, rng, size=size)
    look = random_appearance(rng, size) if vary else None
    traj = grasp_trajectory(hand, grasp_o, frames)
    cache: dict = {}
    return [render_frame(hand, traj[k], mesh, camera, cTo, look, cache) for k in range(frames)], camera, cTo
