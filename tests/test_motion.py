"""motion.py: smoothing, gap filling, motion files, retargeting."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from animate_portrait import motion
from animate_portrait.errors import InputError, NoFaceError
from animate_portrait.types import MAX_TRAVEL, Motion

# dlib's 68 landmarks on the astronaut fixture (512x512), rounded: a real face shape for pure-numpy tests.
# Its mouth is slightly open (teeth show), as real portraits often are.
# fmt: off
FACE = np.array([
    [179, 104], [179, 116], [180, 127], [181, 139], [185, 151], [191, 160], [200, 169], [209, 176],
    [221, 178], [232, 177], [243, 171], [253, 164], [260, 154], [265, 144], [268, 132], [270, 120],
    [272, 108], [186, 94], [192, 88], [200, 87], [208, 89], [216, 92], [236, 93], [244, 91], [252, 91],
    [260, 92], [265, 98], [225, 103], [225, 111], [225, 119], [225, 127], [214, 131], [219, 132],
    [224, 134], [229, 133], [234, 132], [195, 101], [200, 98], [207, 98], [212, 104], [206, 104],
    [199, 104], [238, 105], [244, 101], [250, 101], [255, 104], [250, 107], [244, 106], [201, 140],
    [209, 139], [218, 139], [223, 141], [229, 140], [237, 140], [245, 141], [237, 151], [229, 155],
    [222, 156], [216, 155], [208, 150], [204, 141], [217, 143], [223, 144], [229, 143], [243, 142],
    [229, 150], [223, 150], [217, 150],
], np.float32)
# fmt: on
LOWER_FACE = [*range(5, 12), *range(55, 60), 65, 66, 67]  # chin, lower outer and inner lip
IOD = float(np.linalg.norm(FACE[45] - FACE[36]))


def similar(points: np.ndarray, scale: float, angle_deg: float, shift: tuple[float, float]) -> np.ndarray:
    """points rotated/scaled about their centroid, then shifted."""
    c = points.mean(axis=0)
    t = np.deg2rad(angle_deg)
    rot = scale * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]], np.float32)
    return ((points - c) @ rot.T + c + np.array(shift, np.float32)).astype(np.float32)


def open_mouth(points: np.ndarray, amount: float) -> np.ndarray:
    out = points.copy()
    out[LOWER_FACE, 1] += amount
    return out


def square_mouth(n: int, half_period: int, amount: float) -> tuple[np.ndarray, np.ndarray]:
    opened = (np.arange(n) // half_period) % 2 == 1
    pts = np.repeat(FACE[None], n, axis=0)
    pts[np.ix_(opened, LOWER_FACE)] += np.array([0, amount], np.float32)
    return pts, opened


# --- smoothing ---------------------------------------------------------------------------------------


def test_smooth_removes_jitter_on_still_face() -> None:
    rng = np.random.default_rng(0)
    noisy = FACE + rng.normal(0, 1.0, (150, 68, 2)).astype(np.float32)
    smoothed = motion.smooth(noisy, fps=30)
    assert smoothed.shape == noisy.shape and smoothed.dtype == np.float32
    assert np.std(smoothed - FACE) < 0.5 * np.std(noisy - FACE)
    # frame-to-frame jitter, the thing a viewer sees, drops much more
    assert np.abs(np.diff(smoothed, axis=0)).mean() < 0.25 * np.abs(np.diff(noisy, axis=0)).mean()


def test_smooth_keeps_fast_mouth_motion() -> None:
    # open/close every 4 frames at 30 fps (~3.75 syllables/s), by 30% of the inter-ocular distance
    rng = np.random.default_rng(1)
    clean, opened = square_mouth(120, 4, 0.3 * IOD)
    smoothed = motion.smooth(clean + rng.normal(0, 1.0, clean.shape).astype(np.float32), fps=30)
    raw, out = motion.mouth_opening(clean), motion.mouth_opening(smoothed)
    amplitude = raw[opened].mean() - raw[~opened].mean()
    kept = out[opened][4:-4].mean() - out[~opened][4:-4].mean()
    assert kept >= 0.8 * amplitude


def test_smooth_short_track_and_bad_shape() -> None:
    two = np.repeat(FACE[None], 2, axis=0)
    np.testing.assert_array_equal(motion.smooth(two, 25), two)
    with pytest.raises(ValueError):
        motion.smooth(FACE, 25)


# --- gaps ----------------------------------------------------------------------------------------------


def test_fill_gaps_interpolates_and_holds_edges() -> None:
    pts = np.stack([FACE + i for i in range(6)]).astype(np.float32)
    found = np.array([False, True, False, False, True, False])
    holed = pts.copy()
    holed[~found] = np.nan
    filled = motion.fill_gaps(holed, found)
    assert np.isfinite(filled).all()
    np.testing.assert_allclose(filled[1:5], pts[1:5], atol=1e-4)  # linear in between
    np.testing.assert_allclose(filled[0], pts[1], atol=1e-4)  # leading gap holds the first detection
    np.testing.assert_allclose(filled[5], pts[4], atol=1e-4)  # trailing gap holds the last one
    with pytest.raises(ValueError):
        motion.fill_gaps(holed, np.zeros(6, bool))


# --- motion files --------------------------------------------------------------------------------------


def make_motion(n: int = 5) -> Motion:
    return Motion(
        points=np.repeat(FACE[None], n, axis=0),
        found=np.array([True, False, True, True, True][:n]),
        fps=29.97,
        frame_size=(640, 480),
        source="talk.mp4",
        has_audio=True,
        n_faces_max=2,
    )


def test_motion_file_round_trip(tmp_path) -> None:
    m = make_motion()
    path = tmp_path / "talk.motion.npz"
    motion.save_motion(m, path)
    back = motion.load_motion(path)
    np.testing.assert_array_equal(back.points, m.points)
    np.testing.assert_array_equal(back.found, m.found)
    assert (back.fps, back.frame_size, back.source, back.has_audio, back.n_faces_max) == (
        29.97,
        (640, 480),
        "talk.mp4",
        True,
        2,
    )
    assert back.n_filled == 1
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # written through a temp file, renamed


def test_motion_file_keeps_gaze_and_loads_files_without_it(tmp_path) -> None:
    looks = np.linspace([-0.2, 0.0], [0.2, 0.05], 5).astype(np.float32)
    with_gaze = tmp_path / "gaze.npz"
    motion.save_motion(replace(make_motion(), gaze=looks), with_gaze)
    np.testing.assert_array_equal(motion.load_motion(with_gaze).gaze, looks)
    older = tmp_path / "older.npz"  # as written before gaze was read
    motion.save_motion(make_motion(), older)
    assert "gaze" not in np.load(older).files and motion.load_motion(older).gaze is None
    with pytest.raises(ValueError, match="gaze"):
        replace(make_motion(), gaze=looks[:3])  # a Motion cut without its gaze is a bug, caught at once
    bad = tmp_path / "bad_gaze.npz"
    arrays = dict(np.load(with_gaze))
    arrays["gaze"] = looks[:3]
    np.savez_compressed(bad, **arrays)
    with pytest.raises(InputError, match=r"bad_gaze\.npz: motion gaze"):
        motion.load_motion(bad)


def test_motion_file_keeps_the_mouth_profiles_and_loads_files_without_them(tmp_path) -> None:
    profiles = np.linspace(0.1, 1.2, 5 * 2 * 16, dtype=np.float32).reshape(5, 2, 16)
    profiles[2] = np.nan  # lips shut: nothing read there
    path = tmp_path / "mouth.npz"
    motion.save_motion(replace(make_motion(), mouth=profiles), path)
    back = motion.load_motion(path).mouth
    np.testing.assert_allclose(back, profiles, rtol=1e-3)  # stored as float16
    assert np.isnan(back[2]).all()
    older = tmp_path / "older.npz"  # as written before the mouth was read
    motion.save_motion(make_motion(), older)
    assert "mouth" not in np.load(older).files and motion.load_motion(older).mouth is None
    cut = replace(make_motion(), mouth=profiles).cut(slice(1, None, 2))
    np.testing.assert_array_equal(cut.points, make_motion().points[1::2])
    np.testing.assert_array_equal(cut.mouth, profiles[1::2])
    looped = replace(make_motion(), mouth=profiles).looped(12)  # 2.4 times over, silent: audio does not loop
    np.testing.assert_array_equal(looped.found, np.tile(make_motion().found, 3)[:12])
    np.testing.assert_array_equal(looped.mouth, np.tile(profiles, (3, 1, 1))[:12])
    assert looped.n_frames == 12 and not looped.has_audio
    with pytest.raises(ValueError, match="mouth"):
        replace(make_motion(), mouth=profiles[:3])  # a Motion cut without its mouth is a bug
    bad = tmp_path / "bad_mouth.npz"
    arrays = dict(np.load(path))
    arrays["mouth"] = np.full((5, 2, 16), np.inf, np.float16)
    np.savez_compressed(bad, **arrays)
    with pytest.raises(InputError, match=r"bad_mouth\.npz: motion mouth"):
        motion.load_motion(bad)


def test_motion_file_bad_inputs(tmp_path) -> None:
    with pytest.raises(InputError, match="not found"):
        motion.load_motion(tmp_path / "missing.npz")
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(InputError, match="text.npz"):
        motion.load_motion(text)
    other = tmp_path / "other.npz"
    np.savez_compressed(other, weights=np.zeros(3))
    with pytest.raises(InputError, match="missing"):
        motion.load_motion(other)
    wrong = tmp_path / "wrong.npz"
    bad = make_motion()
    bad.points = np.zeros((5, 5, 2), np.float32)
    motion.save_motion(bad, wrong)
    with pytest.raises(InputError, match="shape"):
        motion.load_motion(wrong)
    future = tmp_path / "future.npz"
    np.savez_compressed(
        future, format_version=99, points=FACE[None], found=[True], fps=25.0, frame_size=[1, 1]
    )
    with pytest.raises(InputError, match="format"):
        motion.load_motion(future)


# --- retargeting ---------------------------------------------------------------------------------------


def portrait() -> np.ndarray:
    """A different face from FACE: other size, roll and place, and a longer chin and wider mouth."""
    src = similar(FACE, 1.6, 8.0, (-120, -20))
    src[5:12, 1] += 6
    src[48:68, 0] += (src[48:68, 0] - src[48:68, 0].mean()) * 0.15
    return src


def test_retarget_identity_driver_returns_source() -> None:
    src = portrait()
    driver = np.repeat(similar(FACE, 0.7, -5, (40, 10))[None], 4, axis=0)
    np.testing.assert_allclose(motion.retarget(src, driver), np.repeat(src[None], 4, axis=0), atol=1e-3)


def test_retarget_mouth_opens_by_same_share_of_face() -> None:
    src = portrait()
    d0 = similar(FACE, 0.7, -5, (40, 10))
    d_iod = np.linalg.norm(d0[45] - d0[36])
    driver = np.stack([d0, open_mouth(d0, 0.25 * d_iod)])
    out = motion.retarget(src, driver)
    driver_change = np.diff(motion.mouth_opening(driver))[0]
    source_change = motion.mouth_opening(out[1]) - motion.mouth_opening(src)
    assert driver_change == pytest.approx(0.25, abs=0.02)
    assert source_change == pytest.approx(driver_change, rel=0.05)
    # the portrait keeps its own shape: the upper face did not move
    np.testing.assert_allclose(out[1, 17:48], src[17:48], atol=1e-3)


def test_retarget_follows_head_translation_rotation_scale() -> None:
    src = portrait()
    d0 = similar(FACE, 0.5, 0, (0, 0))
    ratio = np.linalg.norm(src[45] - src[36]) / np.linalg.norm(d0[45] - d0[36])
    moved = np.stack([d0, d0 + np.array([10, -4], np.float32), similar(d0, 1.2, 15, (0, 0))])
    out = motion.retarget(src, moved, max_travel=None)  # 0.23 face extents: past the default's knee
    np.testing.assert_allclose(out[1], src + ratio * np.array([10, -4]), atol=1e-2)
    # rotation/scale of the driver about its centre: the source turns by the same angle and grows
    a, _ = motion.similarity(motion._complex(src), motion._complex(out[2]))
    assert abs(a) == pytest.approx(1.2, rel=1e-3)
    assert np.rad2deg(np.angle(a)) == pytest.approx(15, abs=0.1)


def extent(points: np.ndarray) -> float:
    return float(np.ptp(points, axis=0).max())


def centre_travel(src: np.ndarray, out: np.ndarray) -> np.ndarray:
    """How far each output frame's STABLE centre is from the portrait's, in its face extents."""
    c = src[motion.STABLE].mean(axis=0)
    return np.linalg.norm(out[:, motion.STABLE].mean(axis=1) - c, axis=1) / extent(src)


def test_retarget_keeps_small_travel_and_eases_large_travel() -> None:
    src = portrait()
    d0 = similar(FACE, 0.5, 0, (0, 0))
    direction = np.array([0.8, -0.6], np.float32)
    amounts = np.linspace(0, 1.5, 61)  # driver travel in its own face extents, frame by frame
    driver = np.stack([d0 + a * extent(d0) * direction for a in amounts])
    free = centre_travel(src, motion.retarget(src, driver, max_travel=None))
    eased = centre_travel(src, motion.retarget(src, driver))
    # without a limit: all of it (the portrait's extent is a little larger than the stable points say)
    np.testing.assert_allclose(free, amounts * free[-1] / amounts[-1], atol=1e-3)
    small = free <= motion.TRAVEL_KNEE * MAX_TRAVEL
    assert small.sum() >= 5
    np.testing.assert_allclose(eased[small], free[small], atol=1e-3)
    assert eased.max() <= MAX_TRAVEL + 1e-4
    assert eased[-1] > 0.95 * MAX_TRAVEL  # eases towards the limit, does not stop at the knee
    steps = np.diff(eased)
    assert (steps > -1e-5).all() and (steps <= np.diff(free) + 1e-4).all()  # no jumps, never faster
    # the direction of the move is the driver's
    out = motion.retarget(src, driver)
    move = out[-1, motion.STABLE].mean(axis=0) - src[motion.STABLE].mean(axis=0)
    np.testing.assert_allclose(move / np.linalg.norm(move), direction, atol=1e-3)


def test_retarget_without_travel_keeps_expression() -> None:
    src = portrait()
    d0 = similar(FACE, 0.7, -5, (40, 10))
    d_iod = np.linalg.norm(d0[45] - d0[36])
    driver = np.stack([d0, open_mouth(d0, 0.25 * d_iod) + np.array([30, 0], np.float32)])
    out = motion.retarget(src, driver, max_travel=0.0)
    assert centre_travel(src, out)[1] < 1e-3
    assert motion.mouth_opening(out[1]) - motion.mouth_opening(src) == pytest.approx(0.25, abs=0.02)


def _talking_and_turning(src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A driver whose head turns, grows and moves while its mouth opens and its brows rise."""
    d0 = similar(FACE, 0.7, -5, (40, 10))
    d_iod = float(np.linalg.norm(d0[45] - d0[36]))
    face = open_mouth(d0, 0.25 * d_iod)
    face[17:27, 1] -= 0.1 * d_iod
    return np.stack([d0, similar(face, 1.1, 12, (15, -5))]), d0


