"""Video clip inputs (hoitool/data/video_inputs.py): clips from mp4 / gif / folders of frames,
--frames selection, per-frame masks and keypoints, write_video, and the one-line errors.

Every clip is tiny (6 frames of 40x32, a white 8x8 square moving 5 px right per frame and a red
corner mark), so that the whole file runs in a few seconds on one core."""

import json
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from hoitool.data import image_inputs as ii
from hoitool.data import video_inputs as vi
from hoitool.errors import InputError

T, H, W = 6, 32, 40
EXIF_ORIENTATION = 0x0112


def _frame(k: int, h: int = H, w: int = W) -> np.ndarray:
    """(h, w, 3) uint8: black, a white 8x8 square at x = 4 + 5k, y = 12, a red 4x4 top-left corner."""
    a = np.zeros((h, w, 3), np.uint8)
    a[12:20, 4 + 5 * k: 12 + 5 * k] = 255
    a[:4, :4] = (255, 0, 0)
    return a


def _frames(n: int = T) -> np.ndarray:
    return np.stack([_frame(k) for k in range(n)])


def _square_x(frame: np.ndarray) -> float:
    """x of the white square's centre (bright pixels of all three channels, below the corner mark)."""
    ys, xs = np.nonzero(frame[8:].min(axis=2) > 128)
    return float(xs.mean())


