"""The standard TFLite Model Metadata: what MediaPipe Tasks, the TFLite Task Library and
Android Studio's ML model binding read from a `.tflite` file.

It lives beside edgecls's own JSON entry (metadata.py): a flatbuffer (schema "M001") in the
model's `metadata` list under the name TFLITE_METADATA, and the label file it names, stored in a
zip archive appended to the model file (uncompressed, as the TFLite metadata populator writes
it). Both are built and read through the schema's generated code (edgecls.vendor.tflite_metadata),
which needs only the `flatbuffers` runtime: no TensorFlow, no MediaPipe.
"""

from __future__ import annotations

import copy
import io
import zipfile
import zlib
from dataclasses import dataclass, field

STANDARD_METADATA_NAME = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
LABEL_FILE = "labels.txt"
# The fields written here (image/feature properties, normalisation, stats, a label file) all
# exist since schema 1.0.0; the populator records the oldest parser that understands them.
MIN_PARSER_VERSION = "1.0.0"
# TFLite schema TensorType values the metadata's statistics depend on.
_FLOAT32, _UINT8 = 0, 3


@dataclass
class StandardMetadata:
    """What edgecls reads back from a file's standard metadata."""

    name: str = ""
    description: str = ""
    version: str = ""
    author: str = ""
    license: str = ""
    min_parser_version: str = ""
    labels: list[str] | None = None  # from the output tensor's TENSOR_AXIS_LABELS file
    label_file: str = ""
    mean: list[float] | None = None  # the input's NormalizationOptions
    std: list[float] | None = None
    associated_files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {key: value for key, value in self.__dict__.items() if value not in (None, "", [])}


def _schema():
    from edgecls.vendor.tflite_metadata import metadata_schema_py_generated

    return metadata_schema_py_generated


def build_standard_metadata(meta, input_type: int, output_type: int) -> tuple[bytes, dict[str, bytes]]:
    """The M001 flatbuffer for an image classifier described by `meta` (a ModelMetadata), and
    the associated files it names ({file name: contents}) to append to the model."""
    import flatbuffers

    fb = _schema()
    provenance = meta.provenance or {}
    model = fb.ModelMetadataT()
    model.name = meta.name or "image classifier"
    model.description = _description(meta)
    model.version = " ".join(v for v in (meta.created, f"(edgecls {meta.edgecls_version})" if meta.edgecls_version else "") if v)
    model.author = "edgecls"
    model.license = str(provenance.get("licence", "") or provenance.get("license", ""))
    model.minParserVersion = MIN_PARSER_VERSION

    image = fb.TensorMetadataT()
    image.name = "image"
    image.description = (
        f"RGB image, {meta.input_size[1]}x{meta.input_size[0]}; the model's float input is (pixel - mean) / std"
        if meta.channels == 3
        else f"Grayscale image, {meta.input_size[1]}x{meta.input_size[0]}"
    )
    image.content = fb.ContentT()
    image.content.contentPropertiesType = fb.ContentProperties.ImageProperties
    image.content.contentProperties = fb.ImagePropertiesT()
    image.content.contentProperties.colorSpace = fb.ColorSpaceType.RGB if meta.channels == 3 else fb.ColorSpaceType.GRAYSCALE
    normalization = fb.ProcessUnitT()
    normalization.optionsType = fb.ProcessUnitOptions.NormalizationOptions
    normalization.options = fb.NormalizationOptionsT()
    normalization.options.mean = [float(v) for v in meta.mean]
    normalization.options.std = [float(v) for v in meta.std]
    image.processUnits = [normalization]
    image.stats = fb.StatsT()
    if input_type == _UINT8:
        image.stats.min, image.stats.max = [0.0], [255.0]
    elif input_type == _FLOAT32:
        image.stats.min = [(0.0 - m) / s for m, s in zip(meta.mean, meta.std)]
        image.stats.max = [(255.0 - m) / s for m, s in zip(meta.mean, meta.std)]

    scores = fb.TensorMetadataT()
    scores.name = "probability" if meta.output == "probabilities" else "logits"
    scores.description = f"{'Probabilities' if meta.output == 'probabilities' else 'Logits'} of the {len(meta.labels)} labels respectively."
    scores.content = fb.ContentT()
    scores.content.contentPropertiesType = fb.ContentProperties.FeatureProperties
    scores.content.contentProperties = fb.FeaturePropertiesT()
    scores.stats = fb.StatsT()
    if meta.output == "probabilities":
        scores.stats.min, scores.stats.max = ([0.0], [255.0]) if output_type == _UINT8 else ([0.0], [1.0])
    label_file = fb.AssociatedFileT()
    label_file.name = LABEL_FILE
    label_file.description = "Labels for the categories the model can recognise."
    label_file.type = fb.AssociatedFileType.TENSOR_AXIS_LABELS
    scores.associatedFiles = [label_file]

    outputs = [scores]
    if meta.logits_output:
        # MediaPipe Tasks reads each output as a classification head and wants metadata for
        # each; the probabilities come first, so its head 0 is what an app shows.
        logits = fb.TensorMetadataT()
        logits.name = "logits"
        logits.description = f"Logits of the {len(meta.labels)} labels (the softmax's input), for calibrated probabilities."
        logits.content = fb.ContentT()
        logits.content.contentPropertiesType = fb.ContentProperties.FeatureProperties
        logits.content.contentProperties = fb.FeaturePropertiesT()
        logits.associatedFiles = [copy.deepcopy(label_file)]
        outputs.append(logits)

    subgraph = fb.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [image]
    subgraph.outputTensorMetadata = outputs
    model.subgraphMetadata = [subgraph]

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), METADATA_IDENTIFIER)
    labels_text = "".join(f"{label}\n" for label in meta.labels).encode("utf-8")
    return bytes(builder.Output()), {LABEL_FILE: labels_text}


