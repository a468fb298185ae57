"""K-shot sources: --sources DIR, the same-person check (policy on synthetic descriptors, then real faces),
and memory: only the lead keeps its full picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from animate_portrait import video
from animate_portrait.errors import InputError
from animate_portrait.pipeline import Pipeline
from animate_portrait.sources import gather, images_in, same_person
from animate_portrait.types import RenderConfig
from cli_helpers import run_cli
from conftest import Driver

STRANGER = "FuxiVirtualHuman__styletalk__src_Obama_clip3.png"  # identity distance ≈ 0.96 to the astronaut


# --- the policy, on synthetic descriptors ---------------------------------------------------------------
def _people(*who: str, seed: int = 0) -> list[np.ndarray]:
    """One 128-d descriptor per letter: the same letter is the same person (≈0.2 apart), others ≈1.0."""
    rng = np.random.default_rng(seed)
    centres = {name: rng.normal(size=128) * (0.5 / np.sqrt(128)) * np.sqrt(2) for name in sorted(set(who))}
    return [centres[name] + rng.normal(size=128) * (0.1 / np.sqrt(128)) for name in who]


def test_one_person_keeps_everyone():
    verdict = same_person(_people(*"AAAAA"))
    assert verdict.reject is None and verdict.drop == ()
    assert verdict.distances.max() < 0.6


def test_single_source_is_not_checked():
    verdict = same_person(_people("A"))
    assert verdict.reject is None and verdict.drop == ()


def test_a_minority_of_strangers_is_dropped():
    verdict = same_person(_people(*"AABAC"))
    assert verdict.reject is None
    assert verdict.drop == (2, 4)
    assert (verdict.distances[[2, 4]] >= 0.6).all()


def test_a_stranger_as_the_lead_is_rejected():
    verdict = same_person(_people(*"BAAA"))
    assert verdict.reject == 0 and verdict.distances[0] >= 0.6


def test_two_different_people_name_the_second():
    verdict = same_person(_people(*"AB"))
    assert verdict.reject == 1


def test_no_clear_majority_is_rejected():
    assert same_person(_people(*"AABB")).reject is not None
    assert same_person(_people(*"ABC")).reject in (1, 2)


def test_a_missing_descriptor_counts_as_a_stranger():
    descriptors: list[np.ndarray | None] = list(_people(*"AAA"))
    descriptors.append(None)
    verdict = same_person(descriptors)
    assert verdict.drop == (3,) and np.isinf(verdict.distances[3])


# --- --sources DIR ------------------------------------------------------------------------------------
def test_images_in_folder_sorted_by_name(tmp_path: Path):
    for name in ("b.PNG", "a.jpg", "c.webp", "notes.txt", "d.bmp", "e.jpeg"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in images_in(tmp_path)] == ["a.jpg", "b.PNG", "c.webp", "d.bmp", "e.jpeg"]
    lead = tmp_path / "e.jpeg"
    assert [p.name for p in gather([lead], tmp_path)] == ["e.jpeg", "a.jpg", "b.PNG", "c.webp", "d.bmp"]


def test_empty_folder_is_an_error(tmp_path: Path):
    with pytest.raises(InputError, match="no images found") as err:
        images_in(tmp_path)
    assert err.value.path == tmp_path


def test_cli_empty_sources_folder(tmp_path: Path, driver: Driver, capsys, monkeypatch):
    empty = tmp_path / "nobody_here"
    empty.mkdir()
    out = tmp_path / "out.mp4"
    ran = run_cli(["--sources", empty, "--driver", driver.path, "-o", out], capsys, monkeypatch)
    assert ran.code == 1
    message = ran.err.strip()
    assert len(message.splitlines()) == 1 and "nobody_here" in message and "no images found" in message
    assert not out.exists()


# --- real faces ---------------------------------------------------------------------------------------
def _save(image: np.ndarray, path: Path) -> Path:
    Image.fromarray(np.ascontiguousarray(image)).save(path)
    return path


@pytest.fixture(scope="module")
def same_folder(tmp_path_factory, astronaut: np.ndarray) -> Path:
    """The astronaut twice: as is, and flipped horizontally (identity distance ≈ 0.2)."""
    folder = tmp_path_factory.mktemp("same")
    _save(astronaut, folder / "a_astronaut.png")
    _save(astronaut[:, ::-1], folder / "b_flipped.jpg")
    return folder


def test_only_the_lead_keeps_its_picture(same_folder: Path, astronaut: np.ndarray):
    pipeline = Pipeline(RenderConfig(size=128))
    warnings: list[str] = []
    lead, other = pipeline.load_sources(images_in(same_folder), warnings.append)
    assert not warnings
    assert lead.image.shape == astronaut.shape
    assert other.image.shape == (128, 128, 3) and other.image is other.face  # the crop, no copy


def test_same_person_renders_with_neural(
    tmp_path: Path, same_folder: Path, driver: Driver, capsys, monkeypatch
):
    out = tmp_path / "k2.mp4"
    args = ["--sources", same_folder, "--driver", driver.path, "-o", out, "--engine", "neural"]
    ran = run_cli([*args, "--max-frames", 3, "--crop-only", "--size", 128, "--json"], capsys, monkeypatch)
    assert ran.code == 0, ran.err
    assert "not the same person" not in ran.err
    frames = list(video.read_frames(out))
    assert len(frames) == 3 and frames[0].shape == (128, 128, 3)


@pytest.mark.slow
def test_eight_sources_render_with_neural(
    tmp_path: Path, astronaut: np.ndarray, driver: Driver, capsys, monkeypatch
):
    folder = tmp_path / "eight"
    folder.mkdir()
    for i in range(8):
        _save(astronaut, folder / f"astronaut_{i}.png")
    out = tmp_path / "k8.mp4"
    args = ["--sources", folder, "--driver", driver.path, "-o", out, "--engine", "neural", "--max-frames", 3]
    ran = run_cli([*args, "--crop-only", "--size", 128, "-q"], capsys, monkeypatch)
    assert ran.code == 0, ran.err
    assert len(list(video.read_frames(out))) == 3


@pytest.fixture
def stranger(shared_data: Path) -> Path:
    path = shared_data / "portraits" / STRANGER
    if not path.is_file():
        pytest.skip(f"needs {path}")
    return path


@pytest.mark.shared
def test_a_different_face_is_an_error(
    tmp_path: Path, astronaut_png: Path, stranger: Path, driver, capsys, monkeypatch
):
    out = tmp_path / "out.mp4"
    ran = run_cli([astronaut_png, stranger, "--driver", driver.path, "-o", out], capsys, monkeypatch)
    assert ran.code == 1
    message = ran.err.strip()
    assert len(message.splitlines()) == 1, message
    assert STRANGER in message and "not the same person" in message and "≥ 0.6" in message
    assert not out.exists()


@pytest.mark.shared
def test_a_minority_stranger_is_left_out_with_a_warning(
    tmp_path: Path,
    astronaut: np.ndarray,
    same_folder: Path,
    stranger: Path,
    driver: Driver,
    capsys,
    monkeypatch,
):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for image in same_folder.iterdir():
        (folder / image.name).write_bytes(image.read_bytes())
    _save(np.asarray(Image.fromarray(astronaut).resize((420, 420), Image.LANCZOS)), folder / "c_scaled.png")
    (folder / f"d_{STRANGER}").write_bytes(stranger.read_bytes())
    out = tmp_path / "out.mp4"
    ran = run_cli(
        [
            "--sources",
            folder,
            "--driver",
            driver.path,
            "-o",
            out,
            "--max-frames",
            3,
            "--crop-only",
            "--size",
            128,
        ],
        capsys,
        monkeypatch,
    )
    assert ran.code == 0, ran.err
    warned = [line for line in ran.err.splitlines() if "not the same person" in line]
    assert len(warned) == 1 and STRANGER in warned[0] and "left out" in warned[0]
    assert len(list(video.read_frames(out))) == 3


def test_cli_no_source_at_all(tmp_path: Path, driver: Driver, capsys, monkeypatch):
    ran = run_cli(["--driver", driver.path, "-o", tmp_path / "out.mp4"], capsys, monkeypatch)
    assert ran.code == 1 and "--sources" in ran.err


# --- K = 4 slightly different photos of one face must not flicker between them ------------------------
def _temporal(frames: np.ndarray) -> tuple[float, float]:
    """Mean |x[t+1] − x[t]| (change) and mean |x[t+1] − 2x[t] + x[t−1]| (jitter) over frames, 0–255."""
    f = frames.astype(np.float32)
    return float(np.abs(np.diff(f, axis=0)).mean()), float(np.abs(f[2:] - 2 * f[1:-1] + f[:-2]).mean())


@pytest.mark.slow
def test_four_crops_of_one_face_do_not_flicker(tmp_path: Path, astronaut: np.ndarray, driver: Driver):
    """The shipped weights, K = 4 shifted and scaled crops of the same photo, the talking astronaut as the
    driver: the K = 4 output changes from frame to frame no more than each 1-shot output does. As a
    control, a video that switches source every frame (what flicker between sources would look like)
    does show up in the same measure."""
    boxes = [(0, 0, 512, 512), (16, 8, 512, 504), (0, 24, 488, 512), (24, 0, 512, 488)]  # x0, y0, x1, y1
    paths = []
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        crop = Image.fromarray(astronaut[y0:y1, x0:x1]).resize((512, 512), Image.LANCZOS)
        paths.append(_save(np.asarray(crop), tmp_path / f"crop{i}.png"))
    pipeline = Pipeline(RenderConfig(engine="neural", crop_only=True, size=256, device="cpu", max_frames=12))
    driving = pipeline.analyse(driver.path)
    sources = pipeline.load_sources(paths)
    assert len(sources) == 4 and len({s.points.tobytes() for s in sources}) == 4  # four different inputs

    def render(srcs) -> np.ndarray:
        return np.stack(list(pipeline.render_frames(srcs, driving)))

    four = render(sources)
    singles = [render([s]) for s in sources]
    switching = np.stack([singles[t % 4][t] for t in range(len(four))])
    change, jitter = _temporal(four)
    most = np.max([_temporal(s) for s in singles], axis=0)
    assert change <= 1.05 * most[0] and jitter <= 1.05 * most[1], (change, jitter, most)
    flicker = _temporal(switching)
    assert flicker[0] > 1.2 * most[0] and flicker[1] > 1.2 * most[1], (flicker, most)  # the measure sees it
