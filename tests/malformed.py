"""A corpus of malformed and odd inputs, generated on the fly (nothing is checked in).

Images: `image_cases()` lists files the colour classifier must either classify (with the
answer when it is known) or report as bad, one line each. Models: `model_cases()` lists
`.tflite` files that `classify` and `info` must refuse with a clear message. Everything is
tiny: "decompression bombs" are bare headers that claim huge sizes, so the corpus is a few
hundred kilobytes and builds in well under a second (the Keras-built models excepted).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


# -- image encoders ---------------------------------------------------------------------
def solid(colour, size=(40, 30), mode="RGB") -> Image.Image:
    return Image.new(mode, size, colour)


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def noisy(colour, size=(200, 150), seed=0) -> Image.Image:
    """A mostly `colour` image with noise, so a JPEG of it has a long entropy-coded scan."""
    rng = np.random.default_rng(seed)
    base = np.empty((size[1], size[0], 3), np.int16)
    base[...] = colour
    base += rng.integers(-40, 40, base.shape)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int, with_idat: bool = True) -> bytes:
    """A PNG whose IHDR claims width x height, followed by a few bytes of data (not enough)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = png_chunk(b"IHDR", ihdr)
    if with_idat:
        body += png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return b"\x89PNG\r\n\x1a\n" + body + png_chunk(b"IEND", b"")


