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
