"""video.py against the real bundled ffmpeg: round trips, audio mux, atomic writes and every bad input."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from animate_portrait import video
from animate_portrait.errors import InputError
from animate_portrait.synthetic import tone
from conftest import sound_of


def _frames(img: np.ndarray, n: int, w: int, h: int) -> list[np.ndarray]:
    return [np.ascontiguousarray(img[i : i + h, 2 * i : 2 * i + w]) for i in range(n)]


def _write(path: Path, img: np.ndarray, n: int = 12, size=(128, 96), fps: float = 25, **kw) -> None:
    with video.VideoWriter(path, fps, size, **kw) as w:
        for f in _frames(img, n, *size):
            w.write(f)


def test_round_trip_frames_fps_and_quality(tmp_path, astronaut):
    out = tmp_path / "out.mp4"
    _write(out, astronaut, n=12, fps=24)
    info = video.probe(out)
    assert info.fps == 24 and info.size == (128, 96) and not info.has_audio
    frames = list(video.read_frames(out))
    assert len(frames) == 12 and frames[0].flags.writeable
    ref = _frames(astronaut, 12, 128, 96)
    err = np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(frames, ref, strict=True)])
    assert err < 4, err  # crf 18: close to the input
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temp file left behind


def test_max_frames_stops_early(tmp_path, astronaut):
    out = tmp_path / "out.mp4"
    _write(out, astronaut, n=12)
    assert len(list(video.read_frames(out, max_frames=5))) == 5


def test_odd_size_is_padded_by_one_replicated_pixel(tmp_path, astronaut):
    out = tmp_path / "odd.mp4"
    _write(out, astronaut, n=3, size=(101, 77))
    frame = next(iter(video.read_frames(out)))
    assert frame.shape == (78, 102, 3)
    assert np.abs(frame[:, -1].astype(int) - frame[:, -2]).mean() < 6  # replicated, not black


def test_ntsc_fps_kept_exact(tmp_path, astronaut):
    out = tmp_path / "ntsc.mp4"
    _write(out, astronaut, n=4, fps=30000 / 1001)
    assert video.probe(out).fps == pytest.approx(30000 / 1001, abs=1e-6)


@pytest.mark.parametrize("seconds", [2.0, 0.2])
def test_audio_is_muxed_and_cut_or_padded_to_the_video(tmp_path, astronaut, seconds):
    sound = tone(tmp_path / "tone.mp3", seconds)
    out = tmp_path / "talk.mp4"
    _write(out, astronaut, n=25, fps=25, audio_from=sound)
    info = video.probe(out)
    assert info.has_audio and info.audio_codec == "aac"
    assert len(list(video.read_frames(out))) == 25  # audio neither lengthens nor shortens the video
    log = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(out)], capture_output=True).stderr
    assert b"Duration: 00:00:01.0" in log


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_audio_fits_the_video_when_the_first_frame_comes_late(tmp_path, astronaut, suffix):
    """A model loading before its first frame: ffmpeg's -shortest used to flush the audio it had read in the
    meantime past the video's end (16 frames, 0.64 s, came out with 1.0 s of sound)."""
    sound = tone(tmp_path / "speech.m4a", 3.0, frequency=660)
    out = tmp_path / f"late{suffix}"
    with video.VideoWriter(out, 25, (128, 96), audio_from=sound) as writer:
        time.sleep(0.5)
        for frame in _frames(astronaut, 16, 128, 96):
            writer.write(frame)
    seconds, pitch = sound_of(out)
    assert seconds == pytest.approx(16 / 25, abs=0.03) and pitch == pytest.approx(660, abs=5)
    assert len(list(video.read_frames(out))) == 16
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, "speech.m4a"])  # no temp left
    if suffix == ".mp4":  # the index first (faststart), on the file the audio was muxed into
        data = out.read_bytes()
        assert data.find(b"moov") < data.find(b"mdat")


@pytest.mark.parametrize(
    ("suffix", "audio", "tolerance"),
    [(".webm", "opus", 5), (".mkv", "aac", 4), (".MOV", "aac", 4), (".gif", None, 8)],
)
def test_other_containers_round_trip_with_their_audio(tmp_path, astronaut, suffix, audio, tolerance):
    sound = tone(tmp_path / "tone.mp3", 1.0)
    out = tmp_path / f"talk{suffix}"
    _write(out, astronaut, n=12, fps=20, audio_from=sound)
    info = video.probe(out)
    assert info.size == (128, 96) and info.fps == 20
    assert info.audio_codec == audio  # GIF has no sound: none is muxed, and nothing fails
    frames = list(video.read_frames(out))
    assert len(frames) == 12
    ref = _frames(astronaut, 12, 128, 96)
    err = np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(frames, ref, strict=True)])
    assert err < tolerance, err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, "tone.mp3"])


