"""Benchmarks: start-up, the training data pipeline beside the reference design's, the training step, and
inference in every model form. Medians of alternating passes."""

import itertools
import json
import pathlib
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from ssd_tf import data as data_lib
from ssd_tf.modeling.ssd300 import build_ssd300


def _machine():
    gpus = tf.config.list_physical_devices("GPU")
    return f"{data_lib.pipeline.usable_cores()} CPU cores, {len(gpus)} GPU(s), TF {tf.__version__}"


def _rates(runs, passes, epochs=2):
    """Time each named source, alternating source by source, pass by pass, so that a noisy
    machine slows all alike. ``runs[name]()`` starts a run (a pipeline, a DataLoader) and
    returns a function that yields one epoch of batches, as that framework's training loop gets
    it. Per pass and source: a new run, one untimed warm-up epoch, then ``epochs`` timed epochs
    back to back (so that no pipeline runs ahead while another is timed). Returns
    {name: (images per epoch, [images/s per pass])}."""
    counts, rates = {}, {name: [] for name in runs}
    for _ in range(passes):
        for name, start_run in runs.items():
            epoch = start_run()
            counts[name] = sum(int(batch[0].shape[0]) for batch in epoch())  # warm-up; images after skips
            start = time.perf_counter()
            for _ in range(epochs):
                for _batch in epoch():
                    pass
            rates[name].append(epochs * counts[name] / (time.perf_counter() - start))
            del epoch  # stops a tf.data pipeline's threads before the next source is timed
    return {name: (counts[name], rates[name]) for name in runs}


def _keras_run(dataset, batches):
    """A run as ``model.fit`` gets it from ``training.train``: one iterator over
    ``dataset.repeat()`` for the whole run (its start-up, about 0.3 s for ours, is paid once),
    epochs of ``batches`` batches."""
    def start():
        iterator = iter(dataset.repeat())
        return lambda: itertools.islice(iterator, batches)
    return start


def data_throughput(detection_set, batch_size=8, passes=5, seed=0, records=None, reference_loader=None):
    """Images/s of the full training pipeline (decode, crop, resize, jitter, flip, encode), side by
    side with ``reference_loader`` (the reference design's PIL + torch DataLoader over the same
    images and cores, from ``benchmarks.reference``), each consumed epoch by
    epoch as its training loop consumes it (ours: one ``repeat()`` pipeline for the whole run, as
    the training loop gets it; the reference's: a new epoch of a DataLoader with persistent workers).

    ``records``: the same set as a TFRecordSet, measured too. Returns a dict of medians and ratios.
    """
    batches = data_lib.num_batches(data_lib.for_training(detection_set)[1], batch_size)
    runs = {"ours_jpeg": _keras_run(data_lib.train_dataset(detection_set, batch_size, seed=seed), batches)}
    if records is not None:
        runs["ours_tfrecord"] = _keras_run(data_lib.train_dataset(records, batch_size, seed=seed), batches)
    with_reference = reference_loader is not None
    if with_reference:  # a torch loop: iter() every epoch, workers persist
        runs["reference"] = lambda: lambda: iter(reference_loader)
    epochs = 2
    measured = _rates(runs, passes, epochs)
    result = {"machine": _machine(), "batch_size": batch_size, "passes": passes, "epochs_per_pass": epochs}
    for name, (count, rates) in measured.items():
        result[name] = {"images_per_s_median": statistics.median(rates), "passes": rates, "images": count}
    if with_reference:
        for name in ("ours_jpeg", "ours_tfrecord"):
            if name in result:
                reference_rate = result["reference"]["images_per_s_median"]
                result[f"{name}_vs_reference"] = result[name]["images_per_s_median"] / reference_rate
    return result


