"""still.py: a photo as the driver writes a still image (PNG, JPEG, WebP), whole or not at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from animate_portrait import motion, video
from animate_portrait.errors import InputError
from animate_portrait.landmarks import get_detector
from animate_portrait.still import StillWriter
from cli_helpers import run_cli
from conftest import Driver


@pytest.fixture(scope="module")
def open_mouth_photo(tmp_path_factory, driver: Driver) -> Path:
    """The synthetic driver's frame with the widest mouth, as a photo."""
    t = int(np.argmax(driver.opening))
    frame = list(video.read_frames(driver.path, max_frames=t + 1))[t]
    path = tmp_path_factory.mktemp("photo") / "open_mouth.png"
    Image.fromarray(frame).save(path)
    return path


def _frame(w: int = 40, h: int = 30) -> np.ndarray:
    """Smooth colour ramps, as a picture is, which JPEG and WebP keep to a few grey levels."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 200 // w + 20, y * 200 // h + 20, (x + y) * 100 // (w + h) + 80], -1).astype(
        np.uint8
    )


@pytest.mark.parametrize(("name", "tolerance"), [("x.png", 0), ("x.jpg", 3), ("x.webp", 3)])
def test_writes_one_frame_in_the_suffixs_format(tmp_path, name: str, tolerance: int):
    frame = _frame()
    with StillWriter(tmp_path / name, (40, 30), n_frames=1) as writer:
        writer.write(frame)
    with Image.open(tmp_path / name) as image:
        assert image.format == {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}[name[2:]]
        back = np.asarray(image.convert("RGB"))
    assert back.shape == frame.shape
    assert np.abs(back.astype(int) - frame).mean() <= tolerance
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temp file left beside it


def test_nothing_is_written_on_an_error_no_frame_or_a_second_frame(tmp_path):
    out = tmp_path / "x.png"
    with pytest.raises(RuntimeError), StillWriter(out, (40, 30), n_frames=1) as writer:
        writer.write(_frame())
        raise RuntimeError("the render failed")
    with pytest.raises(InputError, match="no frames"), StillWriter(out, (40, 30), n_frames=1):
        pass
    with pytest.raises(InputError, match="one frame"), StillWriter(out, (40, 30), n_frames=1) as writer:
        writer.write(_frame())
        writer.write(_frame())
    with pytest.raises(InputError, match="x.png: a still image holds one frame, and the driver gives 3"):
        StillWriter(out, (40, 30), n_frames=3)
    with pytest.raises(ValueError, match="expected a"), StillWriter(out, (40, 30), n_frames=1) as writer:
        writer.write(_frame(30, 40))
    assert list(tmp_path.iterdir()) == []


def test_a_photo_driver_opens_the_portraits_mouth_in_a_png(
    tmp_path, astronaut_png: Path, open_mouth_photo: Path, capsys, monkeypatch
):
    """The photo's open mouth carries over under relative motion (its own mouth, closed, is the reference),
    into one whole picture as PNG; the run says what a photo gives."""
    out = tmp_path / "still.png"
    ran = run_cli([astronaut_png, "-d", open_mouth_photo, "-o", out, "--json"], capsys, monkeypatch)
    assert ran.code == 0, ran.err
    assert "one frame: the portrait takes its mouth" in ran.err
    summary = ran.json_lines()[-1]
    assert (summary["frames"], summary["width"], summary["height"], summary["audio"]) == (1, 512, 512, False)
    detector = get_detector("dlib")
    with Image.open(astronaut_png) as image:
        before = motion.mouth_opening(detector.detect(np.asarray(image.convert("RGB")))[0].points)
    with Image.open(out) as image:
        assert image.format == "PNG"
        after = motion.mouth_opening(detector.detect(np.asarray(image.convert("RGB")))[0].points)
    assert after > before + 0.05, (before, after)


def test_a_video_driver_and_a_still_output_fail_before_any_work(
    tmp_path, astronaut_png: Path, driver: Driver, capsys, monkeypatch
):
    out = tmp_path / "x.jpg"
    ran = run_cli([astronaut_png, "-d", driver.path, "-o", out], capsys, monkeypatch)
    assert ran.code == 1
    assert ran.err.strip().splitlines() == [
        f"error: {out}: a still image holds one frame, and the driver gives {driver.n_frames}: drive it with "
        "a photo, or write a video (.mp4)"
    ]
    assert list(tmp_path.iterdir()) == []
    # its first frame alone is a photo's worth
    ran = run_cli(
        [astronaut_png, "-d", driver.path, "-o", out, "--max-frames", "1", "-q"], capsys, monkeypatch
    )
    assert ran.code == 0 and out.is_file()


def test_batch_writes_still_images_from_a_photo_and_refuses_a_video(
    tmp_path, astronaut_png: Path, open_mouth_photo: Path, driver: Driver, capsys, monkeypatch
):
    second = tmp_path / "second.png"
    second.write_bytes(astronaut_png.read_bytes())
    args = ["batch", astronaut_png, second, "--format", "jpg", "-q"]
    ran = run_cli([*args, "-d", open_mouth_photo, "--output-dir", tmp_path / "out"], capsys, monkeypatch)
    assert ran.code == 0, ran.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["astronaut.jpg", "second.jpg"]
    ran = run_cli([*args, "-d", driver.path, "--output-dir", tmp_path / "out2"], capsys, monkeypatch)
    assert ran.code == 1, ran.err
    assert f"{driver.path}: a still image holds one frame, and the driver gives {driver.n_frames}" in ran.err
    assert not (tmp_path / "out2").exists() or list((tmp_path / "out2").iterdir()) == []
