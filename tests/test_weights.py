"""weights.py: fp16 safetensors + JSON card round trip, and clear errors for bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from animate_portrait.errors import InputError
from animate_portrait.models import Discriminator, Embedder, Generator
from animate_portrait.models.blocks import rasterise_sketch, to_unit
from animate_portrait.weights import card_path, load_weights, read_card, save_weights
from test_models import TINY, face_points


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, dict]:
    torch.manual_seed(0)
    nets = {"E": Embedder(TINY), "G": Generator(TINY), "D": Discriminator(TINY)}
    path = tmp_path / "neural.safetensors"
    save_weights(path, nets, TINY, {"steps": 7, "evaluation": None})
    return path, nets


def test_round_trip_fp16_and_card(saved: tuple[Path, dict]) -> None:
    path, nets = saved
    card = read_card(path)
    assert card["steps"] == 7 and card["config"]["emb_dim"] == TINY.emb_dim and len(card["sha256"]) == 64
    assert card["params"]["G"] == sum(p.numel() for p in nets["G"].parameters())
    cfg, loaded, _ = load_weights(path, "cpu", parts=("E", "G", "D"))
    s = cfg.size
    pts = torch.from_numpy(face_points(s))[None, None]
    x = torch.rand(1, 1, 3, s, s) * 2 - 1
    y = rasterise_sketch(pts[0], s)[None]
    with torch.no_grad():
        outs = []
        for e, g in ((nets["E"].eval(), nets["G"].eval()), (loaded["E"], loaded["G"])):
            psi = g.psi(e(x, y))
            out, _ = g(y[:, 0], to_unit(pts[:, 0], s), psi, g.encode_sources(x, y, to_unit(pts, s)))
            outs.append(out)
        # D: spectral norm is folded into plain weights at save; the scores agree up to fp16
        d0 = nets["D"].eval()(x[:, 0], y[:, 0], torch.tensor([1]))[0]
        d1 = loaded["D"](x[:, 0], y[:, 0], torch.tensor([1]))[0]
    assert (outs[0] - outs[1]).abs().max() < 2e-2
    assert torch.allclose(d0, d1, rtol=2e-2, atol=2e-2)


def test_folded_weights_do_not_depend_on_whether_d_ever_ran(tmp_path: Path) -> None:
    """A spectral-norm D saved before any forward pass (random power-iteration vectors) is folded by its
    true σ: every folded weight has spectral norm 1, as after training."""
    torch.manual_seed(0)
    path = tmp_path / "fresh.safetensors"
    save_weights(path, {"D": Discriminator(TINY)}, TINY)
    _, loaded, _ = load_weights(path, "cpu", parts=("D",))
    norms = [
        float(torch.linalg.matrix_norm(m.weight.detach().float().flatten(1), 2))
        for m in loaded["D"].modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    assert len(norms) > 5 and all(abs(n - 1) < 0.02 for n in norms), norms


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_weights(tmp_path / "nope.safetensors")


def test_missing_card(saved: tuple[Path, dict]) -> None:
    path, _ = saved
    card_path(path).unlink()
    with pytest.raises(InputError, match="card"):
        load_weights(path)


def test_corrupt_card(saved: tuple[Path, dict]) -> None:
    path, _ = saved
    card_path(path).write_text("{not json")
    with pytest.raises(InputError, match="JSON"):
        load_weights(path)


def test_corrupt_weights(saved: tuple[Path, dict]) -> None:
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="corrupt"):
        load_weights(path)


def test_unreadable_weights_with_matching_checksum(saved: tuple[Path, dict]) -> None:
    path, _ = saved
    path.write_bytes(b"garbage, not safetensors")
    card = json.loads(card_path(path).read_text())
    from animate_portrait.weights import sha256

    card["sha256"] = sha256(path)
    card_path(path).write_text(json.dumps(card))
    with pytest.raises(InputError, match="safetensors"):
        load_weights(path)


def test_shape_mismatch(saved: tuple[Path, dict]) -> None:
    path, _ = saved
    card = json.loads(card_path(path).read_text())
    card["config"]["emb_dim"] = TINY.emb_dim * 2
    card_path(path).write_text(json.dumps(card))
    with pytest.raises(InputError, match="shape"):
        load_weights(path)


def test_neural_renderer_loads_and_renders(saved: tuple[Path, dict]) -> None:
    import numpy as np

    from animate_portrait.engines.neural import NeuralRenderer
    from animate_portrait.types import Crop, SourceFace

    path, _ = saved
    size = 48  # not the model's 32: resampled on the way in and out
    r = NeuralRenderer(size, "cpu", path)
    face = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
    pts = face_points(size)
    src = SourceFace(Path("p.png"), face, Crop((24.0, 24.0), 48.0, size), face, pts)
    r.prepare([src, src])
    out = r.render(np.stack([face_points(size, 0.1)] * 3))
    assert out.shape == (3, size, size, 3) and out.dtype == np.uint8
    with pytest.raises(RuntimeError):
        NeuralRenderer(size, "cpu", path).render(out[:1, :68, :2].astype(np.float32))
