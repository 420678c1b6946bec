"""`load_image` decodes large colour JPEGs through simplejpeg (libjpeg-turbo in one call) instead of
Pillow's incremental decoder. The pixels must be exactly those of the Pillow path, which training,
conversion and every reported metric used: checked here on JPEGs of every kind the fast path takes
or refuses, and on the real HAM10000 originals."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_dataset
from PIL import Image

import edgecls.edge_runtime.preprocess as preprocess
from edgecls.edge_runtime.preprocess import ImageError, load_image

pytest.importorskip("simplejpeg", reason="simplejpeg is not installed (no wheel for this platform): Pillow decodes alone")

SIZE = (94, 94)


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Texture, noise and hard edges: what makes a dermatoscope export decode slowly."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([128 + 100 * np.sin(x / (7 + c) + y / (11 + 2 * c)) for c in range(3)], axis=-1)
    noisy = base + rng.normal(0, 25, (height, width, 3))
    noisy[height // 3 : height // 2, width // 4 : width // 2] = (200, 40, 60)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


# (name, image size, save options, whether the fast path decodes it)
CASES = [
    ("600x450 4:2:0 q100 (a HAM10000 export)", (600, 450), {"quality": 100}, True),
    ("600x450 4:4:4", (600, 450), {"quality": 95, "subsampling": 0}, True),
    ("600x450 4:2:2", (600, 450), {"quality": 90, "subsampling": 1}, True),
    ("600x450 progressive", (600, 450), {"quality": 90, "progressive": True}, True),
    ("odd size 601x449", (601, 449), {"quality": 85}, True),
    ("scale 1/2: 300x225", (300, 225), {"quality": 90}, True),
    ("scale 1/2 at the edge: 188x300", (188, 300), {"quality": 90}, True),
    ("scale 1/8: 1600x1200", (1600, 1200), {"quality": 80}, True),
    ("portrait 450x600", (450, 600), {"quality": 92}, True),
    ("no DCT scaling: 150x120", (150, 120), {"quality": 90}, False),
    ("EXIF rotation", (600, 450), {"quality": 90, "orientation": 6}, False),
    ("EXIF, no rotation", (600, 450), {"quality": 90, "orientation": 1}, True),
    ("XMP rotation", (600, 450), {"quality": 90, "xmp": b'<x:xmpmeta><rdf:Description tiff:Orientation="3"/></x:xmpmeta>'}, False),
    ("ICC profile", (600, 450), {"quality": 90, "icc_profile": b"\0" * 600}, True),
    ("camera MPO, two pictures", (600, 450), {"quality": 90, "mpo": True}, False),
    ("grayscale", (600, 450), {"quality": 90, "mode": "L"}, False),
    ("CMYK", (600, 450), {"quality": 90, "mode": "CMYK"}, False),
]


def save(tmp_path, name: str, size, options: dict):
    options = dict(options)
    image = photo(*size).convert(options.pop("mode", "RGB"))
    orientation = options.pop("orientation", None)
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    path = tmp_path / f"{abs(hash(name))}.jpg"
    if options.pop("mpo", False):  # what a stereo camera writes: Pillow reads it as MPO, not JPEG
        image.save(path, "MPO", save_all=True, append_images=[image.rotate(180)], **options)
    else:
        image.save(path, "JPEG", **options)
    return path


def pillow_only(path, size=SIZE, channels=3):
    saved = preprocess._simplejpeg
    preprocess._simplejpeg = None
    try:
        return load_image(path, size, channels)
    finally:
        preprocess._simplejpeg = saved


@pytest.fixture
def fast_calls(monkeypatch):
    """How many images the fast path decoded (it returns None when it declines)."""
    calls = []
    original = preprocess._decode_jpeg_file

    def spy(path, file_size, size, channels):
        result = original(path, file_size, size, channels)
        calls.append(result is not None)
        return result

    monkeypatch.setattr(preprocess, "_decode_jpeg_file", spy)
    return calls


@pytest.mark.parametrize("name, size, options, takes_fast_path", CASES, ids=[case[0] for case in CASES])
def test_the_fast_path_gives_the_pillow_paths_pixels(tmp_path, fast_calls, name, size, options, takes_fast_path):
    path = save(tmp_path, name, size, options)
    for channels in (3, 1):
        expected = pillow_only(path, SIZE, channels)
        fast_calls.clear()
        pixels = load_image(path, SIZE, channels)
        assert fast_calls == [takes_fast_path and channels == 3]
        assert pixels.shape == (*SIZE, channels) and pixels.dtype == np.uint8
        assert np.array_equal(pixels, expected), name


def test_other_input_sizes_and_shapes(tmp_path, fast_calls):
    path = save(tmp_path, "big", (1024, 768), {"quality": 90})
    taken = []
    for size in ((224, 224), (64, 128), (128, 64), (28, 28), (400, 400)):
        expected = pillow_only(path, size)
        fast_calls.clear()
        assert np.array_equal(load_image(path, size), expected), size
        taken += fast_calls
    assert taken == [True, True, True, True, False]  # 400x400: no DCT scaling (768 // 400 < 2)


def test_a_damaged_jpeg_is_left_to_pillow_and_reported_the_same(tmp_path, fast_calls):
    path = save(tmp_path, "whole", (600, 450), {"quality": 90})
    data = path.read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as pillow_error:
        pillow_only(truncated)
    fast_calls.clear()
    with pytest.raises(ImageError) as fast_error:
        load_image(truncated, SIZE)
    assert fast_calls == [False]
    assert str(fast_error.value) == str(pillow_error.value)


def test_real_ham10000_originals_decode_identically(fast_calls):
    folder = shared_dataset("ham10000_600x450")
    paths = sorted(folder.glob("*.jpg"))
    assert paths
    for path in paths:
        expected = pillow_only(path)
        fast_calls.clear()
        assert np.array_equal(load_image(path, SIZE), expected), path.name
        assert fast_calls == [True], path.name


def test_images_smaller_than_the_input_take_the_pillow_path(tmp_path, fast_calls):
    for width, height in ((1, 1), (50, 94), (94, 40)):
        path = save(tmp_path, f"small {width}x{height}", (width, height), {"quality": 90})
        expected = pillow_only(path)
        fast_calls.clear()
        assert np.array_equal(load_image(path, SIZE), expected)
        assert fast_calls == [False]


def test_the_header_walk_finds_rotation_segments_and_distrusts_odd_layouts(tmp_path):
    """`_has_app1_or_mpf` decides whether Pillow must read the header first: yes for EXIF, XMP or
    MPF segments and for anything it cannot walk (truncated, a stray marker, garbage), no only for
    a clean header. It always ends (every step moves forward)."""
    plain = save(tmp_path, "plain", (600, 450), {"quality": 90}).read_bytes()
    rotated = save(tmp_path, "rotated", (600, 450), {"quality": 90, "orientation": 6}).read_bytes()
    assert preprocess._has_app1_or_mpf(plain) is False
    assert preprocess._has_app1_or_mpf(rotated) is True
    assert preprocess._has_app1_or_mpf(plain[:30]) is True  # the scan never starts
    assert preprocess._has_app1_or_mpf(plain[:2] + b"\xff\xd0" + plain[2:]) is True  # RST0 before the scan
    rng = np.random.default_rng(0)
    for _ in range(200):
        garbage = b"\xff\xd8" + rng.integers(0, 256, int(rng.integers(0, 400)), dtype=np.uint8).tobytes()
        assert isinstance(preprocess._has_app1_or_mpf(garbage), bool)