def _raises(fn, *needles) -> str:
    """Run fn, expect an InputError of one line containing every needle; return the message."""
    with pytest.raises(InputError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"
    return msg


@pytest.fixture(scope="module")
def mp4(tmp_path_factory):
    return vi.write_video(tmp_path_factory.mktemp("mp4") / "clip.mp4", _frames(), fps=25)


def _folder(tmp_path, names=None, make=_frame):
    d = tmp_path / "frames"
    d.mkdir()
    for k, name in enumerate(names or [f"frame_{k:04d}.png" for k in range(T)]):
        Image.fromarray(make(k)).save(d / name)
    return d


def _points(k: int, conf: bool = False) -> list:
    """21 keypoints of frame k (pixels, inside the 40x32 frame), distinct per frame and per point."""
    pts = [[5.0 + 5 * k + 0.5 * j, 6.0 + j] for j in range(21)]
    return [p + [0.9] for p in pts] if conf else pts


# -- clips -------------------------------------------------------------------------------------------
def test_mp4_round_trip_keeps_count_size_rate_and_content(mp4):
    clip = vi.load_clip(mp4)
    assert clip.frames.shape == (T, H, W, 3) and clip.frames.dtype == np.uint8
    assert clip.indices == list(range(T)) and clip.stems == [f"{k:05d}" for k in range(T)]
    assert clip.fps == pytest.approx(25.0) and clip.total == T and clip.original_size == (W, H)
    # lossy (H.264 or MPEG-4 part 2, 4:2:0 chroma): small mean error, the square where it was drawn
    assert np.abs(clip.frames.astype(int) - _frames().astype(int)).mean() < 6
    for k in range(T):
        assert _square_x(clip.frames[k]) == pytest.approx(7.5 + 5 * k, abs=0.5)


def test_mp4_odd_size_padded_and_no_temp_file_left(tmp_path):
    frames = [_frame(k, 33, 41) for k in range(3)]
    out = vi.write_video(tmp_path / "odd.mp4", frames, fps=10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.mp4"]
    clip = vi.load_clip(out)
    assert clip.frames.shape == (3, 34, 42, 3)
    assert np.abs(clip.frames[:, :33, :41].astype(int) - np.stack(frames).astype(int)).mean() < 6


def test_gif_round_trip_exact(tmp_path):
    out = vi.write_video(tmp_path / "clip.gif", _frames(), fps=20)
    clip = vi.load_clip(out)
    assert np.array_equal(clip.frames, _frames())
    assert clip.fps == pytest.approx(20.0)
    assert clip.stems == [f"{k:05d}" for k in range(T)]


def test_video_display_rotation_applied_as_opencv_does(tmp_path):
    """A portrait phone video: stored 40x32 with a display matrix rotating 90 deg clockwise."""
    import av

    path = tmp_path / "portrait.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=Fraction(30))
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.set_display_rotation(-90)
        for a in _frames(2):
            for p in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    clip = vi.load_clip(path)
    assert clip.frames.shape == (2, W, H, 3) and clip.original_size == (H, W)
    want = np.rot90(_frames(2), -1, axes=(1, 2))  # clockwise
    assert np.abs(clip.frames.astype(int) - want.astype(int)).mean() < 8
    assert clip.frames[0, :4, -4:, 0].mean() > 200  # the red corner went to the top right


def test_folder_natural_order_and_stems(tmp_path):
    names = ["frame10.png", "frame2.png", "frame1.png", "frame20.png", "frame3.png", "frame11.png"]
    # content k is written to the k-th name in natural order
    order = sorted(names, key=lambda n: int(n[5:-4]))
    d = tmp_path / "frames"
    d.mkdir()
    for k, name in enumerate(order):
        Image.fromarray(_frame(k)).save(d / name)
    (d / "notes.txt").write_text("not a frame")
    clip = vi.load_clip(d)
    assert clip.stems == ["frame1", "frame2", "frame3", "frame10", "frame11", "frame20"]
    assert np.array_equal(clip.frames, _frames())
    assert clip.fps == vi.DEFAULT_FPS
    assert clip.numbers == [1, 2, 3, 10, 11, 20]


def test_folder_frames_follow_exif_orientation(tmp_path):
    d = tmp_path / "phone"
    d.mkdir()
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # display = stored turned 90 deg clockwise
    stored = [np.ascontiguousarray(np.rot90(_frame(k), 1)) for k in range(3)]  # (40, 32): upright after turning
    for k, a in enumerate(stored):
        Image.fromarray(a).save(d / f"{k}.jpg", exif=exif, quality=95)
    clip = vi.load_clip(d)
    assert clip.frames.shape == (3, H, W, 3)
    assert np.abs(clip.frames.astype(int) - _frames(3).astype(int)).mean() < 8


def test_folder_of_unequal_frames_names_the_odd_one(tmp_path):
    d = _folder(tmp_path, make=lambda k: _frame(k, 32, 48) if k == 4 else _frame(k))
    _raises(lambda: vi.load_clip(d), "frame_0004.png", "48x32", "40x32", "same size")


def test_empty_folder_and_still_image_and_missing_path(tmp_path):
    (tmp_path / "empty").mkdir()
    _raises(lambda: vi.load_clip(tmp_path / "empty"), "holds no frames")
    Image.fromarray(_frame(0)).save(tmp_path / "still.png")
    _raises(lambda: vi.load_clip(tmp_path / "still.png"), "still.png", "still image")
    _raises(lambda: vi.load_clip(tmp_path / "nope.mp4"), "not found", "nope.mp4")


@pytest.mark.parametrize("content", [b"", b"this is not a video" * 20, "truncated"])
def test_unreadable_video_is_one_line_with_a_fix(tmp_path, mp4, content):
    path = tmp_path / "bad.mp4"
    path.write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 2] if content == "truncated" else content)
    _raises(lambda: vi.load_clip(path), "bad.mp4", "cannot be read as a video", "ffmpeg", "folder of frames")


def test_video_without_video_stream(tmp_path):
    import av

    path = tmp_path / "sound.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000)
        f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        f.sample_rate = 16000
        for p in list(s.encode(f)) + list(s.encode(None)):
            c.mux(p)
    _raises(lambda: vi.load_clip(path), "sound.mp4", "no video stream")


