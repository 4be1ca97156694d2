"""`hoitool grasp`, `hoitool rank` and `hoitool evaluate grasps`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

from hoitool.cli.common import console, plain, progress_bar, setup_logging, summary, user_errors

MESH_SCALE_HELP = "Multiply mesh coordinates by this to get metres (e.g. 0.001 for millimetres)."


def grasp(
    mesh: Path = typer.Argument(..., help="Object mesh (.obj, .ply, .stl, .glb ...), metres unless --scale."),
    n: int = typer.Option(100, "--n", "-n", min=1, help="Number of grasps."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: grasps_<mesh name>)."),
    category: Optional[str] = typer.Option(None, "--category", "-c", help="Object category (default: from the file and folder names)."),
    model: Optional[Path] = typer.Option(None, "--model", help="Prior run folder or model.pt (default: the shipped prior)."),
    steps: int = typer.Option(500, "--steps", min=0, help="Score-distillation iterations (0: refinement only, no prior)."),
    query_every: int = typer.Option(50, "--query-every", min=1, help="SDS iterations per diffusion query (1 = every iteration, slowest)."),
    refine_steps: int = typer.Option(100, "--refine-steps", min=0, help="Mesh-level refinement iterations."),
    rank_steps: int = typer.Option(10, "--rank-steps", min=1, help="Timesteps of the likelihood score (the paper: 100)."),
    rank_noises: int = typer.Option(1, "--rank-noises", min=1, help="Noises per timestep of the likelihood score (the paper: 5)."),
    guidance: float = typer.Option(4.0, "--guidance", min=0.0, help="Classifier-free guidance scale."),
    seed: int = typer.Option(0, "--seed", help="Grasp i depends only on (seed, i)."),
    batch_size: int = typer.Option(50, "--batch-size", min=1, help="Grasps optimised together."),
    scale: float = typer.Option(1.0, "--scale", help=MESH_SCALE_HELP),
    top: int = typer.Option(5, "--top", min=1, help="Best grasps put into scene.glb."),
    no_sim: bool = typer.Option(False, "--no-sim", help="Skip the simulation displacement in summary.json."),
    no_sheet: bool = typer.Option(False, "--no-sheet", help="Do not render contact_sheet.png."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda, cuda:N."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Synthesise grasps of an object with the prior (score distillation, then mesh refinement), rank them by
    the prior's likelihood score and evaluate them. Output in the mesh's own frame and units."""
    import numpy as np

    from hoitool.data.grasps import OBJECT_FILE, GraspSet, staged_folder, write_grasps
    from hoitool.data.vocab import category_or_text
    from hoitool.geometry.mesh import load_mesh
    from hoitool.metrics.grasp import grasp_metrics
    from hoitool.pipelines import grasp_report as rep
    from hoitool.pipelines.grasp import GraspConfig, GraspObject, infer_category, synthesise_grasps
    from hoitool.prior.checkpoint import load_prior
    from hoitool.prior.guidance import GuidanceConfig
    from hoitool.train.loop import resolve_device
    from hoitool.utils.io import atomic_path, write_json

    setup_logging(verbose)
    with user_errors():
        out = out or Path(f"grasps_{mesh.stem}")
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            from hoitool.errors import InputError

            raise InputError(f"{out} already exists and is not empty: choose another --out or delete it")
        obj_mesh, report = load_mesh(mesh, scale=scale)
        obj = GraspObject.from_mesh(obj_mesh, str(mesh))
        dev = resolve_device(device)
        prior = load_prior(model, dev)
        if category is not None:
            name, why = category_or_text(category), "from --category"
        else:
            name, why = infer_category(str(mesh), prior.categories)
        console.print(plain(f"category: {name or '(none)'} - {why}"), soft_wrap=True)
        cfg = GraspConfig(n=n, steps=steps, query_every=query_every, refine_steps=refine_steps, batch_size=batch_size, seed=seed,
                          rank_steps=rank_steps, rank_noises=rank_noises, guidance=GuidanceConfig(guidance=guidance))
        with progress_bar(f"{n} grasps of {mesh.name}") as update:
            res = synthesise_grasps(prior, obj, name, cfg, progress=update)
        ranked = {k: v for k, v in (("likelihood", res.likelihood), ("tier", res.tier)) if v is not None}
        gs = GraspSet(res.params, scale, res.score, name, extra={
            **ranked, "seed": np.int64(seed), "hTo": res.hTo.numpy(), "model": np.array(prior.source), "steps": np.int64(steps),
            **{f"stage1_{k}": v for k, v in res.stage1_params.numpy().items()}})
        verts, faces = rep.hand_vertices(gs)
        with progress_bar("evaluating") as update:
            done = [0]

            def tick(k: int) -> None:
                done[0] += k
                update(done[0], n)
            metrics = grasp_metrics(verts, faces, obj_mesh, simulate=not no_sim, progress=tick)
        with staged_folder(out) as tmp:
            with atomic_path(tmp / OBJECT_FILE) as t:
                trimesh_obj = obj_mesh.copy()
                trimesh_obj.apply_scale(1.0 / scale)
                trimesh_obj.export(t, file_type="obj")
            rep.write_hands(tmp, verts, faces, scale)
            with atomic_path(tmp / "scene.glb") as t:
                rep.scene(obj_mesh, verts, faces, res.order, top, scale).export(t, file_type="glb")
            if not no_sheet:
                best = res.order[:8]
                rep.contact_sheet(obj_mesh, verts, faces, best, [f"#{r + 1} grasp {i:03d}" for r, i in enumerate(best)],
                                  tmp / "contact_sheet.png")
            summ = rep.metrics_summary(metrics, res.score)
            write_json(tmp / "summary.json", {
                "mesh": str(mesh.resolve()), "mesh_scale": scale, "watertight": report.watertight, "category": name,
                "category_reason": why, "model": prior.source, "settings": {k: v for k, v in vars(cfg).items() if k not in ("guidance", "rank_weights")}
                | {"guidance": guidance, "rank_weights": dataclasses.asdict(cfg.rank_weights)},
                "seconds": res.seconds, "metrics": summ["aggregate"], "per_grasp": summ["per_grasp"]})
            write_grasps(tmp, gs)
        written = [out / n_ for n_ in (OBJECT_FILE, "hands", "scene.glb", "contact_sheet.png", "summary.json", "grasps.npz")
                   if (out / n_).exists()]
        console.print(rep.metrics_table(summ["aggregate"], f"{n} grasps of {mesh.name}"))
        summary("grasp", written, [f"model: {prior.source}", f"category: {name or '(none)'} ({why})",
                                   f"time: {res.seconds['total']:.0f} s (SDS {res.seconds['sds']:.0f}, refinement "
                                   f"{res.seconds['refine']:.0f}, ranking {res.seconds['rank']:.0f})",
                                   f"best grasp: {res.order[0]:03d} (score {res.score[res.order[0]]:.2f}); view: hoitool view {out}"])


