"""Export: a SavedModel for TF Serving (saved_models/<name>/<version>/), or a TFLite detector.

SavedModel signatures:
``serving_default``: ``image_bytes`` tf.string [B] (declared any-rank so a wrong rank gets a clear
error; encoded JPEG/PNG/GIF/BMP/WebP; TF Serving's REST API takes them as ``{"b64": ...}``).
``serve_images``: ``images`` uint8 [B, H, W, 3], any size.
Both resize to 300x300 inside, run the model and per-class NMS, and return
``detection_boxes`` [B, K, 4] normalised xyxy, ``detection_scores`` [B, K],
``detection_classes`` [B, K] int32 (1..C-1; 0 in padding), ``num_detections`` [B] int32.
``assets.extra/`` holds ``classes.json`` and TF Serving's warm-up requests.

Built as a ``tf.Module`` saved with ``tf.saved_model.save``: variables are stored once
(``keras.export.ExportArchive`` and ``model.export`` store them twice). A model trained in float16
or bfloat16 is exported in float32 unless ``dtype`` says otherwise: CPUs serve float16 slowly.

Nothing is overwritten: an existing version folder or TFLite file is an error.
"""

import logging
import pathlib
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from ssd_tf import loading, warmup
from ssd_tf.data.classes import CLASSES_FILE, generic_names, write_classes
from ssd_tf.serving import ServingModule

log = logging.getLogger("ssd_tf.export")


def _refuse_existing(path, hint):
    path = pathlib.Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"{path} already exists; not overwriting it ({hint})")


def _classes(model, class_names, category_ids):
    num_classes = int(model.output_shape[-1]) - 4
    if class_names is None or len(class_names) != num_classes:
        return generic_names(num_classes), tuple(range(num_classes))
    return tuple(class_names), tuple(category_ids) if category_ids is not None else tuple(range(num_classes))


