"""End to end through the real CLI: a real face, real ffmpeg, real MP4 files."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from animate_portrait import identity, motion, video
from animate_portrait.landmarks import get_detector
from cli_helpers import run_cli, run_process
from conftest import Driver, sound_of


def _mouth_track(path: Path) -> tuple[np.ndarray, int]:
    """Mouth opening per output frame, from landmarks found afresh; and how many frames had a face."""
    detector = get_detector("dlib")
    openings, found = [], 0
    for frame in video.read_frames(path):
        faces = detector.detect(frame)
        if faces:
            found += 1
            openings.append(float(motion.mouth_opening(faces[0].points)))
        else:
            openings.append(np.nan)
    return np.array(openings), found


@pytest.fixture(scope="module")
def animated(tmp_path_factory, driver: Driver, astronaut_png: Path):
    out = tmp_path_factory.mktemp("out") / "astronaut.mp4"
    result = run_process([astronaut_png, "--driver", driver.path, "-o", out, "--engine", "warp", "--json"])
    assert result.returncode == 0, result.stderr
    return out, result


def test_output_matches_driver_frames_fps_and_size(animated, driver: Driver, astronaut_png: Path):
    out, _ = animated
    info = video.probe(out)
    frames = list(video.read_frames(out))
    assert len(frames) == driver.n_frames
    assert info.fps == pytest.approx(driver.fps, rel=0.01)
    assert frames[0].shape == (512, 512, 3)  # the whole portrait, pasted back


def test_audio_is_copied_from_driver(animated):
    out, _ = animated
    assert video.probe(out).has_audio


def test_face_found_and_mouth_follows_driver(animated, driver: Driver):
    out, _ = animated
    openings, found = _mouth_track(out)
    assert found == driver.n_frames
    corr = np.corrcoef(openings, driver.opening)[0, 1]
    assert corr > 0.8, f"mouth opening correlation {corr:.2f}"


def test_output_keeps_the_portraits_identity(animated, astronaut: np.ndarray):
    out, _ = animated
    frames = list(video.read_frames(out))
    distances = [identity.distance(astronaut, frames[i]) for i in (0, len(frames) // 2, -1)]
    assert max(distances) < 0.6, distances


def test_json_summary_on_stdout(animated, driver: Driver):
    _, result = animated
    import json

    assert len(result.stdout.strip().splitlines()) == 1  # stdout carries the summary and nothing else
    assert "━" not in result.stderr and "fr/s" not in result.stderr  # no progress bar when piped
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["frames"] == driver.n_frames
    assert summary["audio"] is True


def test_crop_only_and_no_audio(tmp_path, driver: Driver, astronaut_png: Path, capsys, monkeypatch):
    out = tmp_path / "crop.mp4"
    ran = run_cli(
        [
            astronaut_png,
            "--driver",
            driver.path,
            "-o",
            out,
            "--crop-only",
            "--no-audio",
            "--size",
            "128",
            "--max-frames",
            "5",
            "-q",
        ],
        capsys,
        monkeypatch,
    )
    assert ran.code == 0, ran.err
    frames = list(video.read_frames(out))
    assert len(frames) == 5 and frames[0].shape == (128, 128, 3)
    assert not video.probe(out).has_audio


def test_gif_and_webm_outputs(tmp_path, driver: Driver, astronaut_png: Path, capsys, monkeypatch):
    """WebM carries the driver's audio (Opus); GIF has none, and says so in the summary."""
    for name, audio in (("talk.webm", "opus"), ("talk.gif", None)):
        out = tmp_path / name
        args = [astronaut_png, "--driver", driver.path, "-o", out, "--max-frames", "6", "--json"]
        ran = run_cli(args, capsys, monkeypatch)
        assert ran.code == 0, ran.err
        assert ran.json_lines()[-1]["audio"] is (audio is not None)
        info = video.probe(out)
        assert info.audio_codec == audio and info.size == (512, 512)
        frames = list(video.read_frames(out))
        assert len(frames) == 6 and identity.distance(frames[0], frames[-1]) < 0.6


