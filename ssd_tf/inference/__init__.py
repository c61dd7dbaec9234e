"""Running a trained model: loading it from any form this project writes, the detection graph,
``Detector`` (one object for Keras models, SavedModels and ``.tflite`` files), prediction on image
files, and drawing.

Importing this package loads no TensorFlow; its names load on first use.
"""

from ssd_tf.lazy import exports

_EXPORTS = {
    "Detector": "detector",
    "load_keras_model": "loading", "load_model": "loading", "load_weights_file": "loading", "classes_beside": "loading",
    "is_saved_model": "loading", "restore_checkpoint": "loading",
    "ServingModule": "serving",
    "TFLiteRunner": "tflite_runner", "ONNXRunner": "onnx_runner",
    "predict_files": "prediction", "draw_set_predictions": "prediction",
    "draw_detections": "drawing",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = exports(__name__, _EXPORTS)