def export_saved_model(model, export_dir, class_names=None, category_ids=None, model_name="", **thresholds):
    """Write a SavedModel with both signatures, classes.json and warm-up requests to ``export_dir``.

    FileExistsError when ``export_dir`` exists and is not empty. Written through a staging folder
    beside it, so a failed export leaves nothing behind. Class names default to generic ones.
    """
    export_dir = pathlib.Path(export_dir)
    _refuse_existing(export_dir, "choose another version, or leave the version out to write the next one")
    export_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{export_dir.name}-", dir=export_dir.parent))
    try:
        module = ServingModule(model, **thresholds)
        tf.saved_model.save(module, str(staging), signatures={
            "serving_default": module.serve_bytes.get_concrete_function(),
            "serve_images": module.serve_images.get_concrete_function(),
        })
        (staging / "assets.extra").mkdir(exist_ok=True)
        write_classes(staging / "assets.extra" / CLASSES_FILE, *_classes(model, class_names, category_ids))
        warmup.write_warmup(staging, model_name)
        if export_dir.exists():
            export_dir.rmdir()  # empty, checked above
        staging.rename(export_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return export_dir


def next_version(model_root):
    """1 + the highest integer version folder under ``model_root`` (1 when none)."""
    root = pathlib.Path(model_root)
    versions = [int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit()] if root.exists() else []
    return max(versions, default=0) + 1


def float32_model(model):
    """``model`` itself when float32; else a float32 copy with the same weights (a float16- or
    bfloat16-trained model serves in float32 on CPUs, where float16 is slow)."""
    # The model's own policy stays float32 under mixed precision (Keras gives it to the layers).
    if all(layer.dtype_policy.compute_dtype == "float32" for layer in model.layers):
        return model
    from ssd_tf.backbone import layout_of
    from ssd_tf.model import build_ssd300
    copy = build_ssd300(int(model.output_shape[-1]) - 4, backbone_layout=layout_of(model))
    copy.set_weights(model.get_weights())
    return copy


def export_from_artifact(source, output_root="saved_models", name="ssd300", version=None, num_classes=None,
                         dtype="float32", **thresholds):
    """Export a run folder / .keras / .weights.h5 to ``output_root/name/version`` (default: the
    next version). Returns the path; FileExistsError when that version exists."""
    model = loading.load_keras_model(source, num_classes)
    if dtype == "float32":
        model = float32_model(model)
    class_names, category_ids = loading.classes_beside(source)
    version = version or next_version(pathlib.Path(output_root) / name)
    return export_saved_model(model, pathlib.Path(output_root) / name / str(version), class_names, category_ids,
                              model_name=name, **thresholds)


def calibration_images(source, count=300, seed=0):
    """Up to ``count`` uint8 [300, 300, 3] images for int8 calibration, resized as the model sees
    them: from a VOC20xx folder (its train split's images, else trainval's), a folder of this
    project's TFRecords (its train split), any other folder of images (searched recursively), or
    "synthetic" (the built-in training set); a random ``count`` of them, seeded.

    ValueError before any conversion when the source is missing or holds no readable image;
    unreadable images are skipped with a warning.
    """
    from ssd_tf import data as data_lib
    from ssd_tf.data.synthetic import builtin_split
    from ssd_tf.prediction import IMAGE_SUFFIXES

    from ssd_tf.tflite import to_input as prepared
    if str(source) == "synthetic":
        detection_set = builtin_split("train", max(count, 4), seed)
        return [prepared(image[0]) for image, _ in data_lib.eval_dataset(detection_set, 1, resize=False).take(count)]
    folder = pathlib.Path(source)
    if not folder.is_dir():
        raise ValueError(f"--calibration-data {folder}: no such folder (give a folder of training images, "
                         "a TFRecord folder, or 'synthetic')")
    voc_split = next((folder / "ImageSets" / "Main" / f"{name}.txt" for name in ("train", "trainval")
                      if (folder / "ImageSets" / "Main" / f"{name}.txt").is_file()), None)
    if voc_split is not None and (folder / "JPEGImages").is_dir():  # a VOC folder: its training images
        ids = [line.split()[0] for line in voc_split.read_text().splitlines() if line.strip()]
        files = [folder / "JPEGImages" / f"{i}.jpg" for i in ids]
        images = _readable(files, count, seed, prepared)
    elif list(folder.glob("*.tfrecord*")):
        detection_set = data_lib.read_tfrecords(folder, "train")
        batches = data_lib.eval_dataset(detection_set, 1, resize=False).take(count)
        images = [prepared(image[0]) for image, _ in batches if len(image)]
    else:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        images = _readable(files, count, seed, prepared)
    if not images:
        raise ValueError(f"--calibration-data {folder}: no readable images there")
    return images


def _readable(files, count, seed, prepared):
    """``prepared`` images of a random ``count`` of ``files`` (seeded); unreadable ones skipped with a warning."""
    from ssd_tf.prediction import load_image

    files = [files[i] for i in sorted(np.random.default_rng(seed).permutation(len(files))[:count])]
    images = []
    for path in files:
        try:
            images.append(prepared(load_image(path)))
        except (ValueError, FileNotFoundError) as err:
            log.warning("calibration: skipped %s", err)
    if len(images) < len(files):
        log.warning("calibration: %d of %d images unreadable, skipped", len(files) - len(images), len(files))
    return images


def export_tflite(source, output_dir, quantize="none", calibration_data=None, calibration_count=300,
                  num_classes=None, **thresholds):
    """Write ``output_dir/model.tflite``, ``labels.txt`` (line i: the name of output class i, i.e.
    our class i + 1) and ``classes.json``. FileExistsError when ``model.tflite`` exists there.
    Returns the path of the ``.tflite`` file."""
    from ssd_tf import tflite

    output_dir = pathlib.Path(output_dir)
    target = output_dir / "model.tflite"
    _refuse_existing(target, "choose another --output")
    if quantize == "int8" and calibration_data is None:
        raise ValueError("--quantize int8 needs --calibration-data: a folder of training images (a few hundred "
                         "are used), a TFRecord folder, or 'synthetic'")
    images = calibration_images(calibration_data, calibration_count) if quantize == "int8" else None
    model = float32_model(loading.load_keras_model(source, num_classes))
    class_names, category_ids = _classes(model, *loading.classes_beside(source))
    data = tflite.convert(model, quantize, images, **thresholds)
    output_dir.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    (output_dir / tflite.LABELS_FILE).write_text("".join(f"{n}\n" for n in class_names[1:]))
    write_classes(output_dir / CLASSES_FILE, class_names, category_ids)
    return target