# -- --frames ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,want", [
    (None, (0, None, 1)), ("", (0, None, 1)), ("2:5", (2, 5, 1)), ("2:", (2, None, 1)), (":4", (0, 4, 1)),
    ("::2", (0, None, 2)), ("1:9:3", (1, 9, 3)), (" 3 ", (3, 4, 1)), ("-2:", (-2, None, 1)),
])
def test_parse_frames(spec, want):
    assert vi.parse_frames(spec) == want


@pytest.mark.parametrize("spec", ["a:b", "1:2:3:4", "1.5:3", "::0", "::-1"])
def test_parse_frames_refuses_bad_text(spec):
    _raises(lambda: vi.parse_frames(spec), "--frames", repr(spec))


def test_frames_selection_on_video_and_folder(mp4, tmp_path):
    clip = vi.load_clip(mp4, frames="1:5:2")
    assert clip.indices == [1, 3] and clip.stems == ["00001", "00003"] and clip.total == T
    assert [round(_square_x(f)) for f in clip.frames] == [round(7.5 + 5), round(7.5 + 15)]
    assert vi.load_clip(mp4, frames="-2:").indices == [4, 5]
    clip = vi.load_clip(_folder(tmp_path), frames="::2")
    assert clip.stems == ["frame_0000", "frame_0002", "frame_0004"] and clip.indices == [0, 2, 4]
    assert np.array_equal(clip.frames, _frames()[::2])


def test_frames_selection_out_of_range(mp4, tmp_path):
    _raises(lambda: vi.load_clip(mp4, frames="100:120"), "--frames 100:120", "outside the clip", "6 frames (0-5)")
    _raises(lambda: vi.load_clip(mp4, frames="2:9"), "--frames 2:9", "STOP 9 is outside", "6 frames (0-5)")
    _raises(lambda: vi.load_clip(mp4, frames="-8:"), "--frames -8:", "outside")
    assert vi.load_clip(mp4, frames="2:6").indices == [2, 3, 4, 5] and vi.load_clip(mp4, frames="-2:").indices == [4, 5]
    _raises(lambda: vi.load_clip(_folder(tmp_path), frames="6:"), "--frames 6:", "6 frames (0-5)")
    _raises(lambda: vi.load_clip(mp4, frames="3:1"), "--frames 3:1", "selects no frame")


def test_max_side_shrinks_frames_and_keeps_original_size(mp4):
    clip = vi.load_clip(mp4, max_side=20)
    assert clip.frames.shape == (T, 16, 20, 3) and clip.original_size == (W, H) and clip.scale == (0.5, 0.5)
    _raises(lambda: vi.load_clip(mp4, max_side=4), "--max-side")


# -- masks -------------------------------------------------------------------------------------------------
def _mask(k: int, h: int = H, w: int = W) -> np.ndarray:
    """(h, w) bool: the square of frame k."""
    return _frame(k, h, w)[..., 1] > 128


def _mask_folder(tmp_path, names, make=_mask, sub="masks"):
    d = tmp_path / sub
    d.mkdir()
    for k, name in enumerate(names):
        if name is not None:
            Image.fromarray(make(k).astype(np.uint8) * 255).save(d / name)
    return d


def test_masks_matched_by_stem(tmp_path):
    clip = vi.load_clip(_folder(tmp_path), frames="1:4")
    d = _mask_folder(tmp_path, [f"frame_{k:04d}.png" for k in range(T)])
    m = vi.load_mask_folder(d, clip, "object")
    assert m.shape == (3, H, W) and m.dtype == bool
    assert np.array_equal(m, np.stack([_mask(k) for k in (1, 2, 3)]))


@pytest.mark.parametrize("pattern", ["mask_{k:05d}.png", "{k}.png"])
def test_masks_matched_by_number_in_name(mp4, tmp_path, pattern):
    clip = vi.load_clip(mp4, frames="2:")
    d = _mask_folder(tmp_path, [pattern.format(k=k) for k in range(T)])
    assert np.array_equal(vi.load_mask_folder(d, clip, "hand"), np.stack([_mask(k) for k in range(2, T)]))


