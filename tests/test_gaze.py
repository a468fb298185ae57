"""gaze.py: reading where the irises sit, and moving them in a rendered crop."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from animate_portrait import gaze, motion
from animate_portrait.assets import demo_motion_path
from animate_portrait.pipeline import Pipeline
from animate_portrait.types import RenderConfig
from test_motion import FACE

SKIN, SCLERA, IRIS = (200, 160, 130), (235, 235, 230), (60, 40, 30)
WIDTH = 36.0  # each eye's corner-to-corner width, px


def _eye(left: float, y: float, open_px: float = 7.0) -> np.ndarray:
    """An eye's 6 points (iBUG order: left corner, upper lid ×2, right corner, lower lid ×2)."""
    third = WIDTH / 3
    return np.array(
        [
            (left, y),
            (left + third, y - open_px),
            (left + 2 * third, y - open_px),
            (left + WIDTH, y),
            (left + 2 * third, y + open_px),
            (left + third, y + open_px),
        ],
        np.float32,
    )


def face_with_eyes(u: float, open_px: float = 7.0) -> tuple[np.ndarray, np.ndarray]:
    """A 128×160 skin crop with two almond eyes whose irises sit `u` eye widths right of the middle, and
    68 landmarks (FACE's, with these eyes)."""
    points = FACE.astype(np.float32).copy()
    points[36:42] = _eye(30, 60, open_px)
    points[42:48] = _eye(94, 60, open_px)
    image = Image.new("RGB", (160, 128), SKIN)
    draw = ImageDraw.Draw(image)
    for idx in gaze.EYES:
        draw.polygon([tuple(p) for p in points[idx]], fill=SCLERA)
    canvas = np.asarray(image).copy()
    iris = Image.new("RGB", (160, 128), IRIS)
    disc = Image.new("L", (160, 128), 0)
    for idx in gaze.EYES:
        cx = points[idx][0, 0] + (0.5 + u) * WIDTH
        ImageDraw.Draw(disc).ellipse((cx - 7, 60 - 7, cx + 7, 60 + 7), fill=255)
    eyes = Image.new("L", (160, 128), 0)
    for idx in gaze.EYES:
        ImageDraw.Draw(eyes).polygon([tuple(p) for p in points[idx]], fill=255)
    inside = (np.asarray(disc) > 0) & (np.asarray(eyes) > 0)
    canvas[inside] = np.asarray(iris)[inside]
    return canvas, points


@pytest.mark.parametrize("u", [-0.2, 0.0, 0.15])
def test_read_gaze_finds_the_iris_along_the_eye(u: float) -> None:
    image, points = face_with_eyes(u)
    read = gaze.read_gaze(image, points)
    assert read[0] == pytest.approx(u, abs=0.03)
    assert abs(read[1]) < 0.03


def test_read_gaze_of_shut_eyes_is_nan() -> None:
    image, points = face_with_eyes(0.0, open_px=1.0)
    assert np.isnan(gaze.read_gaze(image, points)).all()


def test_read_gaze_behind_dark_glasses_is_nan() -> None:
    """Lenses over both eyes: no white around a darker iris, so no reading (which darkest third of a
    uniformly dark lens is "the iris" would be noise), while the same eyes bare are read."""
    image, points = face_with_eyes(0.15)
    assert np.isfinite(gaze.read_gaze(image, points)).all()
    shaded = Image.fromarray(image)
    for idx in gaze.EYES:
        centre = points[idx].mean(0)
        box = (*(centre - (WIDTH * 0.7, 12)), *(centre + (WIDTH * 0.7, 12)))
        ImageDraw.Draw(shaded).ellipse(box, fill=(22, 22, 26))
    lenses = np.asarray(shaded).copy()
    lenses[::2, ::2] += 3  # not perfectly flat: a lens shows a little texture
    assert np.isnan(gaze.read_gaze(lenses, points)).all()


def test_unread_eyes_stay_as_rendered() -> None:
    """A portrait whose gaze was not read (NaN) keeps its eyes whatever the driver's glance; read, they
    move."""
    image, points = face_with_eyes(0.0)
    glance = np.array([[0.2, 0.0]])
    still = gaze.follow(image[None], points[None], np.full(2, np.nan), glance)[0]
    np.testing.assert_array_equal(still, image)
    assert (
        np.abs(gaze.follow(image[None], points[None], np.zeros(2), glance)[0].astype(int) - image).max() > 50
    )


