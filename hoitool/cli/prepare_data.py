"""`hoitool prepare-data`: meshes and grasps to hand-centric 64^3 SDF grids."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from hoitool.cli.common import console, plain, progress_bar, setup_logging, summary, user_errors


def prepare_data(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (re-running with the same options resumes)."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="JSONL manifest of HOI records (see README, 'Manifest format')."),
    synthetic: int = typer.Option(0, "--synthetic", help="Generate this many records of the procedural synthetic corpus instead."),
    two_hands: int = typer.Option(0, "--two-hands", min=0, help="Generate this many two-hand interactions (hand-hand and bimanual grasps) instead."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Convert a public dataset from its released layout: dexycb, ho3d, oakink, grab, arctic, obman, hoi4d, mow (one hand); interhand, arctic-two-hands (two hands). See README, 'Datasets'."),
    root: Optional[Path] = typer.Option(None, "--root", help="--dataset: the dataset's root folder, as its authors release it."),
    objects: Optional[Path] = typer.Option(None, "--objects", help="--dataset: where its object meshes are when they ship separately (YCB models for ho3d, ShapeNetCore.v2 for obman, ...)."),
    stride: int = typer.Option(1, "--stride", min=1, help="--dataset: keep every STRIDE-th frame of each sequence."),
    max_records: Optional[int] = typer.Option(None, "--max-records", min=1, help="--dataset: stop after this many converted records."),
    max_gap_mm: float = typer.Option(10.0, "--max-gap-mm", help="--dataset: skip frames whose hand is farther than this from the object (two-hand records with an object: kept when either hand is within it) (0: keep all)."),
    categories: Optional[str] = typer.Option(None, "--categories", help="Categories, comma-separated: synthetic objects to make (default: all 14), or --dataset records to keep (default: all)."),
    grasps_per_object: Optional[int] = typer.Option(None, "--grasps-per-object", min=1, help="Synthetic grasps planned per object (default 8)."),
    scale: Optional[float] = typer.Option(None, "--scale", help="Multiply manifest mesh coordinates by this (0.001 for millimetres) (default 1)."),
    workers: int = typer.Option(max(1, min(os.cpu_count() or 1, 8)), "--workers", "-j", min=1, help="Parallel worker processes."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the synthetic corpus (default 0)."),
    no_preview: bool = typer.Option(False, "--no-preview", help="Do not render preview.png."),
    mano_dir: Optional[Path] = typer.Option(None, "--mano-dir", help="Folder with MANO_RIGHT.pkl / MANO_LEFT.pkl (default: the open hand)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved options and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log more."),
) -> None:
    """Convert a manifest, a public dataset (--dataset) or the synthetic corpus into prepared shards: a canonical SDF grid per object, a hand-centric 64^3 object grid and hand parameters per record."""
    from hoitool.data.prepare import PrepareConfig, check_config, prepare
    from hoitool.errors import InputError
    from hoitool.utils.config import dump_yaml

    setup_logging(verbose)
    with user_errors():
        from hoitool.twohands.records import manifest_is_twohand

        conv = None
        if dataset is None:
            given = [n for n, v in (("--root", root), ("--objects", objects), ("--max-records", max_records),
                                    ("--stride", stride if stride != 1 else None)) if v is not None]
            if given:
                raise InputError(f"{', '.join(given)} {'apply' if len(given) > 1 else 'applies'} to --dataset only")
        else:
            conv = _convert_dataset(dataset, root, objects, out, categories, stride, max_records, max_gap_mm, mano_dir,
                                    manifest, synthetic, two_hands, dry_run, scale)
            if conv is None:
                return
            manifest, categories = conv.manifest, None

        if two_hands > 0 or (manifest is not None and manifest_is_twohand(manifest)):
            given = [n for n, v in (("--synthetic", synthetic or None), ("--categories", categories), ("--grasps-per-object", grasps_per_object)) if v is not None]
            if given:
                raise InputError(f"{', '.join(given)} cannot be combined with two-hand data: drop {'them' if len(given) > 1 else 'it'}")
            _prepare_twohands(out, manifest, two_hands, scale, workers, seed, no_preview, mano_dir, dry_run, conv)
            return
        # options of the other mode would be ignored yet look as if they did something: refused
        if manifest is not None:
            given = [n for n, v in (("--seed", seed), ("--categories", categories), ("--grasps-per-object", grasps_per_object)) if v is not None]
            if given:
                many = len(given) > 1
                raise InputError(f"{', '.join(given)} {'apply' if many else 'applies'} to --synthetic only: "
                                 f"drop {'them' if many else 'it'} with --manifest")
        elif scale is not None:
            raise InputError("--scale applies to --manifest meshes only: drop it with --synthetic")
        cfg = PrepareConfig(
            out=out, manifest=manifest, synthetic=synthetic,
            categories=[c.strip() for c in categories.split(",") if c.strip()] if categories else None,
            grasps_per_object=8 if grasps_per_object is None else grasps_per_object, scale=1.0 if scale is None else scale,
            workers=workers, seed=0 if seed is None else seed, preview=not no_preview,
            mano_dir=str(mano_dir) if mano_dir else None,
        )
        if dry_run:
            console.print(plain(dump_yaml(cfg)))
            return
        check_config(cfg)
        what = f"{synthetic} synthetic records" if synthetic else f"manifest {manifest}"
        with progress_bar(f"preparing {what}") as update:
            res = prepare(cfg, progress=update)
        s = res.stats
        lines = [f"{res.records} records of {res.objects} objects in {res.shards} shards "
                 f"({res.skipped_shards} already done) in {res.seconds:.0f} s"]
        if s.get("penetration_mm", {}).get("mean") is not None:
            lines.append(f"penetration: mean {s['penetration_mm']['mean']:.2f} mm, max {s['penetration_mm']['max']:.2f} mm; "
                         f"fingers in contact: {s['fingers_in_contact_mean']:.2f} of 5")
        if "planner" in s and s["planner"]["acceptance_rate"] is not None:
            lines.append(f"grasp planner: {s['planner']['accepted']} of {s['planner']['candidates']} candidates passed the gates "
                         f"({100 * s['planner']['acceptance_rate']:.0f} %)")
        if synthetic and res.records < synthetic:
            lines.append(f"warning: {res.records} records, not the {synthetic} asked for: the planner found too few grasps "
                         "(see stats.json, planner.rejected)")
        nothing = s.get("touching_nothing") or []
        if nothing:
            lines.append(f"warning: {len(nothing)} record(s) touch nothing (no finger or palm within the contact distance), "
                         f"e.g. {', '.join(map(str, nothing[:3]))}")
        summary("prepare-data", _conv_written(conv) + res.written, _conv_lines(conv) + lines)


def _convert_dataset(name, root, objects, out, categories, stride, max_records, max_gap_mm, mano_dir, manifest, synthetic,
                     two_hands, dry_run, scale=None):
    """--dataset: the dataset converted into OUT/dataset/records.jsonl (None after --dry-run)."""
    from hoitool.data.datasets.base import ConvertOptions
    from hoitool.data.datasets.convert import check_root, convert
    from hoitool.errors import InputError
    from hoitool.utils.config import dump_yaml

    given = [n for n, v in (("--manifest", manifest), ("--synthetic", synthetic or None), ("--two-hands", two_hands or None)) if v is not None]
    if given:
        raise InputError(f"--dataset reads its own records: drop {', '.join(given)}")
    if scale is not None:
        raise InputError("--scale applies to --manifest meshes: a --dataset converter puts its records in metres itself; drop it")
    if root is None:
        raise InputError("--dataset needs --root: the dataset's root folder")
    opts = ConvertOptions(dataset=name, root=root.expanduser(), work=out / "dataset", objects=objects, mano_dir=str(mano_dir) if mano_dir else None,
                          categories=[c.strip() for c in categories.split(",") if c.strip()] if categories else None,
                          max_records=max_records, stride=stride, max_gap_mm=max_gap_mm)
    ds = check_root(opts)
    if dry_run:
        console.print(plain(dump_yaml(opts)))
        return None
    with progress_bar(f"converting {ds.title}") as update:
        return convert(opts, progress=update)


def _conv_lines(conv) -> list[str]:
    if conv is None:
        return []
    lines = conv.tally.summary_lines()
    if conv.reused:
        lines[0] += " (the earlier conversion with these options, reused)"
    return lines


def _conv_written(conv) -> list:
    return [] if conv is None else conv.written


def _prepare_twohands(out, manifest, two_hands, scale, workers, seed, no_preview, mano_dir, dry_run, conv=None) -> None:
    from hoitool.errors import InputError
    from hoitool.twohands.prepare import TwoHandPrepareConfig, check_config, prepare_twohands
    from hoitool.utils.config import dump_yaml

    if manifest is not None and two_hands:
        raise InputError("give either --manifest FILE or --two-hands N, not both")
    if manifest is None and scale is not None:
        raise InputError("--scale applies to --manifest meshes only: drop it with --two-hands")
    if manifest is not None and seed is not None:
        raise InputError("--seed applies to --two-hands only: drop it with --manifest")
    cfg = TwoHandPrepareConfig(out=out, two_hands=two_hands, manifest=manifest, scale=1.0 if scale is None else scale,
                               workers=workers, seed=0 if seed is None else seed, preview=not no_preview,
                               mano_dir=str(mano_dir) if mano_dir else None)
    if dry_run:
        console.print(plain(dump_yaml(cfg)))
        return
    check_config(cfg)
    what = f"{two_hands} two-hand interactions" if two_hands else f"two-hand manifest {manifest}"
    with progress_bar(f"preparing {what}") as update:
        res = prepare_twohands(cfg, progress=update)
    s = res.stats
    lines = [f"{res.records} two-hand records ({s.get('with_object', 0)} with an object) in {res.seconds:.0f} s",
             "types: " + ", ".join(f"{k} {v}" for k, v in s.get("types", {}).items())]
    if s.get("acceptance_rate") is not None:
        lines.append(f"planner: {s['accepted']} of {s['candidates']} candidates passed the gates ({100 * s['acceptance_rate']:.0f} %)")
    if "penetration_volume_cm3" in s:
        lines.append(f"hand-hand penetration: mean {s['penetration_volume_cm3']['mean']:.3f} cm^3, max {s['penetration_volume_cm3']['max']:.3f} cm^3")
    if two_hands and res.records < two_hands:
        lines.append(f"warning: {res.records} records, not the {two_hands} asked for: the planner found too few (see stats.json)")
    summary("prepare-data", _conv_written(conv) + res.written, _conv_lines(conv) + lines)