def test_folder_masks_matched_by_the_frames_own_numbers(tmp_path):
    """Frames numbered from 1 (img_0001 ...) and masks named with the same numbers (m0001 ...)."""
    frames = _folder(tmp_path, [f"img_{k + 1:04d}.png" for k in range(T)])
    clip = vi.load_clip(frames, frames="0:2")
    d = _mask_folder(tmp_path, [f"m{k + 1:04d}.png" for k in range(T)])
    assert np.array_equal(vi.load_mask_folder(d, clip, "hand"), np.stack([_mask(0), _mask(1)]))


def test_masks_one_rule_for_the_whole_folder(mp4, tmp_path):
    """Frame 0's mask named by stem (00000.png), the others by number: matched by number for all."""
    clip = vi.load_clip(mp4)
    d = _mask_folder(tmp_path, ["00000.png"] + [f"mask_{k}.png" for k in range(1, T)])
    assert np.array_equal(vi.load_mask_folder(d, clip, "hand"), np.stack([_mask(k) for k in range(T)]))


def test_masks_with_one_number_twice(mp4, tmp_path):
    clip = vi.load_clip(mp4, frames="0:2")
    d = _mask_folder(tmp_path, ["hand_0.png", "hand_1.png", "object_1.png"])
    _raises(lambda: vi.load_mask_folder(d, clip, "hand"), "hand_1.png", "object_1.png", "frame number 1")


def test_masks_matched_by_order_when_one_per_frame(mp4, tmp_path):
    clip = vi.load_clip(mp4, frames="3:5")
    d = _mask_folder(tmp_path, [f"{c}.png" for c in "abcdef"])
    assert np.array_equal(vi.load_mask_folder(d, clip, "object"), np.stack([_mask(3), _mask(4)]))


def test_mask_missing_for_a_frame(mp4, tmp_path):
    clip = vi.load_clip(mp4)
    d = _mask_folder(tmp_path, [f"mask_{k:05d}.png" if k != 4 else None for k in range(T)])
    _raises(lambda: vi.load_mask_folder(d, clip, "object"), "no object mask", "frame 4", str(d))


def test_mask_of_another_size(mp4, tmp_path):
    clip = vi.load_clip(mp4)
    d = _mask_folder(tmp_path, [f"{k:05d}.png" for k in range(T)], make=lambda k: _mask(k, 16, 20))
    _raises(lambda: vi.load_mask_folder(d, clip, "hand"), "00000.png", str(d), "20x16", "40x32", "frame 0")


def test_masks_empty_on_some_frames_allowed_but_not_all(mp4, tmp_path):
    clip = vi.load_clip(mp4)
    some = _mask_folder(tmp_path, [f"{k:05d}.png" for k in range(T)],
                        make=lambda k: _mask(k) if k % 2 else np.zeros((H, W), bool), sub="some")
    m = vi.load_mask_folder(some, clip, "object")
    assert not m[0].any() and m[1].any()
    none = _mask_folder(tmp_path, [f"{k:05d}.png" for k in range(T)], make=lambda k: np.zeros((H, W), bool), sub="none")
    _raises(lambda: vi.load_mask_folder(none, clip, "object"), "every object mask", "empty")


def test_mask_covering_the_frame_refused(mp4, tmp_path):
    clip = vi.load_clip(mp4)
    d = _mask_folder(tmp_path, [f"{k:05d}.png" for k in range(T)],
                     make=lambda k: np.ones((H, W), bool) if k == 2 else _mask(k))
    _raises(lambda: vi.load_mask_folder(d, clip, "hand"), "00002.png", "covers the whole frame")


def test_masks_given_at_original_size_follow_max_side(mp4, tmp_path):
    clip = vi.load_clip(mp4, max_side=20)
    d = _mask_folder(tmp_path, [f"{k:05d}.png" for k in range(T)])
    m = vi.load_mask_folder(d, clip, "hand")
    assert m.shape == (T, 16, 20)
    assert m[0, 6:10, 2:6].all() and m[0].sum() == 16  # 8x8 square at (4, 12) -> 4x4 at (2, 6)


