"""batch --ray: portraits as tasks on a real local Ray instance; real ffmpeg, real MP4s, no mocks."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from animate_portrait import motion, video
from animate_portrait.assets import demo_motion_path
from cli_helpers import run_cli

FAST = ["--max-frames", "3", "--size", "128", "--crop-only", "--json", "-q"]
HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="needs ray: pip install 'animate-portrait[ray]'")


def _copies(folder: Path, source: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(source, folder / name)) for name in names]


def _temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".")]


# --- without a cluster ----------------------------------------------------------------------------------


def test_without_ray_installed_ray_is_a_one_line_error(tmp_path):
    # sys.modules[name] = None is how Python marks a module as absent: `import ray` raises ImportError.
    code = (
        "import sys; sys.modules['ray'] = None; sys.argv = sys.argv[1:]; "
        "from animate_portrait.cli import main; main()"
    )
    out = tmp_path / "out"
    args = ["animate-portrait", "batch", "x.png", "--driver", str(demo_motion_path())]
    args += ["--output-dir", str(out), "--ray", "auto"]
    ran = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 1, ran.stderr
    assert ran.stderr.strip().count("\n") == 0 and "pip install 'animate-portrait[ray]'" in ran.stderr
    assert ran.stdout == "" and not out.exists()


def test_batch_without_ray_does_not_import_ray():
    code = (
        "import sys; from animate_portrait import batch, cli; cli._register_optional_commands(); "
        "assert 'ray' not in sys.modules and 'animate_portrait.ray_executor' not in sys.modules"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr


@pytest.mark.parametrize("extra", [["--jobs", "2"], ["--group", "4"]])
def test_ray_with_jobs_or_group_is_a_usage_error(extra, tmp_path, capsys, monkeypatch):
    args = ["batch", "x.png", "--driver", "d.npz", "--output-dir", tmp_path, "--ray", "auto", *extra]
    ran = run_cli(args, capsys, monkeypatch)
    assert ran.code == 2 and "--ray" in ran.err


@needs_ray
def test_no_head_at_the_address_fails_at_once(tmp_path, capsys, monkeypatch):
    with socket.socket() as free:  # a port that nothing listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    started = time.perf_counter()
    out = tmp_path / "out"
    args = [
        "batch",
        "x.png",
        "--driver",
        demo_motion_path(),
        "--output-dir",
        out,
        "--ray",
        f"127.0.0.1:{port}",
    ]
    ran = run_cli(args, capsys, monkeypatch)
    assert ran.code == 1 and f"127.0.0.1:{port}" in ran.err and "ray start --head" in ran.err
    assert time.perf_counter() - started < 15 and not out.exists()


# --- on a local Ray instance ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module: 2 CPUs, no dashboard, workers' output kept off our stdout."""
    if not HAS_RAY:
        pytest.skip("needs ray: pip install 'animate-portrait[ray]'")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_batch_renders_reports_like_the_other_paths_and_resumes(
    local_ray, tmp_path, astronaut_png: Path, capsys, monkeypatch
):
    portraits = _copies(tmp_path / "in", astronaut_png, ["a.png", "b.png"])
    bad = tmp_path / "in" / "notes.png"
    bad.write_text("not an image")
    listing = [*portraits, bad]
    out = tmp_path / "out"
    # --ray auto joins the instance this process already runs (the fixture's), and leaves it running.
    ran = run_cli(
        ["batch", *listing, "--driver", demo_motion_path(), "--output-dir", out, "--ray", "auto", *FAST],
        capsys,
        monkeypatch,
    )
    assert ran.code == 1, ran.err
    lines = {Path(line["source"]).name: line for line in ran.json_lines()}
    assert sorted(lines) == ["a.png", "b.png", "notes.png"]
    for name in ("a", "b"):
        line = lines[f"{name}.png"]
        assert line["status"] == "ok" and line["frames"] == 3 and line["output"] == str(out / f"{name}.mp4")
        frames = list(video.read_frames(out / f"{name}.mp4"))
        assert len(frames) == 3 and frames[0].shape == (128, 128, 3)
    failed = lines["notes.png"]
    assert failed["status"] == "error" and failed["output"] is None
    assert failed["error"].startswith(f"{bad}: ")  # the path as listed, one line
    assert not _temp_files(out) and local_ray.is_initialized()

    # The same listing in this process gives the same lines, but for the seconds.
    alone = run_cli(
        ["batch", *listing, "--driver", demo_motion_path(), "--output-dir", tmp_path / "alone", *FAST],
        capsys,
        monkeypatch,
    )
    same = {Path(line["source"]).name: line for line in alone.json_lines()}
    for name, line in lines.items():
        expected = {**same[name], "seconds": line["seconds"]}
        if expected["output"] is not None:
            expected["output"] = expected["output"].replace(str(tmp_path / "alone"), str(out))
        assert line == expected

    # --resume: the finished outputs are skipped untouched; the bad portrait is tried (and fails) again.
    before = {name: (out / f"{name}.mp4").read_bytes() for name in ("a", "b")}
    ran = run_cli(
        ["batch", *listing, "--driver", demo_motion_path(), "--output-dir", out, "--ray", "auto", "--resume"]
        + FAST,
        capsys,
        monkeypatch,
    )
    assert ran.code == 1, ran.err
    statuses = {Path(line["source"]).name: line["status"] for line in ran.json_lines()}
    assert statuses == {"a.png": "skipped", "b.png": "skipped", "notes.png": "error"}
    assert before == {name: (out / f"{name}.mp4").read_bytes() for name in ("a", "b")}


def _ray_render_workers() -> set[int]:
    """Ray worker processes running a portrait now: Ray titles them `ray::_render` while they do."""
    pids = set()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(b"ray::_render"):
                pids.add(int(proc.name))
        except OSError:  # gone meanwhile
            continue
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").is_file(), reason="finds Ray's workers in Linux's /proc")
def test_a_worker_killed_mid_portrait_is_retried_and_leaves_no_temp_file(
    local_ray, tmp_path, astronaut_png: Path
):
    # A longer driver (the demo motion, twice over) keeps the task busy until the kill.
    short = motion.load_motion(demo_motion_path())
    long_motion = short.looped(2 * short.n_frames)
    long_file = tmp_path / "long.npz"
    motion.save_motion(long_motion, long_file)
    [portrait] = _copies(tmp_path / "in", astronaut_png, ["a.png"])
    out = tmp_path / "out"
    address = local_ray.get_runtime_context().gcs_address  # the CLI, a separate process, joins it
    args = [sys.executable, "-m", "animate_portrait", "batch", portrait, "--driver", long_file]
    args += ["--output-dir", out, "--ray", address, "--size", "128", "--crop-only", "--json", "-q"]
    proc = subprocess.Popen([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and not (out.is_dir() and _temp_files(out)):
            time.sleep(0.05)
        assert out.is_dir() and _temp_files(out), "the worker should be writing by now"
        [worker] = _ray_render_workers()
        os.kill(worker, signal.SIGKILL)  # what the OOM killer does: no clean-up of any kind
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    [line] = [json.loads(text) for text in stdout.splitlines()]
    assert line["status"] == "ok" and line["frames"] == long_motion.n_frames
    assert len(list(video.read_frames(out / "a.mp4"))) == long_motion.n_frames
    assert not _temp_files(out), "the killed attempt's temp file is swept"