def test_real_dark_glasses_are_not_read(shared_data: Path) -> None:
    """Neo's sunglasses (a MakeItTalk portrait) give no reading; a bare-eyed photo beside it does."""
    pipeline = Pipeline(RenderConfig(engine="warp"))
    for name, readable in (("yzhou359__MakeItTalk__neo.jpg", False), ("TMElyralab__MuseTalk__man.png", True)):
        lead = pipeline.load_sources([shared_data / "portraits" / name])[0]
        assert np.isfinite(gaze.read_gaze(lead.face, lead.points)).all() == readable, name


def test_follow_moves_the_irises_and_nothing_else() -> None:
    image, points = face_with_eyes(0.0)
    moved = gaze.follow(image[None], points[None], np.zeros(2), np.array([[0.2, 0.0]]))[0]
    assert gaze.read_gaze(moved, points)[0] == pytest.approx(0.2, abs=0.04)
    changed = np.abs(moved.astype(int) - image).max(axis=-1) > 0
    ys, xs = np.nonzero(changed)
    eyes = points[36:48]
    assert ys.min() >= eyes[:, 1].min() - 12 and ys.max() <= eyes[:, 1].max() + 12  # only around the eyes
    assert xs.min() >= eyes[:, 0].min() - 2 and xs.max() <= eyes[:, 0].max() + 2
    still = gaze.follow(image[None], points[None], np.zeros(2), np.zeros((1, 2)))[0]
    np.testing.assert_array_equal(still, image)


def test_follow_keeps_the_iris_inside_the_eye() -> None:
    """A driver glancing far right moves an iris that already looks right only up to MAX_U."""
    image, points = face_with_eyes(0.2)
    moved = gaze.follow(image[None], points[None], np.array([0.2, 0.0]), np.array([[0.5, 0.0]]))[0]
    assert gaze.read_gaze(moved, points)[0] == pytest.approx(gaze.MAX_U, abs=0.04)


def test_gaze_track_fills_blinks_and_drops_a_one_frame_misreading() -> None:
    readings = np.zeros((20, 2), np.float32)
    readings[10:] = [0.2, 0.0]  # a glance aside, held
    readings[3:5] = np.nan  # a blink
    readings[15] = [-0.3, 0.1]  # one frame misread
    track = gaze.gaze_track(readings)
    assert track is not None and np.isfinite(track).all()
    np.testing.assert_allclose(track[3:5], 0, atol=1e-6)
    np.testing.assert_allclose(track[12:], [[0.2, 0.0]] * 8, atol=1e-6)
    np.testing.assert_allclose(track[:8, 0], 0, atol=1e-6)  # the glance is not smeared into the past
    assert gaze.gaze_track(np.full((5, 2), np.nan)) is None


def test_gaze_changes_are_measured_from_the_usual_gaze() -> None:
    looks = np.array([[0.05, 0.0]] * 7 + [[0.25, 0.02]] * 3, np.float32)
    changes = gaze.gaze_changes(looks)
    np.testing.assert_allclose(changes[:7], 0, atol=1e-6)
    np.testing.assert_allclose(changes[7:], [[0.2, 0.02]] * 3, atol=1e-6)


def test_the_demo_motion_holds_its_drivers_glances() -> None:
    """The shipped motion file was made with gaze: its driver looks aside, both ways, near the end."""
    looks = motion.load_motion(demo_motion_path()).gaze
    assert looks is not None and looks.shape == (150, 2)
    assert looks[:, 0].max() > 0.15 and looks[:, 0].min() < -0.15