@pytest.mark.parametrize(
    ("region", "moved", "posed"),
    [("lips", motion.MOUTH_REGION, False), ("eyes", np.r_[17:27], False), ("pose", [], True)],
)
def test_retarget_region_moves_only_its_points(region, moved, posed) -> None:
    src = portrait()
    driver, _ = _talking_and_turning(src)
    out = motion.retarget(src, driver, max_travel=None, region=region)[1]
    still = np.setdiff1d(np.arange(68), moved)
    if posed:  # the whole face turns as the driver's head, rigidly: its own shape, mouth shut as it was
        a, b = motion.similarity(motion._complex(src), motion._complex(out))
        np.testing.assert_allclose(motion._points(a * motion._complex(src) + b), out, atol=1e-3)
        assert np.rad2deg(np.angle(a)) == pytest.approx(12, abs=0.1) and abs(a) == pytest.approx(
            1.1, rel=1e-3
        )
    else:  # the head holds still, and only the region's points move
        np.testing.assert_allclose(out[still], src[still], atol=1e-3)
        assert np.abs(out[moved] - src[moved]).max() > 3
    full = motion.retarget(src, driver, max_travel=None)[1]
    if region == "lips":  # the mouth opens as far as with every region on
        opening = motion.mouth_opening(out) - motion.mouth_opening(src)
        assert opening == pytest.approx(motion.mouth_opening(full) - motion.mouth_opening(src), rel=0.02)


