"""TFLite export: convert an SSD300 to a ``.tflite`` detector in the TF Object Detection API's
layout (``ssd_tf.inference.tflite_runner`` documents the file's inputs and outputs and runs it).

The file holds builtin TFLite ops only, plus TFLite's ``TFLite_Detection_PostProcess`` custom op,
which the standard interpreter (LiteRT, ``tf.lite``, Android, the Edge TPU compiler) ships; no
Select-TF (Flex) ops.
"""

import logging
import pathlib

import numpy as np
import tensorflow as tf

from ssd_tf import __version__
from ssd_tf.core import anchors as anchors_lib
from ssd_tf.core import boxes as box_ops
from ssd_tf.core import encoding
from ssd_tf.data.calibration import calibration_images
from ssd_tf.export import tflite_metadata
from ssd_tf.export.prepare import float32_model, model_classes, write_model_file
from ssd_tf.paths import refuse_existing
from ssd_tf.inference import loading
from ssd_tf.inference.tflite_runner import LABELS_FILE, POSTPROCESS_OP, operators

log = logging.getLogger(__name__)
QUANTIZE = ("none", "float16", "int8")
LOGIT_RANGE = 8.0


def _postprocess_signature(num_classes, score_threshold, iou_threshold, max_detections, spec):
    # The op's attributes, as a NodeDef text the converter legalises into the custom op (the OD
    # API's way). Regular (per-class) NMS, as decode_detections does; scales are 1 / variances.
    attrs = {"max_detections": f"i: {int(max_detections)}", "max_classes_per_detection": "i: 1",
             "detections_per_class": f"i: {int(max_detections)}", "use_regular_nms": "b: true",
             "nms_score_threshold": f"f: {float(score_threshold)!r}",
             "nms_iou_threshold": f"f: {float(iou_threshold)!r}",
             "y_scale": f"f: {1 / spec.scale_xy!r}", "x_scale": f"f: {1 / spec.scale_xy!r}",
             "h_scale": f"f: {1 / spec.scale_wh!r}", "w_scale": f"f: {1 / spec.scale_wh!r}",
             "num_classes": f"i: {int(num_classes) - 1}"}
    attrs = [f'attr {{ key: "{k}" value {{ {v} }} }}' for k, v in attrs.items()]
    return " ".join([f'name: "{POSTPROCESS_OP}"'] + attrs)


def _check_model(model, spec):
    """The class count (background included) of an SSD300 the TFLite export can take; ValueError otherwise."""
    shape = tuple(model.input_shape[1:])
    if shape != (spec.image_size, spec.image_size, 3):
        raise ValueError(f"TFLite export needs a {spec.image_size}x{spec.image_size}x3 input; "
                         f"the model takes {shape}")
    num_classes = int(model.output_shape[-1]) - 4
    if num_classes < 2:
        raise ValueError(f"TFLite export needs background plus at least one class; the model has {num_classes}")
    return num_classes


def _difference_heads(model, num_classes):
    """[(kernel, bias, boxes per cell)] for each of the six class heads, rewritten to give (class
    logit - background logit) / LOGIT_RANGE.

    int8 gives each tensor one scale, and TFLite's concatenation makes its inputs share one. A
    trained model's 38x38 class head is sure of background by logits of +-800 while its 5x5 to 1x1
    heads find objects with logits under 10: at one scale for all (6.2 a step) those become 0 and
    every score 0.5. So each class head becomes a conv whose outputs are the differences above,
    clipped to [-1, 1] (a fused RELU_N1_TO_1, so int8 steps 1/128 of it), times LOGIT_RANGE; the
    background's is 0. Softmax over (0, differences) is the model's softmax, up to scores under e^-16.
    """
    heads = []
    for k in range(6):
        kernel, bias = model.get_layer(f"conf{k}_conv").get_weights()
        boxes = kernel.shape[-1] // num_classes
        kernel = kernel.reshape(*kernel.shape[:3], boxes, num_classes)
        bias = bias.reshape(boxes, num_classes)
        kernel = (kernel[..., 1:] - kernel[..., :1]) / LOGIT_RANGE
        bias = (bias[:, 1:] - bias[:, :1]) / LOGIT_RANGE
        heads.append((tf.constant(kernel.reshape(*kernel.shape[:3], -1), tf.float32),
                      tf.constant(bias.reshape(-1), tf.float32), boxes))
    return heads


