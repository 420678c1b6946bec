"""The one image preprocessing function, shared by training and the device.

`edgecls.train` feeds its tf.data pipeline through `load_image` too, so the pixels a model
sees on a Raspberry Pi are the pixels it was trained and evaluated on: same decoder, same
EXIF handling, same JPEG draft scaling, same resampling. Output is uint8 HxWxC; scaling to
the model's input type is the classifier's job (a lookup table, see classifier.py).
"""

from __future__ import annotations

import io
import os
import stat
import struct
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from edgecls.errors import EdgeclsError, first_line
from edgecls.text import printable

# Bilinear, like Keras' image_dataset_from_directory default; chosen once, used everywhere.
RESAMPLE = Image.Resampling.BILINEAR

_ORIENTATION = 0x0112  # the EXIF tag exif_transpose reads

try:  # libjpeg-turbo in one call per file (see _decode_jpeg_file); optional, Pillow otherwise
    import simplejpeg as _simplejpeg
except ImportError:  # e.g. 32-bit ARM, where PyPI has no wheel
    _simplejpeg = None

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


class ImageError(EdgeclsError):
    """An image that cannot be read or decoded."""


def load_image(path: str | os.PathLike, size: tuple[int, int], channels: int = 3) -> np.ndarray:
    """Read an image file and return it as uint8 with shape (size[0], size[1], channels).

    `size` is (height, width). Any Pillow mode is accepted (RGB, RGBA, L, P, CMYK, 16-bit);
    the EXIF orientation is applied; JPEGs are decoded at a reduced DCT scale when the file
    is much larger than `size`, which is several times faster and no worse after the resize.
    """
    shown = shown_path(path)
    try:
        status = os.stat(path)
        if stat.S_ISDIR(status.st_mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(status.st_mode):
            # Opening a named pipe would block forever; a device is not an image file either.
            raise ImageError(f"{shown}: not a regular file ({_kind(status.st_mode)}); not opened")
        if status.st_dev in kernel_filesystems():
            # /proc and /sys files are "regular" but reading one may block (/proc/kmsg) or never end.
            raise ImageError(f"{shown}: a kernel file (/proc, /sys), not an image; not opened")
        fast = _decode_jpeg_file(path, status.st_size, size, channels)
        if fast is not None:
            return fast
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its pixel limit; treat a likely bomb as an error.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                # Checked here too: warning filters are process-wide, so with decode threads the
                # filter above can be undone by another thread leaving its own catch_warnings().
                if Image.MAX_IMAGE_PIXELS and img.width * img.height > Image.MAX_IMAGE_PIXELS:
                    raise Image.DecompressionBombError(f"{img.width}x{img.height} pixels")
                if img.format == "JPEG":
                    # draft() keeps both sides >= the request, so the resize below still downsamples.
                    img.draft("RGB" if channels == 3 else "L", (size[1], size[0]))
                img.load()
                return prepare_image(img, size, channels)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{shown}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{shown}: is a directory, not an image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{shown}: image is too large to decode safely (decompression bomb?)") from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"{shown}: not an image Pillow can read") from None
    except OSError as exc:
        if exc.filename is not None and exc.strerror:  # the file system's error, not the decoder's
            raise ImageError(f"{shown}: cannot read file ({exc.strerror})") from None
        raise ImageError(f"{shown}: cannot decode image ({first_line(exc)})") from None
    # The rest are what Pillow's decoders raise on damaged data (struct.error, IndexError and
    # KeyError come from hand-rolled header parsers such as TIFF's and EXIF's).
    except (SyntaxError, ValueError, TypeError, EOFError, MemoryError, struct.error, IndexError, KeyError, ZeroDivisionError) as exc:
        raise ImageError(f"{shown}: cannot decode image ({first_line(exc)})") from None


def _decode_jpeg_file(path, file_size: int, size: tuple[int, int], channels: int) -> np.ndarray | None:
    """The Pillow path's pixels for a large colour JPEG, decoded straight from the file's bytes by
    libjpeg-turbo through simplejpeg at the same DCT scale, then resized the same way; None
    where that is not the same decode, and the Pillow path runs instead (and reports any error).

    Why: on real photographs decoding is most of the work (a 250 KB dermatoscope JPEG costs ~5x
    an invoke of the built-in model). Pillow parses the header in Python, then feeds its
    incremental decoder 64 KB at a time; one read and one libjpeg-turbo call cost 3-8% less CPU
    per photo. Same library, same scale, same (default) IDCT and upsampling as Pillow's draft: the
    pixels are identical (tests/test_jpeg_fast_path.py). Only YCbCr files scaled down by 2, 4 or
    8 take this path; a file with an APP1 (EXIF, XMP) or MPF segment is first opened by Pillow to
    rule out a rotation or a multi-picture file; a file libjpeg warns about (strict mode) goes to
    Pillow.
    """
    if _simplejpeg is None or channels != 3 or not 0 < file_size <= _FAST_PATH_MAX_BYTES:
        return None
    try:
        data = _read_whole(path, file_size)
        if data is None or data[:3] != b"\xff\xd8\xff":
            return None
        height, width, colorspace, _ = _simplejpeg.decode_jpeg_header(data)
        if colorspace != "YCbCr" or (Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS):
            return None
        ratio = min(width // size[1], height // size[0])
        scale = next((s for s in (8, 4, 2) if ratio >= s), 1)  # JpegImageFile.draft's choice
        if scale == 1 or (_has_app1_or_mpf(data) and not _plain_jpeg_to_pillow(data)):
            return None
        expected = (-(-height // scale), -(-width // scale))
        pixels = _simplejpeg.decode_jpeg(data, colorspace="RGB", min_factor=scale, min_height=expected[0], min_width=expected[1])
    except Exception:  # noqa: BLE001 - whatever it is, the Pillow path decides (and reports it)
        return None
    if pixels.shape != (*expected, 3):
        return None
    return prepare_image(pixels, size, channels)


_FAST_PATH_MAX_BYTES = 64 << 20  # read whole files up to this; bigger ones are Pillow's to judge
# A decoding thread (the calling one too) keeps one buffer, for files up to this size, for as long
# as the thread lives: a photo's ~256 KB, at most 8 MiB.
_REUSED_BUFFER_MAX_BYTES = 8 << 20
_read_buffers = threading.local()


def _read_whole(path, file_size: int) -> bytes | memoryview | None:
    """The file's bytes, or None if it is not `file_size` long any more (it changed since the stat).

    Read into the calling thread's own reused buffer: a fresh 250 KB bytes object for every photo
    costs ~0.1 ms more CPU (new memory to fault in and clear, then free) than the read itself.
    The view is valid until this thread's next read: `_decode_jpeg_file` is done with it by then.
    """
    if file_size > _REUSED_BUFFER_MAX_BYTES:
        with open(path, "rb") as file:
            data = file.read(file_size + 1)
        return data if len(data) == file_size else None
    buffer = getattr(_read_buffers, "buffer", None)
    if buffer is None or len(buffer) <= file_size:
        # One byte spare, to see a file that grew; powers of two, so a folder of growing sizes
        # reallocates a few times, not once per file.
        buffer = _read_buffers.buffer = bytearray(1 << file_size.bit_length())
    with open(path, "rb", buffering=0) as file:
        size = file.readinto(buffer)
    return memoryview(buffer)[:size] if size == file_size else None


def _has_app1_or_mpf(data: bytes | memoryview) -> bool:
    """Does the JPEG header hold an APP1 segment (EXIF or XMP: a possible rotation) or an MPF one
    (a multi-picture file) before the scan? An unexpected layout answers yes."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return True
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan: the header is over
            return False
        if marker == 0x01 or 0xD0 <= marker <= 0xD9:  # a marker without a length has no place here
            return True
        if marker == 0xE1 or (marker == 0xE2 and data[pos + 4 : pos + 8] == b"MPF\0"):
            return True
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return True


def _plain_jpeg_to_pillow(data: bytes | memoryview) -> bool:
    """Pillow's own reading of the header: a single-picture JPEG with no rotation to apply."""
    with Image.open(io.BytesIO(data)) as img:
        return img.format == "JPEG" and img.mode == "RGB" and img.getexif().get(_ORIENTATION, 1) == 1


def prepare_image(img: Image.Image | np.ndarray, size: tuple[int, int], channels: int = 3) -> np.ndarray:
    """Orient, convert and resize an in-memory image (PIL image or uint8 array) like `load_image`."""
    if isinstance(img, np.ndarray):
        array = _to_uint8(img)
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[..., 0]  # not squeeze(): a 1-pixel-high RGB array must stay 1xWx3
        img = Image.fromarray(array)
    else:
        img = ImageOps.exif_transpose(img)
    img = _to_mode(img, "RGB" if channels == 3 else "L")
    if img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), RESAMPLE)
    array = np.asarray(img, dtype=np.uint8)
    if channels == 1:
        array = array[..., None]
    return array


# Image formats edgecls does not decode (no decoder, or not validated): a folder's files with
# these suffixes get a "skipped (unsupported format)" result instead of silence.
UNSUPPORTED_IMAGE_SUFFIXES = frozenset(
    ".avif .heic .heif .jxl .jp2 .j2k .dng .cr2 .cr3 .nef .arw .orf .rw2 .raf .psd .svg .dcm .exr".split()
)
# Filesystems of the kernel's own files: never image data, and reading some of them blocks.
_KERNEL_FS_TYPES = frozenset("proc sysfs debugfs tracefs securityfs cgroup cgroup2 configfs bpf pstore efivarfs fusectl".split())
_kernel_devices: frozenset[int] | None = None


def kernel_filesystems() -> frozenset[int]:
    """Device numbers (st_dev) of the mounted kernel filesystems (/proc, /sys...), read once from
    /proc/self/mountinfo; empty where there is none (macOS, Windows)."""
    global _kernel_devices
    if _kernel_devices is None:
        devices = set()
        try:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mounts:
                for line in mounts:
                    fields = line.split()
                    if " - " not in line or len(fields) < 3:
                        continue
                    fs_type = line.split(" - ", 1)[1].split()[0]
                    if fs_type in _KERNEL_FS_TYPES:
                        major, _, minor = fields[2].partition(":")
                        devices.add(os.makedev(int(major), int(minor)))
        except (OSError, ValueError):
            for root in ("/proc", "/sys"):
                try:
                    devices.add(os.stat(root).st_dev)
                except OSError:
                    pass
        _kernel_devices = frozenset(devices)
    return _kernel_devices


def _kind(mode: int) -> str:
    from edgecls.files import file_kind

    return file_kind(mode)


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _to_mode(img: Image.Image, mode: str) -> Image.Image:
    if img.mode == mode:
        return img
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        # Pillow's convert() clips 16-bit and float values to 0..255 instead of rescaling them.
        img = Image.fromarray(_to_uint8(np.asarray(img)))
    elif img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent areas go white, the background a slide or a photo print would have.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert(mode)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        # NaN and infinities (a damaged float TIFF) must not print numpy warnings: ignore them here.
        with np.errstate(all="ignore"):
            peak = float(np.max(array, initial=0.0, where=np.isfinite(array)))
            hi = 1.0 if peak <= 1.0 else 255.0
            return np.clip(np.nan_to_num(array) * (255.0 / hi), 0, 255).astype(np.uint8)
    if array.size and int(array.max()) > 255:
        return (np.clip(array, 0, 65535) // 257).astype(np.uint8)
    return np.clip(array, 0, 255).astype(np.uint8)


def shown_path(path: str | os.PathLike) -> str:
    """A path as one printable line, for results and error messages."""
    # Non-UTF-8 file names still print: undecodable bytes become escapes, not a UnicodeEncodeError.
    # Control, bidi and other invisible characters are escaped too (edgecls.text.printable): one
    # report stays one line, and a file name cannot recolour the terminal or reorder the line.
    return printable(os.fsdecode(path))
