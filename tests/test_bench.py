"""bench.py: the command prints numbers for every stage and for rendering in batches (no time limits)."""

from __future__ import annotations

import json

from cli_helpers import run_cli


def test_bench_reports_stages_floor_and_batched_render(capsys, monkeypatch) -> None:
    ran = run_cli(
        ["bench", "--engine", "warp", "--device", "cpu", "--max-frames", "8", "--json"], capsys, monkeypatch
    )
    assert ran.code == 0, ran.err
    result = json.loads(ran.out)
    assert result["frames"] == 8 and result["device"] == "cpu"
    stages = ["decode", "landmarks", "retarget", "render", "gaze", "detail", "paste_back", "encode"]
    assert list(result["ms_per_frame"]) == stages and all(v >= 0 for v in result["ms_per_frame"].values())
    assert result["end_to_end_fps"] > 0 and result["floor_ms_per_frame"] > 0 and result["ratio_to_floor"] > 0
    assert result["batched"]["fps"] > 0 and result["batched"]["portraits_per_pass"] == 1


def test_render_only_needs_no_ffmpeg_and_stacks_portraits(capsys, monkeypatch) -> None:
    import imageio_ffmpeg

    def no_ffmpeg():
        raise AssertionError("--render-only must not need ffmpeg")

    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", no_ffmpeg)
    args = ["bench", "--engine", "neural", "--device", "cpu", "--render-only", "--max-frames", "6"]
    ran = run_cli(
        [*args, "--group", "3", "--render-batch", "6", "--precision", "bf16", "--json"], capsys, monkeypatch
    )
    assert ran.code == 0, ran.err
    result = json.loads(ran.out)
    assert result["end_to_end_fps"] is None and result["ms_per_frame"]["render"] > 0
    batched = result["batched"]
    assert batched["portraits_per_pass"] == 3 and batched["images_per_pass"] == 6
    assert batched["precision"] == "bf16" and batched["fps"] > 0


def test_bad_precision_is_a_usage_error(capsys, monkeypatch) -> None:
    ran = run_cli(["bench", "--precision", "int4"], capsys, monkeypatch)
    assert ran.code == 2 and "--precision" in ran.err
