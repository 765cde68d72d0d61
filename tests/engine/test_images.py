from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.images import (
    ImageLoadError,
    center_crop_array,
    decode_for_cache,
    is_image_path,
    load_rgb,
    normalize_crop,
    preprocess_for_model,
    resize_shorter_side,
)
from engine.preprocessing import Preprocessing

PREPROCESSING = Preprocessing(resize=32, crop=28, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))

EXPECTED_REASONS = {
    "zero_byte.jpg": "empty file",
    "truncated.jpg": "truncated",
    "truncated.png": "truncated",
    "text.jpg": "not an image",
    "page.jpg": "not an image",
    "document.jpg": "not an image",
    "line.png": "extreme aspect ratio",
    "bomb.png": "decompression-bomb",
}


def test_every_corpus_file_converts_or_fails_with_its_reason(bad_corpus):
    for name, (path, loads) in bad_corpus.items():
        if loads:
            image = load_rgb(path)
            assert image.mode == "RGB", name
        else:
            with pytest.raises(ImageLoadError) as caught:
                load_rgb(path)
            assert EXPECTED_REASONS[name] in caught.value.reason, (name, caught.value.reason)
            assert caught.value.path == str(path)


def test_16_bit_grayscale_is_scaled_not_clipped(bad_corpus):
    pixels = np.asarray(load_rgb(bad_corpus["gray16.png"][0]))
    assert pixels[0, 0].tolist() == [0, 0, 0]
    assert pixels[-1, -1].tolist() == [255, 255, 255]
    assert 120 <= pixels[16, 0, 0] <= 135  # the middle of the 0..65535 ramp; clipping would give 255


def test_cmyk_jpeg_becomes_rgb(bad_corpus):
    red = np.asarray(load_rgb(bad_corpus["cmyk.jpg"][0]))[5, 5].astype(int)
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


def test_transparent_palette_pixels_become_white(bad_corpus):
    pixels = np.asarray(load_rgb(bad_corpus["palette_alpha.png"][0]))
    assert pixels[0, 0].tolist() == [255, 255, 255]
    assert pixels[1, 1].tolist() == [255, 0, 0]


def test_exif_orientation_is_applied(bad_corpus):
    assert load_rgb(bad_corpus["exif_rotated.jpg"][0]).size == (20, 40)


def test_animation_gives_its_first_frame(bad_corpus):
    assert np.asarray(load_rgb(bad_corpus["animated.gif"][0]))[0, 0].tolist() == [0, 0, 255]


def test_content_wins_over_extension(bad_corpus):
    assert load_rgb(bad_corpus["png_named.jpg"][0]).size == (64, 48)


def test_missing_file_and_folder_are_load_errors(tmp_path: Path):
    with pytest.raises(ImageLoadError, match="not found"):
        load_rgb(tmp_path / "gone.jpg")
    with pytest.raises(ImageLoadError, match="folder"):
        load_rgb(tmp_path)


def test_image_extensions_are_case_insensitive():
    assert is_image_path(Path("a/B.JPG")) and is_image_path(Path("c.TiFf")) and is_image_path(Path("d.webp"))
    assert not is_image_path(Path("notes.txt")) and not is_image_path(Path("jpg"))


def test_decode_for_cache_resizes_the_shorter_side(make_image, tmp_path: Path):
    pixels = decode_for_cache(make_image(tmp_path / "wide.png", size=(100, 50)), PREPROCESSING)
    assert pixels.dtype == np.uint8 and pixels.shape == (32, 64, 3)


def test_model_input_is_normalised_chw(make_image, tmp_path: Path):
    path = make_image(tmp_path / "gray.png", size=(40, 40), color=(128, 128, 128))
    tensor = preprocess_for_model(path, PREPROCESSING)
    assert tensor.shape == (3, 28, 28) and tensor.dtype == np.float32
    np.testing.assert_allclose(tensor, (128 / 255 - 0.5) / 0.25, atol=1e-6)


@pytest.mark.parametrize("crop", [12, 20])  # 20: the 16 x 16 image is padded with zeros first
def test_normalisation_table_gives_the_arithmetic_bit_for_bit(crop: int):
    """Training-side crops compute (value / 255 - mean) / std in float32: the predictor's table must agree exactly."""
    pixels = np.stack([np.arange(256, dtype=np.uint8).reshape(16, 16), np.full((16, 16), 7, np.uint8),
                       np.arange(255, -1, -1, dtype=np.uint8).reshape(16, 16)], axis=-1)  # every value per channel
    preprocessing = Preprocessing(resize=16, crop=crop, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    scaled = center_crop_array(pixels, crop).astype(np.float32) / 255.0
    expected = ((scaled - np.float32(preprocessing.mean)) / np.float32(preprocessing.std)).transpose(2, 0, 1)
    normalized = normalize_crop(pixels, preprocessing)
    assert normalized.dtype == np.float32 and normalized.flags.c_contiguous and normalized.shape == (3, crop, crop)
    assert np.array_equal(normalized.view(np.uint32), np.ascontiguousarray(expected).view(np.uint32))


def test_grayscale_and_alpha_modes_become_rgb(tmp_path: Path):
    Image.new("L", (4, 4), 77).save(tmp_path / "gray.png")
    Image.new("RGBA", (4, 4), (0, 0, 255, 0)).save(tmp_path / "clear.png")
    assert np.asarray(load_rgb(tmp_path / "gray.png"))[0, 0].tolist() == [77, 77, 77]
    assert np.asarray(load_rgb(tmp_path / "clear.png"))[0, 0].tolist() == [255, 255, 255]


def _photo(path: Path, size: tuple[int, int], **save_options: object) -> Path:
    """A real photo (scikit-image's astronaut) enlarged to phone-camera size, saved as JPEG."""
    from skimage import data

    Image.fromarray(data.astronaut()).resize(size, Image.Resampling.BICUBIC).save(path, quality=90, **save_options)
    return path


def test_big_jpeg_is_decoded_at_reduced_scale_with_practically_the_same_pixels(tmp_path: Path):
    path = _photo(tmp_path / "big.jpg", (2048, 1536))
    preprocessing = Preprocessing(resize=256, crop=224, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bicubic")
    assert load_rgb(path, at_least=512).size == (1024, 768)  # the largest DCT scale that keeps >= 512
    full = np.asarray(resize_shorter_side(load_rgb(path), 256, "bicubic"), dtype=np.int16)
    fast = decode_for_cache(path, preprocessing).astype(np.int16)
    assert fast.shape == full.shape == (256, 341, 3)
    difference = np.abs(fast - full)
    assert difference.mean() < 0.5 and difference.max() <= 8


def test_small_jpegs_and_other_formats_are_decoded_in_full(tmp_path: Path):
    small = _photo(tmp_path / "small.jpg", (600, 400))
    png = tmp_path / "big.png"
    Image.open(_photo(tmp_path / "source.jpg", (2048, 1536))).save(png)
    assert load_rgb(small, at_least=512).size == (600, 400)
    assert load_rgb(png, at_least=512).size == (2048, 1536)


def test_reduced_scale_decoding_keeps_the_exif_orientation(tmp_path: Path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    path = _photo(tmp_path / "sideways.jpg", (2048, 1024), exif=exif)
    assert load_rgb(path).size == (1024, 2048)
    assert load_rgb(path, at_least=256).size == (256, 512)