def test_retarget_expression_region_and_scale() -> None:
    src = portrait()
    driver, _ = _talking_and_turning(src)
    change = {
        scale: motion.mouth_opening(
            motion.retarget(src, driver, region="expression", expression_scale=scale)[1]
        )
        - motion.mouth_opening(src)
        for scale in (0.0, 1.0, 1.5)
    }
    assert change[1.0] == pytest.approx(0.25, abs=0.02)
    assert change[1.5] == pytest.approx(1.5 * change[1.0], rel=0.02)
    np.testing.assert_allclose(
        motion.retarget(src, driver, region="expression", expression_scale=0)[1], src, atol=1e-3
    )
    # scale 0 with every region on is the pose alone
    np.testing.assert_allclose(
        motion.retarget(src, driver, expression_scale=0),
        motion.retarget(src, driver, region="pose"),
        atol=1e-3,
    )
    with pytest.raises(ValueError, match="unknown region"):
        motion.retarget(src, driver, region="nose")


def test_retarget_lips_never_cross_when_driver_starts_open() -> None:
    src = FACE.copy()
    src[[65, 66, 67], 1] = src[[61, 62, 63], 1]  # a closed-mouth portrait
    d0 = open_mouth(FACE, 10.0)  # driver starts with its mouth wide open ...
    out = motion.retarget(src, np.stack([d0, FACE]))  # ... then closes it
    gap = out[:, [67, 66, 65], 1] - out[:, [61, 62, 63], 1]
    assert (gap >= -0.1).all()  # touching at most (measured along y; the face is tilted a little)


