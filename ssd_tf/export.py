"""Export for TF Serving: saved_models/<name>/<version>/ with two signatures.

``serving_default``: ``image_bytes`` tf.string [B] (declared any-rank so a wrong rank gets a clear error; encoded JPEG/PNG/GIF/BMP/WebP; TF Serving's
REST API takes them as ``{"b64": ...}``). ``serve_images``: ``images`` uint8 [B, H, W, 3], any size.
Both resize to 300x300 inside, run the model and per-class NMS, and return
``detection_boxes`` [B, K, 4] normalised xyxy, ``detection_scores`` [B, K],
``detection_classes`` [B, K] int32 (1..C-1; 0 in padding), ``num_detections`` [B] int32.

Built as a ``tf.Module`` saved with ``tf.saved_model.save``: variables are stored once
(``keras.export.ExportArchive`` and ``model.export`` store them twice).
"""

import pathlib
import shutil

import tensorflow as tf

from ssd_tf import anchors as anchors_lib
from ssd_tf import artifacts
from ssd_tf.data.pipeline import resize_image
from ssd_tf.postprocess import decode_detections

_SIGNATURES = ("serving_default", "serve_images")


class ServingModule(tf.Module):
    """Wraps a Keras SSD300 with decoding, resizing and NMS for serving."""

    def __init__(self, model, score_threshold=0.05, iou_threshold=0.5, max_detections=100):
        super().__init__(name="ssd300_serving")
        # Track the raw tf.Variables, and reach the model through a closure that tf.Module does not
        # track. Tracking the Keras model itself leaves its variables unfindable for TF1-style
        # session loaders (saved_model_cli run, TF Serving: "Could not find variable ...",
        # tensorflow/tensorflow#72963); tracking both stores every variable twice.
        self.model_variables = [v.value for v in model.weights]
        self._run_model = lambda images: model(images, training=False)
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)
        self.max_detections = int(max_detections)
        self.image_size = anchors_lib.SSD300.image_size

    def _detect(self, images_float):
        # NMS has no XLA kernel and the model runs well without: no jit here.
        out = decode_detections(self._run_model(images_float), self.score_threshold,
                                self.iou_threshold, self.max_detections)
        return {"detection_boxes": out["boxes"], "detection_scores": out["scores"],
                "detection_classes": out["classes"], "num_detections": out["num_detections"]}

    def _decode_one(self, data):
        # Check the magic bytes first: a clear message instead of a decoder error.
        is_image = tf.reduce_any(tf.stack([
            tf.strings.substr(data, 0, 3) == b"\xff\xd8\xff",  # JPEG
            tf.strings.substr(data, 0, 8) == b"\x89PNG\r\n\x1a\n",
            tf.strings.substr(data, 0, 4) == b"GIF8",
            tf.strings.substr(data, 0, 2) == b"BM",
            tf.logical_and(tf.strings.substr(data, 0, 4) == b"RIFF", tf.strings.substr(data, 8, 4) == b"WEBP"),
        ]))
        with tf.control_dependencies([tf.debugging.Assert(is_image, [
                "image_bytes: an element is not a JPEG, PNG, GIF, BMP or WebP image"])]):
            image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
        image.set_shape([None, None, 3])
        return resize_image(image, self.image_size)

    # Any rank in the signature so that a wrong one gets our message: with a static [None] the
    # rank check folds away and a 2-D request fails deep in map_fn.
    @tf.function(input_signature=[tf.TensorSpec(None, tf.string, name="image_bytes")])
    def serve_bytes(self, image_bytes):
        with tf.control_dependencies([tf.debugging.Assert(tf.equal(tf.rank(image_bytes), 1), [
                "image_bytes must be a 1-D batch of encoded images; got shape", tf.shape(image_bytes)])]):
            image_bytes = tf.reshape(image_bytes, [-1])
        images = tf.map_fn(self._decode_one, image_bytes,
                           fn_output_signature=tf.TensorSpec([self.image_size, self.image_size, 3], tf.float32))
        return self._detect(images)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def serve_images(self, images):
        shape = tf.shape(images)
        # Signature wrappers check dtype, not shape (the rank is checked by the resize op).
        valid = tf.reduce_all(shape[1:3] > 0) & tf.equal(shape[-1], 3)
        with tf.control_dependencies([tf.debugging.Assert(valid, [
                "images must be uint8 [batch, height, width, 3] with height, width >= 1; got shape", shape])]):
            resized = resize_image(images, self.image_size)
        return self._detect(resized)


def export_saved_model(model, export_dir, class_names=None, category_ids=None, **thresholds):
    """Write a SavedModel with both signatures to ``export_dir`` (replaced if it exists).

    ``class_names`` / ``category_ids`` go to ``assets.extra/classes.json`` for clients.
    """
    export_dir = pathlib.Path(export_dir)
    if export_dir.exists():
        shutil.rmtree(export_dir)
    module = ServingModule(model, **thresholds)
    tf.saved_model.save(module, str(export_dir), signatures={
        "serving_default": module.serve_bytes.get_concrete_function(),
        "serve_images": module.serve_images.get_concrete_function(),
    })
    if class_names is not None:
        (export_dir / "assets.extra").mkdir(exist_ok=True)
        artifacts.write_classes(export_dir / "assets.extra" / artifacts.CLASSES_FILE, class_names, category_ids)
    return export_dir


def next_version(model_root):
    """1 + the highest integer version folder under ``model_root`` (1 when none)."""
    root = pathlib.Path(model_root)
    versions = [int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit()] if root.exists() else []
    return max(versions, default=0) + 1


def export_from_artifact(source, output_root="saved_models", name="ssd300", version=None, num_classes=None,
                         **thresholds):
    """Export a run folder / .keras / .weights.h5 to ``output_root/name/version``. Returns the path."""
    source = pathlib.Path(source)
    model = artifacts.load_keras_model(source, num_classes or _classes_count(source))
    folder = source if source.is_dir() else source.parent
    class_names, category_ids = artifacts.read_classes(folder)
    version = version or next_version(pathlib.Path(output_root) / name)
    return export_saved_model(model, pathlib.Path(output_root) / name / str(version), class_names, category_ids,
                              **thresholds)


def _classes_count(source):
    names, _ = artifacts.read_classes(source if source.is_dir() else source.parent)
    return len(names) if names else None
