"""Benchmarks, run from a checkout. `data`: training-pipeline images/s, ours beside the reference
design's (NVIDIA's SSD300 v1.1 in PyTorch); `startup`: reading a COCO-style set; `train`: training
images/s; `inference`: every model form beside the reference's.

    python -m benchmarks data --data-dir VOCdevkit/VOC2012
    python -m benchmarks startup [--images 2000]
    python -m benchmarks train [--batch-size 8] [--precision float32|float16|bfloat16]
    python -m benchmarks scoring [--images 5000]   # pycocotools beside faster-coco-eval
    python -m benchmarks inference [--data-dir VOC2012/JPEGImages]
                                   [--model RUN] [--saved-model DIR] [--tflite FILE] [--tflite-int8 FILE]
                                   [--onnx FILE]
"""

import json
import os
import pathlib
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ssd_tf.cli import arguments  # noqa: E402
from ssd_tf.cli.arguments import positive_int as count  # noqa: E402
from ssd_tf.cli import errors as cli  # noqa: E402


def reference_side():
    """The reference design's PyTorch side (``benchmarks.reference``), or None, saying why, when
    torch is missing."""
    try:
        from benchmarks import reference
    except ImportError as err:
        print(f"note: the reference's PyTorch side is skipped ({err}; it needs torch: pip install -e '.[dev]')")
        return None
    return reference


def build_parser():
    parser = arguments.parser(__doc__)
    sub = parser.add_subparsers(dest="what", required=True, help="what to measure")
    d = sub.add_parser("data", help="images/s of the full training pipeline, ours and the reference's")
    d.add_argument("--data-dir", required=True, help="a VOC20xx folder")
    d.add_argument("--split", default="trainval", help="ImageSets/Main split to read (default trainval)")
    d.add_argument("--batch-size", type=count, default=8, help="images per batch (default 8)")
    d.add_argument("--passes", type=count, default=7, help="alternating timed passes; medians are reported")
    d.add_argument("--no-reference", action="store_true", help="skip the reference's pipeline (needs torch)")
    s = sub.add_parser("startup", help="seconds per 1,000 images to read a COCO-style set")
    s.add_argument("--images", type=count, default=2000, help="JPEGs in the generated set (default 2000)")
    s.add_argument("--folder", default=os.path.join(tempfile.gettempdir(), "ssd_tf_startup"),
                   help="where the generated set is written (kept for later runs)")
    t = sub.add_parser("train", help="training images/s on random inputs")
    t.add_argument("--batch-size", type=count, default=8, help="images per step (default 8)")
    t.add_argument("--steps", type=count, default=5, help="timed steps; the median is reported")
    t.add_argument("--cpu-threads", type=count, help="threads for TF and torch alike (default: usable cores)")
    t.add_argument("--no-reference", action="store_true", help="skip the reference's PyTorch step (needs torch)")
    t.add_argument("--precision", choices=["float32", "float16", "bfloat16"], default="float32",
                   help="compute precision (float32 default; bfloat16 needs AMX or AVX512-BF16 to be fast)")
    c = sub.add_parser("scoring", help="COCO scoring: pycocotools beside faster-coco-eval on the same results")
    c.add_argument("--images", type=count, default=5000, help="images in the generated COCO-sized case (default 5000)")
    c.add_argument("--detections", type=count, default=100, help="detections an image (default 100)")
    c.add_argument("--repeats", type=count, default=3, help="alternating runs of each scorer; medians are reported")
    c.add_argument("--coco-case", help="a folder with a COCO instances file and bbox_results.json to score too")
    i = sub.add_parser("inference", help="images/s of Keras, SavedModel, TFLite and the reference's PyTorch inference")
    i.add_argument("--data-dir", help="a folder of images (default: built-in set images, 320x240)")
    i.add_argument("--images", type=count, default=16, help="how many images (default 16)")
    i.add_argument("--passes", type=count, default=3, help="alternating timed passes; medians are reported")
    i.add_argument("--cpu-threads", type=count,
                   help="threads for TF, TFLite, ONNX Runtime, OpenVINO and torch alike (default: usable cores)")
    i.add_argument("--threads", type=count, metavar="K",
                   help="also share one Detector of each form among K calling threads, as a server does: "
                        "images/s, p50 and p99 latency, errors and wrong answers (default: not measured)")
    i.add_argument("--formats", default="keras,saved_model,tflite_float32,tflite_int8,onnx_runtime,openvino,reference",
                   help="comma-separated subset of keras, saved_model, tflite_float32, tflite_int8, onnx_runtime, "
                        "openvino, reference")
    i.add_argument("--batch-sizes", default="1,8", help="comma-separated (TFLite runs batch 1 only)")
    i.add_argument("--model", help="a run folder or .keras file to measure (default: SSD300 with random weights, "
                                   "21 classes); the other formats are exported from it unless given below. The "
                                   "reference's side stays its COCO model (21 classes, random weights)")
    i.add_argument("--saved-model", help="a SavedModel folder (export.py's) to measure as it is")
    i.add_argument("--tflite", help="a float .tflite file (export.py --format tflite) to measure as it is")
    i.add_argument("--tflite-int8", help="an int8 .tflite file to measure as it is")
    i.add_argument("--onnx", help="an .onnx file (export.py --format onnx) to measure as it is")
    return parser


