"""What several test modules share: small networks with SSD300's shapes, fixed batches, the
subprocess and cluster runners, and small configs. Imported as ``helpers`` (tests/ is on the path),
and from the subprocesses the tests start."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
from PIL import Image

import ssd_tf
from ssd_tf import data
from ssd_tf.training.config import TrainConfig

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}


def run_script(code, *args, timeout=300, env=None):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], env=env or ENV,
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def free_ports(n):
    ports = []
    for _ in range(n):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    return ports


def start_cluster(code, cluster, tasks, tmp_path, *args):
    """Start ``code`` once per (task type, index, output file) with TF_CONFIG for ``cluster``;
    argv: the run folder, the output file, ``args``. Returns the processes."""
    procs = []
    for task, index, out in tasks:
        env = {**ENV, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task, "index": index}})}
        procs.append(subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), str(tmp_path / "run"), str(tmp_path / out), *args],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def run_cluster(code, cluster, tasks, tmp_path, *args, timeout=400):
    """Run ``code`` as ``start_cluster`` does and wait. Returns [(stdout, stderr)], after
    asserting exit 0."""
    procs = start_cluster(code, cluster, tasks, tmp_path, *args)
    try:
        outs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, stderr) in zip(procs, outs):
        assert p.returncode == 0, stderr[-3000:]
    return outs


def frozen_bn_model(num_classes=4):
    # Batch statistics differ per replica by design (no sync BN): freeze BN to compare runs.
    keras.utils.set_random_seed(0)
    model = tiny_ssd(num_classes)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    return model


def fixed_batches(batch_size, input_context=None):
    """8 synthetic images in a fixed order, unaugmented: the same global batches everywhere."""
    return data.train_dataset(data.make_synthetic(8, seed=0), batch_size, augment_images=False, shuffle=False,
                              drop_remainder=True, input_context=input_context)


def tiny_ssd(num_classes, sync_bn=False):
    """SSD300's input and output shapes on a network small enough that XLA compiles it and float16
    runs it on a CPU in seconds: for tests of the loop and its strategies, where SSD300's size
    only costs time."""
    inputs = keras.Input((300, 300, 3))
    x = keras.layers.Conv2D(8, 5, strides=10, activation="relu")(inputs)
    x = keras.layers.BatchNormalization(synchronized=sync_bn)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(8732 * (4 + num_classes))(x)
    x = keras.layers.Reshape((8732, 4 + num_classes))(x)
    return keras.Model(inputs, keras.layers.Activation("linear", dtype="float32")(x))


def bn_ssd(num_classes, sync_bn=False):
    """SSD300's input and output shapes behind three conv + batch-norm (ssd_tf's own, as SSD300's
    backbone makes them) + ReLU stages: for the tests of batch-norm statistics across replicas,
    where SSD300's 53 only cost time (build_ssd300's use of sync_bn is tested on the real model)."""
    from ssd_tf.modeling.backbone import batch_norm

    x = inputs = keras.Input((300, 300, 3))
    for k, (filters, stride) in enumerate(((8, 4), (16, 3), (16, 2))):
        x = keras.layers.Conv2D(filters, 3, strides=stride, use_bias=False, name=f"conv{k}")(x)
        x = keras.layers.ReLU()(batch_norm(f"bn{k}", synchronized=sync_bn)(x))
    x = keras.layers.Dense(8732 * (4 + num_classes))(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, keras.layers.Reshape((8732, 4 + num_classes), dtype="float32")(x))


def tiny_config(output, **overrides):
    return TrainConfig(**{**dict(dataset="synthetic", synthetic_images=8, batch_size=2, epochs=1, steps_per_epoch=3,
                                 output=str(output), val_images=0, eval_every=0, precise_bn=0, seed=0), **overrides})


def diverging_config(output, **overrides):
    # An absurd learning rate: step 1 is finite, its update overflows the weights, step 2 is NaN.
    return TrainConfig(dataset="synthetic", synthetic_images=4, batch_size=2, epochs=3, steps_per_epoch=1, lr=1e30,
                       output=str(output), val_images=0, eval_every=0, precise_bn=0, seed=0, **overrides)


def one_box_model(slot, num_classes=2, gain=8.0):
    """A Keras model that, whatever the image, detects class 1 at default box ``slot`` (zero
    offsets) and is sure of background everywhere else: one known detection per image. Its class-1
    logit there is ``gain`` x the image's mean level / 255, so each image gets its own score.
    Equal scores would leave COCOeval's ranking, and with it AP75, to the last ulp of the softmax,
    which oneDNN rounds differently on AVX2 and AVX-512 (issue 19)."""
    import keras

    logits = np.zeros((8732, num_classes), np.float32)
    logits[:, 0] = 10.0
    logits[slot] = 0.0
    outputs = np.concatenate([np.zeros((8732, 4), np.float32), logits], axis=1)
    one_hot = np.zeros((8732, 4 + num_classes), np.float32)
    one_hot[slot, 5] = gain / 255.0
    inputs = keras.Input((300, 300, 3))
    level = keras.layers.Lambda(lambda x: keras.ops.mean(x, axis=(1, 2, 3))[:, None, None])(inputs)
    return keras.Model(inputs, keras.layers.Lambda(lambda m: m * one_hot + outputs)(level))


def coco_case(folder, rng):
    """A COCO instances file with crowd regions, segmentation areas unlike box areas, and images
    without annotations; plus noisy detections of it. Returns (json path, image folder, results)."""

    images_dir = folder / "images"
    images_dir.mkdir()
    images, annotations, results = [], [], []
    for image_id in range(1, 9):
        name = f"{image_id:06d}.jpg"
        Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(images_dir / name)
        images.append({"id": image_id, "file_name": name, "width": 320, "height": 240})
        if image_id > 6:  # unannotated: every detection there is a false positive
            results.append({"image_id": image_id, "category_id": 5, "bbox": [10.0, 10.0, 50.0, 40.0],
                            "score": 0.6})
            continue
        for k in range(4):
            w, h = rng.uniform(20, 140, 2)
            x, y = rng.uniform(0, 320 - w), rng.uniform(0, 240 - h)
            crowd = int(k == 3 and image_id % 2 == 0)
            cat = [1, 5, 9][(image_id + k) % 3]
            # Segmentation area: a fraction of the box, so small/medium/large bins differ from boxes'.
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
                                "bbox": [x, y, w, h], "area": float(w * h * rng.uniform(0.3, 0.7)),
                                "iscrowd": crowd})
            for _ in range(1 + crowd):  # detections on crowd regions are to be ignored
                jitter = rng.normal(0, 6, 4)
                results.append({"image_id": image_id, "category_id": cat,
                                "bbox": [x + jitter[0], y + jitter[1], w + jitter[2], h + jitter[3]],
                                "score": float(rng.uniform(0.2, 1.0))})
    categories = [{"id": i, "name": n} for i, n in ((1, "cat"), (5, "dog"), (9, "fox"))]
    path = folder / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path, images_dir, results


SHAPE_CLASSES = ("background", "circle", "square", "triangle")


def box_iou(a, b):
    x0, y0 = np.maximum(a[0], b[0]), np.maximum(a[1], b[1])
    x1, y1 = np.minimum(a[2], b[2]), np.minimum(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def briefly_trained_shapes_model():
    """A real, weak detector of the built-in set's shapes, trained in about 25 s: the heads only, 15
    epochs (Adam, 3e-3) over the cached features of 32 training images (the backbone keeps its
    seeded random weights). Val AP50 0.25 to 0.68 over 6 seeds, 0.25 with seed 0 (40 epochs at 1e-3
    gave 0.29 to 0.36 in twice the time; 10 epochs at 3e-3 gave 0.02 once). A trained model's
    detections are sparse and image-dependent, as the comparisons below need, and its AP on real
    labels means something."""
    import keras

    from ssd_tf import data
    from ssd_tf.data.synthetic import builtin_split

    keras.utils.set_random_seed(0)
    model = ssd_tf.build_ssd300(num_classes=4)
    batches = list(data.validation_dataset(builtin_split("train", 32, seed=0), 8))
    images = np.concatenate([b[0].numpy() for b in batches])
    y_true = np.concatenate([b[1].numpy() for b in batches])
    features = keras.Model(model.inputs, [model.get_layer(f"conf{k}_conv").input for k in range(6)])
    cached = features.predict(images, batch_size=8, verbose=0)
    inputs = [keras.Input(f.shape[1:]) for f in cached]

    def head(kind, k, x):  # the model's own layers, so training them trains the model
        for suffix in ("_conv", "_split", "_shape_major", "_flat"):
            x = model.get_layer(f"{kind}{k}{suffix}")(x)
        return x
    loc = model.get_layer("loc")([head("loc", k, x) for k, x in enumerate(inputs)])
    conf = model.get_layer("conf")([head("conf", k, x) for k, x in enumerate(inputs)])
    heads = keras.Model(inputs, model.get_layer("predictions")([loc, conf]))
    # 4 steps per call: the same updates (the same final loss, to the last digit) in 13 % less time.
    heads.compile(optimizer=keras.optimizers.Adam(3e-3), loss=ssd_tf.SSDLoss(), steps_per_execution=4)
    heads.fit(cached, y_true, batch_size=8, epochs=15, verbose=0)
    return model


def mixed_images(count_voc=3, count_builtin=5):
    """Real photos of different sizes (VOC, one grayscale) and built-in set validation images."""
    from ssd_tf import data
    from ssd_tf.data.synthetic import builtin_split
    from ssd_tf.data.images import load_image

    from conftest import shared_data

    folder = shared_data("voc2012_sample", "VOC2012", "JPEGImages")
    images = [load_image(p) for p in sorted(folder.glob("*.jpg"))[:count_voc]]
    val = builtin_split("val", 16, seed=0)
    images += [image[0].numpy() for image, _ in data.eval_dataset(val, 1, resize=False).take(count_builtin)]
    return images


def matching_candidates(box, score, cls, other, used, iou, score_tol):
    """Indices of ``other``'s detections not in ``used`` that can be (``box``, ``score``, ``cls``)
    found again: same class, score within ``score_tol``, box IoU >= ``iou``."""
    return [j for j in range(len(other["scores"])) if j not in used and other["class_ids"][j] == cls
            and abs(other["scores"][j] - score) <= score_tol and box_iou(box, other["boxes"][j]) >= iou]


def assert_match(reference, other, min_score=0.3, iou=0.98, score_tol=0.01, nms_flips=False):
    """Every detection of ``reference`` at ``min_score`` has one in ``other``: same class, box IoU
    >= ``iou``, score within ``score_tol``; and ``other`` has no extra one clear of the threshold.
    Returns (matched, flipped).

    ``nms_flips``: NMS keeps the higher of two same-class candidates that overlap by more than
    its IoU threshold (0.5), so where their scores lie within ``score_tol`` of each other, rounding
    decides which one is kept (seen between TFLite and TF: 0.36365 against 0.3637). A detection
    without its twin then passes if the other side kept such a rival: same class, IoU > 0.5,
    score within ``score_tol`` or above. Returns how many passed so, for the caller to bound."""
    matched, flipped = 0, 0
    keep = reference["scores"] >= min_score
    used = set()

    def rival(box, score, cls, side):
        return any(side["class_ids"][j] == cls and side["scores"][j] >= score - score_tol
                   and box_iou(box, side["boxes"][j]) > 0.5 for j in range(len(side["scores"])))
    for box, score, cls in zip(reference["boxes"][keep], reference["scores"][keep], reference["class_ids"][keep]):
        candidates = matching_candidates(box, score, cls, other, used, iou, score_tol)
        if candidates:
            used.add(candidates[0])
            matched += 1
        else:
            assert nms_flips and rival(box, score, cls, other), f"no match for class {cls} score {score:.4f} box {box}"
            flipped += 1
    extra = [j for j in range(len(other["scores"])) if j not in used and other["scores"][j] >= min_score + score_tol]
    for j in extra:
        assert nms_flips and rival(other["boxes"][j], other["scores"][j], other["class_ids"][j], reference), (
            f"extra detection: class {other['class_ids'][j]} score {other['scores'][j]:.4f}")
    return matched, flipped + len(extra)


def found_again(reference, other, min_score=0.3, iou=0.5, score_tol=0.15):
    """Of ``reference``'s detections scoring >= ``min_score`` (lists of per-image results), how many
    ``other`` finds (same class, box IoU >= ``iou``, score within ``score_tol``; each used once).
    Returns (found, total, score differences of the found)."""
    found, total, diffs = 0, 0, []
    for ref, oth in zip(reference, other):
        used = set()
        for box, score, cls in zip(ref["boxes"], ref["scores"], ref["class_ids"]):
            if score < min_score:
                continue
            total += 1
            candidates = matching_candidates(box, score, cls, oth, used, iou, score_tol)
            if candidates:
                best = max(candidates, key=lambda j: box_iou(box, oth["boxes"][j]))
                used.add(best)
                found += 1
                diffs.append(abs(oth["scores"][best] - score))
    return found, total, np.array(diffs)
