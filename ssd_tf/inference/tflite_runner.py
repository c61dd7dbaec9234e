"""Run a ``.tflite`` detector written by ``ssd_tf.export.tflite`` (the TF Object Detection API's layout).

The file holds builtin TFLite ops only, plus TFLite's ``TFLite_Detection_PostProcess`` custom op,
which the standard interpreter (LiteRT, ``tf.lite``, Android, the Edge TPU compiler) ships; no
Select-TF (Flex) ops.

Input: ``image`` uint8 [1, 300, 300, 3], RGB, already resized (normalisation is inside the model).
Outputs, as the OD API's TFLite SSD models give them:
  ``detection_boxes``   float32 [1, K, 4]: normalised (ymin, xmin, ymax, xmax), clipped to [0, 1]
                        (before NMS, as ``decode_detections`` does, except in int8 models);
  ``detection_classes`` float32 [1, K]: class index without background, 0..C-2 (our class id - 1;
                        line i of the label file);
  ``detection_scores``  float32 [1, K];
  ``num_detections``    float32 [1].
"""

import pathlib

import numpy as np
import tensorflow as tf

from ssd_tf.core import anchors as anchors_lib
from ssd_tf.data.resize import to_uint8_input

POSTPROCESS_OP = "TFLite_Detection_PostProcess"
OUTPUTS = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")
LABELS_FILE = "labels.txt"


def interpreter_class():
    """LiteRT's Interpreter (the ``ai-edge-litert`` package) when installed, else ``tf.lite``'s.

    LiteRT is the maintained runtime and what devices run; ``tf.lite.Interpreter`` is deprecated
    but ships with TensorFlow, so a plain install can still read the files it converts.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    return Interpreter


def _interpreter(data, **kwargs):
    Interpreter = interpreter_class()
    try:  # without delegates, the op list is the file's own (XNNPACK would fold ops into DELEGATE)
        from ai_edge_litert.interpreter import OpResolverType
    except ImportError:
        OpResolverType = tf.lite.experimental.OpResolverType
    return Interpreter(model_content=data, **kwargs,
                       experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)


def operators(data):
    """The operator names of a ``.tflite`` model (bytes), one per op in the graph."""
    interpreter = _interpreter(data)
    return [op["op_name"] for op in interpreter._get_ops_details()]


class TFLiteRunner:
    """Runs a ``.tflite`` file written by ``convert`` on one uint8 image of any size at a time.

    ``detect_batch(images uint8 [B, H, W, 3])`` -> numpy dict as ``decode_detections`` gives it:
    ``boxes`` [B, K, 4] normalised xyxy, ``scores`` [B, K], ``classes`` [B, K] int32 (1..C-1; 0
    in padding), ``num_detections`` [B].
    """

    def __init__(self, path, num_threads=None):
        self.path = pathlib.Path(path)
        try:
            data = self.path.read_bytes()
            self.interpreter = interpreter_class()(model_content=data, num_threads=num_threads)
            self.interpreter.allocate_tensors()
            self._run = self.interpreter.get_signature_runner()
        except (ValueError, RuntimeError, OSError) as err:
            raise ValueError(f"{self.path}: not a readable TFLite model: {str(err).strip().splitlines()[0]}") from None
        inputs = self._run.get_input_details()
        outputs = self._run.get_output_details()
        spec = inputs.get("image", {})
        self.size = anchors_lib.SSD300.image_size
        if (set(inputs) != {"image"} or spec.get("dtype") != np.uint8
                or tuple(spec.get("shape", ())) != (1, self.size, self.size, 3) or set(outputs) != set(OUTPUTS)):
            got = {k: (tuple(v["shape"]), np.dtype(v["dtype"]).name) for k, v in {**inputs, **outputs}.items()}
            raise ValueError(f"{self.path}: not an ssd-tf detector: expected one uint8 input 'image' [1, {self.size}, "
                             f"{self.size}, 3] and outputs {', '.join(OUTPUTS)}; got {got}")
        self.max_detections = int(outputs["detection_scores"]["shape"][-1])

    def detect_batch(self, images):
        outputs = [self._run(image=to_uint8_input(image, self.size)[None]) for image in images]
        return from_output_layout({name: np.concatenate([o[name] for o in outputs]) for name in OUTPUTS})


def from_output_layout(outputs):
    """Our exported files' outputs (``OUTPUTS``, as documented above, any batch size) -> the dict
    ``decode_detections`` gives: ``boxes`` [B, K, 4] xyxy, ``scores`` [B, K], ``classes`` int32
    [B, K] (1..C-1; 0 in padding), ``num_detections`` int32 [B]."""
    num = np.asarray(outputs["num_detections"]).astype(np.int32).reshape(-1)
    scores = np.asarray(outputs["detection_scores"], np.float32)
    valid = np.arange(scores.shape[1])[None, :] < num[:, None]
    boxes = np.asarray(outputs["detection_boxes"], np.float32)[..., [1, 0, 3, 2]]
    return {"boxes": np.where(valid[..., None], boxes, 0.0).astype(np.float32),
            "scores": np.where(valid, scores, 0.0).astype(np.float32),
            "classes": np.where(valid, np.asarray(outputs["detection_classes"]).astype(np.int32) + 1,
                                0).astype(np.int32),
            "num_detections": num}