def test_gif_keeps_a_colour_the_first_frame_lacks_close(tmp_path, astronaut):
    """The GIF's palette comes from its first frame: a later frame's new colour maps to the nearest."""
    first = np.full((64, 64, 3), (200, 160, 140), np.uint8)
    later = first.copy()
    later[20:40, 20:40] = (40, 10, 20)  # a dark mouth that opens later
    out = tmp_path / "mouth.gif"
    with video.VideoWriter(out, 10, (64, 64)) as w:
        w.write(first)
        w.write(later)
    got = list(video.read_frames(out))[-1]
    assert np.abs(got[25:35, 25:35].astype(int) - (40, 10, 20)).mean() < 60
    assert np.abs(got[:10].astype(int) - (200, 160, 140)).mean() < 8


def test_variable_rate_video_reads_at_its_own_length(tmp_path):
    """A phone's variable-rate video (here 30 fps for 1 s, then 10 fps for 1 s) must decode to its own
    duration at the probed fps, the rate the output is written at, or the output drifts from its audio."""
    vfr = tmp_path / "vfr.mp4"
    source = "-f lavfi -i testsrc2=size=64x64:rate=30:duration=2".split()
    keep = ["-vf", "select='if(lt(t,1),1,not(mod(n,3)))'", "-fps_mode", "vfr"]  # every 3rd frame after 1 s
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", *source, *keep, str(vfr)], check=True)
    info = video.probe(vfr)
    seconds = len(list(video.read_frames(vfr))) / info.fps
    assert abs(seconds - 2.0) < 0.1, (seconds, info.fps)  # decoded at its highest rate, it read as 2.7 s


def test_gif_frames_read_back_once_each_at_30_fps(tmp_path):
    """GIF stores 30 fps as 30/40/30 ms delays; reading it must not repeat frames to make a constant rate."""
    out = tmp_path / "thirty.gif"
    with video.VideoWriter(out, 30, (32, 32)) as w:
        for i in range(7):
            w.write(np.full((32, 32, 3), 34 * i, np.uint8))
    assert Image.open(out).n_frames == 7
    levels = [int(f[0, 0, 0]) for f in video.read_frames(out)]
    assert levels == sorted(set(levels)) and len(levels) == 7


@pytest.mark.parametrize("name", ["out.avi", "out", "out.tiff"])
def test_unknown_output_format_fails_before_any_work(tmp_path, name):
    with pytest.raises(InputError, match="unsupported output format") as err:
        video.VideoWriter(tmp_path / name, 25, (64, 64))
    assert name in str(err.value) and ".webm" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_gif_without_frames_or_interrupted_leaves_nothing(tmp_path, astronaut):
    out = tmp_path / "out.gif"
    with pytest.raises(InputError, match="no frames"), video.VideoWriter(out, 25, (128, 96)):
        pass
    with pytest.raises(KeyboardInterrupt), video.VideoWriter(out, 25, (128, 96)) as w:
        w.write(_frames(astronaut, 1, 128, 96)[0])
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_driver_without_audio_gives_silent_output(tmp_path, astronaut):
    silent = tmp_path / "silent.mp4"
    _write(silent, astronaut, n=3)
    out = tmp_path / "out.mp4"
    _write(out, astronaut, n=3, audio_from=silent)
    assert not video.probe(out).has_audio


def test_interrupted_write_leaves_no_file(tmp_path, astronaut):
    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt), video.VideoWriter(out, 25, (128, 96)) as w:
        w.write(_frames(astronaut, 1, 128, 96)[0])
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_wrong_frame_size_is_rejected_and_cleaned_up(tmp_path, astronaut):
    with pytest.raises(ValueError), video.VideoWriter(tmp_path / "o.mp4", 25, (128, 96)) as w:
        w.write(astronaut)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path, astronaut):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep me")
    with pytest.raises(InputError, match="already exists"):
        video.VideoWriter(out, 25, (128, 96))
    assert out.read_bytes() == b"keep me"
    _write(out, astronaut, n=2, overwrite=True)
    assert video.probe(out).size == (128, 96)


def test_missing_output_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        video.check_output(tmp_path / "nope" / "out.mp4", overwrite=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(InputError, match="not writable"):
        video.check_output(ro / "out.mp4", overwrite=False)


def test_missing_video(tmp_path):
    with pytest.raises(InputError, match="not found"):
        list(video.read_frames(tmp_path / "missing.mp4"))


def test_text_file_named_mp4(tmp_path):
    fake = tmp_path / "fake.mp4"
    fake.write_text("this is not a video\n")
    with pytest.raises(InputError, match="not a video") as e:
        video.probe(fake)
    assert "\n" not in str(e.value) and "fake.mp4" in str(e.value)


def test_image_is_not_a_video(tmp_path, astronaut):
    png = tmp_path / "face.png"
    Image.fromarray(astronaut).save(png)
    info = video.probe(png)  # ffmpeg reads a still as a one-frame video: that is fine, not an error
    assert info.size == (512, 512)


@pytest.mark.parametrize("faststart", [True, False])
def test_truncated_video(tmp_path, astronaut, faststart):
    good = tmp_path / "good.mp4"
    _write(good, astronaut, n=30)
    data = good.read_bytes()
    if not faststart:  # move the index to the end, as cameras do, so the cut removes it
        remuxed = tmp_path / "tail.mp4"
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(good), "-c", "copy", str(remuxed)]
        subprocess.run(cmd, check=True)
        data = remuxed.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or corrupt"):
        list(video.read_frames(cut))


