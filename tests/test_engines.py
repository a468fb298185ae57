"""engines/: the registry, the static baseline and the TPS warp, on the real astronaut face."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from animate_portrait import motion
from animate_portrait.engines import Renderer, StaticRenderer, WarpRenderer, get_renderer, paints_mouth
from animate_portrait.engines.mouth import MouthFilled
from animate_portrait.engines.warp import eval_tps, fit_tps
from animate_portrait.errors import InputError
from animate_portrait.models.blocks import resize_grid
from animate_portrait.types import Crop, SourceFace

SIZE = 256
LOWER_FACE = [*range(5, 12), *range(55, 60), 65, 66, 67]  # chin, lower outer and inner lip


@pytest.fixture(scope="module")
def detector():
    from animate_portrait.landmarks import get_detector

    return get_detector("dlib")


def find(detector, image: np.ndarray) -> np.ndarray:
    faces = detector.detect(image)
    assert faces, "dlib found no face"
    return faces[0].points


@pytest.fixture(scope="module")
def source(astronaut, detector) -> SourceFace:
    """The astronaut's face, cropped square around its landmarks and resized to SIZE (done here with
    PIL, so these tests do not depend on face.py)."""
    p = find(detector, astronaut)
    crop = Crop(center=(float(p[:, 0].mean()), float(p[:, 1].mean())), side=200.0, size=SIZE)
    ox, oy = crop.origin
    box = (ox, oy, ox + crop.side, oy + crop.side)
    face = np.asarray(Image.fromarray(astronaut).resize((SIZE, SIZE), Image.BILINEAR, box=box))
    face.setflags(write=False)  # renderers must not need to write into the caller's crop
    return SourceFace(Path("astronaut.png"), astronaut, crop, face, find(detector, face))


def other(source: SourceFace) -> SourceFace:
    flipped = np.ascontiguousarray(source.face[:, ::-1])
    return SourceFace(source.path, source.image, source.crop, flipped, source.points)


def test_registry() -> None:
    assert isinstance(get_renderer("static", SIZE, "cpu", None), StaticRenderer)
    warp = get_renderer("warp", SIZE, "auto", None, mouth=False)
    assert isinstance(warp, WarpRenderer) and isinstance(warp, Renderer)
    filled = get_renderer("warp", SIZE, "auto", None)  # the default paints the mouth interior
    assert isinstance(filled, MouthFilled) and isinstance(filled.inner, WarpRenderer)
    assert isinstance(filled, Renderer)
    with pytest.raises(InputError, match="unknown engine"):
        get_renderer("magic", SIZE, "cpu", None)


def test_the_engines_that_move_the_face_are_painted_unless_no_mouth() -> None:
    assert paints_mouth("warp") and paints_mouth("neural")
    assert not paints_mouth("warp", False) and not paints_mouth("neural", False)
    assert not paints_mouth("static") and not paints_mouth("static", True)  # static never moves a lip


def test_neural_unavailable_is_a_clear_input_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "animate_portrait.engines.neural", None)  # import now fails
    with pytest.raises(InputError, match="neural engine unavailable"):
        get_renderer("neural", SIZE, "cpu", None)


def test_static_returns_first_source(source) -> None:
    r = get_renderer("static", SIZE, "cpu", None)
    r.prepare([source, other(source)])
    out = r.render(np.repeat(source.points[None], 3, axis=0) + 5)
    assert out.shape == (3, SIZE, SIZE, 3) and out.dtype == np.uint8
    assert (out == source.face).all()


@pytest.mark.parametrize("name", ["static", "warp"])
def test_misuse(name, source) -> None:
    r = get_renderer(name, SIZE, "cpu", None)
    with pytest.raises(RuntimeError):
        r.render(source.points[None])
    with pytest.raises(ValueError):
        r.prepare([])
    with pytest.raises(ValueError):
        get_renderer(name, 128, "cpu", None).prepare([source])
    r.prepare([source])
    with pytest.raises(ValueError):
        r.render(source.points)


def test_warp_own_landmarks_return_the_source(source) -> None:
    r = get_renderer("warp", SIZE, "cpu", None)
    r.prepare([source, other(source)])  # K-shot: the first source is warped
    out = r.render(source.points[None])
    assert out.shape == (1, SIZE, SIZE, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    assert np.abs(out[0].astype(int) - source.face).mean() < 0.5


def test_warp_batch_matches_single_frames_and_keeps_borders(source) -> None:
    r = get_renderer("warp", SIZE, "cpu", None)
    r.prepare([source])
    grown = motion.retarget(source.points, np.stack([source.points, source.points * 1.05]))[1]
    targets = np.stack([source.points, source.points + [6, -4], grown]).astype(np.float32)
    batch = r.render(targets)
    assert batch.shape == (3, SIZE, SIZE, 3)
    for i, t in enumerate(targets):
        assert np.abs(r.render(t[None])[0].astype(int) - batch[i]).max() <= 1
    # the crop's edges are anchored: moving the face leaves the border rows and columns in place
    edges = np.s_[[0, -1]], np.s_[:, [0, -1]]
    for edge in edges:
        assert np.abs(batch[1][edge].astype(int) - source.face[edge]).mean() < 2


@pytest.mark.parametrize("name", ["static", "warp"])
def test_the_traced_grid_is_where_the_engine_reads_the_source(name, source) -> None:
    """Reading the first source through `render_traced`'s grids gives its frames (detail.py relies on
    it): the source itself for static, the moved face for warp."""
    r = get_renderer(name, SIZE, "cpu", None, mouth=False)
    r.prepare([source, other(source)])
    targets = np.stack([source.points + [6, -4], source.points * 1.03]).astype(np.float32)
    frames, grids = r.render_traced(targets)
    np.testing.assert_array_equal(frames, r.render(targets))
    grids = torch.as_tensor(grids)
    assert grids.ndim == 4 and grids.shape[0] == 2 and grids.shape[-1] == 2
    face = torch.tensor(source.face).permute(2, 0, 1)[None].float().expand(2, -1, -1, -1)
    read = F.grid_sample(
        face, resize_grid(grids, SIZE), mode="bilinear", padding_mode="border", align_corners=False
    )
    read = read.round().permute(0, 2, 3, 1).numpy()
    assert np.abs(read - frames).max() <= 1
    if name == "warp":  # falsifiable: the frames moved, so reading the source unmoved would not match
        assert np.abs(read[0] - source.face).mean() > 5


def test_fit_tps_survives_coincident_points() -> None:
    centres = torch.tensor([[[0.0, 0.0], [0.0, 0.0], [0.5, 0.1], [-0.4, 0.6], [0.2, -0.7]]])
    values = centres.clone()
    values[0, 1] += 0.05  # one target, two different sources (lips pressed shut over an open mouth)
    kernel, affine = fit_tps(centres, values)
    assert torch.isfinite(kernel).all() and torch.isfinite(affine).all()


def test_tps_interpolates_and_agrees_with_kornia() -> None:
    from kornia.geometry.transform import warp_points_tps

    gen = torch.Generator().manual_seed(0)
    centres = torch.rand(2, 20, 2, generator=gen) * 2 - 1
    values = centres + 0.05 * torch.randn(2, 20, 2, generator=gen)
    kernel, affine = fit_tps(centres, values, regulariser=0.0)
    assert torch.allclose(eval_tps(centres, centres, kernel, affine), values, atol=1e-4)
    probe = torch.rand(2, 50, 2, generator=gen) * 2 - 1
    reference = warp_points_tps(probe, centres, kernel, affine)
    assert torch.allclose(eval_tps(probe, centres, kernel, affine), reference, atol=1e-4)


def test_warp_opens_the_mouth_where_dlib_sees_it(source, detector) -> None:
    target = source.points.copy()
    shift = 0.12 * np.linalg.norm(target[45] - target[36])  # ~9 px at this crop
    target[LOWER_FACE, 1] += shift  # drop the lower lip and chin
    r = get_renderer("warp", SIZE, "cpu", None)
    r.prepare([source])
    seen = find(detector, r.render(target[None])[0])
    before, wanted, after = (motion.mouth_opening(p) for p in (source.points, target, seen))
    assert after > before + 0.5 * (wanted - before)
    assert (seen[LOWER_FACE, 1] - source.points[LOWER_FACE, 1]).mean() > 0.6 * shift
    # the re-detected landmarks follow the targets within a few pixels (dlib's shape prior lags a
    # little on a mouth opened by stretching: it measured 1.3 px overall, 2.5 px on the lower face)
    error = np.linalg.norm(seen - target, axis=1)
    assert error.mean() < 2.0 and error[LOWER_FACE].mean() < 3.5