class TFLiteModule(tf.Module):
    """The graph that converts: uint8 image -> model -> (y, x, h, w) encodings and softmax scores
    -> TFLite_Detection_PostProcess, on boxes clipped to the image, as decode_detections does.

    ``clip_before_nms=False`` hands the op the network's encodings as they are (it then suppresses
    among unclipped boxes, which are clipped after): for int8, whose converter would quantise the
    clipping's decode and re-encode too (exp, log), which cost 0.77 of AP50 on the raccoon model."""

    def __init__(self, model, score_threshold=0.05, iou_threshold=0.5, max_detections=100, spec=anchors_lib.SSD300,
                 clip_before_nms=True):
        super().__init__(name="ssd300_tflite")
        self._spec, self.size = spec, spec.image_size
        self.num_classes = _check_model(model, spec)
        import keras
        features = [model.get_layer(f"conf{k}_conv").input for k in range(6)]
        locs = [model.get_layer(f"loc{k}_flat").output for k in range(6)]
        split = keras.Model(model.inputs, features + locs)
        self.class_heads = _difference_heads(model, self.num_classes)
        # As in ServingModule: track the raw variables, reach the model through an untracked closure.
        self.model_variables = [v.value for v in model.weights]
        self._run_model = lambda images: split(images, training=False)
        self._anchors_yxhw = anchors_lib.default_boxes(spec)[:, [1, 0, 3, 2]].astype(np.float32)
        signature = _postprocess_signature(self.num_classes, score_threshold, iou_threshold, max_detections, spec)

        @tf.function(experimental_implements=signature)
        def postprocess(box_encodings, class_predictions, anchors):  # noqa: ARG001 (replaced by the op)
            zero = tf.constant(0.0)
            return zero, zero, zero, zero
        self._postprocess = postprocess

        @tf.function(input_signature=[tf.TensorSpec([1, self.size, self.size, 3], tf.uint8, name="image")])
        def detect(image):
            outputs = [tf.cast(t, tf.float32) for t in self._run_model(tf.cast(image, tf.float32))]
            loc = tf.concat(outputs[6:], axis=1)
            scores = self._scores(outputs[:6])
            if clip_before_nms:
                encodings, big_enough = self._clipped_encodings(loc)
                scores = scores * big_enough[..., None]
            else:  # our (x, y, w, h) -> the op's (y, x, h, w)
                encodings = tf.gather(loc, [1, 0, 3, 2], axis=-1)
            boxes, classes, scores, count = self._postprocess(encodings, scores, tf.constant(self._anchors_yxhw))
            return {"detection_boxes": tf.clip_by_value(boxes, 0.0, 1.0), "detection_classes": classes,
                    "detection_scores": scores, "num_detections": count}
        self.detect = detect

    def _scores(self, features):
        """[1, 8732, C] softmax scores in the model's slot order, from the six class heads' input
        features through the difference heads (background at index 0)."""
        differences = []
        for feature, (kernel, bias, boxes) in zip(features, self.class_heads):
            x = tf.nn.conv2d(feature, kernel, 1, "SAME") + bias
            x = tf.minimum(tf.maximum(x, -1.0), 1.0) * LOGIT_RANGE
            size = feature.shape[1]
            x = tf.reshape(x, [1, size, size, boxes, self.num_classes - 1])  # the model's slot order
            differences.append(tf.reshape(tf.transpose(x, [0, 3, 1, 2, 4]), [1, boxes * size * size, -1]))
        differences = tf.concat(differences, axis=1)
        conf = tf.concat([tf.zeros_like(differences[..., :1]), differences], axis=-1)
        return tf.nn.softmax(conf, axis=-1)

    def _clipped_encodings(self, loc):
        """The op's (y, x, h, w) encodings of the boxes ``loc`` decodes to, clipped to the image,
        and a [1, N] mask of boxes at least 1/300 wide and high: what decode_detections suppresses
        among and keeps. The op decodes and suppresses unclipped boxes; encoding the clipped ones
        makes it decode exactly those (to float rounding)."""
        spec = self._spec
        anchors = tf.constant(anchors_lib.default_boxes(spec))  # cx, cy, w, h
        boxes = tf.clip_by_value(encoding.offsets_to_boxes(loc, anchors, spec), 0.0, 1.0)
        size = boxes[..., 2:] - boxes[..., :2]
        big_enough = tf.cast(tf.reduce_all(size >= 1.0 / spec.image_size, axis=-1), tf.float32)
        cxcywh = box_ops.xyxy_to_cxcywh(boxes)
        # A box clipped to nothing: scored 0 above, any finite encoding.
        cxcywh = tf.concat([cxcywh[..., :2], tf.maximum(cxcywh[..., 2:], 1e-6)], axis=-1)
        offsets = encoding.boxes_to_offsets(cxcywh, anchors, spec)
        return tf.gather(offsets, [1, 0, 3, 2], axis=-1), big_enough


