"""Dataclass configs: resolve, print and save them beside every output."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from hoitool.utils.io import write_text


def to_dict(cfg: Any) -> dict:
    """A plain dict of a (nested) dataclass, with paths as strings."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return conv(cfg)


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML (atomically)."""
    return write_text(path, dump_yaml(cfg))