def make_coco_style_set(folder, num_images=2000, size=(480, 640), seed=0):
    """Write ``num_images`` JPEGs (``size`` = height, width) and a COCO instances file with three
    boxes each under ``folder`` (reused if already there). Returns (instances path, image folder)."""
    from PIL import Image

    folder = pathlib.Path(folder)
    images_dir, path = folder / "images", folder / "instances.json"
    if path.is_file() and len(list(images_dir.glob("*.jpg"))) == num_images:
        return path, images_dir
    images_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width]
    images, annotations = [], []
    for i in range(num_images):
        base = (xx[..., None] * rng.uniform(0.1, 0.4, 3) + yy[..., None] * rng.uniform(0.1, 0.4, 3)) % 255
        pixels = (base + rng.normal(0, 8, (height, width, 3))).clip(0, 255).astype(np.uint8)
        name = f"{i:012d}.jpg"
        Image.fromarray(pixels).save(images_dir / name, quality=90)
        images.append({"id": i + 1, "file_name": name, "height": height, "width": width})
        for _ in range(3):
            w, h = rng.uniform(20, width / 2), rng.uniform(20, height / 2)
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(rng.integers(1, 4)),
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    categories = [{"id": k, "name": f"class{k}"} for k in (1, 2, 3)]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path, images_dir


def startup_time(folder, num_images=2000, repeats=3):
    """Seconds per 1,000 images to read a COCO-style set (``read_coco``: JSON plus image headers),
    beside the full decode of every image that readers used to do (PIL ``load``), medians."""
    from ssd_tf.data.images import check_image

    path, images_dir = make_coco_style_set(folder, num_images)
    reads, decodes = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        dataset = data_lib.read_coco(path, images_dir)
        reads.append(time.perf_counter() - start)
        start = time.perf_counter()
        for source in dataset.sources:
            check_image(source, full=True)
        decodes.append(time.perf_counter() - start)
    per_1000 = lambda xs: statistics.median(xs) * 1000 / num_images  # noqa: E731
    return {"images": len(dataset), "read_s_per_1000": per_1000(reads), "full_decode_s_per_1000": per_1000(decodes),
            "machine": _machine()}


def train_throughput(batch_size=8, steps=5, precision="float32", num_classes=21, seed=0, reference_step=None):
    """Images/s of the training loop's step (``loop.make_train_steps``: forward, SSD loss with
    hard-negative mining, backward, ``TorchSGD`` update) on one fixed random batch (no data
    pipeline cost), medians of ``steps`` steps. ``reference_step``: a function running one step of
    the reference design (NVIDIA's SSD300, its loss, torch.optim.SGD; from the checkout's
    ``benchmarks.reference``), timed alternately, step by step, on the same threads."""
    from ssd_tf.modeling.optimizers import TorchSGD
    from ssd_tf.training import loop

    policy = {"float32": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}[precision]
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(seed)
        model = build_ssd300(num_classes)
        optimizer = TorchSGD(1e-3, momentum=0.9, weight_decay=5e-4)
        if precision == "float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
        rng = np.random.default_rng(seed)
        images = rng.uniform(0, 255, (batch_size, 300, 300, 3)).astype(np.float32)
        boxes = rng.uniform(0.1, 0.4, (3, 2))
        boxes = np.concatenate([boxes, boxes + 0.4], 1).astype(np.float32)
        y = np.stack([data_lib.pipeline.encoding.encode_y_true(boxes, [1, 2, 3]).numpy()] * batch_size)
        batches = iter(tf.data.Dataset.from_tensors((images, y)).repeat())
        train_steps = loop.make_train_steps(model, optimizer, tf.distribute.get_strategy(), batch_size)
        one = tf.constant(1)
        train_steps(batches, one)  # build + trace
        runs = {"ours": lambda: train_steps(batches, one).numpy()}
        if reference_step is not None:
            reference_step()  # first-call allocations
            runs["reference"] = reference_step
        times = {name: [] for name in runs}
        for _ in range(steps):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    finally:
        keras.config.set_dtype_policy(previous)
    result = {"batch_size": batch_size, "precision": precision, "machine": _machine()}
    for name, values in times.items():
        step = statistics.median(values)
        result[name] = {"images_per_s_median": batch_size / step, "step_s_median": step, "steps": values}
    if "reference" in result:
        result["ours_vs_reference"] = result["ours"]["images_per_s_median"] / result["reference"]["images_per_s_median"]
    return result