def check(args):
    """Paths, before TensorFlow loads: a mistake is one line at once."""
    from ssd_tf.cli import checks

    with cli.user_errors():
        if args.what == "data":
            checks.check_layout("voc", args.data_dir, [args.split])
        if args.what == "inference":
            for path in filter(None, (args.data_dir, args.saved_model, args.tflite, args.tflite_int8, args.onnx)):
                checks.existing(path, "given to measure")
            if args.model:
                checks.check_model_path(args.model, checks.KERAS_FORMS)
        if args.what == "scoring" and args.coco_case:
            checks.existing(args.coco_case, "a folder with a COCO instances file and bbox_results.json")


def main(argv=None):
    args = build_parser().parse_args(argv)
    check(args)
    from benchmarks import measure  # after parsing: --help answers without TensorFlow
    from ssd_tf import data
    from ssd_tf.core.classes import CLASSES_FILE, write_classes
    from ssd_tf.data import tfrecord
    if args.what == "inference":
        _inference(args)
        return
    if args.what == "scoring":
        _scoring(args)
        return
    if args.what == "data":
        dataset = data.read_voc(args.data_dir, args.split)
        with tempfile.TemporaryDirectory() as folder:
            tfrecord.write_split(dataset, folder, "bench", images_per_shard=32, progress=False)
            write_classes(os.path.join(folder, CLASSES_FILE), dataset.class_names, dataset.category_ids)
            records = data.read_tfrecords(folder, "bench")
            reference = None if args.no_reference else reference_side()
            loader = reference.data_loader(dataset, args.batch_size) if reference else None
            result = measure.data_throughput(dataset, args.batch_size, args.passes, records=records,
                                               reference_loader=loader)
        for name in ("ours_jpeg", "ours_tfrecord", "reference"):
            if name in result:
                r = result[name]
                vs = result.get(name + "_vs_reference")
                ratio = f"  ({vs:.2f}x the reference)" if vs else ""
                print(f"{name:>14}: {r['images_per_s_median']:6.1f} images/s{ratio}")
        print(f"medians of {args.passes} alternating passes (each: a new run, one warm-up epoch, "
              f"{result['epochs_per_pass']} timed epochs) over {result['ours_jpeg']['images']} images, "
              f"batch {args.batch_size}, on {result['machine']}")
    elif args.what == "startup":
        result = measure.startup_time(args.folder, args.images)
        print(f"read_coco: {result['read_s_per_1000']:.3f} s per 1,000 images (a full decode of each: "
              f"{result['full_decode_s_per_1000']:.2f} s) over {result['images']} 640x480 JPEGs on {result['machine']}")
    else:
        import tensorflow as tf
        threads = args.cpu_threads or data.pipeline.usable_cores()
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        reference = None if args.no_reference else reference_side()
        step = reference.train_step(args.batch_size, threads=threads) if reference else None
        result = measure.train_throughput(args.batch_size, args.steps, args.precision, reference_step=step)
        for name in ("ours", "reference"):
            if name in result:
                vs = result.get("ours_vs_reference") if name == "ours" else None
                ratio = f"  ({vs:.2f}x the reference)" if vs else ""
                print(f"{name:>9}: {result[name]['images_per_s_median']:.2f} images/s, "
                      f"{result[name]['step_s_median']:.2f} s/step{ratio}")
        print(f"medians of {args.steps} alternating steps, batch {args.batch_size}, {args.precision}, "
              f"{threads} threads, on {result['machine']}")
    print(json.dumps(result))