def _description(meta) -> str:
    provenance = meta.provenance or {}
    what = f"Classifies {meta.dataset} images" if meta.dataset else "Classifies images"
    parts = [f"{what} into {len(meta.labels)} classes ({', '.join(meta.labels)})."]
    if meta.quantization:
        parts.append(f"Quantization: {meta.quantization}.")
    if provenance.get("intended_use"):
        parts.append(f"Intended use: {provenance['intended_use']}.")
    if provenance.get("data_source"):
        parts.append(f"Data: {provenance['data_source']}.")
    return " ".join(parts)


def append_associated_files(model_bytes: bytes, files: dict[str, bytes]) -> bytes:
    """The model with `files` in a zip archive appended, stored uncompressed: the layout the
    TFLite metadata populator writes and MediaPipe's metadata extractor reads."""
    out = io.BytesIO(model_bytes)
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # same bytes for the same model
            archive.writestr(info, data)
    return out.getvalue()


# Limits on the zip archive appended to a model, checked in its central directory before any
# member is read: a label file for thousands of classes is tens of KB; a hostile file can claim
# hundreds of members that inflate to gigabytes from a few MB.
MAX_ASSOCIATED_FILES = 64
MAX_ASSOCIATED_FILE_BYTES = 4 << 20
MAX_ASSOCIATED_TOTAL_BYTES = 16 << 20


def associated_file_names(model_bytes: bytes) -> list[str]:
    """The names of the files appended to a model ([] when it has none or they are unreadable),
    once the archive is within the limits above (ValueError otherwise)."""
    return [info.filename for info in _archive_members(model_bytes)]


def associated_files(model_bytes: bytes, names: set[str] | None = None) -> dict[str, bytes]:
    """The files appended to a model (those in `names`, or all), {} when there are none or the
    archive is unreadable; ValueError when it is beyond the limits above."""
    members = _archive_members(model_bytes)
    if not members:
        return {}
    try:
        with zipfile.ZipFile(io.BytesIO(model_bytes)) as archive:
            # A member is read through its own declared size: zipfile stops there (and checks
            # the CRC), so a member that inflates beyond what it declared costs no more.
            return {info.filename: archive.read(info) for info in members if names is None or info.filename in names}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, zlib.error):
        return {}


def _archive_members(model_bytes: bytes) -> list[zipfile.ZipInfo]:
    try:
        with zipfile.ZipFile(io.BytesIO(model_bytes)) as archive:
            members = archive.infolist()  # the central directory only: nothing is inflated
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        return []
    if len(members) > MAX_ASSOCIATED_FILES:
        raise ValueError(f"the appended archive lists {len(members)} files (at most {MAX_ASSOCIATED_FILES} are read)")
    total = 0
    for info in members:
        total += info.file_size
        if info.file_size > MAX_ASSOCIATED_FILE_BYTES or total > MAX_ASSOCIATED_TOTAL_BYTES:
            raise ValueError(
                f"the appended archive's files are too large ({info.file_size / 2**20:.0f} MiB for one, "
                f"{total / 2**20:.0f} MiB so far; at most {MAX_ASSOCIATED_FILE_BYTES >> 20} MiB each, "
                f"{MAX_ASSOCIATED_TOTAL_BYTES >> 20} MiB in all)"
            )
    return members


def read_standard_metadata(raw: bytes, model_bytes: bytes) -> StandardMetadata:
    """Parse a TFLITE_METADATA buffer `raw` (and the label file it names in `model_bytes`).

    Raises ValueError for a buffer that is not M001 metadata."""
    fb = _schema()
    if len(raw) < 8 or raw[4:8] != METADATA_IDENTIFIER:
        raise ValueError("the TFLITE_METADATA entry is not M001 model metadata")
    try:
        model = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAs(bytearray(raw), 0))
    except Exception as exc:  # the generated code raises whatever struct/flatbuffers raise
        raise ValueError(f"the TFLITE_METADATA entry is damaged ({type(exc).__name__})") from None
    meta = StandardMetadata(
        name=_text(model.name),
        description=_text(model.description),
        version=_text(model.version),
        author=_text(model.author),
        license=_text(model.license),
        min_parser_version=_text(model.minParserVersion),
    )
    names = associated_file_names(model_bytes)
    meta.associated_files = sorted(names)
    subgraph = (model.subgraphMetadata or [None])[0]
    if subgraph is None:
        return meta
    for tensor in (subgraph.inputTensorMetadata or [])[:1]:
        for unit in tensor.processUnits or []:
            if unit.optionsType == fb.ProcessUnitOptions.NormalizationOptions and unit.options is not None:
                meta.mean = [float(v) for v in (unit.options.mean if unit.options.mean is not None else [])]
                meta.std = [float(v) for v in (unit.options.std if unit.options.std is not None else [])]
    for tensor in (subgraph.outputTensorMetadata or [])[:1]:
        for file in tensor.associatedFiles or []:
            name = _text(file.name)
            if file.type == fb.AssociatedFileType.TENSOR_AXIS_LABELS and name in names and not meta.label_file:
                meta.label_file = name
                text = associated_files(model_bytes, {name}).get(name, b"").decode("utf-8", "replace")
                meta.labels = [line.strip() for line in text.splitlines() if line.strip()]
    return meta


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else (value or "")
