"""Where the shipped assets live (open hand, category vocabulary, default checkpoints)."""

from __future__ import annotations

import os
from pathlib import Path

from hoitool.errors import HoiError


def asset_dir() -> Path:
    """The `assets/` folder: $HOITOOL_ASSETS, else the one beside the installed package."""
    env = os.environ.get("HOITOOL_ASSETS")
    d = Path(env) if env else Path(__file__).resolve().parents[1] / "assets"
    if not d.is_dir():
        raise HoiError(
            f"hoitool's assets folder is missing ({d}): install hoitool from a checkout "
            "(pip install -e .) or set HOITOOL_ASSETS to the repository's assets/ folder"
        )
    return d


def asset_path(*parts: str) -> Path:
    p = asset_dir().joinpath(*parts)
    if not p.exists():
        raise HoiError(f"asset missing: {p} (rebuild it with the script named in assets/README.md)")
    return p


def cache_dir() -> Path:
    """User cache for derived files ($HOITOOL_CACHE, else ~/.cache/hoitool)."""
    d = Path(os.environ.get("HOITOOL_CACHE", Path.home() / ".cache" / "hoitool"))
    d.mkdir(parents=True, exist_ok=True)
    return d