def test_zero_frames(tmp_path):
    audio_only = tone(tmp_path / "only_audio.mp4", 0.5)
    with pytest.raises(InputError, match="no video stream"):
        list(video.read_frames(audio_only))


def test_read_image_exif_alpha_and_errors(tmp_path, astronaut):
    rgba = np.dstack([astronaut[:40, :60], np.full((40, 60), 128, np.uint8)])
    p = tmp_path / "a.png"
    Image.fromarray(rgba).save(p)
    assert video.read_image(p).shape == (40, 60, 3)
    jpg = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.fromarray(astronaut[:40, :60]).save(jpg, exif=exif)
    assert video.read_image(jpg).shape == (60, 40, 3)
    (tmp_path / "t.jpg").write_text("hello")
    with pytest.raises(InputError, match="not an image"):
        video.read_image(tmp_path / "t.jpg")
    with pytest.raises(InputError, match="not found"):
        video.read_image(tmp_path / "missing.jpg")
    half = tmp_path / "half.jpg"
    Image.fromarray(astronaut).save(half)
    half.write_bytes(half.read_bytes()[:2000])
    with pytest.raises(InputError, match="corrupt"):
        video.read_image(half)


# --- background threads ----------------------------------------------------------------------------------


def _threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name and t.is_alive()]


def test_background_queue_is_bounded_and_raises_the_threads_error():
    made = []

    def items():
        for i in range(100):
            made.append(i)
            if i == 50:
                raise InputError(Path("x.mp4"), "truncated or corrupt video")
            yield i

    got = video.in_background(items(), maxsize=4)
    assert next(got) == 0
    time.sleep(0.2)
    assert len(made) <= 1 + 4 + 2, "the thread ran ahead of the queue's bound"  # taken, queued, in hand
    with pytest.raises(InputError, match="truncated"):
        rest = list(got)
    assert not _threads("animate-portrait-reader")
    rest = list(video.in_background(iter(range(5)), maxsize=2))
    assert rest == [0, 1, 2, 3, 4]


def test_stopping_a_read_early_ends_its_thread_and_ffmpeg(tmp_path, astronaut):
    path = tmp_path / "v.mp4"
    _write(path, astronaut, n=40)
    frames = video.read_frames(path)
    first = [next(frames) for _ in range(2)]
    assert len(first) == 2 and _threads("animate-portrait-reader")
    frames.close()
    assert not _threads("animate-portrait-reader")
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
    if children.exists():  # Linux: no ffmpeg left running under us
        pids = children.read_text().split()
        assert not any(
            b"ffmpeg" in Path(f"/proc/{p}/cmdline").read_bytes() for p in pids if Path(f"/proc/{p}").exists()
        )


def test_encoder_dying_mid_video_is_a_clear_error_and_leaves_no_file(tmp_path, astronaut):
    out = tmp_path / "out.mp4"
    frame = _frames(astronaut, 1, 128, 96)[0]
    with pytest.raises(InputError, match="could not write the video"):
        with video.VideoWriter(out, 25, (128, 96)) as w:
            w.write(frame)
            w._proc.kill()  # what a crashed ffmpeg (or a full disk) looks like from here
            for _ in range(200):  # the thread notices at its next write; the error comes by the end
                w.write(frame)
    assert list(tmp_path.iterdir()) == []
    assert not _threads("animate-portrait-writer")


def test_sweep_removes_only_the_temp_files_of_the_given_outputs(tmp_path: Path) -> None:
    names = [video.temp_path(tmp_path / "a.mp4").name, ".b.mp4.0badc0de.tmp.mp4", "a.mp4", ".a.mp4.notes.txt"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    video.sweep_temp_files([tmp_path / "a.mp4", tmp_path / "missing" / "c.mp4"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:])


def test_check_audio_takes_any_file_with_sound_and_names_the_rest(tmp_path, astronaut):
    video.check_audio(tone(tmp_path / "speech.wav", 0.3))
    video.check_audio(tone(tmp_path / "speech.m4a", 0.3))
    silent = tmp_path / "silent.mp4"
    _write(silent, astronaut, n=3)
    text = tmp_path / "notes.wav"
    text.write_text("not a sound\n" * 10)
    for path, problem in (
        (silent, "has no audio stream"),
        (text, "not an audio or video file"),
        (tmp_path / "gone.wav", "file not found"),
    ):
        with pytest.raises(InputError, match=problem) as caught:
            video.check_audio(path)
        assert caught.value.path == path


def test_write_atomically_leaves_the_old_file_or_the_new_one_never_half(tmp_path):
    path = tmp_path / "talk.motion.npz"
    path.write_bytes(b"old")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt  # Ctrl-C in the middle of writing

    with pytest.raises(KeyboardInterrupt):
        video.write_atomically(path, half_then_fail)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == [path.name]
    video.write_atomically(path, lambda tmp: tmp.write_bytes(b"new"))
    assert path.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == [path.name]
