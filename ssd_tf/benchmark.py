"""Throughput benchmarks: the training data pipeline and the training step. Medians of passes."""

import os
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from ssd_tf import data as data_lib
from ssd_tf.losses import SSDLoss
from ssd_tf.model import build_ssd300


def _machine():
    gpus = tf.config.list_physical_devices("GPU")
    return f"{os.cpu_count()} CPU cores, {len(gpus)} GPU(s), TF {tf.__version__}"


def data_throughput(detection_set, batch_size=8, passes=5, seed=0):
    """Images/s of the full training pipeline (decode, crop, resize, jitter, flip, encode).

    One warm-up pass, then ``passes`` timed passes over the whole set. Returns a dict.
    """
    ds = data_lib.train_dataset(detection_set, batch_size, seed=seed)
    count = sum(int(x.shape[0]) for x, _ in ds)  # warm-up; also counts images after skips
    rates = []
    for _ in range(passes):
        start = time.perf_counter()
        for _batch in ds:
            pass
        rates.append(count / (time.perf_counter() - start))
    return {"images_per_s_median": statistics.median(rates), "passes": rates, "images": count,
            "machine": _machine()}


def train_throughput(batch_size=8, steps=5, precision="float32", num_classes=21, seed=0):
    """Images/s of ``model.fit`` training steps on random inputs (no data pipeline cost)."""
    policy = {"float32": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}[precision]
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(seed)
        model = build_ssd300(num_classes)
        optimizer = keras.optimizers.SGD(1e-3, momentum=0.9)
        if precision == "float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        model.compile(optimizer=optimizer, loss=SSDLoss())
        rng = np.random.default_rng(seed)
        images = rng.uniform(0, 255, (batch_size, 300, 300, 3)).astype(np.float32)
        boxes = rng.uniform(0.1, 0.4, (3, 2))
        boxes = np.concatenate([boxes, boxes + 0.4], 1).astype(np.float32)
        y = np.stack([data_lib.pipeline.encoding.encode_y_true(boxes, [1, 2, 3]).numpy()] * batch_size)
        model.train_on_batch(images, y)  # build + trace
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            model.train_on_batch(images, y)
            times.append(time.perf_counter() - start)
    finally:
        keras.config.set_dtype_policy(previous)
    step = statistics.median(times)
    return {"images_per_s_median": batch_size / step, "step_s_median": step, "batch_size": batch_size,
            "precision": precision, "machine": _machine()}