def _inference(args):
    import tensorflow as tf

    from benchmarks import measure
    from ssd_tf import data

    if args.data_dir:
        from ssd_tf.data.images import list_images
        with cli.user_errors():
            if not list_images(args.data_dir):
                cli.fail(f"{args.data_dir}: no images in this folder")
    threads = args.cpu_threads or data.pipeline.usable_cores()
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    if args.data_dir:
        from ssd_tf.data.images import list_images, load_image
        images = [load_image(p) for p in list_images(args.data_dir)[:args.images]]
    else:
        from ssd_tf.data.synthetic import make_synthetic
        detection_set = make_synthetic(args.images, seed=0)
        images = [image[0].numpy() for image, _ in data.eval_dataset(detection_set, 1, resize=False)]
    if not images:
        cli.fail(f"{args.data_dir}: no images in this folder")
    formats = [f.strip() for f in args.formats.split(",")]
    from ssd_tf.inference import loading
    model = None
    if args.model:
        with cli.user_errors():
            model = loading.load_keras_model(args.model)
    prebuilt = {name: pathlib.Path(path) for name, path in (
        ("saved_model", args.saved_model), ("tflite_float32", args.tflite), ("tflite_int8", args.tflite_int8),
        ("onnx", args.onnx)) if path}
    if "saved_model" in prebuilt and not loading.is_saved_model(prebuilt["saved_model"]):
        cli.fail(f"{prebuilt['saved_model']}: no SavedModel there")
    for path in (prebuilt.get("tflite_float32"), prebuilt.get("tflite_int8"), prebuilt.get("onnx")):
        if path and not path.is_file():
            cli.fail(f"{path}: no such file")
    reference = reference_side() if "reference" in formats else None
    if model is None and args.threads:  # the concurrent callers share a Detector of the model measured
        import keras

        from ssd_tf.modeling.ssd300 import build_ssd300
        keras.utils.set_random_seed(0)
        model = build_ssd300(21)
    with tempfile.TemporaryDirectory() as folder:
        result = measure.inference_throughput(
            images, folder, tuple(int(b) for b in args.batch_sizes.split(",")), args.passes, threads, formats,
            model=model, prebuilt=prebuilt,
            reference=reference.detector(21, threads) if reference else None)
        if args.threads:
            result["concurrent"] = measure.concurrent_calls(_detectors(model, result["files"], formats), images,
                                                            args.threads)
    for name, entry in result["rates"].items():
        ratio = f"  ({entry['vs_reference']:.2f}x the reference)" if "vs_reference" in entry else ""
        print(f"{name:>24}: {entry['images_per_s_median']:7.2f} images/s{ratio}")
    print(f"medians of {args.passes} alternating passes over {result['images']} images, {threads} threads, "
          f"on {result['machine']}")
    for name, entry in result.get("concurrent", {}).items():
        print(f"{name:>24}: {entry['images_per_s']:7.2f} images/s with {entry['callers']} callers, p50 "
              f"{entry['p50_ms']:.0f} ms, p99 {entry['p99_ms']:.0f} ms, {entry['errors']} errors, "
              f"{entry['wrong']} wrong, of {entry['calls']} calls ({entry['unstable']} of the images give "
              "other answers sequentially: tied scores)")
    print(json.dumps(result))


def _scoring(args):
    from benchmarks import measure

    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        cli.fail("the scoring benchmark needs faster-coco-eval: pip install faster-coco-eval")
    cases = {f"generated ({args.images} images, {args.detections} detections each)":
             measure.scoring_case(args.images, args.detections)}
    if args.coco_case:
        folder = pathlib.Path(args.coco_case)
        instances = sorted(folder.glob("instances_*.json"))
        if not instances or not (folder / "bbox_results.json").is_file():
            cli.fail(f"{folder}: expected an instances_*.json and bbox_results.json there")
        results = json.loads((folder / "bbox_results.json").read_text())
        if isinstance(results, dict):  # a COCO-style file whose annotations are the detections
            results = results["annotations"]
        cases[f"{folder.name} (real COCO images)"] = (json.loads(instances[0].read_text()), results)
    result = measure.scoring_speed(cases, args.repeats)
    for name, entry in result.items():
        print(f"{name}: pycocotools {entry['pycocotools_s']:.2f} s, faster-coco-eval "
              f"{entry['faster_coco_eval_s']:.2f} s ({entry['speedup']:.2f}x); largest difference among the 12 "
              f"stats {entry['max_stat_difference']:.2e}")
    print(json.dumps(result))


def _detectors(model, files, formats):
    """One shared Detector per model form measured, for the concurrent callers."""
    from ssd_tf.inference.detector import Detector

    forms = {"keras": lambda: Detector(model)}
    for name, key in (("saved_model", "saved_model"), ("tflite_float32", "tflite_float32"),
                      ("tflite_int8", "tflite_int8"), ("onnx_runtime", "onnx")):
        if key in files and (name in formats or name == "saved_model" and "saved_model" in formats):
            forms[name] = lambda path=files[key]: Detector.load(path)
    return {name: make() for name, make in forms.items() if name in formats}


if __name__ == "__main__":
    main()
