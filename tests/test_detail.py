"""detail.py: a face pasted back into a big picture keeps the picture's own fine detail where the engine
moved the portrait's pixels, and only there.

The picture is the astronaut at three times her size with a fine texture laid over it (a period of about
3 pixels), which a 256² crop of her 527-pixel face cannot hold: only the full-resolution crop has it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from animate_portrait import face, video
from animate_portrait.detail import Detail, worth_it
from animate_portrait.engines import StaticRenderer, WarpRenderer
from animate_portrait.pipeline import Pipeline
from animate_portrait.types import Crop, Motion, RenderConfig, SourceFace
from cli_helpers import run_cli


def textured(image: np.ndarray) -> np.ndarray:
    """`image` at three times its size, with a texture too fine for the working-size crop."""
    big = np.asarray(Image.fromarray(image).resize((3 * image.shape[1], 3 * image.shape[0]), Image.BICUBIC))
    y, x = np.mgrid[: big.shape[0], : big.shape[1]]
    texture = 14 * np.sin(2 * np.pi * x / 3.3) * np.sin(2 * np.pi * y / 2.9)
    return (big + texture[..., None]).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def big_png(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.png"
    Image.fromarray(textured(astronaut)).save(path)
    return path


@pytest.fixture(scope="module")
def lead(big_png: Path) -> SourceFace:
    return Pipeline(RenderConfig(engine="warp", device="cpu")).load_source(big_png)


def upsampled(lead: SourceFace, rendered: np.ndarray, box: Crop) -> np.ndarray:
    """A working-size render pasted back as it is (--no-detail), then cut at `box`, picture pixels."""
    return face.extract(face.paste_back(lead.image, rendered, lead.crop), box).astype(np.int16)


def still_motion(source: SourceFace, n: int) -> Motion:
    """A motion of n frames that holds the source's own face (in picture pixels)."""
    points = np.repeat(source.crop.to_image(source.points)[None], n, axis=0)
    h, w = source.image.shape[:2]
    return Motion(points=points, found=np.ones(n, bool), fps=10.0, frame_size=(w, h))


def test_a_still_face_gets_its_full_resolution_crop_back(lead: SourceFace) -> None:
    """The warp at the portrait's own landmarks: restored, the face is the picture's own pixels again (a
    crop half a pixel off would fail this), where upsampling alone blurs its texture away."""
    assert worth_it(lead) and lead.crop.side > 500
    warp = WarpRenderer(lead.crop.size)
    warp.prepare([lead])
    still = lead.points[None]
    detail = Detail(lead)
    restored = detail.restore(*warp.render_traced(still))[0].astype(np.int16)
    truth = face.extract(lead.image, detail.crop).astype(np.int16)
    inner = np.s_[8:-8, 8:-8]  # the warp's border padding aside
    restored_error = np.abs(restored - truth)[inner].mean()
    blurred_error = np.abs(upsampled(lead, warp.render(still)[0], detail.crop) - truth)[inner].mean()
    assert restored_error < 0.5 and blurred_error > 3, (restored_error, blurred_error)


def test_where_the_engine_drew_something_else_the_face_stays_as_rendered(lead: SourceFace) -> None:
    """A flat patch in the render (as a painted mouth is) gets none of the picture's texture."""
    static = StaticRenderer(lead.crop.size)
    static.prepare([lead])
    still = lead.points[None]
    drawn = static.render(still).copy()
    drawn[0, 170:210, 100:156] = (90, 40, 40)
    detail = Detail(lead)
    restored = detail.restore(drawn, static.render_traced(still).grids)[0].astype(np.int16)
    plain = upsampled(lead, drawn[0], detail.crop)
    k = detail.crop.size / lead.crop.size
    patch = np.s_[round(173 * k) : round(207 * k), round(103 * k) : round(153 * k)]
    assert np.abs(restored - plain)[patch].max() <= 1
    rest = np.s_[round(40 * k) : round(120 * k), round(60 * k) : round(200 * k)]  # the eyes and brows
    truth = face.extract(lead.image, detail.crop).astype(np.int16)
    restored_error, blurred_error = (np.abs(x - truth)[rest].mean() for x in (restored, plain))
    assert restored_error < 0.5 and blurred_error > 3, (restored_error, blurred_error)  # there it came back


def test_the_pipeline_pastes_the_detail_in_the_face_only(lead: SourceFace, big_png: Path) -> None:
    """With the static engine, the detail makes the whole picture come out as it went in; without it, the
    face is the 256² crop upsampled. Outside the face's box nothing differs."""
    frames = {}
    for on in (True, False):
        pipeline = Pipeline(RenderConfig(engine="static", device="cpu", detail=on))
        source = pipeline.load_source(big_png)
        assert (pipeline.details([source])[0] is not None) == on
        rendered = pipeline.render_frames([source], still_motion(source, 3))
        frames[on] = np.stack(list(rendered)).astype(np.int16)
    picture = lead.image.astype(np.int16)
    x0, y0 = (int(v) for v in lead.crop.origin)
    side = int(lead.crop.side)
    face_box = np.s_[:, y0 + 8 : y0 + side - 8, x0 + 8 : x0 + side - 8]
    restored_error, blurred_error = (np.abs(frames[on] - picture)[face_box].mean() for on in (True, False))
    assert restored_error < 0.5 and blurred_error > 3, (restored_error, blurred_error)
    outside = np.ones(picture.shape[:2], bool)
    outside[max(y0 - 2, 0) : y0 + side + 2, max(x0 - 2, 0) : x0 + side + 2] = False
    assert np.array_equal(frames[True][:, outside], frames[False][:, outside])


def test_no_detail_in_a_crop_or_for_a_face_held_at_the_working_size(astronaut_png: Path, big_png) -> None:
    small = Pipeline(RenderConfig(engine="warp", device="cpu"))
    assert small.details([small.load_source(astronaut_png)]) == [None]  # her face is about 256 px there
    cropped = Pipeline(RenderConfig(engine="warp", device="cpu", crop_only=True))
    assert cropped.details([cropped.load_source(big_png)]) == [None]


def test_animate_keeps_the_detail_unless_told_not_to(
    tmp_path, big_png, lead, driver, capsys, monkeypatch
) -> None:
    """The command, through the real ffmpeg: by default the face in the MP4 keeps the picture's texture
    (static engine: the picture itself), and --no-detail gives the upsampled working-size face."""
    errors = {}
    for flag in ("--detail", "--no-detail"):
        out = tmp_path / f"{flag}.mp4"
        args = [big_png, "--driver", driver.path, "-o", out, "--engine", "static", "--max-frames", "2", flag]
        ran = run_cli([*args, "--quiet", "--no-audio"], capsys, monkeypatch)
        assert ran.code == 0, ran.err
        frame = next(iter(video.read_frames(out))).astype(np.int16)
        x0, y0 = (int(v) + 8 for v in lead.crop.origin)
        box = np.s_[y0 : y0 + int(lead.crop.side) - 16, x0 : x0 + int(lead.crop.side) - 16]
        errors[flag] = np.abs(frame - lead.image.astype(np.int16))[box].mean()
    assert errors["--detail"] < 0.5 * errors["--no-detail"], errors