def closed_portrait() -> np.ndarray:
    src = portrait()
    src[[65, 66, 67]] = src[[63, 62, 61]]  # lips touching
    return src


def test_neutral_reference_finds_the_closed_mouth_when_the_driver_starts_mid_word() -> None:
    """A driver that starts wide open, closes, then opens half as wide: against frame 0 the portrait's
    mouth would stay shut throughout; against the neutral face it opens on the last frame only."""
    d0 = similar(FACE, 0.7, -5, (40, 10))
    iod = float(np.linalg.norm(d0[45] - d0[36]))
    driver = np.stack([open_mouth(d0, 0.3 * iod), d0, d0, open_mouth(d0, 0.15 * iod)])
    src = closed_portrait()
    naive = motion.mouth_opening(motion.retarget(src, driver, reference=driver[0]))
    neutral = motion.neutral_reference(driver)
    out = motion.mouth_opening(motion.retarget(src, driver, reference=neutral))
    assert naive[3] < 0.01  # the failure this fixes
    assert out[1] < 0.01 and out[2] < 0.01
    assert out[3] == pytest.approx(0.15, abs=0.01)  # the driver opened 0.15 past its neutral face
    assert out[0] > out[3] + 0.1  # and the opening at frame 0 is kept, not lost


def test_neutral_reference_keeps_pose_of_frame_zero_and_skips_undetected_frames() -> None:
    d0 = similar(FACE, 0.7, -5, (40, 10))
    shut = d0.copy()
    shut[[41, 40, 47, 46]] = shut[[37, 38, 43, 44]]  # a blink
    # frame 0 blinks; frame 2, turned and moved, is where the mouth is most closed; frame 3 is a filled
    # guess (not found) with a mouth shut tighter still, which must not be picked
    closed = d0.copy()
    closed[[65, 66, 67]] = closed[[63, 62, 61]]
    guess = closed.copy()
    guess[[65, 66, 67], 1] -= 3
    driver = np.stack([shut, open_mouth(d0, 4), similar(closed, 1.2, 10, (30, -7)), guess, d0])
    found = np.array([True, True, True, False, True])
    ref = motion.neutral_reference(driver, found)
    np.testing.assert_allclose(ref[motion.STABLE], shut[motion.STABLE], atol=1e-3)  # pose: frame 0
    np.testing.assert_allclose(ref[48:68], closed[48:68], atol=1e-2)  # mouth: frame 2, moved back
    assert motion.eye_opening(ref) == pytest.approx(motion.eye_opening(d0), abs=1e-3)  # eyes open
    # a still driver is its own neutral face
    np.testing.assert_allclose(motion.neutral_reference(np.repeat(d0[None], 3, 0)), d0, atol=1e-3)