@pytest.mark.parametrize("region, follows", [("all", True), ("eyes", True), ("lips", False), ("pose", False)])
def test_pipeline_moves_the_irises_only_where_asked(astronaut_png: Path, region: str, follows: bool) -> None:
    """Frames of the demo motion where its driver glances: with gaze, the astronaut's eyes change and
    the rest of the crop does not; without (--no-gaze, or a region without the eyes) nothing changes."""
    whole = motion.load_motion(demo_motion_path())
    driving = whole.cut(slice(90, None))
    frames = {}
    for on in (True, False):
        pipeline = Pipeline(RenderConfig(engine="warp", crop_only=True, region=region, gaze=on))
        lead = pipeline.load_source(astronaut_png)
        frames[on] = np.stack(list(pipeline.render_frames([lead], driving))).astype(int)
    differs = np.abs(frames[True] - frames[False]).max(axis=-1) > 2
    if not follows:
        assert not differs.any()
        return
    assert differs.any(axis=(1, 2)).sum() >= 20  # the glances moved the irises
    targets = np.concatenate([c[0] for c in pipeline.targets([lead], driving)])
    for t in np.nonzero(differs.any(axis=(1, 2)))[0]:
        ys, xs = np.nonzero(differs[t])
        eyes = targets[t, 36:48]
        assert xs.min() >= eyes[:, 0].min() - 3 and xs.max() <= eyes[:, 0].max() + 3
        assert ys.min() >= eyes[:, 1].min() - 10 and ys.max() <= eyes[:, 1].max() + 10


def test_a_real_driver_glancing_aside(shared_data: Path) -> None:
    """A training clip whose speaker glances right (frames 12-24) then left (32-40) of the camera."""
    from animate_portrait.landmarks import get_detector

    clip = shared_data / "clips" / "train" / "KwaiVGI__LivePortrait__d0.mp4"
    looks = motion.analyse_driver(clip, get_detector("dlib"), max_frames=44).gaze
    assert looks is not None
    assert (looks[12:24, 0] > 0.12).all() and (looks[32:41, 0] < -0.1).all() and abs(looks[0, 0]) < 0.08


def test_the_cli_follows_gaze_unless_told_not_to(
    tmp_path: Path, astronaut_png: Path, capsys, monkeypatch
) -> None:
    """`animate` on the demo motion's last 90 frames (looking ahead, then glancing both ways): the default
    moves the irises in the glances, and --no-gaze not at all."""
    from animate_portrait import video
    from cli_helpers import run_cli

    whole = motion.load_motion(demo_motion_path())
    glances = whole.cut(slice(60, None))
    driver = tmp_path / "glances.npz"
    motion.save_motion(glances, driver)
    frames = {}
    for flag in ("--gaze", "--no-gaze"):
        out = tmp_path / f"{flag[2:]}.mp4"
        ran = run_cli(
            [astronaut_png, "--driver", driver, "-o", out, "--crop-only", "-q", flag], capsys, monkeypatch
        )
        assert ran.code == 0, ran.err
        frames[flag] = np.stack(list(video.read_frames(out))).astype(int)
    moved = np.abs(frames["--gaze"] - frames["--no-gaze"]).max(axis=(1, 2, 3)) > 40  # over codec noise
    assert moved.sum() >= 10 and not moved.all()  # the glances, and not the frames looking ahead


def test_a_motion_file_without_gaze_or_mouth_is_named_and_still_animates(
    tmp_path: Path, astronaut_png: Path, capsys, monkeypatch
):
    from cli_helpers import run_cli

    whole = motion.load_motion(demo_motion_path())
    older = tmp_path / "older.npz"  # as `motion` wrote it before gaze was read
    motion.save_motion(replace(whole.cut(slice(12)), gaze=None, mouth=None), older)
    out = tmp_path / "out.mp4"
    ran = run_cli([astronaut_png, "--driver", older, "-o", out, "--crop-only"], capsys, monkeypatch)
    assert ran.code == 0 and out.is_file()
    assert "older.npz: no gaze (made before gaze was read" in ran.err
    assert "no mouth reading" not in ran.err  # the default paints upper teeth, needing no reading
    args = [astronaut_png, "--driver", older, "-o", out, "--overwrite", "--mouth-interior", "driver"]
    ran = run_cli(args, capsys, monkeypatch)
    assert ran.code == 0 and "older.npz: no mouth reading (made before the mouth was read" in ran.err
    ran = run_cli(
        [astronaut_png, "--driver", older, "-o", out, "--overwrite", "--no-gaze"], capsys, monkeypatch
    )
    assert ran.code == 0 and "no gaze" not in ran.err
    ran = run_cli([*args, "--no-mouth"], capsys, monkeypatch)
    assert ran.code == 0 and "no mouth reading" not in ran.err
