"""TFLite Model Metadata for our ``.tflite`` detectors, as MediaPipe Tasks' ObjectDetector and the
TFLite Task Library read it: the input image's properties, the four outputs tagged as location,
category, score and number of detections, and ``labels.txt`` packed into the file.

The metadata is a flatbuffer of the public TFLite metadata schema (``metadata_schema.fbs``,
file identifier "M001"), stored in the model under the name ``TFLITE_METADATA``; associated files
are a zip archive appended to the model, which TFLite's flatbuffer readers ignore. It is written
here with the ``flatbuffers`` package TensorFlow already depends on: the maintained writers need
more than a schema (``tflite-support`` is unmaintained and pins protobuf 3.20; MediaPipe's writer
does not import from its PyPI wheel).
"""

import io
import zipfile

import flatbuffers
import numpy as np

from ssd_tf.export.prepare import labels_text

METADATA_NAME = "TFLITE_METADATA"
MIN_PARSER_VERSION = "1.2.0"  # output_tensor_groups came with schema 1.2.0
# Enums of metadata_schema.fbs.
_IMAGE_PROPERTIES, _FEATURE_PROPERTIES, _BOUNDING_BOX_PROPERTIES = 2, 1, 3  # ContentProperties
_RGB = 1  # ColorSpaceType
_BOUNDARIES = 1  # BoundingBoxType
_TENSOR_VALUE_LABELS = 3  # AssociatedFileType
# Our outputs (the TFLite_Detection_PostProcess op's) -> the names ObjectDetector looks for.
OUTPUT_ROLES = {"detection_boxes": "location", "detection_classes": "category", "detection_scores": "score",
                "num_detections": "number of detections"}
_DESCRIPTIONS = {
    "location": "The locations of the detected boxes: (ymin, xmin, ymax, xmax) in [0, 1].",
    "category": "The categories of the detected boxes: line index of labels.txt (the model's class id - 1).",
    "score": "The scores of the detected boxes.",
    "number of detections": "The number of the detected boxes.",
}


class _Writer:
    """Builds metadata tables bottom-up (a flatbuffer child is written before its parent)."""

    def __init__(self):
        self.b = flatbuffers.Builder(1024)
        self.b.ForceDefaults(True)  # every scalar given is written, even when it equals the schema's default

    def string(self, text):
        return self.b.CreateString(text) if text is not None else None

    def vector(self, offsets):
        self.b.StartVector(4, len(offsets), 4)
        for offset in reversed(offsets):
            self.b.PrependUOffsetTRelative(offset)
        return self.b.EndVector()

    def numbers(self, values, prepend):
        self.b.StartVector(4, len(values), 4)
        for value in reversed(values):
            prepend(value)
        return self.b.EndVector()

    def table(self, slots, offsets=(), scalars=()):
        """A table of ``slots`` fields: ``offsets`` {slot: offset}, ``scalars`` {slot: (prepend name,
        value)}; None values are left out."""
        self.b.StartObject(slots)
        for slot, offset in dict(offsets).items():
            if offset is not None:
                self.b.PrependUOffsetTRelativeSlot(slot, offset, 0)
        for slot, (kind, value) in dict(scalars).items():
            getattr(self.b, f"Prepend{kind}Slot")(slot, value, 0)
        return self.b.EndObject()


def _content(w, kind, properties, dim=None):
    value_range = w.table(2, scalars={0: ("Int32", dim), 1: ("Int32", dim)}) if dim is not None else None
    return w.table(3, offsets={1: properties, 2: value_range}, scalars={0: ("Uint8", kind)})


def _tensor(w, name, description, content=None, stats=None, files=None):
    """TensorMetadata: name 0, description 1, dimension_names 2, content 3, process_units 4, stats 5,
    associated_files 6."""
    return w.table(7, offsets={0: w.string(name), 1: w.string(description), 3: content, 5: stats,
                               6: w.vector(files) if files else None})


