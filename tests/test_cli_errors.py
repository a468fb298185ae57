"""Bad input: one line naming the file and the problem, a non-zero exit, no output, no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from animate_portrait import video
from cli_helpers import run_cli
from conftest import Driver


def _assert_clean_failure(ran, out: Path, names: str, code: int = 1) -> None:
    assert ran.code == code, (ran.code, ran.err)
    message = ran.err.strip()
    assert "Traceback" not in message
    assert len(message.splitlines()) == 1, message
    assert names in message, message
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")], "temp file left behind"


def _blank_video(path: Path, n: int = 6) -> Path:
    with video.VideoWriter(path, 10, (128, 128), overwrite=True) as writer:
        for _ in range(n):
            writer.write(np.full((128, 128, 3), 90, np.uint8))
    return path


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "out.mp4"


def test_missing_source(out, driver: Driver, capsys, monkeypatch):
    ran = run_cli([out.parent / "nobody.jpg", "--driver", driver.path, "-o", out], capsys, monkeypatch)
    _assert_clean_failure(ran, out, "nobody.jpg")


def test_source_is_not_an_image(out, driver: Driver, capsys, monkeypatch):
    fake = out.parent / "fake.jpg"
    fake.write_text("hello")
    ran = run_cli([fake, "--driver", driver.path, "-o", out], capsys, monkeypatch)
    _assert_clean_failure(ran, out, "fake.jpg")


def test_missing_driver(out, astronaut_png: Path, capsys, monkeypatch):
    ran = run_cli([astronaut_png, "--driver", out.parent / "gone.mp4", "-o", out], capsys, monkeypatch)
    _assert_clean_failure(ran, out, "gone.mp4")


def test_driver_is_a_text_file(out, astronaut_png: Path, capsys, monkeypatch):
    fake = out.parent / "talk.mp4"
    fake.write_text("this is not a video\n" * 20)
    ran = run_cli([astronaut_png, "--driver", fake, "-o", out], capsys, monkeypatch)
    _assert_clean_failure(ran, out, "talk.mp4")


def test_driver_is_truncated(out, driver: Driver, astronaut_png: Path, capsys, monkeypatch):
    cut = out.parent / "cut.mp4"
    cut.write_bytes(driver.path.read_bytes()[: driver.path.stat().st_size // 3])
    ran = run_cli([astronaut_png, "--driver", cut, "-o", out], capsys, monkeypatch)
    _assert_clean_failure(ran, out, "cut.mp4")


def test_driver_with_zero_frames(out, astronaut_png: Path, capsys, monkeypatch):
    import subprocess

    import imageio_ffmpeg

    empty = out.parent / "empty.mp4"
    # A valid MP4 with an audio track and no video frames at all.
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
        "sine=duration=0.5",
        str(empty),
    ]
    subprocess.run(cmd, check=True)
    ran = run_cli([astronaut_png, "--driver", empty, "-o", out], capsys, monkeypatch)
    _assert_clean_failure(ran, out, "empty.mp4")


def test_portrait_without_a_face(out, driver: Driver, capsys, monkeypatch):
    blank = out.parent / "wall.png"
    Image.fromarray(np.full((300, 300, 3), 200, np.uint8)).save(blank)
    ran = run_cli([blank, "--driver", driver.path, "-o", out], capsys, monkeypatch)
    _assert_clean_failure(ran, out, "wall.png")
    assert "no face" in ran.err


def test_driver_without_a_face(out, astronaut_png: Path, capsys, monkeypatch):
    blank = _blank_video(out.parent / "blank.mp4")
    ran = run_cli([astronaut_png, "--driver", blank, "-o", out], capsys, monkeypatch)
    _assert_clean_failure(ran, out, "blank.mp4")
    assert "no face" in ran.err


def test_output_folder_missing(tmp_path, driver: Driver, astronaut_png: Path, capsys, monkeypatch):
    out = tmp_path / "nowhere" / "out.mp4"
    ran = run_cli([astronaut_png, "--driver", driver.path, "-o", out], capsys, monkeypatch)
    assert ran.code == 1 and "nowhere" in ran.err and not out.parent.exists()


def test_output_folder_unwritable(tmp_path, driver: Driver, astronaut_png: Path, capsys, monkeypatch):
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o500)
    if os.geteuid() == 0:
        # root writes into read-only folders; sysfs refuses new files even to root.
        if not Path("/sys").is_dir():
            pytest.skip("running as root without /sys: no folder here is unwritable to root")
        folder = Path("/sys")
    out = folder / "out.mp4"
    ran = run_cli(
        [astronaut_png, "--driver", driver.path, "-o", out, "--max-frames", "2"], capsys, monkeypatch
    )
    assert ran.code == 1 and str(out) in ran.err and "Traceback" not in ran.err
    assert not out.exists()


def test_existing_output_needs_overwrite(out, driver: Driver, astronaut_png: Path, capsys, monkeypatch):
    out.write_bytes(b"precious")
    ran = run_cli([astronaut_png, "--driver", driver.path, "-o", out], capsys, monkeypatch)
    assert ran.code == 1 and "out.mp4" in ran.err and "--overwrite" in ran.err
    assert out.read_bytes() == b"precious"
    ran = run_cli(
        [astronaut_png, "--driver", driver.path, "-o", out, "--overwrite", "--max-frames", "2", "-q"],
        capsys,
        monkeypatch,
    )
    assert ran.code == 0 and len(list(video.read_frames(out))) == 2


@pytest.mark.parametrize("name", ["out.avi", "out"])
def test_unknown_output_format(tmp_path, name, driver: Driver, astronaut_png: Path, capsys, monkeypatch):
    out = tmp_path / name
    ran = run_cli([astronaut_png, "--driver", driver.path, "-o", out], capsys, monkeypatch)
    _assert_clean_failure(ran, out, name)
    assert "unsupported output format" in ran.err and ".gif" in ran.err


@pytest.mark.parametrize(
    "bad",
    [
        ["--region", "nose"],
        ["--expression-scale", "-1"],
        ["--faces", "some"],
        ["--absolute", "--region", "lips"],
        ["--mouth-interior", "teeth"],
    ],
)
def test_bad_motion_options_are_usage_errors(
    bad, out, driver: Driver, astronaut_png: Path, capsys, monkeypatch
):
    ran = run_cli([astronaut_png, "--driver", driver.path, "-o", out, *bad], capsys, monkeypatch)
    assert ran.code == 2 and bad[-2] in ran.err and not out.exists(), ran.err


@pytest.mark.parametrize("kind", ["missing", "corrupt", "wrong_shape"])
def test_bad_weights(kind, out, driver: Driver, astronaut_png: Path, capsys, monkeypatch):
    weights = out.parent / "model.safetensors"
    if kind == "corrupt":
        weights.write_bytes(b"\x00garbage" * 100)
    elif kind == "wrong_shape":
        from safetensors.numpy import save_file

        save_file({"generator.nothing": np.zeros((3, 3), np.float32)}, str(weights))
    args = [astronaut_png, "--driver", driver.path, "-o", out, "--engine", "neural", "--weights", weights]
    ran = run_cli(args, capsys, monkeypatch)
    _assert_clean_failure(ran, out, "model.safetensors")


@pytest.mark.slow
def test_huge_portrait_is_downscaled_for_detection(tmp_path, astronaut, driver: Driver, capsys, monkeypatch):
    huge = tmp_path / "huge.png"
    Image.fromarray(astronaut).resize((8000, 8000), Image.BILINEAR).save(huge, compress_level=1)
    out = tmp_path / "huge.mp4"
    ran = run_cli([huge, "--driver", driver.path, "-o", out, "--max-frames", "2", "-q"], capsys, monkeypatch)
    assert ran.code == 0, ran.err
    frames = list(video.read_frames(out))
    assert len(frames) == 2 and max(frames[0].shape[:2]) == 3840  # capped, aspect kept


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code", "word"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_interrupted_run_leaves_no_partial_file(tmp_path, astronaut_png: Path, signum, code, word):
    """Ctrl-C, or SIGTERM (a pipeline's timeout, a scheduler): ffmpeg stopped, the temp file removed."""
    from conftest import make_driver

    long_driver = make_driver(tmp_path, n_frames=240, fps=24, audio=False)
    out = tmp_path / "interrupted.mp4"
    args = [sys.executable, "-m", "animate_portrait", astronaut_png, "--driver", long_driver.path, "-o", out]
    proc = subprocess.Popen([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Wait until rendering has begun (the temp file appears), then stop it.
    deadline = time.time() + 60
    while time.time() < deadline and not [p for p in tmp_path.iterdir() if p.name.startswith(".interrupted")]:
        time.sleep(0.1)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert word in err and "Traceback" not in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".interrupted")]


@pytest.mark.parametrize("kind", ["missing", "text", "silent"])
def test_bad_audio_file(kind, out, driver: Driver, astronaut_png: Path, capsys, monkeypatch):
    sound = out.parent / ("silent.mp4" if kind == "silent" else "speech.wav")
    if kind == "text":
        sound.write_text("not a sound\n" * 10)
    elif kind == "silent":
        _blank_video(sound)
    ran = run_cli([astronaut_png, "--driver", driver.path, "-o", out, "--audio", sound], capsys, monkeypatch)
    _assert_clean_failure(ran, out, sound.name)


@pytest.mark.parametrize("bad", [["--no-audio"], ["-o", "out.gif"]])
def test_audio_option_usage_errors(bad, tmp_path, driver: Driver, astronaut_png: Path, capsys, monkeypatch):
    from animate_portrait.synthetic import tone

    speech = tone(tmp_path / "speech.wav", 0.5)
    args = [astronaut_png, "--driver", driver.path, "-o", tmp_path / "out.mp4", "--audio", speech]
    if bad[0] == "-o":
        args[4] = tmp_path / bad[1]
    else:
        args += bad
    ran = run_cli(args, capsys, monkeypatch)
    assert ran.code == 2 and "--audio" in ran.err, ran.err
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".mp4", ".gif")]