def test_a_photo_driver_opens_the_portraits_mouth_as_far_as_its_own_is_open() -> None:
    """One frame has no resting face of its own: photo_reference closes its mouth, so under relative motion
    the portrait opens by the photo's opening (before, a photo moved nothing); its eyes and pose stay."""
    face = closed_portrait()
    iod = float(np.linalg.norm(face[45] - face[36]))
    for amount in (0.0, 0.1, 0.25):
        eyes = face[42:48].mean(0) - face[36:42].mean(0)
        down = np.array([-eyes[1], eyes[0]]) / np.linalg.norm(eyes)  # perpendicular to the eyes' line
        opened = face.copy()
        opened[LOWER_FACE] += amount * iod * down
        photo = similar(opened, 0.7, -5, (40, 10))[None]
        photo[0, [41, 40, 47, 46]] = photo[0, [37, 38, 43, 44]]  # shut eyes, which the portrait keeps open
        reference = motion.neutral_reference(photo)
        assert motion.mouth_opening(reference) < 0.01  # shut, but for a quarter of the average mouth's gap
        keep = np.setdiff1d(np.arange(68), motion.MOUTH_REGION)
        np.testing.assert_allclose(reference[keep], photo[0, keep], atol=1e-4)  # eyes, brows, nose: its own
        src = closed_portrait()
        out = motion.retarget(src, photo, reference=reference)[0]
        assert motion.mouth_opening(out) == pytest.approx(amount, abs=0.02)
        assert motion.eye_opening(out) == pytest.approx(motion.eye_opening(src), abs=1e-3)
        np.testing.assert_allclose(out[motion.STABLE], src[motion.STABLE], atol=0.5)  # no pose change


