"""`evaluate` end to end on the talking astronaut: rows, finite numbers, and warp really beating static."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import typer

from animate_portrait.errors import InputError
from animate_portrait.evaluation import Setup, parse_setups
from cli_helpers import run_cli
from conftest import Driver

N_TARGETS = 8  # the driver opens and closes its mouth every 8 frames: one whole cycle


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, driver: Driver, astronaut_png: Path):
    """One run covering both evaluations, and neural skipped because its weights file does not exist."""
    import sys

    folder = tmp_path_factory.mktemp("eval")
    out = folder / "eval.json"
    args = ["evaluate", driver.path, "--engines", "static,warp,neural", "--shots", "1", "--weights",
            folder / "missing.safetensors", "--max-frames", N_TARGETS, "--portraits", astronaut_png,
            "--json", out, "--device", "cpu", "-q"]  # fmt: skip
    # In-process (fast); run_cli needs function-scoped fixtures, and this one is shared by the module.
    from animate_portrait.cli import main

    saved = sys.argv
    sys.argv = ["animate-portrait", *map(str, args)]
    try:
        with pytest.raises(SystemExit) as exit_:
            main()
    finally:
        sys.argv = saved
    assert exit_.value.code in (0, None)
    return json.loads(out.read_text())


def _rows(section: dict) -> dict[str, dict]:
    return {f"{r['engine']} {r['shots']}": r for r in section["rows"]}


@pytest.mark.slow
def test_json_has_rows_settings_and_finite_numbers(evaluated: dict):
    rows = _rows(evaluated["self_reenactment"])
    assert set(rows) == {"static 1", "warp 1"}
    for row in rows.values():
        assert row["n"] == 1 and row["frames"] == N_TARGETS
        for key in (
            "psnr",
            "ssim",
            "perceptual",
            "landmark_error",
            "mouth_l1",
            "eyes_l1",
            "identity",
            "face_found",
        ):
            assert row[key] is not None and math.isfinite(row[key]), (row["engine"], key)
    assert rows["warp 1"]["mouth_corr"] is not None
    assert len(evaluated["self_reenactment"]["items"]) == 2  # one clip × two setups
    settings = evaluated["settings"]
    assert settings["max_frames"] == N_TARGETS and settings["frame_step"] == 1 and settings["size"] == 256
    assert [s["engine"] for s in evaluated["skipped"]] == ["neural"]


@pytest.mark.slow
def test_warp_beats_static_where_the_fixture_moves(evaluated: dict):
    rows = _rows(evaluated["self_reenactment"])
    warp, static = rows["warp 1"], rows["static 1"]
    # The fixture *is* a warp of the first frame, so warp should nearly reproduce it.
    assert warp["landmark_error"] < static["landmark_error"]
    assert warp["mouth_corr"] > 0.8
    assert warp["psnr"] > static["psnr"]
    assert warp["identity"] < 0.6


@pytest.mark.slow
def test_cross_reenactment_follows_the_driver(evaluated: dict):
    rows = _rows(evaluated["cross_reenactment"])
    assert set(rows) == {"static 1", "warp 1"}
    warp = rows["warp 1"]
    assert warp["face_found"] == 1.0
    assert warp["mouth_corr"] > 0.8
    assert 0.7 < warp["mouth_gain"] < 1.3  # opens as far as the driver (herself) does
    assert rows["static 1"]["mouth_gain"] == 0.0  # a still mouth follows none of it
    assert warp["identity"] < 0.6  # the astronaut driven by herself stays herself
    assert rows["static 1"]["mouth_corr"] < warp["mouth_corr"]


def test_setups_from_options():
    assert parse_setups("static,warp", "1,8") == [Setup("static", 1), Setup("warp", 1), Setup("warp", 8)]
    with pytest.raises(typer.BadParameter):
        parse_setups("warp,magic", "1")
    with pytest.raises(typer.BadParameter):
        parse_setups("warp", "0")
    with pytest.raises(typer.BadParameter):
        parse_setups("warp", "one")


def test_missing_clip_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    ran = run_cli(["evaluate", tmp_path / "nope.mp4", "--engines", "static", "-q"], capsys, monkeypatch)
    assert ran.code == 1
    assert "nope.mp4" in ran.err and "Traceback" not in ran.err


def test_clip_shorter_than_k_is_noted_not_a_crash(driver: Driver):
    from animate_portrait.evaluation import RendererFactory, run_evaluation

    setups = [Setup("static", driver.n_frames)]
    results = run_evaluation([driver.path], setups, RendererFactory(128, "cpu"), step=4)
    assert results.sections[0].rows == []
    assert [s["clip"] for s in results.skipped] == [str(driver.path)]
    assert "after the K source frames" in results.skipped[0]["reason"]


# --- the paper's Table 1: K sources from the first part of a clip, feed-forward and fine-tuned -------------
def test_sources_are_spread_over_the_source_part_and_never_targets():
    from animate_portrait.evaluation.self_reenactment import is_target, source_frames

    found = np.ones(100, bool)
    found[[0, 5]] = False  # no face: never a source
    assert source_frames(found, 1, 64) == [1]
    eight = source_frames(found, 8, 64)
    assert len(set(eight)) == 8 and eight[0] == 1 and eight[-1] == 63 and 5 not in eight
    assert np.diff(eight).min() >= 7  # spread, not the first eight frames
    with pytest.raises(InputError, match="fewer than K = 4"):
        source_frames(found, 4, 4)
    targets = [i for i in range(100) if is_target(i, 64, 3)]
    assert targets[0] == 64 and not set(targets) & set(range(64))


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ANIMATE_PORTRAIT_CACHE", str(cache))
    return cache


def test_table1_rows_fine_tuned_and_cached(tmp_path: Path, driver: Driver, private_cache: Path):
    """Plumbing on a tiny random-weight model: rows for each K × variant, and a rerun tunes nothing."""
    from animate_portrait.evaluation import RendererFactory, run_evaluation
    from animate_portrait.training import finetune as ft
    from test_finetune import _tiny_weights

    tiny = _tiny_weights(tmp_path, seed=0)
    setups = parse_setups("neural", "1,2", finetune=True)
    assert setups == [Setup("neural", 1), Setup("neural", 1, "fine-tuned"), Setup("neural", 2),
                      Setup("neural", 2, "fine-tuned")]  # fmt: skip
    factory = RendererFactory(64, "cpu", tiny, finetune_steps=2)
    runs = ft.RUNS["runs"]
    results = run_evaluation([driver.path], setups, factory, max_frames=3, step=2, span=8)
    assert ft.RUNS["runs"] == runs + 2  # one tuning per K
    body = results.to_dict()
    table = body["table1"]
    assert [(r["shots"], r["variant"]) for r in table["rows"]] == [
        (1, "feed-forward"), (1, "fine-tuned"), (2, "feed-forward"), (2, "fine-tuned")]  # fmt: skip
    assert all(r["frames"] == 3 for r in table["rows"])
    tuned = [i for i in body["self_reenactment"]["items"] if i["variant"] == "fine-tuned"]
    assert all(i["finetune_seconds"] > 0 and i["finetune_cached"] == 0 for i in tuned)
    assert {t["target"] for t in table["targets"]} >= {"fine-tuned 1-shot mouth-opening correlation ≥ 0.8"}
    assert body["settings"]["source_span"] == 8 and body["settings"]["finetune_steps"] == 2
    again = run_evaluation([driver.path], setups, factory, max_frames=3, step=2, span=8).to_dict()
    assert ft.RUNS["runs"] == runs + 2  # the cache answered
    assert all(
        i["finetune_cached"] == 1
        for i in again["self_reenactment"]["items"]
        if i["variant"] != "feed-forward"
    )


def test_finetune_steps_need_the_neural_engine(capsys, monkeypatch, driver: Driver):
    ran = run_cli(
        ["evaluate", driver.path, "--engines", "warp", "--finetune-steps", 5, "-q"], capsys, monkeypatch
    )
    assert ran.code == 2
    assert "neural" in ran.err


def test_jobs_give_the_same_numbers_as_one_process(tmp_path: Path, driver: Driver):
    import shutil

    from animate_portrait.evaluation import RendererFactory, run_evaluation

    second = shutil.copy(driver.path, tmp_path / "again.mp4")
    clips = [driver.path, Path(second), tmp_path / "no_such.mp4"]
    setups = [Setup("warp", 1)]
    kw = {"max_frames": 3, "step": 2, "span": 4}
    one = run_evaluation(clips, setups, RendererFactory(128, "cpu"), **kw).to_dict()
    two = run_evaluation(clips, setups, RendererFactory(128, "cpu"), jobs=2, **kw).to_dict()
    assert one["self_reenactment"] == two["self_reenactment"]
    assert [s["clip"] for s in two["skipped"]] == [str(tmp_path / "no_such.mp4")]
    assert two["self_reenactment"]["rows"][0]["n"] == 2


def test_the_mouth_painter_is_evaluated_as_animate_uses_it_unless_no_mouth() -> None:
    from animate_portrait.engines.mouth import MouthFilled
    from animate_portrait.engines.warp import WarpRenderer
    from animate_portrait.evaluation.common import RendererFactory

    assert isinstance(RendererFactory(128, "cpu").make(Setup("warp")), MouthFilled)
    assert isinstance(RendererFactory(128, "cpu", mouth=False).make(Setup("warp")), WarpRenderer)


@pytest.mark.parametrize("interior, given", [("painted", False), ("driver", True)])
def test_self_reenactment_paints_the_clips_own_mouth_only_with_mouth_interior_driver(interior, given) -> None:
    from dataclasses import replace

    from animate_portrait import motion
    from animate_portrait.assets import demo_motion_path
    from animate_portrait.evaluation.common import RendererFactory
    from animate_portrait.evaluation.self_reenactment import Lead

    driving = motion.load_motion(demo_motion_path())
    factory = RendererFactory(128, "cpu", mouth_interior=interior, gaze=False)
    renderer = factory.make(Setup("warp"))
    lead = Lead.of(None, driving, 0, factory, renderer)
    frames = [3, 40, 41]
    mouths = lead.mouths(frames)
    assert bool(mouths) == given
    if given:
        np.testing.assert_array_equal(mouths["profiles"], driving.mouth[frames])
    assert Lead.of(None, replace(driving, mouth=None), 0, factory, renderer).mouths(frames) == {}
