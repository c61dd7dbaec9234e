"""The network and what trains it: the ResNet50 backbone in two layouts, SSD300, the loss, the
optimizer, learning-rate schedules, batch norm across replicas, and weights from PyTorch files
(torchvision's ResNet50, NVIDIA's SSD300 checkpoint).

Importing this package loads no TensorFlow; its names load on first use.
"""

from ssd_tf.lazy import exports

# ResNet50 layouts: NVIDIA's torchvision v1.5 (the default) and keras.applications' v1.
BACKBONE_LAYOUTS = ("torchvision", "keras")
# The layout of runs saved before layouts were recorded.
LEGACY_LAYOUT = "keras"

_EXPORTS = {
    "build_ssd300": "ssd300",
    "layout_of": "backbone", "load_resnet50_weights": "backbone", "TorchvisionPreprocess": "backbone",
    "CaffePreprocess": "backbone",
    "SSDLoss": "losses", "LossPart": "losses", "loss_part_metrics": "losses", "ssd_loss_parts": "losses",
    "TorchSGD": "optimizers",
    "WarmupSchedule": "lr_schedules",
    "PreciseBN": "batchnorm", "batch_norm_layers": "batchnorm", "sync_moving_statistics": "batchnorm",
    "WeightsError": "torch_weights", "read_state_dict": "torch_weights",
    "import_nvidia": "nvidia", "NVIDIA_NUM_CLASSES": "nvidia",
}

__all__ = sorted(_EXPORTS) + ["BACKBONE_LAYOUTS", "LEGACY_LAYOUT"]
__getattr__, __dir__ = exports(__name__, _EXPORTS)
