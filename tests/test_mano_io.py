"""Reading MANO-format files without chumpy, with a stand-in file built from the open hand
(the licensed MANO files are never part of the project)."""

import pickle
import sys

import numpy as np
import torch

from hoitool.assets import asset_dir
from hoitool.hand import HandModel, HandParams
from hoitool.hand.mano_io import read_model_file

from fake_mano import write_chumpy_file


def test_reads_chumpy_pickles_without_chumpy(tmp_path, monkeypatch):
    monkeypatch.setenv("HOITOOL_CACHE", str(tmp_path / "cache"))
    for side in ("right", "left"):
        arrays = read_model_file(asset_dir() / "hand" / f"open_hand_{side}.pkl")
        write_chumpy_file(tmp_path / f"MANO_{side.upper()}.pkl", arrays)
    assert "chumpy" not in sys.modules
    got = read_model_file(tmp_path / "MANO_RIGHT.pkl")
    assert np.allclose(got["v_template"], read_model_file(asset_dir() / "hand" / "open_hand_right.pkl")["v_template"])
    hand = HandModel("right", mano_dir=tmp_path)
    assert hand.source.startswith("MANO") and hand.is_mano
    assert list((tmp_path / "cache" / "hand_models").glob("MANO_RIGHT-*.npz"))  # cached as .npz
    again = HandModel("right", mano_dir=tmp_path)  # from the cache
    p = HandParams.zeros(2)
    p.hand_pose = 0.3 * torch.ones(2, 45)
    assert torch.allclose(again(p).vertices, HandModel("right")(p).vertices, atol=1e-5)
    monkeypatch.setenv("HOITOOL_MANO_DIR", str(tmp_path))
    assert HandModel("left").source.startswith("MANO (HOITOOL_MANO_DIR")


def test_refuses_arbitrary_classes(tmp_path):
    import pytest

    from hoitool.errors import InputError

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    (tmp_path / "bad.pkl").write_bytes(pickle.dumps({"v_template": Evil()}))
    with pytest.raises(InputError, match="refusing"):
        read_model_file(tmp_path / "bad.pkl")
