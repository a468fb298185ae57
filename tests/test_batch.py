"""batch at scale: shards, --resume, --jobs worker processes, Ctrl-C. Real files, real ffmpeg, no mocks."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from animate_portrait import motion, video
from animate_portrait.batch import Shard, output_names, shard_of
from animate_portrait.pipeline import Pipeline
from animate_portrait.types import RenderConfig
from cli_helpers import run_cli
from conftest import Driver

FAST = ["--max-frames", "3", "--size", "128", "--crop-only", "--json"]


@pytest.fixture(scope="module")
def motion_file(tmp_path_factory, driver: Driver) -> Path:
    """The driver analysed once for the whole module, so each batch below starts at rendering."""
    path = tmp_path_factory.mktemp("motion") / "talk.npz"
    motion.save_motion(Pipeline(RenderConfig()).analyse(driver.path), path)
    return path


def _copies(folder: Path, source: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(source, folder / name)) for name in names]


def _temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".")]


# --- shards ---------------------------------------------------------------------------------------------


def test_shards_are_disjoint_cover_the_list_and_stay_put_when_it_grows():
    listing = [Path(f"portraits/{i:04d}.jpg") for i in range(400)]
    for count in (1, 3, 4):
        shards = [{p for p in listing if Shard(i, count).holds(p)} for i in range(count)]
        assert sum(len(s) for s in shards) == len(listing)  # disjoint ...
        assert set().union(*shards) == set(listing)  # ... and covering
        if count > 1:
            assert min(len(s) for s in shards) > len(listing) / count / 2  # roughly even
    grown = [Path(f"new/{i}.png") for i in range(100)] + listing  # new portraits, earlier in the list
    assert all(shard_of(p, 4) == shard_of(q, 4) for p, q in zip(listing, grown[100:], strict=True))


def test_shard_is_a_fixed_function_of_the_path():
    # A scheduler on another machine or language can reproduce it: sha1(path) as an integer, modulo n.
    import hashlib

    path = Path("portraits/mona_lisa.jpg")
    expected = int(hashlib.sha1(b"portraits/mona_lisa.jpg").hexdigest(), 16) % 7
    assert shard_of(path, 7) == expected
    assert shard_of(Path("./portraits/mona_lisa.jpg"), 7) == expected  # the same path, written differently


@pytest.mark.parametrize("text", ["4/4", "5/4", "-1/4", "0/0", "1", "a/b", "1/2/3", ""])
def test_bad_shard_is_a_usage_error(text, tmp_path, capsys, monkeypatch):
    with pytest.raises(ValueError):
        Shard.parse(text)
    args = ["batch", "x.jpg", "--driver", "d.mp4", "--output-dir", tmp_path, "--shard", text]
    ran = run_cli(args, capsys, monkeypatch)
    assert ran.code == 2 and "--shard" in ran.err


def test_shards_of_one_listing_split_the_work(tmp_path, motion_file: Path, capsys, monkeypatch):
    # Missing files fail at once, without rendering: enough to see which portraits each shard took.
    listing = [tmp_path / f"missing_{i}.jpg" for i in range(12)]
    seen = []
    for index in range(3):
        ran = run_cli(
            ["batch", *listing, "--driver", motion_file, "--output-dir", tmp_path / "out"]
            + ["--shard", f"{index}/3", "--json", "-q"],
            capsys,
            monkeypatch,
        )
        lines = ran.json_lines()
        assert all(line["status"] == "error" for line in lines)
        assert ran.code == (1 if lines else 0)
        seen.append({line["source"] for line in lines})
    assert sum(len(s) for s in seen) == len(listing)
    assert set().union(*seen) == {str(p) for p in listing}


def test_output_names_do_not_depend_on_the_shard(tmp_path):
    # Two portraits with one stem get hashed names from the whole listing, whichever shard renders them.
    listing = [Path("a/face.jpg"), Path("b/face.jpg"), Path("c/other.jpg")]
    names = output_names(listing, tmp_path)
    assert names[0] != names[1] and names[2] == tmp_path / "other.mp4"
    assert output_names(listing, tmp_path) == names


# --- resume ---------------------------------------------------------------------------------------------


def test_resume_skips_finished_outputs_and_renders_the_rest(
    tmp_path, motion_file: Path, astronaut_png: Path, capsys, monkeypatch
):
    done, todo, broken = _copies(tmp_path / "in", astronaut_png, ["done.png", "todo.png", "broken.png"])
    out = tmp_path / "out"
    out.mkdir()
    with video.VideoWriter(out / "done.mp4", 10, (64, 64)) as writer:  # a finished output from a past run
        writer.write(np.zeros((64, 64, 3), np.uint8))
    before = (out / "done.mp4").read_bytes()
    (out / "broken.mp4").write_text("left here by something else")  # exists, but is no video
    ran = run_cli(
        ["batch", done, todo, broken, "--driver", motion_file, "--output-dir", out, "--resume", *FAST],
        capsys,
        monkeypatch,
    )
    assert ran.code == 0, ran.err
    lines = {Path(line["source"]).name: line for line in ran.json_lines()}
    assert lines["done.png"]["status"] == "skipped" and lines["done.png"]["output"] == str(out / "done.mp4")
    assert (out / "done.mp4").read_bytes() == before
    for name in ("todo", "broken"):
        assert lines[f"{name}.png"]["status"] == "ok" and lines[f"{name}.png"]["frames"] == 3
        assert len(list(video.read_frames(out / f"{name}.mp4"))) == 3
    assert all("seconds" in line for line in lines.values())

    # A second run has nothing left to do (and does not even read the driver).
    ran = run_cli(
        ["batch", done, todo, broken, "--driver", tmp_path / "gone.mp4", "--output-dir", out, "--resume"]
        + FAST,
        capsys,
        monkeypatch,
    )
    assert ran.code == 0, ran.err
    assert [line["status"] for line in ran.json_lines()] == ["skipped"] * 3


def test_format_names_the_outputs_container(
    tmp_path, motion_file: Path, astronaut_png: Path, capsys, monkeypatch
):
    (portrait,) = _copies(tmp_path / "in", astronaut_png, ["face.png"])
    out = tmp_path / "out"
    ran = run_cli(
        ["batch", portrait, "--driver", motion_file, "--output-dir", out, "--format", "GIF", *FAST],
        capsys,
        monkeypatch,
    )
    assert ran.code == 0, ran.err
    assert ran.json_lines()[0]["output"] == str(out / "face.gif")
    assert len(list(video.read_frames(out / "face.gif"))) == 3
    ran = run_cli(
        ["batch", portrait, "--driver", motion_file, "--output-dir", out, "--format", "avi"],
        capsys,
        monkeypatch,
    )
    assert ran.code == 2 and "--format" in ran.err and not list(out.glob("*.avi"))


def test_audio_gives_every_output_that_soundtrack(
    tmp_path, motion_file: Path, astronaut_png: Path, capsys, monkeypatch
):
    from animate_portrait.synthetic import tone

    portraits = _copies(tmp_path / "in", astronaut_png, ["a.png", "b.png"])
    out = tmp_path / "out"
    args = ["batch", *portraits, "--driver", motion_file, "--output-dir", out, *FAST]
    ran = run_cli([*args, "--audio", tmp_path / "gone.wav"], capsys, monkeypatch)
    assert ran.code == 1 and "gone.wav" in ran.err and not out.exists()  # checked before any portrait
    ran = run_cli([*args, "--audio", tone(tmp_path / "speech.wav", 2.0)], capsys, monkeypatch)
    assert ran.code == 0, ran.err
    assert [line["status"] for line in ran.json_lines()] == ["ok", "ok"]
    assert all(video.probe(out / f"{name}.mp4").audio_codec == "aac" for name in "ab")


def test_side_by_side_in_a_group(tmp_path, motion_file: Path, astronaut_png: Path, capsys, monkeypatch):
    """Portraits rendered together (group.py) get the driver's panel too: twice the crop's width."""
    portraits = _copies(tmp_path / "in", astronaut_png, ["a.png", "b.png"])
    out = tmp_path / "out"
    args = ["batch", *portraits, "--driver", motion_file, "--output-dir", out, "--group", "2", *FAST]
    ran = run_cli([*args, "--side-by-side"], capsys, monkeypatch)
    assert ran.code == 0, ran.err
    for name in "ab":
        frames = list(video.read_frames(out / f"{name}.mp4"))
        assert len(frames) == 3 and frames[0].shape == (128, 256, 3)


def test_faces_all_in_a_batch(
    tmp_path, motion_file: Path, astronaut, astronaut_png: Path, capsys, monkeypatch
):
    pair = tmp_path / "in" / "pair.png"
    pair.parent.mkdir()
    Image.fromarray(np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)).save(pair)
    out = tmp_path / "out"
    args = ["batch", pair, astronaut_png, "--driver", motion_file, "--output-dir", out, "--faces", "all"]
    ran = run_cli([*args, "--max-frames", "3", "--json"], capsys, monkeypatch)
    assert ran.code == 0, ran.err
    faces = {Path(line["source"]).name: line["faces"] for line in ran.json_lines()}
    assert faces == {"pair.png": 2, "astronaut.png": 1}
    assert video.probe(out / "pair.mp4").size == (1024, 512)
    tuned = [*args, "--engine", "neural", "--finetune-steps", "5", "--overwrite"]
    ran = run_cli(tuned, capsys, monkeypatch)
    assert ran.code == 2 and "--faces all" in ran.err


def test_a_video_in_the_listing_is_dubbed(
    tmp_path, motion_file: Path, astronaut, astronaut_png, capsys, monkeypatch
):
    clip = tmp_path / "in" / "clip.mp4"
    clip.parent.mkdir()
    with video.VideoWriter(clip, 12, (512, 512)) as writer:  # the astronaut, sliding sideways
        for shift in (0, 4, 8, 4):
            writer.write(np.ascontiguousarray(np.roll(astronaut, shift, axis=1)))
    out = tmp_path / "out"
    args = ["batch", clip, astronaut_png, "--driver", motion_file, "--output-dir", out, "--max-frames", "3"]
    ran = run_cli([*args, "--json"], capsys, monkeypatch)
    assert ran.code == 0, ran.err
    lines = {Path(line["source"]).name: line for line in ran.json_lines()}
    assert lines["clip.mp4"]["status"] == "ok" and lines["clip.mp4"]["frames"] == 3
    assert video.probe(out / "clip.mp4").size == (512, 512) and (out / "astronaut.mp4").is_file()
    for bad, why in ((["--region", "pose"], "own head pose"), (["--absolute"], "expression change")):
        ran = run_cli([*args, *bad, "--overwrite", "--json"], capsys, monkeypatch)
        lines = {Path(line["source"]).name: line for line in ran.json_lines()}
        assert ran.code == 1 and lines["clip.mp4"]["status"] == "error"
        assert why in lines["clip.mp4"]["error"] and bad[0] in lines["clip.mp4"]["error"]
        assert lines["astronaut.png"]["status"] == "ok"  # the bad one fails alone


def test_resume_and_overwrite_together_is_a_usage_error(tmp_path, capsys, monkeypatch):
    ran = run_cli(
        ["batch", "x.jpg", "--driver", "d.mp4", "--output-dir", tmp_path, "--resume", "--overwrite"],
        capsys,
        monkeypatch,
    )
    assert ran.code == 2


# --- worker processes -----------------------------------------------------------------------------------


def test_jobs_render_in_worker_processes_and_go_on_after_a_bad_portrait(
    tmp_path, motion_file: Path, astronaut_png: Path, capsys, monkeypatch
):
    portraits = _copies(tmp_path / "in", astronaut_png, ["a.png", "b.png", "c.png"])
    bad = tmp_path / "in" / "notes.jpg"
    bad.write_text("not an image")
    out = tmp_path / "out"
    ran = run_cli(
        ["batch", *portraits, bad, "--driver", motion_file, "--output-dir", out, "--jobs", "2", *FAST],
        capsys,
        monkeypatch,
    )
    assert ran.code == 1, ran.err
    lines = {Path(line["source"]).name: line for line in ran.json_lines()}
    assert sorted(lines) == ["a.png", "b.png", "c.png", "notes.jpg"]
    for name in ("a", "b", "c"):
        line = lines[f"{name}.png"]
        assert line["status"] == "ok" and line["frames"] == 3 and line["output"] == str(out / f"{name}.mp4")
        frames = list(video.read_frames(out / f"{name}.mp4"))
        assert len(frames) == 3 and frames[0].shape == (128, 128, 3)
    assert lines["notes.jpg"]["status"] == "error" and "notes.jpg" in lines["notes.jpg"]["error"]
    assert lines["notes.jpg"]["output"] is None
    assert all(line["seconds"] > 0 for line in lines.values())
    assert not _temp_files(out)


def _workers(pid: int) -> set[int]:
    """The pool's worker processes among `pid`'s children (not multiprocessing's resource tracker)."""
    children = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        children |= {int(c) for c in (task / "children").read_text().split()}
    return {c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()}


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads worker pids from Linux's /proc")
@pytest.mark.parametrize(("stop", "code"), [("ctrl-c", 130), ("sigterm", 143)])
def test_ctrl_c_stops_the_workers_and_leaves_no_partial_file(
    tmp_path, motion_file: Path, astronaut_png: Path, stop, code
):
    """Ctrl-C reaches the whole process group; a scheduler's SIGTERM reaches the batch process alone,
    which stops its workers. Either way nothing is left behind."""
    # A long driver (the short one's motion, 200 times over) keeps both workers busy until the Ctrl-C.
    short = motion.load_motion(motion_file)
    long_motion = short.looped(200 * short.n_frames)
    long_file = tmp_path / "long.npz"
    motion.save_motion(long_motion, long_file)
    portraits = _copies(tmp_path / "in", astronaut_png, ["a.png", "b.png"])
    out = tmp_path / "out"
    args = [sys.executable, "-m", "animate_portrait", "batch", *portraits]
    args += ["--driver", long_file, "--output-dir", out, "--jobs", "2", "--json"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    proc = subprocess.Popen([str(a) for a in args], start_new_session=True, **pipes)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(_temp_files(out) if out.is_dir() else []) < 2:
            time.sleep(0.1)
        assert len(_temp_files(out)) == 2, "both workers should be writing by now"
        workers = _workers(proc.pid)
        if stop == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
        else:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert not list(out.iterdir()), "partial or temp files left behind"
    assert len(workers) == 2 and not any(Path(f"/proc/{pid}").exists() for pid in workers)


# --- several portraits per forward pass (--group) and torch threads (--threads) ---------------------------


def test_group_renders_portraits_together_and_goes_on_after_a_bad_one(
    tmp_path, motion_file: Path, astronaut_png: Path, capsys, monkeypatch
):
    from test_engines_neural import tiny_weights

    tiny = tiny_weights(tmp_path)
    portraits = _copies(tmp_path / "in", astronaut_png, ["a.png", "b.png", "c.png"])
    bad = tmp_path / "in" / "notes.jpg"
    bad.write_text("not an image")
    neural = ["--engine", "neural", "--weights", tiny, *FAST]
    outs = {}
    for group in ("3", "1"):
        out = outs[group] = tmp_path / f"out{group}"
        args = ["batch", *portraits, bad, "--driver", motion_file, "--output-dir", out, "--group", group]
        threads = torch.get_num_threads()
        try:  # --threads without --jobs sets this process's torch threads: give them back after
            ran = run_cli([*args, "--threads", "1", *neural], capsys, monkeypatch)
            assert torch.get_num_threads() == 1
        finally:
            torch.set_num_threads(threads)
        assert ran.code == 1, ran.err
        lines = {Path(line["source"]).name: line for line in ran.json_lines()}
        assert [lines[n]["status"] for n in ("a.png", "b.png", "c.png", "notes.jpg")] == ["ok"] * 3 + [
            "error"
        ]
        assert "notes.jpg" in lines["notes.jpg"]["error"] and lines["a.png"]["frames"] == 3
        assert not _temp_files(out)
    for name in ("a", "b", "c"):
        together = np.stack(list(video.read_frames(outs["3"] / f"{name}.mp4"))).astype(np.int16)
        alone = np.stack(list(video.read_frames(outs["1"] / f"{name}.mp4"))).astype(np.int16)
        assert together.shape == (3, 128, 128, 3) and np.abs(together - alone).mean() < 0.05