def inference_throughput(images, folder, batch_sizes=(1, 8), passes=3, threads=None, formats=None,
                         num_classes=21, seed=0, reference=None, model=None, prebuilt=None):
    """Images/s of every inference path on the same uint8 ``images`` (list of [H, W, 3]) with the
    same ``threads``, medians over ``passes`` alternating passes, and ratios to the reference
    design's PyTorch model and PostProcess at the same batch size.

    Paths: ``keras`` (Detector on the Keras model: resize, model, decode, NMS), ``saved_model_bytes``
    (serving_default on JPEG bytes) and ``saved_model_images`` (serve_images), ``tflite_float32``
    and ``tflite_int8`` (batch 1: the files take one image), ``onnx_runtime`` and ``openvino`` (the
    .onnx file, resized by us as ``Detector`` does; OpenVINO at f32), and ``reference``:
    ``reference``, a pair of functions of a list of images (the reference design's whole inference,
    its network alone), from ``benchmarks.reference``.

    ``model``: the Keras SSD300 to measure; by default one with random weights and ``num_classes``
    (speed does not depend on the weights). ``prebuilt``: {"saved_model": folder, "tflite_float32":
    file, "tflite_int8": file, "onnx": file}, files to measure as they are instead of exporting
    ``model`` to ``folder``; the result's "prebuilt" names those measured."""
    threads = threads or data_lib.pipeline.usable_cores()
    formats = set(formats or ("keras", "saved_model", "tflite_float32", "tflite_int8", "onnx_runtime", "openvino",
                              "reference"))
    prebuilt = {name: pathlib.Path(path) for name, path in (prebuilt or {}).items()}
    if model is None:
        keras.utils.set_random_seed(seed)
        model = build_ssd300(num_classes)
    paths, used = _inference_paths(model, images, pathlib.Path(folder), batch_sizes, threads, formats, prebuilt)
    if "reference" in formats and reference is not None:
        paths["reference"] = (batch_sizes, reference[0])
        # The reference's network alone: its PostProcess runs a greedy NMS in Python here
        # (torchvision does not import beside this CPU torch), whose cost grows with the
        # boxes over 0.05 that random weights give.
        paths["reference_network_only"] = (batch_sizes, reference[1])
    rates = _alternating_rates(paths, images, batch_sizes, passes)
    result = {"machine": _machine(), "threads": threads, "images": len(images), "passes": passes,
              "num_classes": int(model.output_shape[-1]) - 4,
              "prebuilt": {name: str(path) for name, path in used.items() if path == prebuilt.get(name)},
              "files": {name: str(path) for name, path in used.items()}, "rates": {}}
    for (name, b), values in rates.items():
        entry = {"images_per_s_median": statistics.median(values), "passes": values}
        if ("reference", b) in rates and not name.startswith("reference"):
            entry["vs_reference"] = entry["images_per_s_median"] / statistics.median(rates[("reference", b)])
        result["rates"][f"{name}_b{b}"] = entry
    return result