def gif_header_only(width: int, height: int) -> bytes:
    """A GIF89a whose screen and first image descriptor claim width x height, with no data."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    descriptor = b"," + struct.pack("<HHHHB", 0, 0, width, height, 0)
    return screen + descriptor + b"\x02\x02\x44\x01\x00;"


def jpeg_with_size(width: int, height: int) -> bytes:
    """A real JPEG with the frame header's dimensions rewritten (the scan data is then far too short)."""
    data = bytearray(encode(solid(RED, (16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def with_bad_png_crc(data: bytes) -> bytes:
    data = bytearray(data)
    data[29] ^= 0xFF  # last byte of the IHDR CRC (8 signature + 4 length + 4 type + 13 data)
    return bytes(data)


def animated_gif() -> bytes:
    frames = [solid(RED), solid(BLUE), solid(GREEN)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def palette_png(transparent: bool) -> bytes:
    img = Image.new("P", (40, 30), 0)
    img.putpalette(list(BLUE) + list(RED) + [0] * (256 * 3 - 6))
    if not transparent:
        return encode(img, "PNG")
    # Palette index 1 (red) is opaque, index 0 is fully transparent: a red stripe on white.
    img = Image.new("P", (40, 30), 0)
    img.putpalette(list(GREEN) + list(RED) + [0] * (256 * 3 - 6))
    img.paste(1, (0, 0, 40, 24))
    return encode(img, "PNG", transparency=0)


def rgba_png(colour, alpha: int) -> bytes:
    return encode(Image.new("RGBA", (40, 30), (*colour, alpha)), "PNG")


def exif_rotated_jpeg(orientation: int = 6) -> bytes:
    """40x20 as stored: left half red, right half blue; EXIF says rotate 90 degrees clockwise.

    Displayed (and as `load_image` must return it): 20 wide, 40 tall, red on top, blue below.
    """
    img = solid(RED, (40, 20))
    img.paste(BLUE, (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, "JPEG", quality=95, exif=exif.tobytes())


def sixteen_bit_png(value: int) -> bytes:
    return encode(Image.fromarray(np.full((30, 40), value, np.uint16)), "PNG")


def float_tiff(value: float) -> bytes:
    return encode(Image.fromarray(np.full((30, 40), value, np.float32)), "TIFF")


def int32_tiff() -> bytes:
    return encode(Image.fromarray(np.arange(1200, dtype=np.int32).reshape(30, 40) * 50), "TIFF")


def cmyk_jpeg() -> bytes:
    # C=0 M=100% Y=100% K=0 is red.
    return encode(solid((0, 255, 255, 0), mode="CMYK"), "JPEG", quality=95)


def truncated(data: bytes, fraction: float) -> bytes:
    return data[: max(1, int(len(data) * fraction))]


# -- the image corpus -------------------------------------------------------------------
@dataclass(frozen=True)
class ImageCase:
    """One file for the colour classifier (16x16 RGB, labels red/green/blue)."""

    id: str
    name: str | bytes  # file name in the corpus folder; bytes for a non-UTF-8 name
    make: Callable[[Path], None]  # create the file (or link, or pipe) at the given path
    ok: bool  # True: classified. False: reported as a bad file and skipped.
    label: str | None = None  # the expected answer when it is known
    error: str | None = None  # a phrase the one-line report must contain

    def path(self, folder: Path) -> Path:
        if isinstance(self.name, bytes):
            return Path(os.fsdecode(os.path.join(os.fsencode(folder), self.name)))
        return folder / self.name


def _bytes(data: bytes | Callable[[], bytes]) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.write_bytes(data() if callable(data) else data)

    return make


def _symlink(target: str) -> Callable[[Path], None]:
    return lambda path: os.symlink(target, path)


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def good(id, name, data, label=None):
    return ImageCase(id, name, _bytes(data), True, label)


def bad(id, name, data, error):
    return ImageCase(id, name, _bytes(data), False, error=error)


def image_cases() -> list[ImageCase]:
    jpeg_big = lambda: encode(noisy(RED), "JPEG", quality=90)  # noqa: E731
    png_big = lambda: encode(noisy(GREEN), "PNG")  # noqa: E731
    bomb = "too large to decode safely"
    unreadable = "not an image Pillow can read"
    return [
        # ---- decodable: every one must be classified -------------------------------------
        good("jpeg", "red.jpg", lambda: encode(solid(RED), "JPEG"), "red"),
        good("png", "green.png", lambda: encode(solid(GREEN), "PNG"), "green"),
        good("bmp", "blue.bmp", lambda: encode(solid(BLUE), "BMP"), "blue"),
        good("webp", "red.webp", lambda: encode(solid(RED), "WEBP", lossless=True), "red"),
        good("tiff", "green.tif", lambda: encode(solid(GREEN), "TIFF"), "green"),
        good("gif", "blue.gif", lambda: encode(solid(BLUE), "GIF"), "blue"),
        good("ppm", "red.ppm", lambda: encode(solid(RED), "PPM"), "red"),
        good("pgm", "grey.pgm", lambda: encode(solid(128, mode="L"), "PPM")),
        good("uppercase-suffix", "GREEN.JPEG", lambda: encode(solid(GREEN), "JPEG"), "green"),
        good("1x1-png", "one-pixel.png", lambda: encode(solid(BLUE, (1, 1)), "PNG"), "blue"),
        good("1x1-jpeg", "one-pixel.jpg", lambda: encode(solid(RED, (1, 1)), "JPEG"), "red"),
        good("1x500-strip", "strip.png", lambda: encode(solid(GREEN, (1, 500)), "PNG"), "green"),
        good("large-jpeg-draft", "large.jpg", lambda: encode(noisy(BLUE, (1600, 1200)), "JPEG", quality=70), "blue"),
        good("progressive-jpeg", "progressive.jpg", lambda: encode(solid(GREEN), "JPEG", progressive=True), "green"),
        good("jpeg-trailing-junk", "junk-after-eoi.jpg", lambda: encode(solid(RED), "JPEG") + b"\0garbage" * 50, "red"),
        good("png-named-jpeg", "really-a-png.jpeg", lambda: encode(solid(BLUE), "PNG"), "blue"),
        good("16-bit-png", "sixteen-bit.png", lambda: sixteen_bit_png(40000)),
        good("cmyk-jpeg", "cmyk.jpg", cmyk_jpeg, "red"),
        good("palette-png", "palette.png", lambda: palette_png(False), "blue"),
        good("palette-transparency-png", "palette-alpha.png", lambda: palette_png(True), "red"),
        good("animated-gif-first-frame", "animated.gif", animated_gif, "red"),
        good("rgba-png", "rgba.png", lambda: rgba_png(GREEN, 255), "green"),
        good("rgba-fully-transparent", "transparent.png", lambda: rgba_png(BLUE, 0)),
        good("la-png", "la.png", lambda: encode(Image.new("LA", (40, 30), (90, 200)), "PNG")),
        good("grayscale-jpeg", "grey.jpg", lambda: encode(solid(200, mode="L"), "JPEG")),
        good("bilevel-png", "bilevel.png", lambda: encode(solid(1, mode="1"), "PNG")),
        good("float-tiff", "float.tiff", lambda: float_tiff(0.25)),
        good("int32-tiff", "int32.tiff", int32_tiff),
        good("exif-rotated-jpeg", "exif-rotated.jpg", exif_rotated_jpeg),
        good("name-with-spaces", "a name with  spaces.png", lambda: encode(solid(RED), "PNG"), "red"),
        good("name-with-brackets", "scan [1] (copy) {x}*?.jpg", lambda: encode(solid(GREEN), "JPEG"), "green"),
        good("name-unicode", "été-🔬-ç.png", lambda: encode(solid(BLUE), "PNG"), "blue"),
        good("name-non-utf8", b"caf\xe9-\xff.png", lambda: encode(solid(RED), "PNG"), "red"),
        good("name-leading-dash", "-rf.png", lambda: encode(solid(GREEN), "PNG"), "green"),
        good("name-with-newline", "two\nlines\t.png", lambda: encode(solid(BLUE), "PNG"), "blue"),
        # ---- not decodable: each must be reported, and the rest of the batch must still run --
        bad("zero-byte-jpeg", "empty.jpg", b"", unreadable),
        bad("zero-byte-png", "empty.png", b"", unreadable),
        bad("text-named-jpeg", "notes.jpg", b"patient notes, not a picture\n" * 3, unreadable),
        bad("html-named-png", "page.png", b"<!doctype html><html><body>404</body></html>", unreadable),
        bad("random-bytes-bmp", "noise.bmp", bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8)), unreadable),
        bad("truncated-jpeg-half", "half.jpg", lambda: truncated(jpeg_big(), 0.5), "cannot decode image"),
        bad("truncated-jpeg-header", "header-only.jpg", lambda: truncated(jpeg_big(), 0.05), "cannot decode image"),
        bad("truncated-jpeg-soi", "soi-only.jpg", b"\xff\xd8\xff", None),
        bad("truncated-png-half", "half.png", lambda: truncated(png_big(), 0.5), "cannot decode image"),
        bad("truncated-png-signature", "signature.png", b"\x89PNG\r\n\x1a\n", None),
        bad("png-bad-header-crc", "bad-crc.png", lambda: with_bad_png_crc(encode(solid(RED), "PNG")), None),
        bad("png-idat-garbage", "idat-garbage.png", lambda: png_header_only(40, 30, with_idat=True)[:-12] + b"\x00" * 20, None),
        bad("jpeg-garbage-after-soi", "garbage.jpg", b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, None),
        bad("truncated-gif", "cut.gif", lambda: truncated(animated_gif(), 0.3), None),
        bad("truncated-tiff", "cut.tiff", lambda: truncated(encode(noisy(RED), "TIFF"), 0.5), None),
        bad("truncated-webp", "cut.webp", lambda: truncated(encode(noisy(RED), "WEBP"), 0.5), None),
        bad("truncated-bmp", "cut.bmp", lambda: truncated(encode(noisy(RED), "BMP"), 0.5), None),
        bad("bomb-png-60000", "bomb.png", lambda: png_header_only(60000, 60000), bomb),
        bad("bomb-png-14000-warning-range", "bomb-warning.png", lambda: png_header_only(14000, 14000), bomb),
        bad("bomb-gif-60000", "bomb.gif", lambda: gif_header_only(60000, 60000), bomb),
        bad("bomb-jpeg-65000", "bomb.jpg", lambda: jpeg_with_size(65000, 65000), bomb),
        bad("bomb-ppm", "bomb.ppm", b"P6 60000 60000 255\n" + b"\0" * 30, bomb),
        bad("png-zero-width", "zero-width.png", lambda: png_header_only(0, 10), None),
        bad("corrupt-name-non-utf8", b"broken-\xff\xfe.jpg", b"\xff\xd8 not really", unreadable),
        bad("corrupt-name-brackets", "broken [2] (copy).png", b"\x89PNG\r\n\x1a\n\0\0", None),
        bad("corrupt-name-newline", "forged\nedgecls: 0 of 9 images could not be classified.jpg", b"GIF89a", None),
        ImageCase("dangling-symlink", "gone.jpg", _symlink("does-not-exist.jpg"), False, error="no such file"),
        ImageCase("symlink-loop", "loop.jpg", _symlink("loop.jpg"), False, error="loop.jpg"),
        ImageCase("fifo", "pipe.jpg", _fifo, False, error="not a regular file"),
    ]


def write_image_corpus(folder: Path, cases: list[ImageCase] | None = None) -> list[ImageCase]:
    """Write every case into `folder`, plus things a folder walk must ignore or survive."""
    cases = image_cases() if cases is None else cases
    folder.mkdir(parents=True, exist_ok=True)
    for case in cases:
        case.make(case.path(folder))
    # Ignored by the walk: hidden files, non-image suffixes, an empty folder named like an image,
    # and a symlink to a parent folder (a loop a naive walk would never leave).
    (folder / ".hidden.jpg").write_bytes(b"not an image, but hidden")
    (folder / "readme.txt").write_text("not an image suffix")
    (folder / "empty-dir.jpg").mkdir()
    (folder / "sub").mkdir()
    os.symlink("..", folder / "sub" / "up")
    os.symlink("../sub", folder / "sub" / "self.jpg")  # a link to a folder, named like an image
    return cases


def nested_image(folder: Path) -> tuple[Path, str]:
    """An image two folders down, to prove the walk is recursive."""
    path = folder / "sub" / "deeper" / "nested blue.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(solid(BLUE), "PNG"))
    return path, "blue"


# -- models -----------------------------------------------------------------------------
def embed_raw_metadata(model_bytes: bytes, payload: bytes, name: str = "edgecls_metadata") -> bytes:
    """Replace the edgecls metadata entry with arbitrary bytes (invalid JSON included)."""
    import flatbuffers

    from edgecls.edge_runtime.metadata import tflite_schema

    schema = tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    model.metadata = [m for m in (model.metadata or []) if _name(m.name) != name]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(payload, dtype=np.uint8)
    model.buffers = list(model.buffers or []) + [buffer]
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(model_bytes) + len(payload) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _name(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else (value or "")


def rewrite_model(model_bytes: bytes, change: Callable[[object], None]) -> bytes:
    """Unpack a model with the TFLite schema's object API, let `change` edit it, pack it again.

    The result is a structurally valid flatbuffer with damaged values: the files the
    interpreter's own verifier lets through.
    """
    import flatbuffers

    from edgecls.edge_runtime.metadata import tflite_schema

    model = tflite_schema().ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    change(model)
    builder = flatbuffers.Builder(len(model_bytes) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _first_input_tensor(model):
    graph = model.subgraphs[0]
    return graph.tensors[graph.inputs[0]]


def with_input_shape(model_bytes: bytes, shape) -> bytes:
    def change(model):
        tensor = _first_input_tensor(model)
        tensor.shape = np.array(shape, np.int32)
        tensor.shapeSignature = None

    return rewrite_model(model_bytes, change)


def without_subgraphs(model_bytes: bytes) -> bytes:
    def change(model):
        model.subgraphs = None  # the field is absent (as when a bit flip zeroes its vtable slot)
        model.signatureDefs = None

    return rewrite_model(model_bytes, change)


def with_missing_op_input(model_bytes: bytes) -> bytes:
    def change(model):
        model.subgraphs[0].operators[0].inputs[0] = -1

    return rewrite_model(model_bytes, change)


def with_garbled_input_name(model_bytes: bytes) -> bytes:
    def change(model):
        _first_input_tensor(model).name = b"\xff\xfe\xfa not utf-8"

    return rewrite_model(model_bytes, change)


def with_nan_weights(model_bytes: bytes) -> bytes:
    """Every float32 constant becomes NaN: a float model whose weights were damaged in transit."""

    def change(model):
        for tensor in model.subgraphs[0].tensors:
            data = model.buffers[tensor.buffer].data
            if tensor.type == 0 and data is not None and len(data):  # TensorType.FLOAT32
                model.buffers[tensor.buffer].data = np.full(len(data) // 4, np.nan, np.float32).view(np.uint8)

    return rewrite_model(model_bytes, change)


def without_output_quantization(model_bytes: bytes) -> bytes:
    def change(model):
        graph = model.subgraphs[0]
        graph.tensors[graph.outputs[0]].quantization = None

    return rewrite_model(model_bytes, change)


def with_quantization(model_bytes: bytes, tensor_name_part: str, scale=None, zero_point=None) -> bytes:
    """Rewrite one tensor's quantization, as a bit flip in a copied file would."""
    import flatbuffers

    from edgecls.edge_runtime.metadata import tflite_schema

    schema = tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    for tensor in model.subgraphs[0].tensors:
        if tensor_name_part in _name(tensor.name) and tensor.quantization is not None:
            if scale is not None:
                tensor.quantization.scale = np.array([scale], np.float32)
            if zero_point is not None:
                tensor.quantization.zeroPoint = np.array([zero_point], np.int64)
            break
    else:
        raise ValueError(f"no quantized tensor named like {tensor_name_part!r}")
    builder = flatbuffers.Builder(len(model_bytes) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def odd_keras_models() -> dict[str, object]:
    """Keras models that convert to valid TFLite files which are not image classifiers."""
    import tf_keras as keras

    def build(inputs, outputs):
        return keras.Model(inputs, outputs)

    models = {}
    x = keras.Input((8,))
    models["input-2d"] = build(x, keras.layers.Dense(3, activation="softmax")(x))
    x = keras.Input((16, 16))
    models["input-rank-3"] = build(x, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(x)))
    x = keras.Input((16, 16, 4))
    models["input-4-channels"] = build(x, keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x)))
    x = keras.Input((16, 16, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(x)
    models["two-outputs"] = build(x, [keras.layers.Dense(3, activation="softmax")(pooled), keras.layers.Dense(2)(pooled)])
    x = keras.Input((16, 16, 3))
    models["one-class"] = build(x, keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(x)))
    x = keras.Input((16, 16, 3))
    models["output-4d"] = build(x, keras.layers.Conv2D(3, 1)(x))
    a, b = keras.Input((16, 16, 3)), keras.Input((16, 16, 3))
    models["two-inputs"] = build([a, b], keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(keras.layers.Add()([a, b]))))
    return models


@dataclass(frozen=True)
class ModelCase:
    id: str
    make: Callable[[Path], None]  # create the model file (or folder, link...) at the path
    error: str  # a phrase the one-line error must contain
    info_ok: bool = False  # `edgecls info` can still describe it (the damage shows only when it runs)


def model_cases(colour: dict[str, Path], odd_tflite: dict[str, bytes]) -> list[ModelCase]:
    """Bad model files. `colour`: the conftest colour models; `odd_tflite`: converted `odd_keras_models()`."""
    from edgecls.edge_runtime.metadata import ModelMetadata, write_metadata

    float_raw = colour["float32"].read_bytes()
    uint8_raw = colour["uint8"].read_bytes()
    int8_raw = colour["int8"].read_bytes()

    def meta_json(**changes) -> bytes:
        doc = {"labels": ["red", "green", "blue"], "input_size": [16, 16], "channels": 3,
               "mean": [0, 0, 0], "std": [255, 255, 255], "output": "probabilities"}
        doc.update(changes)
        import json

        return json.dumps(doc).encode()

    def raw(data: bytes | Callable[[], bytes]) -> Callable[[Path], None]:
        return lambda path: path.write_bytes(data() if callable(data) else data)

    def metadata(payload: bytes) -> Callable[[Path], None]:
        return raw(lambda: embed_raw_metadata(float_raw, payload))

    def meta_obj(**kwargs) -> Callable[[Path], None]:
        base = dict(labels=["red", "green", "blue"], input_size=(16, 16))
        base.update(kwargs)
        return raw(lambda: write_metadata(float_raw, ModelMetadata(**base)))

    not_tflite = "not a TFLite model"
    interp = "corrupt"
    unreadable = "metadata"
    cases = [
        ModelCase("missing-file", lambda path: None, "no such model file"),
        ModelCase("directory", lambda path: path.mkdir(), "is a directory"),
        ModelCase("fifo", lambda path: os.mkfifo(path), "not a regular file"),
        ModelCase("dangling-symlink", lambda path: os.symlink("nowhere.tflite", path), "no such model file"),
        ModelCase("zero-byte", raw(b""), not_tflite),
        ModelCase("garbage", raw(bytes(np.random.default_rng(2).integers(0, 256, 4096, dtype=np.uint8))), not_tflite),
        ModelCase("jpeg-renamed", raw(lambda: encode(solid(RED), "JPEG")), not_tflite),
        ModelCase("text-renamed", raw(b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n"), not_tflite),
        ModelCase("identifier-only", raw(b"\0\0\0\0TFL3"), interp),
        ModelCase("identifier-then-garbage", raw(b"\x10\0\0\0TFL3" + b"\xff" * 200), interp),
        ModelCase("truncated-half", raw(lambda: float_raw[: len(float_raw) // 2]), interp),
        ModelCase("truncated-most", raw(lambda: int8_raw[:64]), interp),
        ModelCase("input-2d", raw(lambda: odd_tflite["input-2d"]), "expected an image input"),
        ModelCase("input-rank-3", raw(lambda: odd_tflite["input-rank-3"]), "expected an image input"),
        ModelCase("input-4-channels", raw(lambda: odd_tflite["input-4-channels"]), "expected an image input"),
        ModelCase("two-outputs", raw(lambda: odd_tflite["two-outputs"]), "1 input and 1 output"),
        ModelCase("two-inputs", raw(lambda: odd_tflite["two-inputs"]), "1 input and 1 output"),
        ModelCase("one-class", raw(lambda: odd_tflite["one-class"]), "class scores"),
        ModelCase("output-4d", raw(lambda: odd_tflite["output-4d"]), "class scores"),
        # Values a bit flip produces; these crashed the native interpreter before the runtime checked them.
        ModelCase("zero-point-out-of-range", raw(lambda: with_quantization(uint8_raw, "StatefulPartitionedCall:0", zero_point=196608)), "corrupt"),
        ModelCase("negative-scale", raw(lambda: with_quantization(uint8_raw, "tfl.quantize", scale=-0.0039)), "corrupt"),
        ModelCase("zero-input-scale", raw(lambda: with_quantization(uint8_raw, "serving_default", scale=0.0)), "corrupt"),
        ModelCase("nan-scale", raw(lambda: with_quantization(int8_raw, "serving_default", scale=float("nan"))), "corrupt"),
        ModelCase("no-subgraph", raw(lambda: without_subgraphs(int8_raw)), "corrupt"),
        ModelCase("op-input-missing", raw(lambda: with_missing_op_input(uint8_raw)), "corrupt"),
        ModelCase("huge-batch", raw(lambda: with_input_shape(int8_raw, [1665941583, 16, 16, 3])), "corrupt"),
        ModelCase("negative-dimension", raw(lambda: with_input_shape(float_raw, [1, -16, 16, 3])), "corrupt"),
        ModelCase("zero-batch", raw(lambda: with_input_shape(int8_raw, [0, 16, 16, 3])), "expected an image input"),
        ModelCase("garbled-tensor-name", raw(lambda: with_garbled_input_name(float_raw)), "corrupt"),
        ModelCase("output-not-quantized", raw(lambda: without_output_quantization(uint8_raw)), "corrupt"),
        ModelCase("nan-weights", raw(lambda: with_nan_weights(float_raw)), "NaN or infinite scores", info_ok=True),
        # Metadata that does not fit the model, or cannot be read at all.
        ModelCase("labels-too-few", meta_obj(labels=["red", "green"]), "2 labels but the model outputs 3"),
        ModelCase("labels-empty", meta_obj(labels=[]), "0 labels"),
        ModelCase("input-size-mismatch", meta_obj(input_size=(32, 32)), "model metadata says input"),
        ModelCase("channels-mismatch", meta_obj(channels=1, mean=[0.0], std=[255.0]), "model metadata says input"),
        ModelCase("meta-invalid-json", metadata(b'{"labels": ["red", "green", "blue"], "input_size": [16,'), unreadable),
        ModelCase("meta-not-utf8", metadata(b'{"labels": ["\xff\xfe"]}'), unreadable),
        ModelCase("meta-json-array", metadata(b"[1, 2, 3]"), unreadable),
        ModelCase("meta-json-string", metadata(b'"red,green,blue"'), unreadable),
        ModelCase("meta-empty-object", metadata(b"{}"), unreadable),
        ModelCase("meta-missing-labels", metadata(b'{"input_size": [16, 16]}'), unreadable),
        ModelCase("meta-labels-not-list", metadata(meta_json(labels=7)), unreadable),
        ModelCase("meta-size-not-numbers", metadata(meta_json(input_size=["a", "b"])), unreadable),
        ModelCase("meta-size-null", metadata(meta_json(input_size=None)), unreadable),
        ModelCase("meta-size-infinite", metadata(b'{"labels": ["r", "g", "b"], "input_size": [1e400, 16]}'), unreadable),
        ModelCase("meta-size-three-numbers", metadata(meta_json(input_size=[16, 16, 3])), unreadable),
        ModelCase("meta-mean-wrong-length", metadata(meta_json(mean=[0, 0])), unreadable),
        ModelCase("meta-mean-not-numbers", metadata(meta_json(mean=["zero", "zero", "zero"])), unreadable),
        ModelCase("meta-std-zero", metadata(meta_json(std=[255, 0, 255])), unreadable),
        ModelCase("meta-std-nan", metadata(b'{"labels": ["r", "g", "b"], "input_size": [16, 16], "std": [NaN, 1, 1]}'), unreadable),
        ModelCase("meta-output-unknown", metadata(meta_json(output="banana")), unreadable),
        ModelCase("meta-channels-string", metadata(meta_json(channels="three")), unreadable),
        ModelCase("meta-deeply-nested", metadata(b'{"labels": ["r", "g", "b"], "input_size": [16, 16], "metrics": ' + b"[" * 100000 + b"]" * 100000 + b"}"), unreadable),
    ]
    return cases
