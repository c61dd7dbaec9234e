"""Export a trained model: a SavedModel for TF Serving, a TFLite detector for phones and edge devices
(LiteRT, MediaPipe), or ONNX for ONNX Runtime, OpenVINO and TensorRT.

    python scripts/export.py --model runs/RUN                   # -> saved_models/ssd300/<next version>
    python scripts/export.py --model runs/RUN/final.keras --name raccoon --version 3   # saved_models/raccoon/3
    python scripts/export.py --model runs/RUN --format tflite   # -> saved_models/ssd300-tflite-none/model.tflite
    python scripts/export.py --model runs/RUN --format tflite --quantize int8 --data-dir VOC2012/JPEGImages
    python scripts/export.py --model runs/RUN --format onnx     # -> saved_models/ssd300-onnx/model.onnx

Nothing is overwritten: an existing version folder, .tflite or .onnx file is an error.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ssd_tf.cli import arguments as a  # noqa: E402
from ssd_tf.cli import errors as cli  # noqa: E402

FORMATS = ("saved_model", "tflite", "onnx")
FILES = {"tflite": "model.tflite", "onnx": "model.onnx"}


def build_parser():
    p = a.parser(__doc__)
    p.add_argument("--model", required=True, help="run folder, .keras file, or .weights.h5 file")
    p.add_argument("--format", choices=FORMATS, default="saved_model",
                   help="saved_model (TF Serving), tflite (builtin ops plus TFLite_Detection_PostProcess, "
                        "with TFLite Model Metadata for MediaPipe) or onnx (NMS inside; needs the onnx extra)")
    p.add_argument("--name", default="ssd300", help="the model's name: in the default --output and the metadata")
    p.add_argument("--output",
                   help="saved_model: the model's base folder, which holds its version folders (TF Serving's "
                        "model base path); tflite, onnx: a new folder for model.tflite or model.onnx, labels.txt "
                        "and classes.json (default saved_models/NAME, saved_models/NAME-tflite-QUANTIZE, "
                        "saved_models/NAME-onnx)")
    p.add_argument("--version", type=a.positive_int,
                   help="saved_model: the version folder (default: one more than the highest there)")
    p.add_argument("--quantize", choices=["none", "float16", "int8"], default="none",
                   help="tflite: none (float32), float16 weights, or int8 (full-integer network, uint8 input)")
    p.add_argument("--data-dir",
                   help="tflite int8: the calibration images: a VOC20xx folder (its train split), a TFRecord "
                        "folder, a folder of images (searched recursively), or 'synthetic' (the built-in set)")
    p.add_argument("--calibration-images", type=a.positive_int, default=300,
                   help="tflite int8: how many calibration images to use")
    p.add_argument("--opset", type=a.positive_int, default=17, help="onnx: the ONNX opset")
    p.add_argument("--license", default="unspecified", help="tflite: the licence written into the model's metadata")
    p.add_argument("--num-classes", type=a.class_count,
                   help="for a .weights.h5 file without classes.json beside it (default: from classes.json)")
    p.add_argument("--precision", choices=["float32", "model"], default="float32",
                   help="float32: a float16/bfloat16-trained model is served in float32; model: keep the model's "
                        "own compute dtype (saved_model)")
    p.add_argument("--score-threshold", type=a.fraction, default=0.05, help="detections below this score are dropped")
    p.add_argument("--iou-threshold", type=a.fraction, default=0.5, help="per-class NMS IoU threshold")
    p.add_argument("--max-detections", type=a.positive_int, default=100, help="detections kept per image")
    a.add_quiet(p)
    return p


def output_of(args):
    """Where the export goes: its folder (saved_model: the base folder of its versions)."""
    if args.output:
        return args.output
    suffix = {"saved_model": "", "tflite": f"-tflite-{args.quantize}", "onnx": "-onnx"}[args.format]
    return os.path.join("saved_models", args.name + suffix)


def check(p, args):
    """Option combinations, paths and outputs, before TensorFlow loads."""
    if args.format != "tflite" and (args.quantize != "none" or args.data_dir):
        p.error("--quantize and --data-dir are for --format tflite")
    if args.quantize == "int8" and not args.data_dir:
        p.error("--quantize int8 needs --data-dir: calibration images (a VOC folder, TFRecords, a folder of "
                "images, or 'synthetic')")
    if args.format != "saved_model" and args.version is not None:
        p.error("--version is for --format saved_model")
    from ssd_tf.cli import checks

    output = output_of(args)
    with cli.user_errors(ImportError):
        if args.format == "onnx" and not checks.installed("tf2onnx"):
            raise ImportError(f"ONNX export needs tf2onnx: {checks.ONNX_HINT}")
        checks.check_model_path(args.model, checks.KERAS_FORMS)
        if args.data_dir and args.data_dir != "synthetic":
            checks.existing(args.data_dir, "calibration images: a VOC folder, TFRecords, a folder of images, "
                                           "or 'synthetic'")
        if args.format in FILES:
            checks.refuse_existing(os.path.join(output, FILES[args.format]), "choose another --output")
        elif args.version is not None:
            checks.refuse_existing(os.path.join(output, str(args.version)),
                                   "choose another --version, or leave it out to write the next one")
    return output


def main(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    output = check(p, args)
    if args.quiet:
        from ssd_tf.progress import set_quiet
        set_quiet()
    from ssd_tf.cli.native_logs import load_tensorflow
    load_tensorflow()
    from ssd_tf.cli.export import export_saved_model_from
    from ssd_tf.export import export_onnx, export_tflite
    thresholds = dict(score_threshold=args.score_threshold, iou_threshold=args.iou_threshold,
                      max_detections=args.max_detections)
    flags = {"output_dir": "--output", "source": "--model", "calibration_data": "--data-dir"}
    with cli.user_errors(ImportError, flags=flags):
        if args.format == "onnx":
            path = export_onnx(args.model, output, args.opset, args.num_classes, **thresholds)
            print(f"ONNX model written to {path} ({os.path.getsize(path) / 1e6:.1f} MB, opset {args.opset}), "
                  f"with labels.txt and classes.json beside it")
            return
        if args.format == "tflite":
            path = export_tflite(args.model, output, args.quantize, args.data_dir, args.calibration_images,
                                 args.num_classes, model_name=args.name, license=args.license, **thresholds)
            print(f"TFLite model written to {path} ({os.path.getsize(path) / 1e6:.1f} MB, {args.quantize}), "
                  f"with labels.txt and classes.json beside it")
            return
        path = export_saved_model_from(args.model, output, args.version, args.num_classes, args.precision,
                                       model_name=args.name, **thresholds)
    print(f"SavedModel written to {path} (signatures: serving_default [image_bytes], serve_images [images]; "
          f"warm-up requests in assets.extra)")


if __name__ == "__main__":
    main()
