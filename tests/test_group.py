"""group.py: portraits rendered together come out as each comes out alone; failures stay per portrait.

Real MP4s through the real ffmpeg, real dlib, and a tiny random-weight neural model (test_engines_neural).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from animate_portrait import video
from animate_portrait.group import animate_group
from animate_portrait.pipeline import AnimateResult, Pipeline
from animate_portrait.types import Motion, RenderConfig
from conftest import Driver
from test_engines_neural import SIZE, make_portraits, tiny_weights


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def portraits(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> list[Path]:
    return make_portraits(tmp_path_factory.mktemp("portraits"), astronaut)


@pytest.fixture(scope="module")
def driving(driver: Driver) -> Motion:
    return Pipeline(RenderConfig()).analyse(driver.path)


def _config(tiny: Path, engine: str = "neural") -> RenderConfig:
    return RenderConfig(engine=engine, size=SIZE, device="cpu", weights=tiny, max_frames=10)


def _decoded(path: Path) -> np.ndarray:
    return np.stack(list(video.read_frames(path))).astype(np.int16)


@pytest.mark.parametrize("engine", ["neural", "warp"])
def test_a_group_writes_the_videos_each_portrait_gets_alone(
    tmp_path,
    tiny,
    portraits,
    driving,
    engine,
) -> None:
    pipeline = Pipeline(_config(tiny, engine))
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    out = tmp_path / "group"
    out.mkdir()
    (out / "taken.mp4").mkdir()  # an output that is a folder: that portrait fails, before any rendering
    jobs = [(portraits[0], out / "a.mp4"), (bad, out / "bad.mp4"), (portraits[1], out / "taken.mp4")]
    jobs += [(portraits[2], out / "c.mp4")]
    outcomes = animate_group(pipeline, jobs, driving)
    assert [type(o).__name__ for o in outcomes] == [
        "AnimateResult",
        "InputError",
        "InputError",
        "AnimateResult",
    ]
    assert "notes.png" in str(outcomes[1]) and "taken.mp4" in str(outcomes[2])
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "c.mp4", "taken.mp4"]  # no temp files
    for (portrait, output), outcome in zip(jobs, outcomes, strict=True):
        if not isinstance(outcome, AnimateResult):
            continue
        assert outcome.frames == 10 and outcome.audio and (outcome.width, outcome.height) == (512, 512)
        single = Pipeline(_config(tiny, engine)).animate(
            [portrait], driving, tmp_path / f"alone-{output.name}"
        )
        assert single.frames == 10
        together, alone = _decoded(output), _decoded(Path(single.output))
        # the same frames in, the same H.264 out, up to the renderer's ±1 rounding in a few pixels
        assert np.abs(together - alone).mean() < 0.05
    assert np.abs(_decoded(out / "a.mp4") - _decoded(out / "c.mp4")).mean() > 5  # two different portraits


def test_ctrl_c_during_a_group_leaves_no_file(tmp_path, tiny, portraits, driving, monkeypatch) -> None:
    pipeline = Pipeline(_config(tiny))
    real, calls = pipeline.render_group, []

    def interrupted(leads, chunk, traced=False):
        calls.append(1)
        if len(calls) == 2:  # after the first chunk has gone to the encoders
            raise KeyboardInterrupt
        return real(leads, chunk, traced)

    monkeypatch.setattr(pipeline, "render_group", interrupted)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(KeyboardInterrupt):
        animate_group(pipeline, [(p, out / f"{p.stem}.mp4") for p in portraits], driving)
    assert list(out.iterdir()) == []


def test_a_failed_forward_pass_fails_the_group_alone(tmp_path, tiny, portraits, driving, monkeypatch) -> None:
    pipeline = Pipeline(_config(tiny))

    def out_of_memory(targets, **mouths):
        raise RuntimeError("CUDA out of memory")

    for name in ("render_group", "render_group_traced"):  # the traced pass where a face keeps its detail
        monkeypatch.setattr(pipeline.renderer, name, out_of_memory)
    out = tmp_path / "out"
    out.mkdir()
    outcomes = animate_group(pipeline, [(p, out / f"{p.stem}.mp4") for p in portraits[:2]], driving)
    assert [str(o) for o in outcomes] == ["CUDA out of memory"] * 2
    assert list(out.iterdir()) == []
    shutil.rmtree(out)


def test_a_group_of_bad_portraits_is_errors_only(tmp_path, tiny, driving) -> None:
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    out = tmp_path / "out"
    out.mkdir()
    outcomes = animate_group(
        Pipeline(_config(tiny)), [(bad, out / "a.mp4"), (tmp_path / "gone.png", out / "b.mp4")], driving
    )
    assert [type(o).__name__ for o in outcomes] == ["InputError", "InputError"]
    assert list(out.iterdir()) == []
