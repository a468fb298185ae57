"""Face-region metrics: identical images score perfectly, damage scores worse, proxies move the right way."""

from __future__ import annotations

import math

import numpy as np
import pytest

from animate_portrait import face, metrics
from animate_portrait.landmarks import get_detector


@pytest.fixture(scope="module")
def crop_and_points(astronaut: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    found = get_detector("dlib").detect(astronaut)[0]
    crop = face.crop_for(found, 128)
    return face.extract(astronaut, crop), crop.to_crop(found.points)


def _noisy(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def test_pixel_metrics_perfect_on_identical_and_worse_with_noise(crop_and_points):
    image, _ = crop_and_points
    assert metrics.psnr(image, image) == math.inf
    assert metrics.ssim(image, image) == pytest.approx(1.0, abs=1e-5)
    light, heavy = _noisy(image, 5), _noisy(image, 30)
    assert 30 < metrics.psnr(image, light) < math.inf
    assert metrics.psnr(image, heavy) < metrics.psnr(image, light)
    assert metrics.ssim(image, heavy) < metrics.ssim(image, light) < 1.0


def test_perceptual_zero_on_identical_and_grows_with_damage(crop_and_points):
    from animate_portrait.models.perceptual import MobileNetV2Features

    image, _ = crop_and_points
    net = MobileNetV2Features()  # random weights: the properties below hold for any backbone
    net.eval()
    assert metrics.perceptual(image, image, net) == pytest.approx(0.0, abs=1e-6)
    light, heavy = (
        metrics.perceptual(image, _noisy(image, 5), net),
        metrics.perceptual(image, _noisy(image, 40), net),
    )
    assert 0 < light < heavy


def test_landmark_error_in_inter_ocular_units(crop_and_points):
    _, points = crop_and_points
    iod = metrics.inter_ocular(points)
    assert metrics.landmark_error(points, points) == 0.0
    shifted = points + np.array([0.1 * iod, 0.0], np.float32)
    assert metrics.landmark_error(shifted, points) == pytest.approx(0.1, rel=1e-4)
    assert math.isnan(metrics.landmark_error(None, points))


def test_mouth_l1_sees_only_the_mouth(crop_and_points):
    image, points = crop_and_points
    x0, y0, x1, y1 = metrics.mouth_box(points, image.shape[0])
    lips = points[48:68]
    assert x0 < lips[:, 0].min() and lips[:, 0].max() < x1 and y0 < lips[:, 1].min() and lips[:, 1].max() < y1
    forehead = image.copy()
    forehead[:10] = 0  # damage far from the mouth
    assert metrics.mouth_l1(image, forehead, points) == 0.0
    mouth = image.copy()
    mouth[y0:y1, x0:x1] = 255 - mouth[y0:y1, x0:x1]
    assert metrics.mouth_l1(image, mouth, points) > 0.2


def test_eyes_l1_sees_only_the_eyes(crop_and_points):
    image, points = crop_and_points
    x0, y0, x1, y1 = metrics.eyes_box(points, image.shape[0])
    eyes = points[36:48]
    assert x0 < eyes[:, 0].min() and eyes[:, 0].max() < x1 and y0 < eyes[:, 1].min() and eyes[:, 1].max() < y1
    assert y1 < points[48:68, 1].min()  # not down to the mouth
    chin = image.copy()
    chin[-10:] = 0
    assert metrics.eyes_l1(image, chin, points) == 0.0
    looked = image.copy()
    looked[y0:y1, x0:x1] = 255 - looked[y0:y1, x0:x1]
    assert metrics.eyes_l1(image, looked, points) > 0.2


def test_mouth_opening_grows_when_the_jaw_drops(crop_and_points):
    _, points = crop_and_points
    opened = points.copy()
    opened[[65, 66, 67], 1] += 10
    assert metrics.mouth_opening(opened) > metrics.mouth_opening(points)


def test_yaw_and_pitch_proxies_follow_the_nose_and_ignore_roll(crop_and_points):
    _, points = crop_and_points
    iod = metrics.inter_ocular(points)
    right, down = points.copy(), points.copy()
    right[30, 0] += 0.1 * iod
    down[30, 1] += 0.1 * iod
    assert metrics.yaw(right) > metrics.yaw(points)
    assert metrics.pitch(down) > metrics.pitch(points)
    assert abs(metrics.yaw(points)) < 0.3  # the astronaut looks almost straight at the camera
    # Rolling and scaling the whole face changes neither proxy.
    angle, centre = np.deg2rad(20), points.mean(axis=0)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    rolled = (points - centre) @ rot.T * 1.3 + centre
    assert metrics.yaw(rolled) == pytest.approx(metrics.yaw(points), abs=1e-6)
    assert metrics.pitch(rolled) == pytest.approx(metrics.pitch(points), abs=1e-6)
    # Vectorised over frames.
    assert metrics.yaw(np.stack([points, right])).shape == (2,)


def test_pearson_handles_gaps_and_constants():
    x = np.arange(10, dtype=float)
    assert metrics.pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert metrics.pearson(x, -x) == pytest.approx(-1.0)
    y = 3 * x
    y[4] = np.nan
    assert metrics.pearson(x, y) == pytest.approx(1.0)
    assert math.isnan(metrics.pearson(x, np.ones(10)))
    assert metrics.pearson(x, np.ones(10), constant=0.0) == 0.0
    assert math.isnan(metrics.pearson([1.0, 2.0], [1.0, 2.0]))


def test_gain_is_the_slope_not_the_correlation():
    x = np.arange(10, dtype=float)
    assert metrics.gain(0.1 * x + 3, x) == pytest.approx(0.1)  # follows perfectly (r = 1), a tenth as far
    assert metrics.pearson(0.1 * x + 3, x) == pytest.approx(1.0)
    y = 2 * x
    y[4] = np.nan  # a frame without a face is left out
    assert metrics.gain(y, x) == pytest.approx(2.0)
    assert math.isnan(metrics.gain(x, np.ones(10)))  # a driver that never moves: no slope
    assert math.isnan(metrics.gain([1.0, 2.0], [1.0, 2.0]))


def test_face_ssim_sees_only_the_face(crop_and_points):
    image, points = crop_and_points
    mask = metrics.face_mask(points, image.shape[0])
    assert 0.15 < mask.mean() < 0.8  # the face outline, not the whole crop
    assert mask[int(points[30, 1]), int(points[30, 0])]  # the nose tip is inside
    assert not mask[0, 0]
    assert metrics.face_ssim(image, image, points) == pytest.approx(1.0, abs=1e-5)
    outside = image.copy()
    outside[~mask] = _noisy(image, 40)[~mask]
    inside = image.copy()
    inside[mask] = _noisy(image, 40)[mask]
    # Damage outside the face barely moves it (only the SSIM window's reach over the outline) ...
    assert metrics.face_ssim(outside, image, points) > metrics.face_ssim(inside, image, points) + 0.3
    # ... while the whole-crop SSIM is hurt by both
    assert metrics.ssim(outside, image) < 0.9
