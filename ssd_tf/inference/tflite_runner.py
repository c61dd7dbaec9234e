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
import queue
import threading

import numpy as np
import tensorflow as tf

from ssd_tf.core import anchors as anchors_lib
from ssd_tf.data.pipeline import usable_cores
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
    """Runs a ``.tflite`` file written by ``ssd_tf.export.tflite`` on uint8 images of any size (one
    at a time: the file takes a batch of 1).

    ``detect_batch(images uint8 [B, H, W, 3])`` -> numpy dict as ``decode_detections`` gives it:
    ``boxes`` [B, K, 4] normalised xyxy, ``scores`` [B, K], ``classes`` [B, K] int32 (1..C-1; 0
    in padding), ``num_detections`` [B].

    Safe to share between threads. A LiteRT interpreter is not: two threads invoking one at once
    get errors or, worse, wrong detections. So each call borrows an interpreter from a pool of up
    to ``interpreters`` (default: the usable CPU cores), made as concurrent callers need them, and
    gives it back; a caller waits when all are busy. Each interpreter runs ``num_threads`` threads
    (default: LiteRT's, one). LiteRT's results depend on the thread count (to float rounding), so
    every interpreter of a pool gets the same, and a call's answer does not depend on which one
    ran it.

    Measured with 2 callers on 2 cores (Xeon AMX, images already resized, 2026-12-04): one
    interpreter of 2 threads behind a lock 7.54 (float32) and 56.6 (int8) images/s; two of 2
    threads 7.51 and 57.7; two of 1 thread, the default, 7.86 and 59.4. One caller alone gets
    about twice the speed from ``num_threads=2`` (7.2 and 55.0 against 4.0 and 29.9).
    """

    def __init__(self, path, num_threads=None, interpreters=None):
        self.path = pathlib.Path(path)
        try:
            self._data = self.path.read_bytes()
        except OSError as err:
            raise ValueError(f"{self.path}: not a readable TFLite model: {str(err).strip().splitlines()[0]}") from None
        cores = usable_cores()
        self.pool_size = max(1, int(interpreters or cores))
        self.num_threads = num_threads
        self._idle = queue.LifoQueue()
        self._made = 1  # interpreters made or being made; the first, here, so a wrong file fails at load
        self._lock = threading.Lock()
        first = self._new_runner()
        inputs = first.get_input_details()
        outputs = first.get_output_details()
        spec = inputs.get("image", {})
        self.size = anchors_lib.SSD300.image_size
        if (set(inputs) != {"image"} or spec.get("dtype") != np.uint8
                or tuple(spec.get("shape", ())) != (1, self.size, self.size, 3) or set(outputs) != set(OUTPUTS)):
            got = {k: (tuple(v["shape"]), np.dtype(v["dtype"]).name) for k, v in {**inputs, **outputs}.items()}
            raise ValueError(f"{self.path}: not an ssd-tf detector: expected one uint8 input 'image' [1, {self.size}, "
                             f"{self.size}, 3] and outputs {', '.join(OUTPUTS)}; got {got}")
        self.max_detections = int(outputs["detection_scores"]["shape"][-1])
        self._idle.put(first)

    def _new_runner(self):
        try:
            interpreter = interpreter_class()(model_content=self._data, num_threads=self.num_threads)
            interpreter.allocate_tensors()
            runner = interpreter.get_signature_runner()
        except (ValueError, RuntimeError) as err:
            raise ValueError(f"{self.path}: not a readable TFLite model: {str(err).strip().splitlines()[0]}") from None
        return runner

    def _borrow(self):
        """An idle interpreter's runner; a new one while the pool is not full; else wait for one."""
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            grow = self._made < self.pool_size
            self._made += grow  # counted under the lock, so two callers can't both grow past the size
        return self._new_runner() if grow else self._idle.get()

    def detect_batch(self, images):
        resized = [to_uint8_input(image, self.size)[None] for image in images]
        runner = self._borrow()
        try:
            outputs = [runner(image=image) for image in resized]
        finally:
            self._idle.put(runner)
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