def metadata_buffer(output_order, labels_file, name, description, version, author="", license=""):
    """The metadata flatbuffer (bytes) of a detector whose subgraph outputs are ``output_order``
    (our output names, in the subgraph's order)."""
    w = _Writer()
    size = w.table(2, scalars={0: ("Uint32", 300), 1: ("Uint32", 300)})
    image = w.table(2, offsets={1: size}, scalars={0: ("Int8", _RGB)})
    stats = w.table(2, offsets={0: w.numbers([255.0], w.b.PrependFloat32), 1: w.numbers([0.0], w.b.PrependFloat32)})
    inputs = [_tensor(w, "image", "Input image to be processed: RGB, uint8, 300x300 (resized by the caller; "
                      "normalisation is inside the model).", _content(w, _IMAGE_PROPERTIES, image), stats)]
    outputs = []
    for output in output_order:
        role = OUTPUT_ROLES[output]
        files = None
        if role == "location":
            index = w.numbers([1, 0, 3, 2], w.b.PrependUint32)  # (ymin, xmin, ymax, xmax) -> left, top, right, bottom
            # BoundingBoxProperties: index 0, type 1, coordinate_type 2 (RATIO, the default 0).
            properties = w.table(3, offsets={0: index}, scalars={1: ("Int8", _BOUNDARIES)})
            content = _content(w, _BOUNDING_BOX_PROPERTIES, properties, dim=2)
        elif role == "number of detections":
            content = _content(w, _FEATURE_PROPERTIES, w.table(0))
        else:
            content = _content(w, _FEATURE_PROPERTIES, w.table(0), dim=2)
            if role == "category":
                # AssociatedFile: name 0, description 1, type 2, locale 3.
                files = [w.table(4, offsets={0: w.string(labels_file), 1: w.string("Class names, one a line")},
                                 scalars={2: ("Int8", _TENSOR_VALUE_LABELS)})]
        outputs.append(_tensor(w, role, _DESCRIPTIONS[role], content, files=files))
    group = w.table(2, offsets={0: w.string("detection_result"),
                                1: w.vector([w.string(n) for n in ("location", "category", "score")])})
    # SubGraphMetadata: name 0, description 1, inputs 2, outputs 3, ..., output_tensor_groups 8.
    subgraph = w.table(10, offsets={0: w.string(name), 2: w.vector(inputs), 3: w.vector(outputs),
                                    8: w.vector([group])})
    # ModelMetadata: name 0, description 1, version 2, subgraph_metadata 3, author 4, license 5,
    # associated_files 6, min_parser_version 7.
    model = w.table(8, offsets={0: w.string(name), 1: w.string(description), 2: w.string(version),
                                3: w.vector([subgraph]), 4: w.string(author), 5: w.string(license),
                                7: w.string(MIN_PARSER_VERSION)})
    w.b.Finish(model, file_identifier=b"M001")
    return bytes(w.b.Output())


def output_order(model_bytes):
    """Our output names in the order of the main subgraph's outputs (the order metadata must follow)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    signature = model.signatureDefs[0]
    by_index = {tensor.tensorIndex: tensor.name.decode() for tensor in signature.outputs}
    return [by_index[i] for i in model.subgraphs[0].outputs]


def with_metadata(model_bytes, class_names, labels_file, name, description, version, author="", license=""):
    """``model_bytes`` with the metadata of a detector of ``class_names`` (background first) and
    ``labels_file`` (one name a line, without background) packed in. Returns bytes."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    order = output_order(model_bytes)
    if set(order) != set(OUTPUT_ROLES):
        raise ValueError(f"not an ssd-tf detector: outputs {order}, expected {sorted(OUTPUT_ROLES)}")
    metadata = metadata_buffer(order, labels_file, name, description, version, author, license)
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    model.metadata = [m for m in (model.metadata or []) if m.name.decode() != METADATA_NAME]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(metadata, np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME.encode()
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    data = io.BytesIO(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    # Associated files: a zip archive after the flatbuffer, as the metadata populator writes them.
    with zipfile.ZipFile(data, "a") as archive:
        archive.writestr(labels_file, labels_text(class_names))
    return data.getvalue()
