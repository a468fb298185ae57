"""video_source.py: a talking video dubbed with another's mouth. Real dlib, real ffmpeg, real MP4s."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from animate_portrait import motion, video, video_source
from animate_portrait.landmarks import get_detector
from cli_helpers import run_cli
from conftest import Driver
from test_motion import FACE, open_mouth


def _posed(points: np.ndarray) -> np.ndarray:
    """One fixed pose: turned by 10°, 1.2× nearer, moved (about FACE's centre, whatever the mouth does)."""
    a = 1.2 * np.exp(1j * np.deg2rad(10))
    c = complex(*FACE.mean(0))
    return motion._points(a * (motion._complex(points) - c) + c + complex(30, -8))


def test_with_neutral_regions_puts_the_neutral_mouth_in_the_frames_pose() -> None:
    frame = _posed(open_mouth(FACE, 12.0))  # turned, nearer, mouth open
    out = video_source.with_neutral_regions(frame, FACE, "lips")
    still = np.setdiff1d(np.arange(68), motion.MOUTH_REGION)
    np.testing.assert_allclose(out[still], frame[still])
    np.testing.assert_allclose(out, _posed(FACE), atol=1e-3)  # the mouth shut again, in the frame's pose


def test_targets_take_the_drivers_mouth_and_the_sources_pose() -> None:
    n = 6
    shift = np.linspace(0, 20, n)[:, None, None] * np.array([1, 0], np.float32)
    opened = np.repeat(open_mouth(FACE, 10.0)[None], n, 0)  # the source says "aah" all along ...
    source = motion.Motion(opened + shift, np.ones(n, bool), 25, (512, 512))
    source.points[0] = FACE  # ... but once, with its mouth shut: its neutral face
    wave = 8.0 * (np.arange(n) % 2)  # the driver opens and shuts every other frame
    driving = motion.Motion(np.stack([open_mouth(FACE, w) for w in wave]), np.ones(n, bool), 25, (512, 512))
    goals = video_source.targets(source, driving, "lips", 1.0, np.arange(n))
    np.testing.assert_allclose(
        goals[:, 30], source.points[:, 30], atol=1e-3
    )  # the head moves as the source's
    gain = np.polyfit(motion.mouth_opening(driving.points), motion.mouth_opening(goals), 1)[0]
    assert gain == pytest.approx(1.0, abs=0.05)  # the mouth as the driver's, from shut, not from "aah"
    assert motion.mouth_opening(goals[1]) == pytest.approx(motion.mouth_opening(driving.points[1]), abs=0.01)


def test_cutaways_are_the_long_runs_without_a_face() -> None:
    found = np.array([1, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0], bool)
    assert video_source.cutaways(found, 3).tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1]
    assert not video_source.cutaways(found, 4).any()


def test_source_frames_follow_the_drivers_clock() -> None:
    def clip(n: int, fps: float) -> motion.Motion:
        return motion.Motion(np.zeros((n, 68, 2), np.float32), np.ones(n, bool), fps, (64, 64))

    np.testing.assert_array_equal(video_source.source_frames(clip(10, 25), clip(30, 25)), np.arange(10))
    shown = video_source.source_frames(clip(60, 30), clip(100, 25))  # 2 s of source, 4 s of driver
    assert len(shown) == 50 and shown[-1] == 58 and np.diff(shown).tolist().count(2) == 9  # skips 1 in 6
    assert (
        np.bincount(video_source.source_frames(clip(10, 12), clip(100, 24)), minlength=10).tolist()
        == [2] * 10
    )
    assert len(video_source.source_frames(clip(60, 30), clip(100, 25), max_frames=7)) == 7


@pytest.fixture(scope="module")
def panning(tmp_path_factory, astronaut) -> tuple[Path, np.ndarray]:
    """A 16-frame video of the astronaut, still-faced, sliding sideways: (path, shift per frame)."""
    path = tmp_path_factory.mktemp("source") / "panning.mp4"
    shifts = np.round(8 * np.sin(np.linspace(0, 2 * np.pi, 16))).astype(int)
    with video.VideoWriter(path, 12, (512, 512)) as writer:
        for s in shifts:
            writer.write(np.ascontiguousarray(np.roll(astronaut, s, axis=1)))
    return path, shifts