def test_the_average_resting_face_as_a_photo_moves_nothing() -> None:
    """The face a photo's mouth is measured against, given as the photo: no expression to carry over."""
    average = motion._average_resting_face()
    assert average.shape == (68, 2) and motion.mouth_opening(average) < 0.05  # about shut
    photo = similar(average * 80 + 200, 1.0, 8, (0, 0))[None].astype(np.float32)
    src = closed_portrait()
    out = motion.retarget(src, photo, reference=motion.neutral_reference(photo))[0]
    iod = float(np.linalg.norm(src[45] - src[36]))
    assert np.abs(out - src).max() < 0.03 * iod


def test_retarget_absolute_uses_driver_shape() -> None:
    src = portrait()
    driver = np.stack([similar(FACE, 0.7, -5, (40, 10)), open_mouth(similar(FACE, 0.75, 0, (45, 10)), 6)])
    out = motion.retarget(src, driver, relative=False)
    for t in range(2):
        a, b = motion.similarity(motion._complex(driver[t]), motion._complex(out[t]))
        residual = np.abs(a * motion._complex(driver[t]) + b - motion._complex(out[t]))
        assert residual.max() < 1e-3
    # placed on the portrait: the stable points of frame 0 land close to the portrait's
    assert np.abs(out[0, motion.STABLE] - src[motion.STABLE]).mean() < 0.05 * np.ptp(src[:, 0])


@pytest.mark.parametrize("relative", [True, False])
def test_retarget_in_chunks_equals_whole(relative: bool) -> None:
    """The pipeline retargets a long driver batch by batch against frame 0: same result as all at once."""
    src = portrait()
    d0 = similar(FACE, 0.7, -5, (40, 10))
    driver = np.stack(
        [d0, open_mouth(d0, 5), similar(d0, 1.1, 7, (3, -2)), open_mouth(similar(d0, 0.9, -4, (0, 6)), 3)]
    )
    whole = motion.retarget(src, driver, relative)
    chunks = [motion.retarget(src, driver[i : i + 2], relative, reference=driver[0]) for i in (0, 2)]
    np.testing.assert_allclose(np.concatenate(chunks), whole, atol=1e-4)


