"""Atomic file writes: complete or absent, with the usual file mode."""

import os

import pytest

from hoitool.utils.io import atomic_path, write_json


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_atomic_writes_leave_nothing_on_failure(tmp_path):
    p = write_json(tmp_path / "a.json", {"x": 1})
    assert os.stat(p).st_mode & 0o777 == 0o666 & ~_umask()
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "b.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.json"]