def _track(path: Path) -> np.ndarray:
    detector = get_detector("dlib")
    return np.stack([detector.detect(frame)[0].points for frame in video.read_frames(path)])


def test_video_source_moves_as_itself_and_talks_as_the_driver(
    tmp_path, panning, driver: Driver, capsys, monkeypatch
):
    source, shifts = panning
    out = tmp_path / "dubbed.mp4"
    ran = run_cli([source, "-d", driver.path, "-o", out, "--region", "lips", "--json"], capsys, monkeypatch)
    assert ran.code == 0, ran.err
    summary = ran.json_lines()[-1]
    assert summary["frames"] == 16 and (summary["width"], summary["height"]) == (512, 512)  # the shorter one
    assert summary["audio"] is True and "shorter than the driver" in ran.err
    points = _track(out)
    assert np.corrcoef(points[:, 30, 0], shifts)[0, 1] > 0.95  # the source's own motion
    assert np.corrcoef(motion.mouth_opening(points), driver.opening[:16])[0, 1] > 0.8  # the driver's mouth


def test_video_source_side_by_side(tmp_path, panning, driver: Driver, capsys, monkeypatch):
    source, _ = panning
    out = tmp_path / "dubbed.mp4"
    args = [source, "-d", driver.path, "-o", out, "--side-by-side", "--max-frames", "3", "--json"]
    ran = run_cli(args, capsys, monkeypatch)
    assert ran.code == 0, ran.err
    summary = ran.json_lines()[-1]
    assert (summary["width"], summary["height"], summary["frames"]) == (1024, 512, 3)  # the driver, 512 high
    assert next(iter(video.read_frames(out))).shape == (512, 1024, 3)


@pytest.mark.parametrize(
    "extra",
    [
        ["--region", "pose"],
        ["--faces", "all"],
        ["SECOND"],
        ["--engine", "neural", "--finetune-steps", "3"],
        ["--absolute"],
    ],
)
def test_video_source_usage_errors(
    tmp_path, panning, driver: Driver, astronaut_png, extra, capsys, monkeypatch
):
    source, _ = panning
    out = tmp_path / "x.mp4"
    extra = [astronaut_png if e == "SECOND" else e for e in extra]
    ran = run_cli([source, "-d", driver.path, "-o", out, *extra], capsys, monkeypatch)
    assert ran.code == 2 and not out.exists(), ran.err


def test_a_cutaway_in_the_source_passes_unchanged(tmp_path, astronaut, driver: Driver, capsys, monkeypatch):
    source = tmp_path / "cut.mp4"
    grey = np.full((512, 512, 3), 120, np.uint8)
    frames = [astronaut] * 6 + [grey] * 6 + [astronaut] * 6  # 6 frames at 12 fps: half a second away
    with video.VideoWriter(source, 12, (512, 512)) as writer:
        for frame in frames:
            writer.write(frame)
    out = tmp_path / "dubbed.mp4"
    ran = run_cli([source, "-d", driver.path, "-o", out, "--region", "lips", "-q"], capsys, monkeypatch)
    assert ran.code == 0, ran.err
    rendered = list(video.read_frames(out))
    detector = get_detector("dlib")
    for t in range(6, 12):
        assert np.abs(rendered[t].astype(int) - 120).max() < 6 and not detector.detect(rendered[t])
    assert all(detector.detect(rendered[t]) for t in (0, 5, 12, 17))


@pytest.mark.parametrize("kind", ["no_face", "truncated"])
def test_bad_source_video_is_one_clear_line(tmp_path, panning, driver: Driver, kind, capsys, monkeypatch):
    if kind == "no_face":
        source = tmp_path / "blank.mp4"
        with video.VideoWriter(source, 10, (128, 128)) as writer:
            for _ in range(6):
                writer.write(np.full((128, 128, 3), 90, np.uint8))
    else:
        source = tmp_path / "cut.mp4"
        source.write_bytes(panning[0].read_bytes()[:20000])
    out = tmp_path / "out.mp4"
    ran = run_cli([source, "-d", driver.path, "-o", out], capsys, monkeypatch)
    assert ran.code == 1 and len(ran.err.strip().splitlines()) == 1 and source.name in ran.err, ran.err
    assert ("no face" if kind == "no_face" else "truncated") in ran.err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out.mp4")]
