"""engines/neural.py: several portraits in one forward pass give the frames each gives alone.

A tiny random-weight model (the shipped weights are not needed for plumbing) on real astronaut crops
found by dlib, driven by the synthetic talking video's landmarks.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from animate_portrait import motion
from animate_portrait.engines.neural import NeuralRenderer, autocast_dtype
from animate_portrait.models.discriminator import Discriminator
from animate_portrait.models.embedder import Embedder
from animate_portrait.models.generator import Generator
from animate_portrait.pipeline import Pipeline
from animate_portrait.types import RenderConfig, SourceFace
from animate_portrait.weights import save_weights
from conftest import Driver
from test_models import TINY

SIZE = 48  # the renderer's crop; the model works at 32, so crops are resampled both ways


def tiny_weights(folder: Path, attention: bool = True) -> Path:
    """Random weights with the zero-initialised parts (ψ̂ = P·ê, the flow's last conv) made non-zero,
    so that every path through G (AdaIN, flow refinement, confidences, attention) carries signal."""
    torch.manual_seed(0)
    cfg = replace(TINY, g_attention=attention)
    nets = {"E": Embedder(cfg), "G": Generator(cfg), "D": Discriminator(cfg)}
    for param in (nets["G"].P.weight, nets["G"].flow.out.weight, nets["G"].flow.out.bias):
        torch.nn.init.normal_(param, std=0.05)
    path = folder / "neural.safetensors"
    save_weights(path, nets, cfg, {"steps": 0, "evaluation": None}, dtype=torch.float32)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def portraits(tmp_path_factory, astronaut: np.ndarray) -> list[Path]:
    return make_portraits(tmp_path_factory.mktemp("portraits"), astronaut)


def make_portraits(folder: Path, astronaut: np.ndarray) -> list[Path]:
    """Three different pictures with a face: the astronaut, mirrored, and tinted and shifted."""
    tinted = np.roll(astronaut, 24, axis=1).astype(np.int16) + np.array([30, -20, 10])
    images = [astronaut, astronaut[:, ::-1], tinted.clip(0, 255).astype(np.uint8)]
    paths = [folder / f"p{i}.png" for i in range(len(images))]
    for path, image in zip(paths, images, strict=True):
        Image.fromarray(np.ascontiguousarray(image)).save(path)
    return paths


def test_the_neural_engine_is_painted_unless_no_mouth(tiny) -> None:
    """get_renderer and the pipeline answer by the one rule (engines.paints_mouth)."""
    from animate_portrait.engines import get_renderer
    from animate_portrait.engines.mouth import MouthFilled

    assert isinstance(get_renderer("neural", SIZE, "cpu", tiny), MouthFilled)
    assert isinstance(get_renderer("neural", SIZE, "cpu", tiny, mouth=False), NeuralRenderer)
    config = RenderConfig(size=SIZE, engine="neural", device="cpu", weights=tiny)
    for mouth in (True, False):
        pipeline = Pipeline(replace(config, mouth=mouth))
        assert pipeline.paints_mouth is mouth
        assert isinstance(pipeline.renderer, MouthFilled) is mouth


@pytest.fixture(scope="module")
def leads(tiny: Path, portraits: list[Path]) -> list[SourceFace]:
    pipeline = Pipeline(RenderConfig(size=SIZE, engine="neural", device="cpu", weights=tiny))
    return [pipeline.load_source(path) for path in portraits]


@pytest.fixture(scope="module")
def targets(leads: list[SourceFace], driver: Driver) -> np.ndarray:
    """(P, T, 68, 2): the driver's motion retargeted onto each portrait (T = 11, not a multiple of 8)."""
    points = Pipeline(RenderConfig()).analyse(driver.path).points[:11]
    return np.stack([motion.retarget(lead.points, points, relative=True) for lead in leads])


def alone(renderer: NeuralRenderer, leads: list[SourceFace], targets: np.ndarray) -> np.ndarray:
    out = []
    for lead, own in zip(leads, targets, strict=True):
        renderer.prepare([lead])
        out.append(renderer.render(own))
    return np.stack(out)


@pytest.mark.parametrize("batch", [8, 3, 64])  # t = 2, 1 and 21 frames of each portrait per pass
def test_a_group_renders_the_frames_each_portrait_renders_alone(tiny, leads, targets, batch) -> None:
    renderer = NeuralRenderer(SIZE, "cpu", tiny, batch=batch)
    one_by_one = alone(renderer, leads, targets).astype(np.int16)
    renderer.prepare_group([[lead] for lead in leads])
    together = renderer.render_group(targets).astype(np.int16)
    assert together.shape == (3, 11, SIZE, SIZE, 3)
    diff = np.abs(together - one_by_one)
    assert diff.max() <= 1 and diff.mean() < 0.01, (diff.max(), diff.mean())  # float rounding only
    # Falsifiable: the portraits really differ, and so do the frames of one portrait.
    assert np.abs(one_by_one[0] - one_by_one[1]).mean() > 5
    assert np.abs(one_by_one[0, 0] - one_by_one[0, 5]).mean() > 0.2


def test_a_mix_up_inside_the_group_would_be_seen(tiny, leads, targets) -> None:
    """The check above can fail: giving portrait 0 portrait 1's targets changes its frames."""
    renderer = NeuralRenderer(SIZE, "cpu", tiny)
    renderer.prepare_group([[lead] for lead in leads])
    swapped = targets.copy()
    swapped[0] = targets[1]
    right = renderer.render_group(targets).astype(np.int16)
    wrong = renderer.render_group(swapped).astype(np.int16)
    assert np.abs(right[0] - wrong[0]).max() > 10
    assert np.array_equal(right[1:], wrong[1:])


def test_channels_last_and_bf16_stay_close_to_fp32(tiny, leads, targets) -> None:
    base = NeuralRenderer(SIZE, "cpu", tiny)
    base.prepare([leads[0]])
    reference = base.render(targets[0]).astype(np.int16)
    nhwc = NeuralRenderer(SIZE, "cpu", tiny, channels_last=True)
    nhwc.prepare([leads[0]])
    assert np.abs(nhwc.render(targets[0]).astype(np.int16) - reference).max() <= 1
    bf16 = NeuralRenderer(SIZE, "cpu", tiny, precision="bf16", channels_last=True)
    bf16.prepare_group([[lead] for lead in leads])
    low = bf16.render_group(targets)[0].astype(np.int16)
    assert np.abs(low - reference).mean() < 3  # 8 bits of mantissa: close, not equal


def test_precision_names_and_defaults() -> None:
    assert autocast_dtype("auto", torch.device("cpu")) is None
    assert autocast_dtype("auto", torch.device("cuda")) is torch.float16
    assert autocast_dtype("bf16", torch.device("cuda")) is torch.bfloat16
    assert autocast_dtype("fp32", torch.device("cuda")) is None
    with pytest.raises(ValueError, match="unknown precision"):
        autocast_dtype("int8", torch.device("cpu"))


def test_group_misuse_is_a_clear_error(tiny, leads, targets) -> None:
    renderer = NeuralRenderer(SIZE, "cpu", tiny)
    with pytest.raises(RuntimeError, match="prepare_group"):
        renderer.render_group(targets)
    with pytest.raises(ValueError, match="same number of sources"):
        renderer.prepare_group([[leads[0]], [leads[1], leads[2]]])
    renderer.prepare_group([[lead] for lead in leads[:2]])
    with pytest.raises(ValueError, match=r"\(2, T, 68, 2\)"):
        renderer.render_group(targets)


def test_the_mouth_painter_paints_each_portrait_of_a_group_as_alone(tiny, leads, targets) -> None:
    from animate_portrait.engines.mouth import PROFILE, MouthFilled

    painted = MouthFilled(NeuralRenderer(SIZE, "cpu", tiny))
    assert painted.groups
    one_by_one = alone(painted, leads, targets).astype(np.int16)
    painted.prepare_group([[lead] for lead in leads])
    together = painted.render_group(targets).astype(np.int16)
    assert np.abs(together - one_by_one).max() <= 1
    plain = NeuralRenderer(SIZE, "cpu", tiny)
    plain.prepare_group([[lead] for lead in leads])
    assert np.abs(plain.render_group(targets).astype(np.int16) - together).max() > 10  # it did paint
    # a driver's mouth (--mouth-interior driver): all teeth, the same frames for every portrait of the group
    teeth = np.full((targets.shape[1], *PROFILE), 1.2, np.float32)
    lit = painted.render_group(targets, teeth).astype(np.int16)
    assert np.abs(lit - together).max() > 10  # teeth where the default painted upper teeth over the dark
    each = []
    for lead, own in zip(leads, targets, strict=True):
        painted.prepare([lead])
        each.append(painted.render(own, teeth))
    assert np.abs(lit - np.stack(each).astype(np.int16)).max() <= 1


def test_the_traced_grid_is_where_g_reads_the_lead(tiny, leads, targets) -> None:
    """`render_traced` gives `render`'s frames and G's own refined flow for the first source (detail.py
    moves the picture's pixels by it), whatever the other sources; a group gives each portrait's as alone."""
    from animate_portrait.engines.mouth import MouthFilled
    from animate_portrait.models.blocks import rasterise_sketch, to_unit
    from animate_portrait.models.generator import SourceState

    renderer = NeuralRenderer(SIZE, "cpu", tiny)
    renderer.prepare([leads[0], leads[1]])
    frames, grids = renderer.render_traced(targets[0])
    np.testing.assert_array_equal(frames, renderer.render(targets[0]))
    pts = renderer._points(targets[0])
    s, st = renderer.model_size, renderer._state
    both = SourceState(st.img, st.img_q, st.sketch_q, [], st.points)
    with torch.inference_mode():
        own = renderer.G.flows(rasterise_sketch(pts, s), to_unit(pts, s), both)[0]
    own = own.unflatten(0, (len(pts), 2))  # (T, K, q, q, 2): each source's flow on its own
    np.testing.assert_allclose(grids, own[:, 0].numpy(), atol=1e-5)
    assert (own[:, 0] - own[:, 1]).abs().max() > 1e-3  # falsifiable: the second source's grid differs
    assert np.abs(grids[0] - grids[5]).max() > 1e-3  # and so do the frames'
    alone = []
    for lead, own_targets in zip(leads, targets, strict=True):
        renderer.prepare([lead])
        alone.append(renderer.render_traced(own_targets))
    painted = MouthFilled(NeuralRenderer(SIZE, "cpu", tiny, batch=8))
    painted.prepare_group([[lead] for lead in leads])
    together = painted.render_group_traced(targets)
    np.testing.assert_allclose(together.grids, np.stack([a.grids for a in alone]), atol=1e-5)
    np.testing.assert_array_equal(together.frames, painted.render_group(targets))  # painted, as untraced
    assert (
        np.abs(together.frames.astype(int) - np.stack([a.frames for a in alone])).max() > 10
    )  # it did paint
