"""Shared fixtures: generated images and datasets, and a corpus of the broken files users really have."""

from __future__ import annotations

import io
import itertools
import os
import struct
import tempfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.dataset.sample_data import generate_sample_dataset
from engine.training.config import TrainConfig
from engine.training.trainer import train


def pytest_configure(config: pytest.Config) -> None:
    """Keep the tests' caches, settings and user data out of the real user folders (platformdirs honours these)."""
    sandbox = tempfile.mkdtemp(prefix="transfer-studio-tests-")
    for variable in ("XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        os.environ[variable] = os.path.join(sandbox, variable.lower())


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty user cache folder for this test alone, for tests that count what the caches hold: the session's
    shared one holds whatever the tests before it (in any order) computed. platformdirs reads the variable on
    every call."""
    folder = tmp_path / "user-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))
    return folder


MakeImage = Callable[..., Path]
MakeDataset = Callable[..., Path]


def image_maker() -> MakeImage:
    """Write a small image; without ``color`` each call draws a different noise pattern (distinct bytes)."""
    seeds = itertools.count()

    def make(
        path: Path,
        size: tuple[int, int] = (24, 16),
        color: tuple[int, ...] | None = None,
        fmt: str | None = None,
        mode: str = "RGB",
        **save_options: object,
    ) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        if color is None:
            noise = np.random.default_rng(next(seeds)).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            image = Image.fromarray(noise).convert(mode)
        else:
            image = Image.new(mode, size, color)
        image.save(path, format=fmt, **save_options)
        return path

    return make


@pytest.fixture
def make_image() -> MakeImage:
    return image_maker()


@pytest.fixture
def make_dataset(make_image: MakeImage) -> MakeDataset:
    """Create ``root/<class>/<i>.png`` for ``{class: count}``, every file with distinct content."""

    def make(root: Path, counts: Mapping[str, int]) -> Path:
        for name, count in counts.items():
            (root / name).mkdir(parents=True, exist_ok=True)
            for index in range(count):
                make_image(root / name / f"{index:03d}.png")
        return root

    return make


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def decompression_bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose header claims a huge image; Pillow refuses it on open, before decoding."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00"))
        + png_chunk(b"IEND", b"")
    )


BadCorpus = dict[str, tuple[Path, bool]]


@pytest.fixture
def bad_corpus(tmp_path: Path, make_image: MakeImage) -> BadCorpus:
    """Awkward files, name -> (path, whether it must load). Each one either converts or is skipped."""
    return write_bad_corpus(tmp_path / "corpus", make_image)


@pytest.fixture(scope="session")
def write_bad_corpus_into() -> Callable[[Path], BadCorpus]:
    """The bad corpus written into any new folder, for fixtures broader than one test."""
    return lambda folder: write_bad_corpus(folder, image_maker())


def write_bad_corpus(folder: Path, make_image: MakeImage) -> BadCorpus:
    """Write the corpus into the new ``folder``; the intact images it is cut from go beside it."""
    folder.mkdir(parents=True)
    sources = folder.parent / f"{folder.name}-sources"
    corpus: BadCorpus = {}

    def add(name: str, data: bytes, loads: bool) -> None:
        (folder / name).write_bytes(data)
        corpus[name] = (folder / name, loads)

    add("zero_byte.jpg", b"", False)
    jpeg = make_image(sources / "source.jpg", size=(64, 48)).read_bytes()
    add("truncated.jpg", jpeg[: len(jpeg) // 2], False)
    png = make_image(sources / "source.png", size=(64, 48)).read_bytes()
    add("truncated.png", png[: len(png) // 2], False)
    add("text.jpg", b"these are not the pixels you are looking for\n" * 20, False)
    add("page.jpg", b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n", False)
    add("document.jpg", b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\ntrailer\n%%EOF\n", False)
    add("bomb.png", decompression_bomb_png(), False)
    add("png_named.jpg", png, True)
    line = io.BytesIO()
    Image.new("RGB", (100_000, 1), (90, 90, 90)).save(line, format="PNG")
    add("line.png", line.getvalue(), False)  # 100000:1 would need billions of pixels once resized

    make_image(folder / "one_pixel.png", size=(1, 1))
    corpus["one_pixel.png"] = (folder / "one_pixel.png", True)
    make_image(folder / "wide.png", size=(10_000, 40), color=(200, 30, 30))
    corpus["wide.png"] = (folder / "wide.png", True)

    make_image(folder / "cmyk.jpg", color=(0, 255, 255, 0), mode="CMYK")
    corpus["cmyk.jpg"] = (folder / "cmyk.jpg", True)
    ramp = np.linspace(0, 65535, 32 * 32).round().astype(np.uint16).reshape(32, 32)
    Image.fromarray(ramp).save(folder / "gray16.png")
    corpus["gray16.png"] = (folder / "gray16.png", True)
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * (254 * 3))
    palette.putpixel((0, 0), 0)
    palette.save(folder / "palette_alpha.png", transparency=0)
    corpus["palette_alpha.png"] = (folder / "palette_alpha.png", True)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    make_image(folder / "exif_rotated.jpg", size=(40, 20), exif=exif)
    corpus["exif_rotated.jpg"] = (folder / "exif_rotated.jpg", True)
    frames = [Image.new("RGB", (10, 10), color) for color in ((0, 0, 255), (0, 255, 0))]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    corpus["animated.gif"] = (folder / "animated.gif", True)
    return corpus


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes x 30 generated photos: enough for an honest held-out accuracy check."""
    return generate_sample_dataset(tmp_path_factory.mktemp("sample") / "data", classes=3, per_class=30, seed=1)


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 classes x 8 small images: fast runs for control-flow tests."""
    return generate_sample_dataset(tmp_path_factory.mktemp("small") / "data", classes=2, per_class=8, seed=2,
                                   image_size=96)


@pytest.fixture(scope="session")
def trained_run(sample_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One trained run for the session, read-only by convention: a test that writes into a run (export, evaluate,
    resume, damage) copies it first (shutil.copytree), so that no test depends on which ran before it."""
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    train(sample_data, run_dir, TrainConfig(epochs=2, batch_size=16, early_stopping=0))
    return run_dir


@pytest.fixture(scope="session")
def exported_model(trained_run: Path) -> Path:
    """The trained run's model.onnx, exported once per session (parity-checked against PyTorch): the one write
    into the shared run, always the same files."""
    path = trained_run / "model.onnx"
    if not path.is_file():
        from engine.export import export_onnx

        export_onnx(trained_run)
    return path


@pytest.fixture
def without_heatmaps() -> Callable[..., Path]:
    """``strip(model, target, heatmaps=None)``: ``model`` saved to ``target`` without its heatmap outputs, its
    metadata's ``heatmaps`` entry replaced by ``heatmaps`` (None: removed, as exported before heatmaps existed)."""
    import json

    import onnx

    from engine.onnx_metadata import CAM_WEIGHTS_OUTPUT, FEATURE_MAP_OUTPUT, METADATA_KEY

    def strip(model: Path, target: Path, heatmaps: dict | None = None) -> Path:
        proto = onnx.load(model)
        kept = [out for out in proto.graph.output if out.name not in (FEATURE_MAP_OUTPUT, CAM_WEIGHTS_OUTPUT)]
        del proto.graph.output[:]
        proto.graph.output.extend(kept)
        entry = next(prop for prop in proto.metadata_props if prop.key == METADATA_KEY)
        document = json.loads(entry.value)
        document.pop("heatmaps")
        if heatmaps is not None:
            document["heatmaps"] = heatmaps
        entry.value = json.dumps(document)
        onnx.save(proto, target)
        return target

    return strip
