"""ssd-tf: SSD300 with a ResNet50 backbone in TensorFlow / Keras 3.

Boxes are normalised [xmin, ymin, xmax, ymax] unless a name says otherwise (see ssd_tf.boxes).
Class 0 is background.
"""

# Importing the package registers every Keras-serializable class (loss, metrics, layers,
# schedule), so a saved .keras model loads in any process that imports ssd_tf.
from ssd_tf import optimizers, schedules  # noqa: F401
from ssd_tf.anchors import default_boxes
from ssd_tf.encoding import encode_targets, encode_y_true
from ssd_tf.losses import SSDLoss
from ssd_tf.model import build_ssd300
from ssd_tf.postprocess import decode_detections
from ssd_tf.detector import Detector

__version__ = "0.1.0"

__all__ = [
    "build_ssd300",
    "Detector",
    "decode_detections",
    "default_boxes",
    "encode_targets",
    "encode_y_true",
    "SSDLoss",
]
