"""The category vocabulary: canonical names and synonyms (assets/categories.json).

`canonical_category("iPhone")` -> "phone"; "YcbMustardBottle" -> "bottle"; names that match
nothing are kept as normalised free text (the prior's text encoder places them near known
ones).
"""

from __future__ import annotations

import functools
import json
import re

from hoitool.assets import asset_path


@functools.lru_cache(maxsize=1)
def vocabulary() -> dict[str, list[str]]:
    """{canonical: [synonyms]} in file order."""
    data = json.loads(asset_path("categories.json").read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


@functools.lru_cache(maxsize=1)
def _lookup() -> dict[str, str]:
    table = {}
    for canon, syns in vocabulary().items():
        table[canon] = canon
        for s in syns:
            table[s] = canon
    return table


def categories() -> list[str]:
    """The canonical category names."""
    return list(vocabulary())


def normalise_name(name: str) -> str:
    """Lower case words: CamelCase and separators split, extra spaces removed."""
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", str(name))
    s = re.sub(r"[_\-/.,]+", " ", s).lower()
    return " ".join(s.split())


def _singular(word: str) -> list[str]:
    out = [word]
    if word.endswith("es"):
        out.append(word[:-2])
    if word.endswith("s"):
        out.append(word[:-1])
    return out


def canonical_category(name: str) -> str | None:
    """The canonical category for a name or synonym, or None if it is not in the vocabulary.

    Tries the whole name, then drops leading words ("red coffee mug" -> "coffee mug"), each
    also with a plural ending removed.
    """
    table = _lookup()
    words = normalise_name(name).split()
    for start in range(len(words)):
        head = words[start:]
        for last in _singular(head[-1]):
            key = " ".join(head[:-1] + [last])
            if key in table:
                return table[key]
    return None


def category_or_text(name: str) -> str:
    """The canonical category if known, else the normalised name itself."""
    return canonical_category(name) or normalise_name(name)