def _face_track(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Nose-tip x and mouth opening per frame, from dlib afresh (every frame must show a face)."""
    detector = get_detector("dlib")
    points = np.stack([detector.detect(frame)[0].points for frame in video.read_frames(path)])
    return points[:, 30, 0], motion.mouth_opening(points)


def test_region_and_expression_scale(tmp_path, driver: Driver, astronaut_png: Path, capsys, monkeypatch):
    """--region lips: the mouth talks and the head stays still; --expression-scale 1.5 opens it further."""
    tracks = {}
    for name, extra in (("all", []), ("lips", ["--region", "lips"]), ("wide", ["--expression-scale", "1.5"])):
        out = tmp_path / f"{name}.mp4"
        ran = run_cli(
            [astronaut_png, "-d", driver.path, "-o", out, "--crop-only", "-q", *extra], capsys, monkeypatch
        )
        assert ran.code == 0, ran.err
        tracks[name] = _face_track(out)
    nose_all, _ = tracks["all"]
    nose_lips, mouth_lips = tracks["lips"]
    assert np.ptp(nose_all) > 4 and np.ptp(nose_lips) < 1.5, (np.ptp(nose_all), np.ptp(nose_lips))
    assert np.corrcoef(mouth_lips, driver.opening)[0, 1] > 0.8
    gain = {name: np.polyfit(driver.opening, tracks[name][1], 1)[0] for name in ("all", "wide")}
    assert gain["wide"] > 1.3 * gain["all"] > 0, gain
    ran = run_cli(
        [astronaut_png, "-d", driver.path, "-o", tmp_path / "x.mp4", "--absolute", "--region", "lips"],
        capsys,
        monkeypatch,
    )
    assert ran.code == 2 and "relative" in ran.err and not (tmp_path / "x.mp4").exists()


def test_faces_all_drives_every_face_of_a_group_picture(
    tmp_path, driver: Driver, astronaut, capsys, monkeypatch
):
    pair = tmp_path / "pair.png"
    Image.fromarray(np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)).save(pair)  # two faces
    detector = get_detector("dlib")
    openings = {}
    for faces in ("largest", "all"):
        out = tmp_path / f"{faces}.mp4"
        ran = run_cli([pair, "-d", driver.path, "-o", out, "--faces", faces, "--json"], capsys, monkeypatch)
        assert ran.code == 0, ran.err
        summary = ran.json_lines()[-1]
        assert summary["faces_in_portrait"] == 2 and summary["faces_animated"] == (2 if faces == "all" else 1)
        tracks = []
        for frame in video.read_frames(out):
            found = sorted(detector.detect(frame), key=lambda f: f.points[:, 0].mean())  # left, right
            assert len(found) == 2
            tracks.append([motion.mouth_opening(f.points) for f in found])
        openings[faces] = np.array(tracks)
    for side in (0, 1):
        assert np.corrcoef(openings["all"][:, side], driver.opening)[0, 1] > 0.8
    spread = np.ptp(openings["largest"], axis=0)
    assert spread.min() < 0.3 * spread.max(), spread  # without the option, one face stays still
    other = Path(shutil.copy(pair, tmp_path / "pair_again.png"))
    # a face crop is one face; more images, or a fine-tuning, are one person's
    for bad in (["--crop-only"], [other], ["--engine", "neural", "--finetune-steps", "5"]):
        ran = run_cli(
            [pair, "-d", driver.path, "-o", tmp_path / "x.mp4", "--faces", "all", *bad], capsys, monkeypatch
        )
        assert ran.code == 2 and "--faces" in ran.err and not (tmp_path / "x.mp4").exists()


def test_motion_file_is_reusable(tmp_path, driver: Driver, astronaut_png: Path, capsys, monkeypatch):
    motion_file = tmp_path / "talk.motion.npz"
    ran = run_cli(["motion", driver.path, "-o", motion_file, "-q"], capsys, monkeypatch)
    assert ran.code == 0, ran.err
    out = tmp_path / "from_motion.mp4"
    ran = run_cli(
        [astronaut_png, "--driver", motion_file, "-o", out, "--max-frames", "6", "-q"], capsys, monkeypatch
    )
    assert ran.code == 0, ran.err
    assert len(list(video.read_frames(out))) == 6
    assert video.probe(out).has_audio  # the motion file remembers where the driver's audio is


def test_batch_goes_on_after_a_bad_portrait(
    tmp_path, driver: Driver, astronaut_png: Path, capsys, monkeypatch
):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    listing = f"{astronaut_png}\n{bad}\n"
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(listing))
    ran = run_cli(
        [
            "batch",
            "-",
            "--driver",
            driver.path,
            "--output-dir",
            tmp_path / "out",
            "--max-frames",
            "3",
            "--json",
        ],
        capsys,
        monkeypatch,
    )
    assert ran.code == 1
    lines = {Path(line["source"]).name: line for line in ran.json_lines()}
    assert lines["astronaut.png"]["status"] == "ok"
    assert lines["notes.jpg"]["status"] == "error" and "notes.jpg" in lines["notes.jpg"]["error"]
    assert (tmp_path / "out" / "astronaut.mp4").is_file()
    assert not (tmp_path / "out" / "notes.mp4").exists()


@pytest.mark.slow
def test_demo_runs_on_embedded_default(tmp_path, capsys, monkeypatch):
    out = tmp_path / "demo.mp4"
    ran = run_cli(["demo", "-o", out, "--json", "-q"], capsys, monkeypatch)
    assert ran.code == 0, ran.err
    summary = ran.json_lines()[-1]
    assert summary["frames"] > 10
    openings, found = _mouth_track(out)
    assert found == summary["frames"]
    assert np.nanstd(openings) > 0.02  # the mouth moves


def test_help_and_usage_errors(capsys, monkeypatch):
    assert run_cli(["--help"], capsys, monkeypatch).code == 0
    ran = run_cli(["face.jpg", "--driver", "d.mp4", "-o", "o.mp4", "--engine", "magic"], capsys, monkeypatch)
    assert ran.code == 2
    ran = run_cli(["face.jpg", "--driver", "d.mp4", "-o", "o.mp4", "--max-travel", "-1"], capsys, monkeypatch)
    assert ran.code == 2 and "--max-travel" in ran.err


def test_progress_bar_on_a_terminal(tmp_path, driver: Driver, astronaut_png: Path):
    """On a terminal (a pty) the rich bar shows, with frames/s; it is transient, so read the raw bytes."""
    import os
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    args = [sys.executable, "-m", "animate_portrait", astronaut_png, "--driver", driver.path,
            "-o", tmp_path / "tty.mp4"]  # fmt: skip
    proc = subprocess.Popen(
        [str(a) for a in args], stdout=follower, stderr=follower, stdin=subprocess.DEVNULL
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the pty closes when the process exits
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=120) == 0
    shown = b"".join(chunks).decode("utf-8", "replace")
    assert "rendering" in shown and "fr/s" in shown


def test_mouth_interior_is_painted_unless_no_mouth(
    tmp_path, driver: Driver, astronaut_png: Path, capsys, monkeypatch
):
    """The talking driver opens the astronaut's closed mouth: by default the opening is painted dark,
    in a small region only; --no-mouth leaves the warp's stretched lips."""
    outputs = {}
    for flag in ("--mouth", "--no-mouth"):
        out = tmp_path / f"{flag.strip('-')}.mp4"
        args = [
            astronaut_png,
            "--driver",
            driver.path,
            "-o",
            out,
            "--crop-only",
            "--no-audio",
            "--size",
            "128",
        ]
        ran = run_cli([*args, "--max-frames", "12", flag, "-q"], capsys, monkeypatch)
        assert ran.code == 0, ran.err
        outputs[flag] = np.stack(list(video.read_frames(out))).astype(np.float32)
    filled, plain = outputs["--mouth"], outputs["--no-mouth"]
    changed = np.abs(filled - plain).max(-1) > 30  # (T, H, W)
    assert changed.any()
    assert changed.mean() < 0.02  # the mouth only, not the face
    assert filled.mean(-1)[changed].mean() < plain.mean(-1)[changed].mean() - 20  # darker there


def test_audio_option_replaces_the_drivers_sound(
    tmp_path, driver: Driver, astronaut_png: Path, capsys, monkeypatch
):
    """--audio: the driver's 440 Hz tone gives way to the file's 660 Hz one, cut to the video's length;
    a motion file whose video is gone (no sound of its own) takes it too."""
    from animate_portrait.synthetic import tone

    speech = tone(tmp_path / "speech.m4a", 10.0, frequency=660)
    motion_file = tmp_path / "talk.npz"
    assert run_cli(["motion", driver.path, "-o", motion_file, "-q"], capsys, monkeypatch).code == 0
    moved = motion.load_motion(motion_file)
    motion.save_motion(replace(moved, source=str(tmp_path / "elsewhere.mp4")), motion_file)
    for drive in (driver.path, motion_file):
        out = tmp_path / f"{drive.stem}.mp4"
        args = [
            astronaut_png,
            "--driver",
            drive,
            "-o",
            out,
            "--max-frames",
            "12",
            "--audio",
            speech,
            "--json",
        ]
        ran = run_cli(args, capsys, monkeypatch)
        assert ran.code == 0, ran.err
        assert ran.json_lines()[-1]["audio"] is True
        seconds, pitch = sound_of(out)
        assert pitch == pytest.approx(660, abs=5)
        assert seconds == pytest.approx(12 / driver.fps, abs=0.1)


def test_a_photo_as_the_driver_says_what_it_gives(tmp_path, astronaut_png: Path, capsys, monkeypatch):
    """A still driver (one frame) under relative motion gives its mouth against the same face shut (see
    test_still for the opening itself), and the run says so; under --absolute there is nothing to say."""
    for extra, told in (([], True), (["--absolute"], False)):
        out = tmp_path / f"still{len(extra)}.mp4"
        ran = run_cli([astronaut_png, "--driver", astronaut_png, "-o", out, *extra], capsys, monkeypatch)
        assert ran.code == 0, ran.err
        assert ("one frame: the portrait takes its mouth" in ran.err) == told, ran.err
        assert video.probe(out).n_frames == 1
