"""TF Serving warm-up: ``assets.extra/tf_serving_warmup_requests`` in an exported SavedModel.

A TFRecord of ``tensorflow.serving.PredictionLog`` protos, TF Serving's documented format, which
it replays at load time with ``--enable_model_warmup`` so that the first client request does not
pay for graph initialisation. The protos are written from their wire format here (three small
messages) rather than through ``tensorflow-serving-api``, which pins TensorFlow's version.

PredictionLog.predict_log = 6 -> PredictLog.request = 1 -> PredictRequest{model_spec = 1,
inputs = 2 (map<string, TensorProto>)}; ModelSpec{name = 1, signature_name = 3}.
"""

import pathlib

import numpy as np
import tensorflow as tf

WARMUP_FILE = "tf_serving_warmup_requests"


def _varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number, payload):
    """A length-delimited field (wire type 2): strings, bytes and nested messages."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def prediction_log(signature_name, inputs, model_name=""):
    """Serialized PredictionLog of a PredictRequest: ``inputs`` maps input names to numpy arrays."""
    spec = _field(1, model_name.encode()) + _field(3, signature_name.encode())
    request = _field(1, spec)
    for key, value in sorted(inputs.items()):
        entry = _field(1, key.encode()) + _field(2, tf.make_tensor_proto(value).SerializeToString())
        request += _field(2, entry)
    return _field(6, _field(1, request))


def warmup_image(size=(240, 320), seed=0):
    """A real photo-like test image: uint8 [H, W, 3] of smooth colour gradients and shapes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[0], 0:size[1]].astype(np.float32)
    image = np.stack([x / size[1] * 255, y / size[0] * 255, np.full_like(x, 128)], -1)
    for _ in range(3):
        cy, cx, r = rng.integers(20, min(size) - 20, 3)
        image[(y - cy) ** 2 + (x - cx) ** 2 < (r / 2) ** 2] = rng.integers(0, 255, 3)
    return image.astype(np.uint8)


def write_warmup(saved_model_dir, model_name=""):
    """Write ``assets.extra/tf_serving_warmup_requests``: one ``serving_default`` request with an
    encoded JPEG, one ``serve_images`` request with a uint8 batch of two images. Returns the path."""
    image = warmup_image()
    jpeg = tf.io.encode_jpeg(image, quality=90).numpy()
    records = [
        prediction_log("serving_default", {"image_bytes": np.array([jpeg], dtype=object)}, model_name),
        prediction_log("serve_images", {"images": np.stack([image, image[:, ::-1]])}, model_name),
    ]
    path = pathlib.Path(saved_model_dir) / "assets.extra" / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return path