def rank(
    folder: Path = typer.Argument(..., help="A grasp folder (grasps.npz, object.obj), e.g. from hoitool grasp."),
    mesh: Optional[Path] = typer.Option(None, "--mesh", help="Object mesh (default: the folder's object.obj)."),
    scale: Optional[float] = typer.Option(None, "--scale", help=MESH_SCALE_HELP + " Default: the grasp set's mesh_scale."),
    category: Optional[str] = typer.Option(None, "--category", "-c", help="Category (default: the grasp set's, else from the mesh path)."),
    model: Optional[Path] = typer.Option(None, "--model", help="Prior run folder or model.pt (default: the shipped prior)."),
    rank_steps: int = typer.Option(10, "--rank-steps", min=1, help="Timesteps of the likelihood score (the paper: 100)."),
    rank_noises: int = typer.Option(1, "--rank-noises", min=1, help="Noises per timestep (the paper: 5)."),
    guidance: float = typer.Option(4.0, "--guidance", min=0.0),
    device: str = typer.Option("auto", "--device"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Rank grasps: those that hold (thumb opposing another contact, penetration < 1 cm) first, then those that only
    touch, then those that touch nothing; within each, by the prior's likelihood (G-HOP Eq. 3) with penetration and
    contact terms. Writes score (lower = better), likelihood, tier, rank and order into grasps.npz (and summary.json)."""
    import json

    import numpy as np

    from hoitool.data.grasps import GRASPS_FILE, grasp_object, read_grasps, write_grasps
    from hoitool.data.vocab import category_or_text
    from hoitool.hand.model import HandModel
    from hoitool.pipelines import grasp_report as rep
    from hoitool.pipelines.grasp import GraspObject, infer_category, rank_grasps, score_grasps
    from hoitool.prior.checkpoint import load_prior
    from hoitool.train.loop import resolve_device
    from hoitool.utils.io import write_json

    setup_logging(verbose)
    with user_errors():
        gs = read_grasps(folder)
        obj_mesh, s = grasp_object(folder, mesh, scale, gs.mesh_scale)
        obj = GraspObject.from_mesh(obj_mesh, str(mesh or folder))
        dev = resolve_device(device)
        prior = load_prior(model, dev)
        if category is not None:
            name = category_or_text(category)
        elif gs.category:
            name = gs.category
        else:
            name, why = infer_category(str(mesh or folder), prior.categories)
            console.print(plain(f"category: {name or '(none)'} - {why}"), soft_wrap=True)
        K = gs.params.batch_size
        with progress_bar(f"scoring {K} grasps") as update:
            done = [0]

            def tick(k: int) -> None:
                done[0] += k
                update(done[0], K * rank_steps * rank_noises)
            hand = HandModel("right").to(dev)
            likelihood = score_grasps(prior, hand, obj, gs.params, name, rank_steps, rank_noises, guidance, progress=tick)
        side_hand = hand if gs.params.side == "right" else HandModel(gs.params.side).to(dev)
        gs.score, tier = rank_grasps(side_hand, obj.mesh, gs.params, likelihood)
        gs.extra.update(likelihood=likelihood, tier=tier)
        gs.category, gs.mesh_scale = name, s
        written = [write_grasps(folder, gs)]
        sp = folder / "summary.json"
        if sp.exists():
            d = json.loads(sp.read_text())
            per = d.get("per_grasp", [])
            if len(per) == K:
                for row, sc in zip(per, gs.score):
                    row["score"] = float(sc)
                from hoitool.metrics.grasp import GraspMetrics

                m = GraspMetrics(*[np.array([row.get(k, np.nan) for row in per], dtype=bool if k == "contact" else float)
                                  for k in GraspMetrics.FIELDS])  # older summaries lack displacement6_cm
                d["metrics"] = rep.metrics_summary(m, gs.score)["aggregate"]
            d["ranking"] = {"model": prior.source, "category": name, "rank_steps": rank_steps, "rank_noises": rank_noises}
            written.append(write_json(sp, d))
        order = gs.order
        summary("rank", written, [f"model: {prior.source}", f"category: {name or '(none)'}",
                                  f"best: {', '.join(f'{i:03d} ({gs.score[i]:.2f})' for i in order[:3])}",
                                  f"worst: {', '.join(f'{i:03d} ({gs.score[i]:.2f})' for i in order[-3:][::-1])}",
                                  f"{GRASPS_FILE}: score, rank (0 = best), order"])


evaluate_app = typer.Typer(help="Evaluate results: grasp sets, two-hand samples, reconstructions against their truth.", no_args_is_help=True)


@evaluate_app.command("grasps")
def evaluate_grasps(
    folder: Path = typer.Argument(..., help="A grasp folder (grasps.npz in hoitool's format; object.obj or --mesh)."),
    mesh: Optional[Path] = typer.Option(None, "--mesh", help="Object mesh (default: the folder's object.obj)."),
    scale: Optional[float] = typer.Option(None, "--scale", help=MESH_SCALE_HELP + " Default: the grasp set's mesh_scale."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="JSON file (default: FOLDER/evaluation.json)."),
    no_sim: bool = typer.Option(False, "--no-sim", help="Skip the pybullet simulation displacement."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Intersection volume and depth, contact ratio and area, simulation displacement: per grasp and aggregated
    (all, and the top and bottom 10 % when the set is ranked)."""
    from hoitool.data.grasps import grasp_object, read_grasps
    from hoitool.metrics.grasp import grasp_metrics
    from hoitool.pipelines import grasp_report as rep
    from hoitool.utils.io import write_json

    setup_logging(verbose)
    with user_errors():
        gs = read_grasps(folder)
        obj_mesh, s = grasp_object(folder, mesh, scale, gs.mesh_scale)
        verts, faces = rep.hand_vertices(gs)
        K = len(verts)
        with progress_bar(f"evaluating {K} grasps") as update:
            done = [0]

            def tick(k: int) -> None:
                done[0] += k
                update(done[0], K)
            m = grasp_metrics(verts, faces, obj_mesh, simulate=not no_sim, progress=tick)
        summ = rep.metrics_summary(m, gs.score)
        path = out or (folder / "evaluation.json" if folder.is_dir() else folder.with_suffix(".evaluation.json"))
        write_json(path, {"grasps": str(folder), "mesh_scale": s, "simulated": not no_sim, "metrics": summ["aggregate"],
                          "per_grasp": summ["per_grasp"]})
        console.print(rep.metrics_table(summ["aggregate"], f"{K} grasps in {folder}"))
        summary("evaluate grasps", [path])