# -- keypoints ---------------------------------------------------------------------------------------------
def test_keypoints_list_per_frame_with_missing(mp4, tmp_path):
    clip = vi.load_clip(mp4, frames="1:")
    data = [_points(k, conf=k % 2 == 0) if k != 3 else None for k in range(T)]
    data[4] = []
    path = tmp_path / "kp.json"
    path.write_text(json.dumps(data))
    uv, conf = vi.load_clip_keypoints(path, clip)
    assert uv.shape == (5, 21, 2) and conf.shape == (5, 21) and uv.dtype == conf.dtype == np.float32
    assert conf[2].max() == 0 and conf[3].max() == 0  # frames 3 (null) and 4 ([])
    assert np.allclose(conf[0], 1.0) and np.allclose(conf[1], 0.9)
    assert np.allclose(uv[0], _points(1)) and np.allclose(uv[4], _points(5))


def test_keypoints_list_must_cover_the_whole_clip(mp4, tmp_path):
    clip = vi.load_clip(mp4, frames="0:3")
    path = tmp_path / "kp.json"
    path.write_text(json.dumps([_points(k) for k in range(3)]))
    _raises(lambda: vi.load_clip_keypoints(path, clip), "kp.json", "3 entries", "6 frames")
    path.write_text(json.dumps(_points(0)))
    _raises(lambda: vi.load_clip_keypoints(path, clip), "one hand")


def test_keypoints_frames_mapping(mp4, tmp_path):
    clip = vi.load_clip(mp4)
    path = tmp_path / "kp.json"
    path.write_text(json.dumps({"frames": {"3": _points(3), "00005": _points(5, conf=True)}}))
    uv, conf = vi.load_clip_keypoints(path, clip)
    assert [int((c > 0).sum()) for c in conf] == [0, 0, 0, 21, 0, 21]
    assert np.allclose(uv[3], _points(3)) and np.allclose(conf[5], 0.9)
    path.write_text(json.dumps({"frames": {"left_cam": _points(0)}}))
    _raises(lambda: vi.load_clip_keypoints(path, clip), "'left_cam'", "names a selected frame")


def test_keypoints_openpose_folder_by_number_and_side(mp4, tmp_path):
    clip = vi.load_clip(mp4)
    d = tmp_path / "openpose"
    d.mkdir()
    for k in range(T):
        flat_r = [x for p in _points(k, conf=True) for x in p]
        flat_l = [x + 1 for x in flat_r]
        people = [] if k == 2 else [{"hand_right_keypoints_2d": flat_r, "hand_left_keypoints_2d": flat_l}]
        if k != 4:  # OpenPose wrote no file for frame 4
            (d / f"clip_{k:012d}_keypoints.json").write_text(json.dumps({"version": 1.3, "people": people}))
    uv, conf = vi.load_clip_keypoints(d, clip)
    assert [int((c > 0).sum()) for c in conf] == [21, 21, 0, 21, 0, 21]
    assert np.allclose(uv[5], _points(5))
    uv_l, _ = vi.load_clip_keypoints(d, clip, side="left")
    assert np.allclose(uv_l[5], np.asarray(_points(5)) + 1)


def test_keypoints_openpose_folder_by_stem(tmp_path):
    clip = vi.load_clip(_folder(tmp_path, [f"img{c}.png" for c in "abcdef"]))
    d = tmp_path / "openpose"
    d.mkdir()
    for k, c in enumerate("abcdef"):
        if k in (1, 4):
            flat = [x for p in _points(k, conf=True) for x in p]
            (d / f"img{c}_keypoints.json").write_text(json.dumps({"people": [{"hand_right_keypoints_2d": flat}]}))
    uv, conf = vi.load_clip_keypoints(d, clip)
    assert [int((c > 0).sum()) for c in conf] == [0, 21, 0, 0, 21, 0]
    assert np.allclose(uv[4], _points(4))


