"""Training: the run's configuration, strategies, the training loop, validation, callbacks and
fine-tuning. ``train(TrainConfig(...))`` is the run behind ``scripts/train.py``.

Importing this package loads no TensorFlow (``TrainConfig`` needs none); other names load on first use.
"""

from ssd_tf.lazy import exports

_EXPORTS = {
    "TrainConfig": "config",
    "train": "run", "run_epochs_done": "run",
    "fit": "loop", "LoopSettings": "loop", "checkpoint_epochs_done": "loop",
    "Validation": "validation", "is_validation_epoch": "validation",
    "COCOEvaluation": "callbacks", "CSVLogger": "callbacks", "DetectionImages": "callbacks",
    "PreciseBatchNorm": "callbacks", "TrainingDiverged": "callbacks",
    "init_from": "finetune",
    "make_strategy": "distribute",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = exports(__name__, _EXPORTS)
