"""ONNX export: one graph from uint8 images to detections, NMS inside, for ONNX Runtime, OpenVINO and
TensorRT (through ``trtexec --onnx``).

Input: ``images`` uint8 [N, 300, 300, 3], RGB, already resized, N dynamic (normalisation is inside
the model). Outputs, named and laid out as in our ``.tflite`` files:
  ``detection_boxes``   float32 [N, K, 4]: normalised (ymin, xmin, ymax, xmax) in [0, 1];
  ``detection_classes`` float32 [N, K]: class index without background (our class id - 1; line i
                        of labels.txt);
  ``detection_scores``  float32 [N, K], best first;
  ``num_detections``    float32 [N]: how many of the K rows are detections (the rest is padding).
Per-class NMS is the standard ONNX ``NonMaxSuppression`` op; decoding (softmax, boxes against the
default boxes, clipping, boxes under 1/300 dropped) is plain ops, as ``decode_detections`` does.

Converted with ``tf2onnx`` (the ``onnx`` extra). The model is converted at a fixed input size, so
the graph holds no resize: TensorFlow's antialiased resize has no ONNX counterpart.
"""

import json
import pathlib
import tempfile

import tensorflow as tf

from ssd_tf import __version__
from ssd_tf.core import anchors as anchors_lib
from ssd_tf.core.postprocess import decode_detections
from ssd_tf.export.prepare import float32_model, model_classes, write_model_file
from ssd_tf.paths import refuse_existing
from ssd_tf.inference import loading
from ssd_tf.inference.tflite_runner import LABELS_FILE, OUTPUTS

DEFAULT_OPSET = 17
EXTRA_HINT = 'pip install -e ".[onnx]"'


def detection_function(model, score_threshold=0.05, iou_threshold=0.5, max_detections=100):
    """The tf.function that converts: uint8 [N, 300, 300, 3] -> the four outputs above."""
    size = anchors_lib.SSD300.image_size

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8, name="images")])
    def detect(images):
        out = decode_detections(model(tf.cast(images, tf.float32), training=False), score_threshold, iou_threshold,
                                max_detections)
        return {"detection_boxes": tf.gather(out["boxes"], [1, 0, 3, 2], axis=-1),
                "detection_classes": tf.cast(tf.maximum(out["classes"] - 1, 0), tf.float32),
                "detection_scores": out["scores"],
                "num_detections": tf.cast(out["num_detections"], tf.float32)}
    return detect


def _tf2onnx():
    try:
        import tf2onnx
    except ImportError as err:
        raise ImportError(f"ONNX export needs tf2onnx ({err}): {EXTRA_HINT}") from None
    return tf2onnx


def convert(model, opset=DEFAULT_OPSET, class_names=None, **thresholds):
    """The ``.onnx`` bytes of a Keras SSD300 (float32). ``class_names`` (background first) are kept
    in the model's metadata_props as JSON, beside ssd-tf's version."""
    tf2onnx = _tf2onnx()
    detect = detection_function(model, **thresholds)
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "model.onnx"
        proto, _ = tf2onnx.convert.from_function(detect, input_signature=detect.input_signature, opset=int(opset),
                                                 output_path=str(path))
        names = [output.name for output in proto.graph.output]
        if sorted(names) != sorted(OUTPUTS):
            raise RuntimeError(f"the ONNX graph's outputs are {names}, expected {list(OUTPUTS)}")
        props = {"producer": f"ssd-tf {__version__}", "class_names": json.dumps(list(class_names or []))}
        for key, value in props.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        return proto.SerializeToString()


def export_onnx(source, output_dir, opset=DEFAULT_OPSET, num_classes=None, **thresholds):
    """Write ``output_dir/model.onnx``, ``labels.txt`` (line i: the name of output class i, our
    class i + 1) and ``classes.json`` from a run folder, ``.keras`` or ``.weights.h5`` file.
    FileExistsError when ``model.onnx`` exists there; ImportError naming the ``onnx`` extra when
    tf2onnx is missing. Returns the path of the ``.onnx`` file."""
    output_dir = pathlib.Path(output_dir)
    target = output_dir / "model.onnx"
    refuse_existing(target, "choose another output_dir=")
    _tf2onnx()  # before loading the model: a missing extra is said at once
    model = float32_model(loading.load_keras_model(source, num_classes))
    class_names, category_ids = model_classes(model, *loading.classes_beside(source))
    data = convert(model, opset, class_names, **thresholds)
    return write_model_file(target, data, LABELS_FILE, class_names, category_ids)
