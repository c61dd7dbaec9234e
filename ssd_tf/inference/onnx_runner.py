"""Run an ``.onnx`` detector written by ``ssd_tf.export.onnx_export`` with ONNX Runtime.

Input ``images`` uint8 [N, 300, 300, 3] (resized here, as training and serving resize); outputs
as the ``.tflite`` files give them (``ssd_tf.inference.tflite_runner.OUTPUTS``). ONNX Runtime's
``InferenceSession.run`` may be called from several threads at once.
"""

import pathlib

import numpy as np

from ssd_tf.core import anchors as anchors_lib
from ssd_tf.data.resize import to_uint8_input
from ssd_tf.inference.tflite_runner import OUTPUTS, from_output_layout

EXTRA_HINT = 'pip install -e ".[onnx]"'


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError(f"running .onnx models needs onnxruntime ({err}): {EXTRA_HINT}") from None
    return onnxruntime


class ONNXRunner:
    """ONNX Runtime on one of our ``.onnx`` files: ``detect_batch(images uint8 [B, H, W, 3])`` -> the
    dict ``decode_detections`` gives. ValueError naming the file when it is not our detector."""

    def __init__(self, path, num_threads=None):
        ort = _onnxruntime()
        self.path = pathlib.Path(path)
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for unreadable files
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            raise ValueError(f"{self.path}: not a readable ONNX model: {first}") from None
        self.size = anchors_lib.SSD300.image_size
        inputs = {i.name: (i.type, i.shape) for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        if (list(inputs) != ["images"] or inputs["images"][0] != "tensor(uint8)"
                or list(inputs["images"][1][1:]) != [self.size, self.size, 3] or sorted(outputs) != sorted(OUTPUTS)):
            raise ValueError(f"{self.path}: not an ssd-tf detector: expected one uint8 input 'images' "
                             f"[N, {self.size}, {self.size}, 3] and outputs {', '.join(OUTPUTS)}; got inputs "
                             f"{inputs}, outputs {outputs}")
        self._names = outputs

    def run(self, resized):
        """The raw outputs ({name: array}) for uint8 [N, 300, 300, 3] images already resized."""
        return dict(zip(self._names, self.session.run(self._names, {"images": np.asarray(resized, np.uint8)})))

    def detect_batch(self, images):
        return from_output_layout(self.run(np.stack([to_uint8_input(image, self.size) for image in images])))
