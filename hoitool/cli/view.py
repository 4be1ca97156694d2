"""`hoitool view`: look at grasps, samples or any mesh/scene file in a web browser (no network needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hoitool.cli.common import setup_logging, summary, user_errors


def _side_by_side(items: list, gap: float = 0.5):
    """One scene with every (name, scene) item translated along x by its extent plus a gap."""
    import numpy as np
    import trimesh

    out = trimesh.Scene()
    x = 0.0
    for name, sc in items:
        lo, hi = sc.bounds
        shift = np.array([x - lo[0], 0.0, 0.0])
        for node in sc.graph.nodes_geometry:
            T, g = sc.graph[node]
            geom = sc.geometry[g].copy()
            geom.apply_transform(T)
            geom.apply_translation(shift)
            out.add_geometry(geom, node_name=f"{name}/{node}", geom_name=f"{name}/{g}")
        x += (hi[0] - lo[0]) * (1 + gap)
    return out


def view_scene(path: Path, top: int):
    """The trimesh scene to show for a grasp folder, a sample folder or a mesh/scene file."""
    import trimesh

    from hoitool.errors import InputError

    if path.is_dir():
        if (path / "grasps.npz").exists():
            from hoitool.data.grasps import grasp_object, read_grasps
            from hoitool.pipelines import grasp_report as rep

            gs = read_grasps(path)
            mesh, s = grasp_object(path, None, None, gs.mesh_scale)
            verts, faces = rep.hand_vertices(gs)
            order = gs.order[:top]
            items = [(f"grasp_{i:03d}", rep.scene(mesh, verts[i:i + 1], faces, [0], 1, s)) for i in order]
            return _side_by_side(items), f"{len(items)} best grasps, best on the left"
        samples = sorted(p for p in path.iterdir() if p.is_dir() and (p / "scene.glb").exists())
        if samples:
            items = [(p.name, trimesh.load(p / "scene.glb", force="scene")) for p in samples[:top]]
            return _side_by_side(items), f"{len(items)} samples"
        raise InputError(f"{path} holds neither grasps (grasps.npz) nor samples (NNN/scene.glb): pass a hoitool output folder or a mesh file")
    if not path.is_file():
        raise InputError(f"{path} does not exist")
    try:
        sc = trimesh.load(path, force="scene")
    except Exception as e:  # noqa: BLE001 - trimesh raises many types
        raise InputError(f"cannot read {path} as a mesh or scene ({type(e).__name__})") from None
    if not sc.geometry:
        raise InputError(f"{path} has no geometry")
    return sc, path.name


def view(
    path: Path = typer.Argument(..., help="A grasp folder, a sample folder, or a mesh/scene file (.glb, .obj ...)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="HTML file to write (default: PATH/view.html, or FILE.html)."),
    top: int = typer.Option(5, "--top", min=1, help="How many grasps or samples to lay out side by side."),
    png: Optional[Path] = typer.Option(None, "--png", help="Also render a still image to this PNG file."),
    open_browser: bool = typer.Option(False, "--open", help="Open the HTML in the default web browser."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Write a self-contained HTML viewer (three.js, works offline: rotate, zoom) of hoitool outputs or a mesh file."""
    setup_logging(verbose)
    with user_errors():
        from trimesh.viewer.notebook import scene_to_html

        from hoitool.utils.io import atomic_path, write_text

        sc, what = view_scene(path, top)
        html = out or (path / "view.html" if path.is_dir() else path.with_suffix(".html"))
        written = [write_text(html, scene_to_html(sc))]
        if png is not None:
            import numpy as np
            from PIL import Image

            from hoitool.render.offscreen import RenderMesh, render

            meshes = []
            for node in sc.graph.nodes_geometry:
                T, g = sc.graph[node]
                m = sc.geometry[g].copy()
                m.apply_transform(T)
                rgba = np.asarray(m.visual.face_colors[0], dtype=float) / 255 if hasattr(m.visual, "face_colors") else (0.7, 0.7, 0.7, 1.0)
                meshes.append(RenderMesh(m.vertices, m.faces, tuple(rgba)))
            with atomic_path(png) as tmp:
                Image.fromarray(render(meshes, size=640)).save(tmp, format="PNG")
            written.append(png)
        if open_browser:
            import webbrowser

            webbrowser.open(html.resolve().as_uri())
        summary("view", written, [f"showing {what}", f"open {html} in a web browser"])