def _inference_paths(model, images, folder, batch_sizes, threads, formats, prebuilt):
    """({name: (batch sizes, function of a list of images)}, {name: the file or folder measured})
    for our model forms: the Keras Detector, the SavedModel's two signatures, the TFLite files
    (exported from ``model`` into ``folder`` unless ``prebuilt`` names them)."""
    from ssd_tf.data.resize import to_uint8_input
    from ssd_tf.export import tflite as tflite_export
    from ssd_tf.export.saved_model import export_saved_model
    from ssd_tf.inference.detector import Detector
    from ssd_tf.inference.onnx_runner import ONNXRunner
    from ssd_tf.inference.tflite_runner import TFLiteRunner

    paths, used = {}, {}
    if "keras" in formats:
        paths["keras"] = (batch_sizes, Detector(model).detect)
    if "saved_model" in formats:
        path = prebuilt.get("saved_model") or export_saved_model(model, folder / "saved_model")
        saved = tf.saved_model.load(str(path))
        used["saved_model"] = path
        by_bytes, by_images = saved.signatures["serving_default"], saved.signatures["serve_images"]
        jpegs = {id(i): tf.io.encode_jpeg(i, quality=90).numpy() for i in images}
        paths["saved_model_bytes"] = (batch_sizes, lambda batch: by_bytes(
            image_bytes=tf.constant([jpegs[id(i)] for i in batch])))
        paths["saved_model_images"] = (batch_sizes, lambda batch: [by_images(images=tf.constant(i[None]))
                                                                   for i in batch] if len({i.shape for i in batch}) > 1
                                       else by_images(images=tf.constant(np.stack(batch))))
    for quantize, name in (("none", "tflite_float32"), ("int8", "tflite_int8")):
        if name in formats:
            path = prebuilt.get(name)
            if path is None:
                calibration = [to_uint8_input(i) for i in images] if quantize == "int8" else None
                path = folder / name / "model.tflite"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(tflite_export.convert(model, quantize, calibration))
            used[name] = path
            paths[name] = ((1,), TFLiteRunner(path, num_threads=threads).detect_batch)
    if formats & {"onnx_runtime", "openvino"}:
        path = prebuilt.get("onnx")
        if path is None:
            from ssd_tf.export.onnx_export import convert as onnx_convert
            path = folder / "onnx" / "model.onnx"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(onnx_convert(model))
        used["onnx"] = path
        if "onnx_runtime" in formats:
            paths["onnx_runtime"] = (batch_sizes, ONNXRunner(path, num_threads=threads).detect_batch)
        if "openvino" in formats:
            paths["openvino"] = (batch_sizes, _openvino_detect(path, threads))
    return paths, used


def _openvino_detect(path, threads):
    """OpenVINO's CPU plugin on an .onnx file (f32, ``threads`` threads), as a detect_batch."""
    import openvino as ov

    from ssd_tf.data.resize import to_uint8_input
    from ssd_tf.inference.tflite_runner import from_output_layout

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": int(threads)})

    def detect_batch(images):
        out = compiled(np.stack([to_uint8_input(i) for i in images]))
        return from_output_layout({o.get_any_name(): out[o] for o in compiled.outputs})
    return detect_batch


def _alternating_rates(paths, images, batch_sizes, passes):
    """{(name, batch size): [images/s of each pass]}: one warm-up call each (traces, first-call
    allocations), then ``passes`` passes over ``images``, the paths taking turns within each."""
    runs = [(name, b, fn) for name, (sizes, fn) in paths.items() for b in sizes]
    batches = {b: [images[i:i + b] for i in range(0, len(images) - b + 1, b)] or [images] for b in batch_sizes}
    for name, b, fn in runs:
        fn(batches[b][0])
    rates = {(name, b): [] for name, b, _ in runs}
    for _ in range(passes):
        for name, b, fn in runs:
            start = time.perf_counter()
            count = 0
            for batch in batches[b]:
                fn(batch)
                count += len(batch)
            rates[(name, b)].append(count / (time.perf_counter() - start))
    return rates


def concurrent_calls(detectors, images, callers, calls_per_caller=8):
    """What a service owner needs: each ``Detector`` in ``detectors`` ({name: detector}) shared by
    ``callers`` threads, each making ``calls_per_caller`` calls of one image (``images`` in turn).
    Returns {name: {"images_per_s", "p50_ms", "p99_ms", "errors", "wrong", "calls", "unstable"}}:
    ``wrong`` counts answers that differ from the same image's sequential answer, on the images
    whose answer is the same twice in a row sequentially; ``unstable`` counts the others. (LiteRT's
    TFLite_Detection_PostProcess picks among exactly tied scores differently from call to call:
    an int8 model with random weights, whose scores take a few values, has many such ties.)"""
    from concurrent.futures import ThreadPoolExecutor

    def same(a, b):
        return all(np.array_equal(a[key], b[key]) for key in ("boxes", "scores"))

    results = {}
    for name, detector in detectors.items():
        expected = [detector.detect([image])[0] for image in images]  # also the warm-up
        stable = [same(detector.detect([image])[0], e) for image, e in zip(images, expected)]

        def call(k):
            start = time.perf_counter()
            try:
                [got] = detector.detect([images[k % len(images)]])
            except Exception:  # counted, as a client would see it
                return time.perf_counter() - start, "error"
            if not stable[k % len(images)]:
                return time.perf_counter() - start, "unstable"
            return time.perf_counter() - start, "ok" if same(got, expected[k % len(images)]) else "wrong"
        count = callers * calls_per_caller
        start = time.perf_counter()
        with ThreadPoolExecutor(callers) as pool:
            outcomes = list(pool.map(call, range(count)))
        elapsed = time.perf_counter() - start
        latencies = sorted(1000 * t for t, _ in outcomes)
        errors = sum(o == "error" for _, o in outcomes)
        wrong = sum(o == "wrong" for _, o in outcomes)
        results[name] = {"images_per_s": count / elapsed, "p50_ms": float(np.percentile(latencies, 50)),
                         "p99_ms": float(np.percentile(latencies, 99)), "errors": errors, "wrong": wrong,
                         "calls": count, "callers": callers, "unstable": len(stable) - sum(stable)}
    return results


