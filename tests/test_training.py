"""Training plumbing on a tiny synthetic cache: episodes, augmentation, a few steps, resume, export."""

from __future__ import annotations

import copy
import io
import json
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from animate_portrait.models import Discriminator, Embedder, Generator, ModelConfig
from animate_portrait.training.dataset import EpisodeSampler, FrameBank, decode_mp4
from animate_portrait.training.losses import mouth_l1, outside_face, warp_pyramid_l1
from animate_portrait.training.run_files import init_from
from animate_portrait.training.train import TrainConfig, _pretrain_d, d_optimizer, sample_k, train
from animate_portrait.weights import load_weights, save_weights
from test_models import TINY, face_points

SMALL_MODEL = {
    "emb_dim": 16,
    "enc_ch": [8, 8, 16],
    "sketch_ch": [4, 4, 8],
    "emb_ch": [8, 8, 16, 16, 16],
    "flow_ch": 8,
    "n_bottleneck": 1,
    "e_attention": False,
}


def _write_clip(folder: Path, name: str, identity: str, n: int, size: int, seed: int) -> None:
    from animate_portrait.video import VideoWriter

    rng = np.random.default_rng(seed)
    base = (rng.random((size // 8, size // 8, 3)) * 255).astype(np.uint8)
    base = np.kron(base, np.ones((8, 8, 1), np.uint8))
    pts = []
    with VideoWriter(folder / f"{name}.mp4", 25.0, (size, size)) as w:
        for t in range(n):
            w.write(np.roll(base, t, axis=1))
            pts.append(face_points(size, 0.05 * (t % 3)) + rng.normal(0, 0.3, (68, 2)).astype(np.float32))
    np.savez_compressed(
        folder / f"{name}.npz",
        points=np.stack(pts).astype(np.float32),
        frame_index=np.arange(n, dtype=np.int32),
        boxes=np.tile(np.float32([size / 2, size / 2, size]), (n, 1)),
        identity=np.array(identity),
        clip=np.array(name + ".mp4"),
        fps=np.array(25.0),
        size=np.array(size),
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cache")
    _write_clip(folder, "a_clip", "alice", 12, 64, 0)
    _write_clip(folder, "b_clip", "bob", 10, 64, 1)
    return folder


def test_bank_and_episodes(cache: Path) -> None:
    assert decode_mp4(cache / "a_clip.mp4").shape == (12, 64, 64, 3)
    bank = FrameBank.load(cache)
    assert bank.n_clips == 2 and bank.summary()["frames"] == 22 and bank.identities == ["alice", "bob"]
    assert bank.boxes is not None and bank.boxes.shape == (22, 3)
    sampler = EpisodeSampler(bank, 32)
    ep = sampler.sample(3, 2, torch.Generator().manual_seed(0))
    assert ep.src.shape == (3, 2, 3, 32, 32) and ep.tgt.shape == (3, 3, 32, 32)
    assert ep.src_pts.shape == (3, 2, 68, 2) and ep.tgt_pts.shape == (3, 68, 2)
    assert float(ep.src.min()) >= -1 and float(ep.src.max()) <= 1
    again = sampler.sample(3, 2, torch.Generator().manual_seed(0))
    assert torch.equal(ep.src, again.src) and torch.equal(ep.vid, again.vid)  # a seed fixes the stream


def test_closed_sources_make_g_draw_the_open_mouth(cache: Path) -> None:
    """Every clip cycles its mouth shut, half open, open: with closed_sources=1 every episode's sources are
    shut and its target open; at 0 the episodes are the plain ones, draw for draw."""
    from animate_portrait.motion import mouth_opening

    bank = FrameBank.load(cache)
    ep = EpisodeSampler(bank, 64, augment=None, closed_sources=1.0).sample(
        16, 3, torch.Generator().manual_seed(0)
    )
    shut = face_points(64, 0.0)[None]
    wide = face_points(64, 0.1)[None]
    src, tgt = mouth_opening(ep.src_pts.numpy()), mouth_opening(ep.tgt_pts.numpy())
    half = (mouth_opening(shut)[0] + mouth_opening(wide)[0]) / 2  # the half-open frames (plus noise)
    assert src.max() < half < tgt.min()
    off = EpisodeSampler(bank, 64, augment=None, closed_sources=0.0).sample(
        16, 3, torch.Generator().manual_seed(0)
    )
    plain = EpisodeSampler(bank, 64, augment=None).sample(16, 3, torch.Generator().manual_seed(0))
    assert torch.equal(off.src_pts, plain.src_pts) and torch.equal(off.tgt_pts, plain.tgt_pts)
    # drawn at random, some source is open or some target is shut
    assert mouth_opening(plain.src_pts.numpy()).max() > half > mouth_opening(plain.tgt_pts.numpy()).min()


def test_augmentation_keeps_landmarks_on_the_face(cache: Path) -> None:
    """Flip/scale/rotate move points and pixels together: the left eye stays left (index mirroring)."""
    bank = FrameBank.load(cache)
    sampler = EpisodeSampler(bank, 64)
    ep = sampler.sample(16, 1, torch.Generator().manual_seed(3))
    pts = ep.tgt_pts
    # after any flip, points 36-41 (one eye) stay on the image's left of points 42-47
    assert (pts[:, 36:42, 0].mean(1) < pts[:, 42:48, 0].mean(1)).all()
    # and the jaw's first point stays on the left of its last
    assert (pts[:, 0, 0] < pts[:, 16, 0]).all()
    # unaugmented: points equal the cache's (up to the float round trip) at the same size
    plain = EpisodeSampler(bank, 64, augment=None).sample(2, 1, torch.Generator().manual_seed(0))
    rows = [bank.starts[int(v)] for v in plain.vid]
    assert all(
        any(
            torch.allclose(plain.tgt_pts[i], bank.points[r + j], atol=1e-3)
            for j in range(int(bank.lengths[v]))
        )
        for i, (r, v) in enumerate(zip(rows, plain.vid, strict=False))
    )


def test_fixed_box_shows_the_source_through_the_target_box() -> None:
    """A still scene cropped around two boxes: seen through the target's box, the source frame is the
    target again (pixels and landmarks), as the renderer's one fixed box sees it; unboxed, it is not."""
    from animate_portrait import face
    from animate_portrait.types import Crop

    rng = np.random.default_rng(0)
    scene = np.kron((rng.random((20, 20, 3)) * 255).astype(np.uint8), np.ones((8, 8, 1), np.uint8))
    crops = [Crop(center=(80.0, 80.0), side=96.0, size=64), Crop(center=(88.0, 74.0), side=110.0, size=64)]
    marks = crops[0].to_image(face_points(64))  # one face, fixed in the scene
    frames = np.stack([face.extract(scene, c) for c in crops])
    bank = FrameBank(
        frames=torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(),
        points=torch.from_numpy(np.stack([c.to_crop(marks) for c in crops])),
        starts=torch.tensor([0]),
        lengths=torch.tensor([2]),
        names=["still"],
        identities=["still"],
        size=64,
        boxes=torch.tensor([[*c.center, c.side] for c in crops]),
    )
    gen = torch.Generator().manual_seed(0)
    boxed = EpisodeSampler(bank, 64, augment=None, fixed_box=True).sample(32, 1, gen)
    plain = EpisodeSampler(bank, 64, augment=None).sample(32, 1, torch.Generator().manual_seed(0))
    moved = (plain.src_pts[:, 0] - plain.tgt_pts).norm(dim=-1).mean(-1) > 1
    assert moved.any() and not moved.all()  # both kinds of episode: same frame, and the other box
    assert torch.allclose(boxed.src_pts[:, 0], boxed.tgt_pts, atol=1e-3)
    inner = (slice(None), slice(None), slice(12, 52), slice(12, 52))  # clear of replicated borders
    err = (boxed.src[:, 0] - boxed.tgt)[inner].abs().mean(dim=(1, 2, 3))
    err_plain = (plain.src[:, 0] - plain.tgt)[inner].abs().mean(dim=(1, 2, 3))
    assert float(err.max()) < 0.1 < float(err_plain[moved].min())  # in [-1, 1] units
    with pytest.raises(ValueError, match="boxes"):
        EpisodeSampler(FrameBank(**{**bank.__dict__, "boxes": None}), 64, fixed_box=True)


def test_sample_k_range() -> None:
    g = torch.Generator().manual_seed(0)
    ks = [sample_k(8, g) for _ in range(200)]
    assert min(ks) == 1 and max(ks) <= 8 and 60 < ks.count(1) < 140 and sample_k(1, g) == 1


@pytest.mark.slow
def test_train_resume_export_and_render(cache: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = TrainConfig(
        size=32,
        batch=2,
        k_max=2,
        steps=3,
        adv_start=1,
        log_every=1,
        sample_every=2,
        device="cpu",
        model=SMALL_MODEL,
        seed=1,
    )
    weights = train(cache, run, cfg)
    assert weights.is_file() and (run / "ckpt.safetensors").is_file() and (run / "ckpt.json").is_file()
    assert list((run / "samples").glob("*.png"))
    assert (run / "weights" / "neural_warmup.safetensors").is_file()  # snapshot at adv_start
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and "d" in log[-1] and "mch" in log[-1]
    assert json.loads((run / "ckpt.json").read_text())["step"] == 3
    # resume: continues from step 3 to 5
    cfg.steps = 5
    train(cache, run, cfg)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log][-2:] == [4, 5]
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["steps"] == 5 and card["data"]["clips"] == 2 and "licences" in card
    # the exported weights drive the neural engine
    from animate_portrait.engines.neural import NeuralRenderer
    from animate_portrait.types import Crop, SourceFace

    face = decode_mp4(cache / "a_clip.mp4")[0]
    src = SourceFace(Path("a.png"), face, Crop((32.0, 32.0), 64.0, 64), face, face_points(64))
    r = NeuralRenderer(64, "cpu", weights)
    r.prepare([src])
    out = r.render(np.stack([face_points(64, 0.1)] * 2))
    assert out.shape == (2, 64, 64, 3)


def test_train_is_deterministic_with_a_seed(cache: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(
        size=32,
        batch=2,
        k_max=2,
        steps=2,
        adv_start=1,
        log_every=1,
        sample_every=100,
        device="cpu",
        model=SMALL_MODEL,
        seed=5,
    )
    train(cache, tmp_path / "a", cfg)
    train(cache, tmp_path / "b", cfg)
    la = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in la]
    assert strip == [{k: v for k, v in r.items() if k != "time_s"} for r in lb]


def test_init_from_shipped_weights_gives_the_shipped_discriminator(tmp_path: Path) -> None:
    """Training from a shipped file (spectral norm folded there) starts with the shipped D's scores: the
    raw weights' σ is settled at load, not left to random power-iteration vectors."""
    torch.manual_seed(0)
    path = tmp_path / "shipped.safetensors"
    save_weights(path, {"E": Embedder(TINY), "G": Generator(TINY), "D": Discriminator(TINY)}, TINY)
    _, shipped, _ = load_weights(path, "cpu", parts=("D",))
    torch.manual_seed(1)
    E, G, D = Embedder(TINY), Generator(TINY), Discriminator(TINY)
    init_from(path, E, G, D)
    s = TINY.size
    x, y = torch.rand(2, 3, s, s) * 2 - 1, torch.rand(2, 3, s, s)
    with torch.no_grad():
        r0 = shipped["D"](x, y, torch.tensor([0, 1]))[0]
        r1 = D.eval()(x, y, torch.tensor([0, 1]))[0]
    assert torch.allclose(r0, r1, rtol=5e-2, atol=5e-3), (r0, r1)


def test_mouth_l1_counts_only_the_mouth_box() -> None:
    """An error inside the mouth box counts fully; the same error elsewhere does not count at all."""
    s = 64
    pts = torch.from_numpy(face_points(s))[None]
    real = torch.zeros(1, 3, s, s)
    mouth = pts[0, 48:68]
    x0, y0 = mouth.amin(0).int().tolist()
    x1, y1 = mouth.amax(0).int().tolist()
    inside = real.clone()
    inside[..., y0:y1, x0:x1] = 1.0
    outside = real.clone()
    outside[..., :5, :] = 1.0  # the top rows: far from the mouth
    assert float(mouth_l1(outside, real, pts)) == 0.0
    assert 0.3 < float(mouth_l1(inside, real, pts)) <= 1.0


def test_outside_face_is_metrics_face_mask_inverted() -> None:
    from animate_portrait.metrics import face_mask

    for s, mouth in ((64, 0.0), (128, 0.1)):
        pts = face_points(s, mouth)
        ours = outside_face(torch.from_numpy(pts)[None], s)[0, 0].numpy() > 0.5
        theirs = ~face_mask(pts, s)
        assert 0.2 < (~ours).mean() < 0.8  # a face, not an empty or full mask
        outline = np.concatenate([pts[0:17], pts[26:16:-1]])
        perimeter = np.linalg.norm(np.diff(outline, axis=0, append=outline[:1]), axis=1).sum()
        assert (ours != theirs).sum() < perimeter / 2  # the two rasterisers differ only on the outline


def test_warp_pyramid_l1_sees_a_shift_and_only_where_weighted() -> None:
    """Zero for the target itself, larger for larger shifts (the coarse levels see past a pixel or two),
    and blind to what the weight leaves out."""
    g = torch.Generator().manual_seed(0)
    target = F.avg_pool2d(torch.rand(1, 3, 64, 64, generator=g), 5, 1, 2)  # smooth texture
    ones = torch.ones(1, 1, 64, 64)
    losses = [float(warp_pyramid_l1(target.roll(k, -1), target, ones)) for k in (0, 1, 4)]
    assert losses[0] == 0.0 and losses[0] < losses[1] < losses[2]
    left = torch.zeros(1, 1, 64, 64)
    left[..., :32] = 1.0
    spoiled = target.clone()
    spoiled[..., 40:] = 0.0  # wrong only on the right, where the weight is 0 (and the 8² blocks stop at 32)
    assert float(warp_pyramid_l1(spoiled, target, left)) == 0.0


def test_mask_penalty_and_mouth_loss_are_logged(cache: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(
        size=32,
        batch=2,
        k_max=2,
        steps=2,
        adv_start=100,
        log_every=1,
        sample_every=100,
        device="cpu",
        model=SMALL_MODEL,
        seed=3,
        w_mask=1.0,
        w_mouth=10.0,
        w_warped=1.0,
    )
    train(cache, tmp_path / "run", cfg)
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all("mask_pen" in r and "mouth" in r and r["mouth"] > 0 and r["warped"] > 0 for r in log)


def test_restart_from_weights_with_the_mask_reset(cache: Path, tmp_path: Path) -> None:
    """--init W --reset-mask: the first step sees m = 0.5 (the decoder rescale itself: test_models)."""
    base = TrainConfig(size=32, batch=2, k_max=2, steps=2, adv_start=100, log_every=1, sample_every=100,
                       device="cpu", model=SMALL_MODEL, seed=4)  # fmt: skip
    weights = train(cache, tmp_path / "first", base)
    restart = TrainConfig(**{**base.__dict__, "init": str(weights), "reset_mask": True, "steps": 1})
    train(cache, tmp_path / "second", restart)
    log = [json.loads(x) for x in (tmp_path / "second" / "log.jsonl").read_text().splitlines()]
    assert log[0]["mask"] == pytest.approx(0.5, abs=1e-3)


def test_restart_with_the_embedder_revived_keeps_the_first_frames(cache: Path, tmp_path: Path) -> None:
    """--init W --revive-embedder: E's output comes alive (logged as e_live), pooled by mean, while P = 0
    keeps ψ̂, and so the first step's losses, where they were without the revival (same seed and batch)."""
    base = TrainConfig(size=32, batch=2, k_max=2, steps=2, adv_start=100, log_every=1, sample_every=100,
                       device="cpu", model=SMALL_MODEL, seed=4)  # fmt: skip
    weights = train(cache, tmp_path / "first", base)
    dead = load_file(str(weights))
    last = f"E.trunk.blocks.{len(SMALL_MODEL['emb_ch']) - 1}.conv2.bias"
    dead[last] = torch.full_like(dead[last], -1e3)  # every unit of E's last block below 0 for every input
    save_file(dead, str(weights))  # init_from reads the tensors only (no card, no sha256)
    runs = {}
    for revive in (False, True):
        cfg = TrainConfig(**{**base.__dict__, "init": str(weights), "revive_embedder": revive, "steps": 1})
        train(cache, tmp_path / f"revive_{revive}", cfg)
        runs[revive] = json.loads((tmp_path / f"revive_{revive}" / "log.jsonl").read_text().splitlines()[0])
    assert runs[False]["e_live"] == 0.0 and runs[True]["e_live"] > 0.2
    assert runs[True]["l1"] == pytest.approx(runs[False]["l1"], rel=1e-4)
    revived = json.loads((tmp_path / "revive_True" / "weights" / "neural.json").read_text())
    assert revived["config"]["e_pool"] == "mean_leaky"  # what the engine builds E from


def test_d_pretraining_moves_d_only(cache: Path) -> None:
    """The D-only steps (--d-pretrain) change D and leave E and G as they were, without gradients."""
    cfg = TrainConfig(size=32, batch=2, k_max=2, log_every=1, device="cpu", model=SMALL_MODEL,
                      d_pretrain=3, d_patch=True)  # fmt: skip
    mcfg = ModelConfig.from_dict({**ModelConfig().to_dict(), **SMALL_MODEL, "size": 32, "n_ids": 2})
    torch.manual_seed(0)
    E, G, D = Embedder(mcfg), Generator(mcfg), Discriminator(mcfg)
    before = {name: copy.deepcopy(net.state_dict()) for name, net in (("E", E), ("G", G), ("D", D))}
    opt_d = d_optimizer(D, cfg.lr_d)
    sampler = EpisodeSampler(FrameBank.load(cache), 32)
    log = io.StringIO()
    _pretrain_d(E, G, D, opt_d, sampler, cfg, torch.Generator().manual_seed(0), nullcontext(), log)
    assert [json.loads(x)["d_pretrain"] for x in log.getvalue().splitlines()] == [1, 2, 3]
    for name, net in (("E", E), ("G", G)):
        assert all(torch.equal(v, before[name][k]) for k, v in net.state_dict().items())
        assert all(p.grad is None for p in net.parameters())
    assert any(not torch.equal(v, before["D"][k]) for k, v in D.state_dict().items() if "original" in k)


def test_d_pretraining_runs_when_the_adversarial_phase_starts(cache: Path, tmp_path: Path) -> None:
    """--d-pretrain N --d-patch: the N D-only steps run once, at the step the adversarial terms start (here
    step 1 of 2, after a resume), logged with D's accuracy, before that step's own D update."""
    base = TrainConfig(size=32, batch=2, k_max=2, steps=1, adv_start=1, log_every=1, sample_every=100,
                       device="cpu", model=SMALL_MODEL, seed=5, export_warmup=False)  # fmt: skip
    train(cache, tmp_path / "run", base)
    go_on = TrainConfig(**{**base.__dict__, "steps": 2, "d_pretrain": 3, "d_patch": True})
    train(cache, tmp_path / "run", go_on)
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r.get("d_pretrain") for r in log] == [None, 1, 2, 3, None]
    assert all(np.isfinite(r["d"]) and 0.0 <= r["acc"] <= 1.0 for r in log[1:4])
    assert "d" not in log[0] and "d" in log[-1] and log[-1]["step"] == 2


@pytest.mark.slow
@pytest.mark.shared
def test_prepare_a_real_clip(shared_data: Path, tmp_path: Path) -> None:
    from animate_portrait.training.prepare import prepare_clips

    clip = shared_data / "clips" / "train" / "FuxiVirtualHuman__styletalk__src_Obama_clip1.mp4"
    done = prepare_clips([clip], tmp_path, size=64, max_frames=12, manifest=shared_data / "MANIFEST.tsv")
    assert 10 <= done[clip.name] <= 12
    with np.load(tmp_path / f"{clip.stem}.npz") as z:
        assert str(z["identity"]) == "Obama" and z["points"].shape == (done[clip.name], 68, 2)
        pts, boxes, kept = z["points"], z["boxes"], z["frame_index"]
    assert (pts > 0).all() and (pts < 64).all()  # the face lies inside its crop
    crops = decode_mp4(tmp_path / f"{clip.stem}.mp4")
    assert crops.shape == (done[clip.name], 64, 64, 3)
    # each crop's box is where it came from: cutting the first kept frame at the boxes stored for it and
    # for the last kept frame, the first is the crop in the cache (up to the codec), the second differs more
    from animate_portrait import face, video
    from animate_portrait.types import Crop

    first = list(video.read_frames(clip, int(kept[0]) + 1))[-1]
    cut = [face.extract(first, Crop(center=(float(b[0]), float(b[1])), side=float(b[2]), size=64))
           for b in (boxes[0], boxes[-1])]  # fmt: skip
    own, other = (np.abs(c.astype(float) - crops[0]).mean() for c in cut)
    assert own < 6 and other > own