def convert(model, quantize="none", calibration_images=None, **thresholds):
    """The ``.tflite`` bytes of a Keras SSD300.

    ``quantize``: "none" (float32), "float16" (float16 weights), or "int8" (full-integer network,
    uint8 input, float post-processing; needs ``calibration_images``: an iterable of uint8
    [300, 300, 3] arrays).
    """
    if quantize not in QUANTIZE:
        raise ValueError(f"quantize must be one of {QUANTIZE}, not {quantize!r}")
    module = TFLiteModule(model, **thresholds, clip_before_nms=quantize != "int8")
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.detect.get_concrete_function()], module)
    converter.allow_custom_ops = True  # TFLite_Detection_PostProcess only: Flex ops stay off
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if calibration_images is None:
            raise ValueError("int8 quantisation needs calibration images")
        images = [np.asarray(i, np.uint8)[None] for i in calibration_images]
        if not images:
            raise ValueError("int8 quantisation needs at least one calibration image")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image] for image in images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
    data = converter.convert()
    flex = [op for op in operators(data) if op.startswith("Flex")]
    if flex:  # would need the Flex delegate, which phones and the Edge TPU compiler refuse
        raise RuntimeError(f"the converted model needs Select-TF ops {sorted(set(flex))}")
    return data


def export_tflite(source, output_dir, quantize="none", calibration_data=None, calibration_count=300,
                  num_classes=None, model_name="ssd300", license="unspecified", **thresholds):
    """Write ``output_dir/model.tflite``, ``labels.txt`` (line i: the name of output class i, i.e.
    our class i + 1) and ``classes.json``. FileExistsError when ``model.tflite`` exists there.

    The file carries TFLite Model Metadata (``tflite_metadata``: name ``model_name``, this
    library's version, ``license``, the input and output tensors, ``labels.txt`` packed in), so
    MediaPipe Tasks' ObjectDetector and the TFLite Task Library load it as it is.
    Returns the path of the ``.tflite`` file."""
    output_dir = pathlib.Path(output_dir)
    target = output_dir / "model.tflite"
    refuse_existing(target, "choose another output_dir=")
    if quantize == "int8" and calibration_data is None:
        raise ValueError("quantize='int8' needs calibration_data=: a folder of training images (a few hundred "
                         "are used), a TFRecord folder, or 'synthetic'")
    images = calibration_images(calibration_data, calibration_count) if quantize == "int8" else None
    model = float32_model(loading.load_keras_model(source, num_classes))
    class_names, category_ids = model_classes(model, *loading.classes_beside(source))
    data = convert(model, quantize, images, **thresholds)
    description = (f"SSD300 (ResNet50) object detector, {len(class_names) - 1} classes, {quantize} "
                   f"quantisation, written by ssd-tf {__version__}.")
    data = tflite_metadata.with_metadata(data, class_names, LABELS_FILE, model_name, description, __version__,
                                         author="ssd-tf", license=license)
    return write_model_file(target, data, LABELS_FILE, class_names, category_ids)