def scoring_case(num_images=5000, detections=100, seed=0):
    """A COCO-sized scoring case: ground truth of ``num_images`` 640x480 images (1 to 15 boxes each,
    80 categories, some crowd) and ``detections`` noisy detections an image. Returns (gt dict,
    results list)."""
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "width": 640, "height": 480, "file_name": f"{image_id}.jpg"})
        boxes = []
        for _ in range(int(rng.integers(1, 16))):
            w, h = rng.uniform(8, 300), rng.uniform(8, 300)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            cat = int(rng.integers(1, 81))
            boxes.append((x, y, w, h, cat))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": int(rng.random() < 0.02)})
        for k in range(detections):
            if k < len(boxes) and rng.random() < 0.8:  # a noisy copy of a box, mostly the right class
                x, y, w, h, cat = boxes[k]
                x, y = x + rng.normal(0, 0.1 * w), y + rng.normal(0, 0.1 * h)
                cat = cat if rng.random() < 0.9 else int(rng.integers(1, 81))
            else:
                w, h = rng.uniform(8, 300), rng.uniform(8, 300)
                x, y, cat = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h), int(rng.integers(1, 81))
            results.append({"image_id": image_id, "category_id": cat, "bbox": [x, y, w, h],
                            "score": float(rng.uniform(0, 1))})
    categories = [{"id": c, "name": f"class_{c}"} for c in range(1, 81)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def scoring_speed(cases, repeats=3):
    """pycocotools' COCOeval beside faster-coco-eval's COCOeval_faster on the same (gt dict,
    results) ``cases`` ({name: case}), alternating, medians of ``repeats``: seconds for loadRes,
    evaluate, accumulate and summarize, and the largest difference among the 12 stats."""
    import contextlib
    import copy
    import io

    from faster_coco_eval import COCO as FastCOCO
    from faster_coco_eval import COCOeval_faster
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def run(coco_cls, eval_cls, gt_dict, results):
        with contextlib.redirect_stdout(io.StringIO()):
            gt = coco_cls()
            gt.dataset = copy.deepcopy(gt_dict)
            gt.createIndex()
            start = time.perf_counter()
            evaluator = eval_cls(gt, gt.loadRes(copy.deepcopy(results)), "bbox")
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            return time.perf_counter() - start, np.array(evaluator.stats[:12], float)

    out = {}
    for name, (gt_dict, results) in cases.items():
        times = {"pycocotools": [], "faster_coco_eval": []}
        stats = {}
        for _ in range(repeats):
            for key, classes in (("pycocotools", (COCO, COCOeval)), ("faster_coco_eval", (FastCOCO, COCOeval_faster))):
                seconds, stats[key] = run(*classes, gt_dict, results)
                times[key].append(seconds)
        out[name] = {"pycocotools_s": statistics.median(times["pycocotools"]),
                     "faster_coco_eval_s": statistics.median(times["faster_coco_eval"]),
                     "speedup": statistics.median(times["pycocotools"]) / statistics.median(times["faster_coco_eval"]),
                     "max_stat_difference": float(np.abs(stats["pycocotools"] - stats["faster_coco_eval"]).max()),
                     "stats": {k: v.round(6).tolist() for k, v in stats.items()}}
    return out
