"""`evaluate` end to end on the talking astronaut: rows, finite numbers, and warp really beating static."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import typer

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
        for key in ("psnr", "ssim", "perceptual", "landmark_error", "mouth_l1", "identity", "face_found"):
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
