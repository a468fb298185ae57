"""Who the neural engine renders (persons.py): the options' rules, and one renderer serving person after
person (a batch) without mixing them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from animate_portrait.persons import PersonPolicy
from animate_portrait.pipeline import Pipeline
from animate_portrait.training import finetune as ft
from animate_portrait.training import renderer_tuning as tuning
from animate_portrait.types import RenderConfig
from test_finetune import FAST, _fresh_renderer, _tiny_weights


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ANIMATE_PORTRAIT_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_weights(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="module")
def sources(astronaut_png: Path, tiny: Path):
    return Pipeline(RenderConfig(size=64, engine="neural", device="cpu", weights=tiny)).load_sources(
        [astronaut_png]
    )


def test_options_that_do_not_go_together():
    assert PersonPolicy().problem("warp") is None
    assert PersonPolicy(0).problem("warp") is None  # 0 is "off"
    assert PersonPolicy(5).problem("warp") == "needs --engine neural"
    assert PersonPolicy(None, Path("p.safetensors")).problem("static") == "needs --engine neural"
    assert "not both" in PersonPolicy(5, Path("p.safetensors")).problem("neural")


def test_steps_by_option_person_and_device(tiny: Path):
    pipeline = Pipeline(RenderConfig(size=64, engine="neural", device="cpu", weights=tiny))
    assert PersonPolicy().steps(pipeline) == tuning.default_steps("cpu") == 0  # off on a CPU unless asked
    assert PersonPolicy(7).steps(pipeline) == 7
    assert PersonPolicy(None, Path("p.safetensors")).steps(pipeline) == 0
    warp = Pipeline(RenderConfig(size=64, engine="warp"))
    assert PersonPolicy(7).steps(warp) == 0


def _frames(renderer, sources) -> np.ndarray:
    renderer.prepare(sources)
    return renderer.render(np.stack([sources[0].points, sources[0].points + 1.5]))


def test_one_renderer_serves_person_after_person(tiny: Path, sources):
    anna = tuning.finetune_renderer(_fresh_renderer(tiny), sources, FAST)
    bert = tuning.finetune_renderer(_fresh_renderer(tiny), sources, replace(FAST, seed=1, lr_g=1e-2))
    want = {}
    for name, person in (("anna", anna), ("bert", bert), ("meta", None)):
        alone = _fresh_renderer(tiny)
        if person is not None:
            alone.use_person(person)
        want[name] = _frames(alone, sources)
    assert not np.array_equal(want["anna"], want["bert"])
    shared = _fresh_renderer(tiny)
    for name, person in (("anna", anna), ("bert", bert), ("meta", None), ("anna", anna)):
        tuning.apply_person(shared, person)
        np.testing.assert_array_equal(_frames(shared, sources), want[name], err_msg=name)
    # and tuning on a renderer that holds a person starts from the meta-learned model, not from that person
    again = tuning.finetune_renderer(shared, sources, replace(FAST, seed=1, lr_g=1e-2))
    torch.testing.assert_close(again.psi, bert.psi)
    for key, value in bert.g.items():
        torch.testing.assert_close(again.g[key], value)


def test_batch_fine_tunes_each_portrait_once(
    tmp_path: Path, tiny: Path, astronaut, driver, capsys, monkeypatch
):
    """`batch --finetune-steps`: one tuning per portrait, and a rerun takes them all from the cache."""
    from PIL import Image

    from cli_helpers import run_cli

    portraits = []
    for name, image in (("a", astronaut), ("b", astronaut[:, ::-1])):
        portraits.append(tmp_path / f"{name}.png")
        Image.fromarray(np.ascontiguousarray(image)).save(portraits[-1])
    args = ["batch", *portraits, "--driver", driver.path, "--output-dir", tmp_path / "out", "--engine",
            "neural", "--weights", tiny, "--size", 64, "--device", "cpu", "--max-frames", 2, "--crop-only",
            "--finetune-steps", 2, "--json"]  # fmt: skip
    runs = ft.RUNS["runs"]
    ran = run_cli(args, capsys, monkeypatch)
    assert ran.code == 0, ran.err
    assert ft.RUNS["runs"] == runs + 2
    ran = run_cli([*args, "--overwrite"], capsys, monkeypatch)
    assert ran.code == 0, ran.err
    assert ft.RUNS["runs"] == runs + 2  # the per-person cache answered
    bad = run_cli([*args[:7], "--finetune-steps", 2], capsys, monkeypatch)  # warp engine
    assert bad.code == 2 and "neural" in bad.err


def test_a_wrapped_renderer_gets_the_person_on_the_neural_one(tiny: Path, sources):
    """Wrappers (e.g. a mouth painter holding the renderer as `inner`) must not hide the person's state."""

    class Wrapper:
        def __init__(self, inner) -> None:
            self.inner = inner

        def __getattr__(self, name: str):
            return getattr(self.inner, name)

    anna = tuning.finetune_renderer(_fresh_renderer(tiny), sources, FAST)
    neural = _fresh_renderer(tiny)
    wrapped = Wrapper(neural)
    tuning.apply_person(wrapped, anna)
    assert neural.person is anna
    tuning.apply_person(wrapped, None)
    assert neural.person is None and "person" not in vars(wrapped)
