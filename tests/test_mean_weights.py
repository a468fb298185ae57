"""training/mean_weights.py: the mean of two weights files, verified, with its lineage in the card."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from animate_portrait.errors import InputError
from animate_portrait.models import Discriminator, Embedder, Generator
from animate_portrait.training.mean_weights import mean_weights
from animate_portrait.weights import load_weights, read_card, save_weights
from test_models import TINY


def _save(path: Path, seed: int, cfg=TINY, steps: int = 7) -> Path:
    torch.manual_seed(seed)
    nets = {"E": Embedder(cfg), "G": Generator(cfg), "D": Discriminator(cfg)}
    save_weights(path, nets, cfg, {"steps": steps, "evaluation": None, "lineage": [{"what": "start"}]})
    return path


def test_each_tensor_is_the_weighted_mean(tmp_path: Path) -> None:
    first = _save(tmp_path / "a" / "neural.safetensors", 0)
    second = _save(tmp_path / "b" / "neural.safetensors", 1, steps=9)
    out = tmp_path / "mean" / "neural.safetensors"
    mean_weights(first, second, out, share=0.25)
    _, a, _ = load_weights(first, parts=("E", "G", "D"))
    _, b, _ = load_weights(second, parts=("E", "G", "D"))
    _, m, card = load_weights(out, parts=("E", "G", "D"))
    for name in ("E", "G", "D"):
        sa, sb = a[name].state_dict(), b[name].state_dict()
        assert any(not torch.equal(sa[k], sb[k]) for k in sa)  # two different models: a real mean
        for key, value in m[name].state_dict().items():
            want = 0.75 * sa[key] + 0.25 * sb[key]
            # stored in fp16: within its rounding of the mean
            assert torch.allclose(value, want, atol=2e-3, rtol=2e-3), f"{name}.{key}"
    assert card["steps"] == 7 and card["lineage"][0] == {"what": "start"}
    last = card["lineage"][-1]
    assert last["first_sha256"] == read_card(first)["sha256"]
    assert last["second_sha256"] == read_card(second)["sha256"] and last["second_steps"] == 9
    assert card["sha256"] != read_card(first)["sha256"]


def test_refuses_another_config_and_a_bad_share(tmp_path: Path) -> None:
    first = _save(tmp_path / "a" / "neural.safetensors", 0)
    other = _save(tmp_path / "b" / "neural.safetensors", 1, cfg=replace(TINY, emb_dim=TINY.emb_dim * 2))
    out = tmp_path / "mean" / "neural.safetensors"
    with pytest.raises(InputError, match="another model config"):
        mean_weights(first, other, out)
    with pytest.raises(ValueError, match="share"):
        mean_weights(first, first, out, share=1.5)
    assert not out.exists()
