"""pipeline.py: the targets every renderer gets (retargeting chunk by chunk against the neutral face)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from animate_portrait import motion, pipeline
from animate_portrait.types import Crop, Motion, RenderConfig, SourceFace
from test_motion import FACE, closed_portrait, open_mouth, similar


def _lead(points: np.ndarray) -> SourceFace:
    blank = np.zeros((256, 256, 3), np.uint8)
    return SourceFace(Path("p.png"), blank, Crop((128.0, 128.0), 256.0, 256), blank, points)


def test_targets_follow_a_driver_that_starts_mid_word_in_chunks(monkeypatch) -> None:
    """Frame 0 wide open, then shut, then opening again; the chunks are smaller than the driver, and the
    neutral face (where the mouth is shut) is found over all frames, not per chunk."""
    monkeypatch.setattr(pipeline, "RENDER_BATCH", 3)
    d0 = similar(FACE, 0.7, -5, (40, 10))
    iod = float(np.linalg.norm(d0[45] - d0[36]))
    frames = [open_mouth(d0, 0.3 * iod), d0, d0, d0, open_mouth(d0, 0.1 * iod), open_mouth(d0, 0.2 * iod)]
    driving = Motion(np.stack(frames), np.ones(6, bool), 25.0, (640, 480))
    leads = [_lead(closed_portrait()), _lead(similar(closed_portrait(), 0.8, 3, (5, 5)))]
    chunks = list(pipeline.Pipeline(RenderConfig(engine="warp")).targets(leads, driving))
    assert [c.shape for c in chunks] == [(2, 3, 68, 2), (2, 3, 68, 2)]
    opening = motion.mouth_opening(np.concatenate(chunks, axis=1))  # (P, T)
    np.testing.assert_allclose(opening[:, 1:4], 0, atol=0.01)
    np.testing.assert_allclose(opening[:, 4], 0.1, atol=0.01)
    np.testing.assert_allclose(opening[:, 5], 0.2, atol=0.01)
    assert (opening[:, 0] > 0.25).all()


def test_targets_stop_at_max_frames() -> None:
    driving = Motion(np.repeat(FACE[None], 10, 0), np.ones(10, bool), 25.0, (640, 480))
    config = RenderConfig(engine="warp", max_frames=4)
    chunks = list(pipeline.Pipeline(config).targets([_lead(FACE)], driving))
    assert sum(c.shape[1] for c in chunks) == 4
    np.testing.assert_allclose(np.concatenate(chunks, axis=1)[0], np.repeat(FACE[None], 4, 0), atol=1e-3)


def test_targets_ease_the_drivers_travel_by_the_config() -> None:
    """A driver whose head crosses its frame: the portrait's face moves at most `max_travel` face
    extents by default, all the way with max_travel=None."""
    d0 = similar(FACE, 0.7, 0, (0, 0))
    width = float(np.ptp(d0, axis=0).max())
    driving = Motion(np.stack([d0, d0 + [width, 0]]).astype(np.float32), np.ones(2, bool), 25.0, (640, 480))
    moved = {}
    for limit in (None, RenderConfig().max_travel, 0.0):
        (chunk,) = pipeline.Pipeline(RenderConfig(engine="warp", max_travel=limit)).targets(
            [_lead(FACE)], driving
        )
        centres = chunk[0][:, motion.STABLE].mean(axis=1)
        moved[limit] = float(np.linalg.norm(centres[1] - centres[0])) / float(np.ptp(FACE, axis=0).max())
    assert moved[None] > 0.9
    assert 0.2 < moved[RenderConfig().max_travel] <= RenderConfig().max_travel + 1e-3
    assert moved[0.0] < 1e-3


def test_a_small_portrait_is_searched_again_at_twice_its_size(tmp_path, astronaut) -> None:
    """At 300² the astronaut's face is about 55 px, below what dlib's HOG finds; the second search at 2×
    finds it, and its points come back in the portrait's own pixels."""
    from PIL import Image

    side = 300
    path = tmp_path / "small.png"
    Image.fromarray(astronaut).resize((side, side), Image.LANCZOS).save(path)
    pipe = pipeline.Pipeline(RenderConfig(engine="static"))
    image = np.asarray(Image.open(path))
    assert pipe.detector.detect(image) == []  # one search is not enough
    found_image, faces = pipe.find_faces(path)
    assert found_image.shape == (side, side, 3)
    full = pipe.detector.detect(astronaut)[0].points * (side / astronaut.shape[0])
    assert np.abs(faces[0].points - full).mean() < 2.0  # px, at 300²
