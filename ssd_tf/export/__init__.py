"""Writing a trained model for other software: a SavedModel for TF Serving (with its warm-up
requests), a ``.tflite`` detector for LiteRT and MediaPipe (with TFLite Model Metadata), and an
``.onnx`` detector for ONNX Runtime, OpenVINO and TensorRT. Nothing is ever overwritten.

Importing this package loads no TensorFlow; its names load on first use.
"""

from ssd_tf.lazy import exports

_EXPORTS = {
    "export_saved_model": "saved_model", "next_version": "saved_model",
    "export_tflite": "tflite", "convert": "tflite", "QUANTIZE": "tflite",
    "export_onnx": "onnx_export",
    "write_warmup": "serving_warmup",
    "float32_model": "prepare",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = exports(__name__, _EXPORTS)
