import os

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def right_hand():
    from hoitool.hand import HandModel

    return HandModel("right")


@pytest.fixture(scope="session")
def left_hand():
    from hoitool.hand import HandModel

    return HandModel("left")


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory):
    """4 synthetic records (2 boxes, 2 balls) prepared on one worker."""
    from hoitool.data.prepare import PrepareConfig, prepare

    out = tmp_path_factory.mktemp("tiny") / "data"
    prepare(PrepareConfig(out=out, synthetic=4, categories=["box", "ball"], grasps_per_object=2, workers=1, preview=False))
    return out


@pytest.fixture(scope="session")
def fake_mano(tmp_path_factory):
    """A stand-in MANO folder (the open hand in MANO's file layout, with a non-zero mean pose and
    a random PCA basis); see tests/fake_mano.py."""
    from fake_mano import make_fake_mano_dir

    return make_fake_mano_dir(tmp_path_factory.mktemp("mano"))
