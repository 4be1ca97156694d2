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