def test_keypoints_npy_with_nan_frames_and_points(mp4, tmp_path):
    arr = np.array([_points(k) for k in range(T)], np.float64)
    arr[2] = np.nan
    arr[3, 5] = np.nan
    np.save(tmp_path / "kp.npy", arr)
    uv, conf = vi.load_clip_keypoints(tmp_path / "kp.npy", vi.load_clip(mp4))
    assert conf[2].max() == 0 and conf[3, 5] == 0 and conf[3].sum() == 20 and conf[0].sum() == 21
    assert np.isfinite(uv).all() and np.allclose(uv[1], _points(1))
    np.save(tmp_path / "bad.npy", arr[:, :20])
    _raises(lambda: vi.load_clip_keypoints(tmp_path / "bad.npy", vi.load_clip(mp4)), "bad.npy", "(6, 20, 2)")


def test_keypoints_follow_max_side(mp4, tmp_path):
    clip = vi.load_clip(mp4, max_side=20)
    path = tmp_path / "kp.json"
    path.write_text(json.dumps([_points(k) for k in range(T)]))
    uv, conf = vi.load_clip_keypoints(path, clip)
    want = (np.asarray(_points(2)) + 0.5) * 0.5 - 0.5  # pixel centres at integers
    assert np.allclose(uv[2], want)


def test_no_hand_in_the_clip(mp4, tmp_path):
    clip = vi.load_clip(mp4)
    path = tmp_path / "kp.json"
    path.write_text(json.dumps([None] * T))
    _raises(lambda: vi.load_clip_keypoints(path, clip), "no frame of the clip has a hand", "--keypoints", "--detect")
    few = [[p + [1.0] if j < ii.MIN_KEYPOINTS - 1 else p + [0.0] for j, p in enumerate(_points(k))] for k in range(T)]
    path.write_text(json.dumps(few))
    _raises(lambda: vi.load_clip_keypoints(path, clip), "no frame of the clip has a hand")
    # the hand only on frames outside the selection
    path.write_text(json.dumps([_points(k) if k < 2 else None for k in range(T)]))
    _raises(lambda: vi.load_clip_keypoints(path, vi.load_clip(mp4, frames="2:")), "no frame of the clip has a hand")


def test_normalised_and_outside_keypoints_refused(mp4, tmp_path):
    clip = vi.load_clip(mp4)
    path = tmp_path / "kp.json"
    path.write_text(json.dumps([[[u / W, v / H] for u, v in _points(k)] for k in range(T)]))
    _raises(lambda: vi.load_clip_keypoints(path, clip), "normalised", str(W), str(H))
    far = [_points(k) for k in range(T)]
    far[3] = [[u + 200, v] for u, v in far[3]]
    path.write_text(json.dumps(far))
    _raises(lambda: vi.load_clip_keypoints(path, clip), "frame 3", "far outside", "40x32")


def test_keypoint_entry_of_wrong_shape_names_the_frame(mp4, tmp_path):
    clip = vi.load_clip(mp4)
    data = [_points(k) for k in range(T)]
    data[1] = data[1][:20]
    path = tmp_path / "kp.json"
    path.write_text(json.dumps(data))
    _raises(lambda: vi.load_clip_keypoints(path, clip), "frame 1", "(20, 2)", "21 points")


# -- routing -------------------------------------------------------------------------------------------------
def test_is_video_input(tmp_path):
    assert vi.is_video_input(tmp_path)
    for name in ("a.mp4", "b.MOV", "c.avi", "d.webm", "e.mkv", "f.gif"):
        assert vi.is_video_input(tmp_path / name), name
    for name in ("a.jpg", "b.JPEG", "c.png", "d.webp", "e.bmp", "f.obj", "noext"):
        assert not vi.is_video_input(tmp_path / name), name
