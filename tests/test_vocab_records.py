import json

import numpy as np
import pytest

from hoitool.data.records import read_manifest, write_manifest
from hoitool.data.vocab import canonical_category, categories, category_or_text
from hoitool.errors import InputError


def test_vocabulary_has_fourteen_categories():
    assert len(categories()) >= 12
    for c in ("mug", "bottle", "bowl", "can", "box", "knife", "hammer", "spoon", "cup", "plate", "phone", "ball", "pan", "kettle"):
        assert canonical_category(c) == c


@pytest.mark.parametrize("name,expected", [
    ("iPhone", "phone"), ("cellphone", "phone"), ("Cell_Phone", "phone"), ("mugs", "mug"),
    ("red coffee mug", "mug"), ("YcbMustardBottle", "bottle"), ("boxes", "box"), ("frying pan", "pan"),
    ("YcbMasterChefCan", "can"), ("giraffe", None),
])
def test_synonyms(name, expected):
    assert canonical_category(name) == expected


def test_unknown_names_stay_as_text():
    assert category_or_text("Toy Giraffe") == "toy giraffe"


def _rec(**kw):
    r = {"object_mesh": "m.obj", "category": "iphone", "side": "right", "global_orient": [0, 0, 0],
         "hand_pose": [0.1] * 45, "betas": [0] * 10, "transl": [0, 0, 0.1]}
    r.update(kw)
    return r


def test_manifest_round_trip(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text("\n".join(json.dumps(_rec(id=f"r{i}", note=i)) for i in range(3)) + "\n")
    recs = read_manifest(p)
    assert [r.category for r in recs] == ["phone"] * 3
    assert recs[0].object_mesh == str(tmp_path / "m.obj")
    assert recs[1].extra == {"note": 1}
    q = tmp_path / "out.jsonl"
    write_manifest(q, recs, relative_to=tmp_path)
    back = read_manifest(q)
    assert [r.id for r in back] == ["r0", "r1", "r2"]
    assert np.allclose(back[2].hand_pose, recs[2].hand_pose)
    assert back[0].object_mesh == recs[0].object_mesh


@pytest.mark.parametrize("bad,msg", [
    ({"hand_pose": [0.0] * 44}, "44 values"),
    ({"transl": [0, "x", 0]}, "transl"),
    ({"betas": [float("nan")] * 10}, "NaN"),
    ({"side": "both"}, "side"),
    ({"scale": -1}, "scale"),
])
def test_manifest_errors_name_the_line(tmp_path, bad, msg):
    p = tmp_path / "m.jsonl"
    p.write_text(json.dumps(_rec()) + "\n" + json.dumps(_rec(**bad)) + "\n")
    with pytest.raises(InputError, match=msg) as e:
        read_manifest(p)
    assert "m.jsonl:2" in str(e.value)


def test_manifest_missing_field_and_bad_json(tmp_path):
    p = tmp_path / "m.jsonl"
    r = _rec()
    del r["betas"]
    p.write_text(json.dumps(r) + "\n")
    with pytest.raises(InputError, match="missing field"):
        read_manifest(p)
    p.write_text("{not json\n")
    with pytest.raises(InputError, match="not valid JSON"):
        read_manifest(p)
    p.write_text("\n")
    with pytest.raises(InputError, match="no records"):
        read_manifest(p)


@pytest.mark.parametrize("name,expected", [("YcbScissors", "scissors"), ("YcbPowerDrill", "drill"), ("YcbBanana", "banana"),
                                           ("highlighter", "pen"), ("game controller", "remote")])
def test_real_object_names(name, expected):
    assert canonical_category(name) == expected