def test_retarget_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        motion.retarget(FACE[:10], FACE[None])
    with pytest.raises(ValueError):
        motion.retarget(FACE, FACE)


def test_mouth_opening() -> None:
    assert motion.mouth_opening(FACE) == pytest.approx(6 / IOD, rel=1e-3)
    assert motion.mouth_opening(np.stack([FACE, FACE])).shape == (2,)


# --- analyse_driver (needs video.py and landmarks/ from the I/O stage) ------------------------------------


@pytest.fixture(scope="module")
def stages():
    video = pytest.importorskip("animate_portrait.video")
    landmarks = pytest.importorskip("animate_portrait.landmarks")
    if not hasattr(video, "read_frames") or not hasattr(landmarks, "track"):
        pytest.skip("video.py / landmarks.track are not there yet")
    return video, landmarks


def write_clip(path, frames: list[np.ndarray], fps: float = 25) -> None:
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, macro_block_size=1, quality=9)
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


@pytest.mark.slow  # two ffmpeg encodes + dlib: 1-4 s depending on load
def test_analyse_driver_tracks_fills_and_reports(stages, astronaut, tmp_path) -> None:
    video, landmarks = stages
    face = astronaut[40:296, 96:352]  # 256x256 around the face
    frames = [face, face, np.zeros_like(face), face, face, face]
    clip = tmp_path / "drive.mp4"
    write_clip(clip, frames)
    ticks = []
    m = motion.analyse_driver(clip, landmarks.get_detector("dlib"), on_frame=lambda: ticks.append(1))
    assert len(ticks) == m.n_frames == 6
    assert m.found.tolist() == [True, True, False, True, True, True] and m.n_filled == 1
    assert np.isfinite(m.points).all() and m.points.shape == (6, 68, 2)
    assert m.fps == pytest.approx(25) and m.frame_size == (256, 256)
    np.testing.assert_allclose(m.points[2], m.points[1], atol=2.0)  # the gap takes its neighbours
    short = motion.analyse_driver(clip, landmarks.get_detector("dlib"), max_frames=3)
    assert short.n_frames == 3

    blank = tmp_path / "blank.mp4"
    write_clip(blank, [np.zeros_like(face)] * 3)
    with pytest.raises(NoFaceError, match="no face found in any frame"):
        motion.analyse_driver(blank, landmarks.get_detector("dlib"))


@pytest.mark.slow  # one ffmpeg encode + dlib twice, at 2×: 1-3 s
def test_analyse_driver_magnifies_a_wide_shot(stages, astronaut, tmp_path) -> None:
    """A speaker far away: a 256² frame whose face spans about 50 px is found only when magnified."""
    video, landmarks = stages
    small = np.asarray(Image.fromarray(astronaut[40:296, 96:352]).resize((140, 140), Image.LANCZOS))
    frames = []
    for t in range(5):
        frame = np.full((256, 256, 3), 90, np.uint8)
        frame[40 + t : 180 + t, 50 + 2 * t : 190 + 2 * t] = small  # the head drifts right and down
        frames.append(frame)
    detector = landmarks.get_detector("dlib")
    assert detector.detect(frames[0]) == []  # one plain search is not enough
    clip = tmp_path / "wide.mp4"
    write_clip(clip, frames)
    ticks = []
    m = motion.analyse_driver(clip, detector, on_frame=lambda: ticks.append(1))
    assert m.found.all() and len(ticks) == 5  # magnified from the first frame on: one pass, counted
    t = np.arange(5)[:, None]
    centre = (detector.detect(astronaut)[0].points.mean(0) - [96, 40]) * (140 / 256)  # in the pasted face
    expected = centre + np.concatenate([50 + 2 * t, 40 + t], axis=1)  # where it was pasted, per frame
    np.testing.assert_allclose(m.points.mean(axis=1), expected, atol=3.0)  # found in the frame's own pixels
    # a first frame without any face: the plain pass finds nothing, and a second, magnified one follows
    late = tmp_path / "late.mp4"
    write_clip(late, [np.full_like(frames[0], 90)] + frames)
    assert motion.analyse_driver(late, detector).found.tolist() == [False] + [True] * 5
