"""The 2D hand keypoint detector: pure parts always; the MediaPipe run only where .venv-detect exists."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from hoitool.errors import InputError
from hoitool.hand import detect
from hoitool.hand import mediapipe_worker as worker
from hoitool.hand.detect import Hand, select_side

REPO = Path(__file__).resolve().parents[1]


def test_to_pixels_scales_by_width_and_height_with_pixel_centres_at_integers():
    lm = np.array([[0.0, 0.0, 0.3], [1.0, 1.0, -0.1], [0.25, 0.5, 0.0], [0.5 / 640, 0.5 / 480, 0.0]], np.float32)
    px = worker.to_pixels(lm, width=640, height=480)
    assert px.shape == (4, 2) and px.dtype == np.float32
    # the image's outer edges are -0.5 and W - 0.5; the first pixel's centre is 0
    np.testing.assert_allclose(px, [[-0.5, -0.5], [639.5, 479.5], [159.5, 239.5], [0, 0]], atol=1e-4)
    # batched, any leading shape
    assert worker.to_pixels(np.zeros((2, 4, 21, 3)), 10, 20).shape == (2, 4, 21, 2)


def test_handedness_is_swapped_for_unmirrored_images():
    assert worker.is_right("Left") and not worker.is_right("Right")
    assert worker.is_right("Right", mirrored=True) and not worker.is_right("Left", mirrored=True)
    with pytest.raises(ValueError):
        worker.is_right("Both")


def _hand(x, right, score):
    return Hand(np.full((21, 2), x, np.float32), right, score)


def test_select_side():
    r, l_ = _hand(1, True, 0.9), _hand(2, False, 0.97)
    kp, c = select_side([l_, r], "right")
    assert kp[0, 0] == 1 and c == pytest.approx(0.9)
    kp, c = select_side([l_, r], "left")
    assert kp[0, 0] == 2 and c == pytest.approx(0.97)
    # two of the asked side: the higher score
    kp, c = select_side([_hand(3, True, 0.6), _hand(4, True, 0.8)], "right")
    assert kp[0, 0] == 4 and c == pytest.approx(0.8)
    # a lone hand labelled the other side: taken at half its score (< 0.5)
    kp, c = select_side([l_], "right")
    assert kp[0, 0] == 2 and c == pytest.approx(0.485)
    # several hands, none of the asked side; or none at all: nothing
    for hands in ([l_, _hand(5, False, 0.7)], []):
        kp, c = select_side(hands, "right")
        assert c == 0 and not kp.any() and kp.shape == (21, 2)
    with pytest.raises(InputError):
        select_side([r], "both")


def test_result_to_keypoints_and_confidence(monkeypatch):
    """detect_keypoints on a canned worker result: shapes, side choice, empty images."""
    n, m = 3, 2
    res = {"keypoints": np.zeros((n, m, 21, 2), np.float32), "right": np.full((n, m), -1, np.int8),
           "score": np.zeros((n, m), np.float32), "count": np.array([2, 1, 0], np.int32)}
    res["keypoints"][0, 0], res["right"][0, 0], res["score"][0, 0] = 7, 0, 0.99
    res["keypoints"][0, 1], res["right"][0, 1], res["score"][0, 1] = 8, 1, 0.95
    res["keypoints"][1, 0], res["right"][1, 0], res["score"][1, 0] = 9, 0, 0.8
    monkeypatch.setattr(detect, "run_detector", lambda *a, **k: res)
    kp, conf = detect.detect_keypoints(np.zeros((n, 8, 8, 3), np.uint8), side="right")
    assert kp.shape == (3, 21, 2) and conf.shape == (3, 21) and kp.dtype == conf.dtype == np.float32
    assert kp[0, 0, 0] == 8 and conf[0, 0] == pytest.approx(0.95)
    assert kp[1, 0, 0] == 9 and conf[1, 0] == pytest.approx(0.4)
    assert not kp[2].any() and not conf[2].any()


def test_image_inputs_are_normalised():
    ims = detect._as_images([np.zeros((4, 5), np.uint8), np.ones((6, 7, 4), np.float32), np.zeros((2, 3, 3), np.uint8)])
    assert [im.shape for im in ims] == [(4, 5, 3), (6, 7, 3), (2, 3, 3)]
    assert all(im.dtype == np.uint8 for im in ims) and ims[1].max() == 255
    assert len(detect._as_images(np.zeros((5, 8, 8, 3), np.uint8))) == 5
    assert len(detect._as_images(np.zeros((8, 8, 3), np.uint8))) == 1
    with pytest.raises(InputError):
        detect._as_images([np.zeros((4, 5, 2), np.uint8)])


def test_missing_environment_names_the_make_target(monkeypatch, tmp_path):
    monkeypatch.setenv(detect.ENV_VAR, str(tmp_path / "nope" / "python"))
    assert detect.detector_python() is None
    status = detect.detector_status()
    assert status and "make setup-detect" in status and "\n" not in status
    with pytest.raises(InputError, match="make setup-detect"):
        detect.detect_keypoints([np.zeros((8, 8, 3), np.uint8)])
    monkeypatch.delenv(detect.ENV_VAR)
    monkeypatch.setattr(detect, "detector_candidates", lambda: [tmp_path / "none" / "bin" / "python"])
    assert detect.detector_python() is None
    with pytest.raises(InputError, match=r"make setup-detect"):
        detect.detect_keypoints([np.zeros((8, 8, 3), np.uint8)])


def test_crashing_detector_reports_its_last_stderr_line(monkeypatch, tmp_path):
    """A 'Python' that fails: the error is one line with the last line of its stderr."""
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'noise' >&2\necho 'ImportError: libfoo.so: cannot open' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv(detect.ENV_VAR, str(fake))
    with pytest.raises(InputError) as e:
        detect.detect_keypoints([np.zeros((8, 8, 3), np.uint8)])
    assert "ImportError: libfoo.so: cannot open" in str(e.value) and "\n" not in str(e.value)
    assert "libfoo" in detect.detector_status()


def test_candidates_include_the_checkout_and_beside_sys_prefix(monkeypatch, tmp_path):
    monkeypatch.delenv(detect.ENV_VAR, raising=False)
    cands = detect.detector_candidates()
    assert cands[0] == REPO / ".venv-detect" / "bin" / "python"
    monkeypatch.setattr(detect.sys, "prefix", str(tmp_path / ".venv"))
    py = tmp_path / ".venv-detect" / "bin" / "python"
    assert py in detect.detector_candidates()
    py.parent.mkdir(parents=True)
    py.write_text("")
    monkeypatch.setattr(detect, "detector_candidates", lambda: [tmp_path / "x" / "python", py])
    assert detect.detector_python() == py


def test_makefile_pins_match_the_module():
    mk = (REPO / "Makefile").read_text()
    m = re.search(r"^DETECT_PKGS\s*=\s*(.+)$", mk, re.M)
    assert m, "DETECT_PKGS missing from the Makefile"
    assert m.group(1).split() == detect.DETECT_REQUIREMENTS


needs_env = pytest.mark.skipif(detect.detector_python() is None,
                               reason="no detector environment (.venv-detect): run `make setup-detect`")


@needs_env
def test_detector_runs_on_blank_images():
    """The real MediaPipe run: no hand in blank / noise images, shapes as documented, both modes."""
    assert detect.detector_status() is None
    rng = np.random.default_rng(0)
    ims = [np.zeros((120, 160, 3), np.uint8), np.full((90, 90, 3), 255, np.uint8),
           rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)]
    kp, conf = detect.detect_keypoints(ims, side="left")
    assert kp.shape == (3, 21, 2) and conf.shape == (3, 21)
    assert not conf.any() and not kp.any()
    kp, conf = detect.detect_keypoints(np.zeros((4, 32, 32, 3), np.uint8), side="right", video=True)
    assert kp.shape == (4, 21, 2) and not conf.any()


def test_reconstruct_detect_that_finds_no_hand_is_one_line(tmp_path, monkeypatch):
    """`reconstruct IMAGE --detect` and `reconstruct CLIP --detect` when the detector finds no hand of the side."""
    from PIL import Image
    from typer.testing import CliRunner

    from hoitool.cli.main import app

    calls = []

    def none_found(images, side="right", video=False):
        calls.append((len(images), side, video))
        return np.zeros((len(images), 21, 2), np.float32), np.zeros((len(images), 21), np.float32)

    monkeypatch.setattr(detect, "detect_keypoints", none_found)
    img = tmp_path / "photo.png"
    Image.new("RGB", (64, 48), (200, 180, 160)).save(img)
    r = CliRunner().invoke(app, ["reconstruct", str(img), "--category", "mug", "--detect", "--side", "left", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "no left hand" in r.output and r.output.count("error:") == 1, r.output
    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(3):
        Image.new("RGB", (64, 48), (t * 40, 0, 0)).save(frames / f"{t:03d}.png")
    r = CliRunner().invoke(app, ["reconstruct", str(frames), "--category", "mug", "--detect", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "no right hand in any frame" in r.output, r.output
    assert calls == [(1, "left", False), (3, "right", True)]
    assert not (tmp_path / "o").exists()
