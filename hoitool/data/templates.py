"""Object templates per category from the project's own procedural object library.

A template is the category's generator run with a fixed seed, so `--category mug` always
means the same mesh (metres, standing along +z, bounding box centred at the origin).
"""

from __future__ import annotations

import trimesh

from hoitool.data.synthetic.objects import GENERATORS, make_object
from hoitool.data.vocab import canonical_category
from hoitool.errors import InputError
from hoitool.utils.seeding import numpy_rng

#: Seed of the library templates (not used by the synthetic corpus, whose objects are drawn
#: from (corpus seed, object index)).
TEMPLATE_SEED = 20211


def template_categories() -> list[str]:
    return list(GENERATORS)


def category_template(name: str) -> tuple[trimesh.Trimesh, str]:
    """(mesh, canonical category) of the library template for a category name or synonym."""
    canon = canonical_category(name)
    if canon not in GENERATORS:
        raise InputError(f"no object template for category {name!r}: use one of {', '.join(GENERATORS)} or pass --object-mesh")
    return make_object(canon, numpy_rng(TEMPLATE_SEED, "template", canon)), canon
