"""Shared fixtures. Data from ../shared/data; tests needing it skip when it is absent."""

import os
import pathlib
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

import ssd_tf  # before any test loads TensorFlow: its oneDNN kernels on, as the scripts have them

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_data(*parts):
    """Path under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found: ../shared/data is only beside the project in its workplace")
    return path


def random_gt_boxes(rng, n, min_size=0.02):
    """[n, 4] valid normalised xyxy boxes."""
    wh = rng.uniform(min_size, 0.9, size=(n, 2))
    xy = rng.uniform(0, 1, size=(n, 2)) * (1 - wh)
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def built_once(tmp_path_factory, name, build):
    """The folder ``name``, filled by ``build(folder)`` once per test session: by whichever xdist
    worker asks first (the others wait on a file lock), in the folder the workers' temporary folders
    share. For what costs tens of seconds to make and is only read (trained models, exports)."""
    from filelock import FileLock  # torch's dependency, so in the dev extra

    base = tmp_path_factory.getbasetemp()  # under xdist, the worker's: its parent is the session's
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name
    done = root.with_name(name + ".done")
    with FileLock(str(root) + ".lock"):
        if not done.is_file():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            build(root)
            done.write_text("")
    return root


@pytest.fixture(scope="session")
def ssd21():
    """One random-init SSD300 (21 classes), built once (building costs seconds), seeded so every
    run sees the same weights."""
    import keras

    keras.utils.set_random_seed(0)
    return ssd_tf.build_ssd300(num_classes=21)


def pytest_collection_modifyitems(config, items):
    """Slow tests first: with two xdist workers the long ones then run side by side from the start
    and the many short ones fill in at the end, instead of two long ones finishing last."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """The briefly trained shapes model in all five forms: run folder (final.keras + classes.json),
    .keras file, SavedModel, float32 .tflite and .onnx; and an int8 .tflite, calibrated on 8
    built-in images (int8 AP50 0.170, against 0.171 with 16 images, which took 10 s longer).

    Built once per test session (``built_once``). Session-scoped because conftest orders slow tests
    first across modules, which would tear a module-scoped fixture down in between."""
    from helpers import SHAPE_CLASSES, briefly_trained_shapes_model
    from ssd_tf import export
    from ssd_tf.cli.export import export_saved_model_from
    from ssd_tf.core.classes import write_classes

    def build(root):
        model = briefly_trained_shapes_model()
        (root / "run").mkdir()
        model.save(root / "run" / "final.keras")
        write_classes(root / "run" / "classes.json", SHAPE_CLASSES)
        export_saved_model_from(root / "run", root / "saved_models" / "shapes", model_name="shapes")
        export.export_tflite(root / "run", root / "tflite-none")
        export.export_tflite(root / "run", root / "tflite-int8", "int8", calibration_data="synthetic",
                             calibration_count=8)
        export.export_onnx(root / "run", root / "onnx")

    root = built_once(tmp_path_factory, "deploy-models", build)
    paths = {"run": root / "run", "keras": root / "run" / "final.keras",
             "saved_model": root / "saved_models" / "shapes" / "1", "tflite": root / "tflite-none" / "model.tflite",
             "int8": root / "tflite-int8" / "model.tflite", "onnx": root / "onnx" / "model.onnx", "root": root}
    assert all(path.exists() for path in paths.values())
    return paths
