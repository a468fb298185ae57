"""The fine-tuning stage (paper §3.3): ψ′ from P·ê, person files, the cache, and the CLI options."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from animate_portrait.errors import InputError
from animate_portrait.models import Discriminator, Embedder, Generator
from animate_portrait.pipeline import Pipeline
from animate_portrait.training import finetune as ft
from animate_portrait.training import renderer_tuning as tuning
from animate_portrait.training.person_file import save_person
from animate_portrait.types import RenderConfig
from animate_portrait.weights import save_weights
from cli_helpers import run_cli
from conftest import Driver
from test_models import TINY

FAST = ft.FinetuneSettings(steps=3, lr_psi=1e-2, lr_g=1e-3)


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache folder: nothing is written to the user's ~/.cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("ANIMATE_PORTRAIT_CACHE", str(cache))
    return cache


def _tiny_weights(folder: Path, seed: int, **overrides) -> Path:
    torch.manual_seed(seed)
    cfg = replace(TINY, **overrides)
    nets = {"E": Embedder(cfg), "G": Generator(cfg), "D": Discriminator(cfg)}
    torch.nn.init.normal_(nets["G"].P.weight, std=0.05)  # P starts at zero: make ψ̂ = P·ê non-trivial
    path = folder / "neural.safetensors"
    save_weights(path, nets, cfg, {"steps": 0, "evaluation": None}, dtype=torch.float32)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_weights(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="module")
def tiny_other(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_weights(tmp_path_factory.mktemp("tiny_other"), seed=1, size=64, flow_ch=12)  # other shapes


@pytest.fixture(scope="module")
def loaded(astronaut_png: Path, tiny: Path):
    """The astronaut as a 64² source through the real pipeline, and a renderer of the tiny model."""
    pipeline = Pipeline(RenderConfig(size=64, engine="neural", device="cpu", weights=tiny))
    return pipeline, pipeline.load_sources([astronaut_png])


def _fresh_renderer(weights: Path):
    from animate_portrait.engines.neural import NeuralRenderer

    return NeuralRenderer(size=64, device="cpu", weights=weights)


def test_psi_starts_at_P_e_hat(loaded, tiny: Path) -> None:
    _, sources = loaded
    renderer = _fresh_renderer(tiny)
    person = tuning.finetune_renderer(renderer, sources, replace(FAST, steps=0))
    renderer.prepare(sources)  # ψ̂ = P·ê of the feed-forward path
    assert renderer._psi.abs().max() > 0
    torch.testing.assert_close(person.psi, renderer._psi, rtol=0, atol=1e-6)
    # with no steps, the tuned generator tensors are the meta-learned ones
    own = renderer.G.state_dict()
    assert person.g and all(torch.equal(v, own[k]) for k, v in person.g.items())


def test_few_steps_reduce_the_reconstruction_loss(loaded, tiny: Path) -> None:
    _, sources = loaded
    person = tuning.finetune_renderer(_fresh_renderer(tiny), sources, replace(FAST, steps=5))
    rec = person.card["reconstruction_l1"]
    assert rec["after"] < rec["before"], rec


def test_person_file_holds_only_what_changed_and_round_trips(
    loaded, tiny: Path, astronaut_png: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    pipeline, sources = loaded
    out = tmp_path / "anna.safetensors"
    args = ["finetune", astronaut_png, "-o", out, "--steps", 3, "--size", 64, "--weights", tiny]
    ran = run_cli([*args, "--device", "cpu", "--json"], capsys, monkeypatch)
    assert ran.code == 0, ran.err
    summary = json.loads(ran.out.strip().splitlines()[-1])
    assert summary["steps"] == 3 and summary["cached"] is False

    tensors = load_file(str(out))
    g_keys = {k[2:] for k in tensors if k.startswith("G.")}
    assert set(tensors) == {"psi", "w"} | {f"G.{k}" for k in g_keys}
    assert g_keys and all(k.startswith(ft.TUNED_G) for k in g_keys)  # no encoders, no P, no E, no D
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["weights_sha256"] == json.loads(tiny.with_suffix(".json").read_text())["sha256"]
    assert card["steps"] == 3 and len(card["sources"]) == 1 and len(card["sources"][0]["sha256"]) == 64

    # the same fine-tuning in-process (same settings, same seed) renders the same frames as the file
    inproc = _fresh_renderer(tiny)
    inproc.use_person(tuning.finetune_renderer(inproc, sources, ft.FinetuneSettings(steps=3)))
    from_file = _fresh_renderer(tiny)
    tuning.use_person_file(from_file, out)
    targets = np.stack([sources[0].points, sources[0].points + 1.5])
    frames = []
    for r in (inproc, from_file):
        r.prepare(sources)
        frames.append(r.render(targets))
    np.testing.assert_array_equal(frames[0], frames[1])
    plain = _fresh_renderer(tiny)
    plain.prepare(sources)
    assert not np.array_equal(plain.render(targets), frames[0])  # and the person does change the output


def test_mismatched_person_file_is_a_one_line_input_error(
    loaded,
    tiny: Path,
    tiny_other: Path,
    driver: Driver,
    astronaut_png: Path,
    tmp_path: Path,
    capsys,
    monkeypatch,
) -> None:
    _, sources = loaded
    person = tuning.finetune_renderer(_fresh_renderer(tiny), sources, replace(FAST, steps=1))
    path = tmp_path / "anna.safetensors"
    save_person(path, person)
    args = [astronaut_png, "--driver", driver.path, "-o", tmp_path / "o.mp4", "--engine", "neural"]
    ran = run_cli([*args, "--weights", tiny_other, "--person", path, "--max-frames", 1], capsys, monkeypatch)
    assert ran.code == 1
    lines = ran.err.strip().splitlines()
    assert len(lines) == 1 and "anna.safetensors" in lines[0] and "tuned from weights" in lines[0]
    # a file whose card claims the right weights but whose tensors do not fit them: shapes are checked
    other = _fresh_renderer(tiny_other)
    card = json.loads(path.with_suffix(".json").read_text())
    card["weights_sha256"] = other.card["sha256"]
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="anna.safetensors: .*shape"):
        tuning.use_person_file(other, path)


def test_cache_hit_skips_the_work(loaded, tiny: Path, private_cache: Path) -> None:
    _, sources = loaded
    renderer = _fresh_renderer(tiny)
    first, hit = tuning.person_for(renderer, sources, FAST)
    assert not hit
    (entry,) = (private_cache / "finetune").glob("*.safetensors")
    mtime, runs, steps = entry.stat().st_mtime_ns, ft.RUNS["runs"], ft.RUNS["steps"]
    second, hit = tuning.person_for(_fresh_renderer(tiny), sources, FAST)
    assert hit and ft.RUNS == {"runs": runs, "steps": steps} and entry.stat().st_mtime_ns == mtime
    torch.testing.assert_close(second.psi, first.psi)
    # other settings are another entry
    _, hit = tuning.person_for(renderer, sources, replace(FAST, steps=2))
    assert not hit and len(list((private_cache / "finetune").glob("*.safetensors"))) == 2


def test_cli_finetune_steps_end_to_end(
    driver: Driver, astronaut_png: Path, tmp_path: Path, private_cache: Path, capsys, monkeypatch
) -> None:
    """The shipped model at 256², 2 steps, 2 frames: fine-tuned, cached, rendered."""
    out = tmp_path / "ft.mp4"
    args = [astronaut_png, "--driver", driver.path, "-o", out, "--engine", "neural", "--device", "cpu"]
    args += ["--finetune-steps", 2, "--max-frames", 2, "--crop-only", "--json"]
    ran = run_cli(args, capsys, monkeypatch)
    assert ran.code == 0, ran.err
    assert json.loads(ran.out.strip().splitlines()[-1])["frames"] == 2
    (entry,) = (private_cache / "finetune").glob("*.safetensors")
    assert json.loads(entry.with_suffix(".json").read_text())["steps"] == 2
    runs = ft.RUNS["runs"]
    ran = run_cli([*args, "--overwrite"], capsys, monkeypatch)  # the rerun comes from the cache
    assert ran.code == 0 and ft.RUNS["runs"] == runs and "cached" in ran.err


def test_finetune_options_need_the_neural_engine(
    driver: Driver, astronaut_png: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    args = [astronaut_png, "--driver", driver.path, "-o", tmp_path / "o.mp4", "--engine", "warp"]
    ran = run_cli([*args, "--finetune-steps", 2], capsys, monkeypatch)
    assert ran.code == 2 and "neural" in ran.err
