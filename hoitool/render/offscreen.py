"""Headless rendering with pyrender (EGL) for previews, contact sheets and figures.

pyrender is an optional dependency (`pip install 'hoitool[render]'`); it is imported only
when a function here is called. PYOPENGL_PLATFORM defaults to egl (no display needed); it is
set before OpenGL is imported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from hoitool.errors import require

HAND_COLOR = (0.87, 0.67, 0.56, 1.0)
OBJECT_COLOR = (0.45, 0.62, 0.85, 1.0)

_renderers: dict = {}


def _pyrender():
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    return require("pyrender", "render", "rendering")


@dataclass
class RenderMesh:
    """A mesh to draw: vertices (V, 3) metres, faces (F, 3), RGBA colour in [0, 1]."""

    vertices: np.ndarray
    faces: np.ndarray
    color: tuple = HAND_COLOR


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 1.0, 0.0])) -> np.ndarray:
    """Camera-to-world pose (4, 4) in OpenGL convention (camera looks down its -z)."""
    eye, target, up = (np.asarray(x, dtype=np.float64) for x in (eye, target, up))
    z = eye - target
    z /= np.linalg.norm(z)
    if abs(z @ up / np.linalg.norm(up)) > 0.99:
        up = np.array([0.0, 0.0, 1.0]) if abs(z[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x, y, z, eye
    return pose


def render(meshes: list[RenderMesh], direction=(0.3, -0.5, 1.0), up=(0.0, 1.0, 0.0), size: int = 320,
           yfov: float = 0.6, margin: float = 1.15, background=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Render meshes framed by a camera looking along -direction at their bounding sphere.

    Returns an (size, size, 3) uint8 image.
    """
    pyrender = _pyrender()
    import trimesh

    scene = pyrender.Scene(bg_color=list(background) + [1.0], ambient_light=[0.35, 0.35, 0.35])
    pts = []
    for m in meshes:
        tm = trimesh.Trimesh(np.asarray(m.vertices), np.asarray(m.faces), process=False)
        mat = pyrender.MetallicRoughnessMaterial(baseColorFactor=list(m.color), metallicFactor=0.0, roughnessFactor=0.7)
        scene.add(pyrender.Mesh.from_trimesh(tm, material=mat, smooth=True))
        pts.append(np.asarray(m.vertices))
    pts = np.concatenate(pts)
    centre = (pts.max(0) + pts.min(0)) / 2
    radius = np.linalg.norm(pts - centre, axis=1).max()
    d = np.asarray(direction, dtype=np.float64)
    d /= np.linalg.norm(d)
    dist = margin * radius / np.sin(yfov / 2)
    pose = look_at(centre + d * dist, centre, np.asarray(up, dtype=np.float64))
    scene.add(pyrender.PerspectiveCamera(yfov=yfov, znear=0.01 * dist, zfar=10 * dist), pose=pose)
    scene.add(pyrender.DirectionalLight(intensity=2.5), pose=pose)
    side = look_at(centre + np.array([dist, dist, 0.0]), centre)
    scene.add(pyrender.DirectionalLight(intensity=1.0), pose=side)
    r = _renderers.get(size)
    if r is None:
        r = _renderers[size] = pyrender.OffscreenRenderer(size, size)
    color, _ = r.render(scene)
    return np.ascontiguousarray(color[..., :3])


def _opencv_to_opengl() -> np.ndarray:
    """Camera pose of an OpenCV camera at the origin in OpenGL convention (y up, looking down -z)."""
    return np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass
class CameraRender:
    """A render through a pinhole `Camera`: colour (H, W, 3) uint8, depth (H, W) metres (0 =
    background) and labels (H, W) int: the index of the visible mesh, -1 for background."""

    color: np.ndarray
    depth: np.ndarray
    labels: np.ndarray


def render_camera(meshes: list[RenderMesh], camera, background=(1.0, 1.0, 1.0), image: np.ndarray | None = None,
                  light_intensity: float = 2.5, ambient: float = 0.35) -> CameraRender:
    """Render camera-frame meshes (OpenCV frame, metres) through `camera`
    (hoitool.geometry.camera.Camera; pixel centres at integers). With `image` (H, W, 3)
    uint8, the colour render is composited over it."""
    pyrender = _pyrender()
    import trimesh

    W, H = camera.width, camera.height
    # pyrender puts pixel centres at +0.5
    cam = pyrender.IntrinsicsCamera(camera.fx, camera.fy, camera.cx + 0.5, camera.cy + 0.5, znear=0.005, zfar=20.0)
    pose = _opencv_to_opengl()
    key = ("camera", W, H)
    r = _renderers.get(key)
    if r is None:
        r = _renderers[key] = pyrender.OffscreenRenderer(W, H)
    scene = pyrender.Scene(bg_color=list(background) + [1.0], ambient_light=[ambient] * 3)
    nodes = []
    for m in meshes:
        tm = trimesh.Trimesh(np.asarray(m.vertices), np.asarray(m.faces), process=False)
        mat = pyrender.MetallicRoughnessMaterial(baseColorFactor=list(m.color), metallicFactor=0.0, roughnessFactor=0.7)
        nodes.append(scene.add(pyrender.Mesh.from_trimesh(tm, material=mat, smooth=True)))
    scene.add(cam, pose=pose)
    scene.add(pyrender.DirectionalLight(intensity=light_intensity), pose=pose)
    color, depth = r.render(scene)
    labels = np.full((H, W), -1, np.int64)
    best = np.full((H, W), np.inf)
    for i, node in enumerate(nodes):
        for other in nodes:
            other.mesh.is_visible = other is node
        d = r.render(scene, flags=pyrender.RenderFlags.DEPTH_ONLY)
        hit = (d > 0) & (d < best)
        labels[hit], best[hit] = i, d[hit]
    for node in nodes:
        node.mesh.is_visible = True
    color = np.ascontiguousarray(color[..., :3])
    if image is not None:
        fg = (labels >= 0)[..., None]
        color = np.where(fg, (0.35 * image + 0.65 * color).astype(np.uint8), image)
    return CameraRender(color, depth.astype(np.float32), labels)


def contact_sheet(images: list[np.ndarray], cols: int = 4, labels: list[str] | None = None, pad: int = 4):
    """Tile equally sized RGB images into one PIL image, with optional captions."""
    from PIL import Image, ImageDraw

    h, w = images[0].shape[:2]
    rows = (len(images) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * (w + pad) + pad, rows * (h + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, im in enumerate(images):
        x, y = pad + (i % cols) * (w + pad), pad + (i // cols) * (h + pad)
        sheet.paste(Image.fromarray(im), (x, y))
        if labels:
            draw.text((x + 4, y + 4), labels[i], fill=(20, 20, 20))
    return sheet


def headless_check() -> str | None:
    """None if a tiny offscreen render works, else the reason it does not."""
    try:
        import trimesh

        box = trimesh.creation.box((0.05, 0.05, 0.05))
        img = render([RenderMesh(box.vertices, box.faces, OBJECT_COLOR)], size=32)
        if img.shape != (32, 32, 3):
            return "unexpected image shape"
        return None
    except Exception as e:  # the GL stack can fail in many ways
        return f"{type(e).__name__}: {e}"
