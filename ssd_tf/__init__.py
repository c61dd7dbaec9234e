"""ssd-tf: SSD300 with a ResNet50 backbone in TensorFlow / Keras 3.

Boxes are normalised [xmin, ymin, xmax, ymax] unless a name says otherwise (see ssd_tf.core.boxes).
Class 0 is background.

The names below and the submodules (``ssd_tf.training.run``, ``ssd_tf.data``, ...) are imported on first
use, so ``import ssd_tf`` and the scripts' ``--help`` don't load TensorFlow. ``ssd_tf.modeling.ssd300`` (which
building, loading or running a model imports) registers every Keras-serializable class of the
library, so a saved .keras model then loads with ``keras.models.load_model`` too.

Imported before TensorFlow, on x86, it turns TensorFlow's oneDNN kernels on where TensorFlow would
leave them off (see ``ssd_tf.cpu_kernels``); ``TF_ENABLE_ONEDNN_OPTS=0`` opts out.
"""

from ssd_tf.cpu_kernels import prefer_onednn
from ssd_tf.lazy import exports

prefer_onednn()

__version__ = "0.1.0"

_EXPORTS = {
    "build_ssd300": "ssd_tf.modeling.ssd300",
    "Detector": "ssd_tf.inference.detector",
    "decode_detections": "ssd_tf.core.postprocess",
    "default_boxes": "ssd_tf.core.anchors",
    "encode_targets": "ssd_tf.core.encoding",
    "encode_y_true": "ssd_tf.core.encoding",
    "SSDLoss": "ssd_tf.modeling.losses",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = exports(__name__, _EXPORTS)
