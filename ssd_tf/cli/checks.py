"""The scripts' checks before TensorFlow loads and before anything is written: paths that must
exist, outputs that must not, data folders' layouts, and extras a choice needs. Each raises a
user error (ValueError, FileNotFoundError, FileExistsError) naming the path or parameter; the
library checks the same things again for Python callers, later and in more depth.
"""

import importlib.util
import pathlib
import sys

from ssd_tf.data.layout_checks import check_layout
from ssd_tf.inference.model_files import KERAS_FORMS, check_model_path
from ssd_tf.paths import refuse_existing

__all__ = ["check_layout", "check_model_path", "refuse_existing", "training", "existing", "installed",
           "torch_installed", "runtime_for", "readable_images", "KERAS_FORMS", "ONNX_HINT"]


def existing(path, what):
    """FileNotFoundError unless ``path`` exists; ``what`` says what it should be."""
    if not pathlib.Path(path).exists():
        raise FileNotFoundError(f"{path} does not exist ({what})")


ONNX_HINT = 'pip install -e ".[onnx]"'  # as ssd_tf.export.onnx_export and ssd_tf.inference.onnx_runner say


def installed(module):
    """Whether ``module`` can be imported, found without importing it (tf2onnx imports TensorFlow)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None


def readable_images(paths):
    """The image files among ``paths`` whose header reads (``data.images.check_image``: PIL, and a
    format TensorFlow decodes). ValueError when there is none, naming the first failure: nothing
    could be done with them (a folder of unreadable files)."""
    from ssd_tf.data.images import check_image

    readable, failures = [], []
    for path in paths:
        try:
            check_image(path)  # the header only: about 0.1 ms a file
            readable.append(path)
        except ValueError as err:
            failures.append(str(err))
    if not readable:
        raise ValueError(f"no image could be read: {len(failures)} skipped (first: {failures[0] if failures else '-'})")
    return readable


def torch_installed(why):
    """ValueError saying ``why`` torch is needed, unless it is installed."""
    if not installed("torch"):
        raise ValueError(f"{why} needs torch: pip install 'ssd-tf[torch]'")


def runtime_for(model_path):
    """ImportError naming the extra when ``model_path`` (an .onnx file) needs a runtime that is missing."""
    if str(model_path).endswith(".onnx") and not installed("onnxruntime"):
        raise ImportError(f"running .onnx models needs onnxruntime: {ONNX_HINT}")


def training(config):
    """What ``train`` will read and write, for a resolved TrainConfig, checked from the file system."""
    from ssd_tf.training.config import run_folder

    run_folder(config)  # the library's own rule
    if config.resume:
        return
    check_layout(config.dataset, config.data_dir, [s for s in (config.train_split, config.val_split) if s])
    if config.init_from:
        check_model_path(config.init_from, KERAS_FORMS)
    weights = config.backbone_weights
    if weights not in (None, "none", "imagenet"):
        existing(weights, "backbone_weights= takes imagenet, none or a ResNet50 weights file")
    if weights not in (None, "none") and config.backbone_layout in (None, "torchvision"):
        torch_installed("reading torchvision's ResNet50 weights (backbone_weights='imagenet' or a .pth file; "
                        "backbone_weights='none' starts from random weights)")
