"""ssd-tf: SSD300 with a ResNet50 backbone in TensorFlow / Keras 3.

Boxes are normalised [xmin, ymin, xmax, ymax] unless a name says otherwise (see ssd_tf.core.boxes).
Class 0 is background.

The package is in layers, each a subpackage that imports only from those before it: ``core``
(boxes, default boxes, encoding, decoding), ``modeling`` (the network, loss, optimizer, PyTorch
weights), ``data`` (readers and tf.data pipelines), ``inference`` (loading, ``Detector``),
``evaluation`` (COCO mAP), ``training``, ``export`` (SavedModel, TFLite) and ``cli`` (what the
scripts share).

The names below and the subpackages are imported on first use, so ``import ssd_tf`` and the
scripts' ``--help`` don't load TensorFlow. Keras' convention holds all the same: after
``import ssd_tf``, ``keras.saving.load_model(path)`` opens the ``.keras`` files the project
writes (see ``ssd_tf.keras_classes``).

Imported before TensorFlow, on x86, it turns TensorFlow's oneDNN kernels on where TensorFlow would
leave them off (see ``ssd_tf.cpu_kernels``); ``TF_ENABLE_ONEDNN_OPTS=0`` opts out.
"""

from ssd_tf.cpu_kernels import prefer_onednn
from ssd_tf.keras_classes import register_when_keras_loads
from ssd_tf.lazy import exports

prefer_onednn()
register_when_keras_loads()

__version__ = "0.3.0"

_EXPORTS = {
    "build_ssd300": "ssd_tf.modeling.ssd300",
    "Detector": "ssd_tf.inference.detector",
    "decode_detections": "ssd_tf.core.postprocess",
    "default_boxes": "ssd_tf.core.anchors",
    "encode_targets": "ssd_tf.core.encoding",
    "encode_y_true": "ssd_tf.core.encoding",
    "load_model": "ssd_tf.inference.loading",
    "SSDLoss": "ssd_tf.modeling.losses",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = exports(__name__, _EXPORTS)
