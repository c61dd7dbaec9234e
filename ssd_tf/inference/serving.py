"""The detection graph: encoded bytes, uint8 images of any size, or resized images -> detections.

The one model-then-decode path: the exported SavedModel's signatures (``ssd_tf.export.saved_model``) and
``ssd_tf.Detector`` on a Keras model (prediction, evaluation, the TensorBoard images callback) all
run these functions, so they resize, decode and suppress identically.
"""

import tensorflow as tf

from ssd_tf.core import anchors as anchors_lib
from ssd_tf.core.postprocess import decode_detections
from ssd_tf.data.resize import resize_image


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

    @tf.function(input_signature=[tf.TensorSpec([None, 300, 300, 3], tf.float32, name="images")])
    def detect(self, images):
        """Detections for images already resized to 300x300 (float, 0..255): what the evaluation
        pipeline yields. Not a SavedModel signature; both signatures call it, so the model is traced
        once and a SavedModel stores its graph once."""
        # NMS has no XLA kernel and the model runs well without: no jit here.
        out = decode_detections(self._run_model(images), self.score_threshold,
                                self.iou_threshold, self.max_detections)
        return {"detection_boxes": out["boxes"], "detection_scores": out["scores"],
                "detection_classes": out["classes"], "num_detections": out["num_detections"]}

    def _decode_one(self, data):
        # Check the magic bytes first: a clear message instead of a decoder error. Padding lets
        # an empty or short string reach the same message (substr past the end fails otherwise).
        head = tf.strings.substr(tf.strings.join([data, b"\0" * 12]), 0, 12)
        is_image = tf.reduce_any(tf.stack([
            tf.strings.substr(head, 0, 3) == b"\xff\xd8\xff",  # JPEG
            tf.strings.substr(head, 0, 8) == b"\x89PNG\r\n\x1a\n",
            tf.strings.substr(head, 0, 4) == b"GIF8",
            tf.strings.substr(head, 0, 2) == b"BM",
            tf.logical_and(tf.strings.substr(head, 0, 4) == b"RIFF", tf.strings.substr(head, 8, 4) == b"WEBP"),
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
        return self.detect(images)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def serve_images(self, images):
        shape = tf.shape(images)
        # Signature wrappers check dtype, not shape (the rank is checked by the resize op).
        valid = tf.reduce_all(shape[1:3] > 0) & tf.equal(shape[-1], 3)
        with tf.control_dependencies([tf.debugging.Assert(valid, [
                "images must be uint8 [batch, height, width, 3] with height, width >= 1; got shape", shape])]):
            resized = resize_image(images, self.image_size)
        return self.detect(resized)
