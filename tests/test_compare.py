"""--side-by-side: the driver's frame (or its sketch) left of each output frame. Real videos, real ffmpeg."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from animate_portrait import motion, video
from animate_portrait.compare import DriverPanels
from animate_portrait.pipeline import Pipeline
from animate_portrait.types import RenderConfig
from cli_helpers import run_cli
from conftest import Driver


def _scaled(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR)).astype(np.int16)


def test_panels_are_the_drivers_frames_at_the_outputs_height(driver: Driver):
    driving = Pipeline(RenderConfig()).analyse(driver.path)
    panels = DriverPanels(driving, height=101, n_frames=5)
    assert panels.width == 100  # the driver is square: 101 px high, made even
    real = list(video.read_frames(driver.path, 5))
    for frame in real:
        panel = panels.next()
        assert panel.shape == (101, 100, 3)
        assert np.abs(panel.astype(np.int16) - _scaled(frame, (100, 101))).mean() < 1
    panels.close()


def test_panels_draw_the_sketch_where_the_video_is_gone(driver: Driver):
    driving = Pipeline(RenderConfig()).analyse(driver.path)
    away = replace(driving, source="/nowhere/talk.mp4")
    panels = DriverPanels(away, height=128, n_frames=3)
    for t in range(3):
        panel = panels.next()
        lit = np.argwhere(panel.max(axis=2) > 0)[:, ::-1]  # (x, y) of drawn pixels
        nose = driving.points[t, 30] * 128 / driving.frame_size[1]
        assert len(lit) > 100 and np.abs(lit - nose).sum(axis=1).min() < 3  # lines pass by the nose tip
        assert panel[:5].max() == 0  # black elsewhere


def test_side_by_side_output(tmp_path, driver: Driver, astronaut_png: Path, capsys, monkeypatch):
    """The right part is the plain output, the left the driver at its height; with a motion file whose
    video is gone, the left is the sketch."""
    base = [astronaut_png, "--crop-only", "--size", "128", "--max-frames", "4", "--json"]
    plain, wide = tmp_path / "plain.mp4", tmp_path / "wide.mp4"
    assert run_cli([*base, "--driver", driver.path, "-o", plain], capsys, monkeypatch).code == 0
    ran = run_cli([*base, "--driver", driver.path, "-o", wide, "--side-by-side"], capsys, monkeypatch)
    assert ran.code == 0, ran.err
    summary = ran.json_lines()[-1]
    assert (summary["width"], summary["height"], summary["frames"]) == (256, 128, 4)
    both = np.stack(list(video.read_frames(wide))).astype(np.int16)
    alone = np.stack(list(video.read_frames(plain))).astype(np.int16)
    assert np.abs(both[:, :, 128:] - alone).mean() < 2
    drivers = [_scaled(frame, (128, 128)) for frame in video.read_frames(driver.path, 4)]
    assert np.abs(both[:, :, :128] - np.stack(drivers)).mean() < 3

    motion_file = tmp_path / "talk.npz"
    analysed = Pipeline(RenderConfig(max_frames=4)).analyse(driver.path)
    motion.save_motion(replace(analysed, source=""), motion_file)
    sketched = tmp_path / "sketched.mp4"
    ran = run_cli([*base, "--driver", motion_file, "-o", sketched, "--side-by-side"], capsys, monkeypatch)
    assert ran.code == 0, ran.err
    left = np.stack(list(video.read_frames(sketched)))[:, :, :128]
    assert (left.max(axis=3) < 40).mean() > 0.8  # mostly black, with coloured lines
