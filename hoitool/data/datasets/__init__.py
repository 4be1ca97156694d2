"""Converters from public HOI datasets' released layouts to hoitool's records.

    hoitool prepare-data --dataset dexycb --root ~/data/dex-ycb --mano-dir ~/mano --out data/dexycb

One module per dataset, each with a `DATASET` (see `base.Dataset`); `convert.convert` runs one
and writes the generic manifest that `prepare-data` then turns into shards.
"""

from __future__ import annotations

import importlib

from hoitool.errors import InputError

#: --dataset name -> module; one-hand datasets first, then the two-hand ones.
DATASETS = {
    "dexycb": "dexycb", "ho3d": "ho3d", "oakink": "oakink", "grab": "grab", "arctic": "arctic",
    "obman": "obman", "hoi4d": "hoi4d", "mow": "mow",
    "interhand": "interhand", "arctic-two-hands": "arctic",
}


def dataset(name: str):
    """The `Dataset` called `name` (InputError naming the choices otherwise)."""
    key = str(name).strip().lower()
    if key not in DATASETS:
        raise InputError(f"unknown dataset {name!r}: choose from {', '.join(DATASETS)}")
    module = importlib.import_module(f"hoitool.data.datasets.{DATASETS[key]}")
    return module.DATASETS[key] if hasattr(module, "DATASETS") else module.DATASET
