"""Export a trained model: a SavedModel for TF Serving, a TFLite detector for phones and edge devices
(LiteRT, MediaPipe), or ONNX for ONNX Runtime, OpenVINO and TensorRT.

    python scripts/export.py --model runs/RUN                   # -> saved_models/ssd300/<next version>
    python scripts/export.py --model model.keras --name raccoon --version 3
    python scripts/export.py --model runs/RUN/checkpoints/latest.weights.h5 --num-classes 21
    python scripts/export.py --model runs/RUN --format tflite   # -> saved_models/ssd300-tflite-none/model.tflite
    python scripts/export.py --model runs/RUN --format tflite --quantize int8 --calibration-data VOC2012/JPEGImages
    python scripts/export.py --model runs/RUN --format onnx     # -> saved_models/ssd300-onnx/model.onnx

Nothing is overwritten: an existing version folder, .tflite or .onnx file is an error.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="run folder, .keras file, or .weights.h5 checkpoint")
    p.add_argument("--format", choices=["saved_model", "tflite", "onnx"], default="saved_model",
                   help="saved_model (TF Serving; default), tflite (builtin ops plus TFLite_Detection_PostProcess, "
                        "with TFLite Model Metadata for MediaPipe) or onnx (NMS inside; needs the onnx extra)")
    p.add_argument("--output-root", default="saved_models", help="folder the export goes under (default saved_models)")
    p.add_argument("--name", default="ssd300", help="model name: the SavedModel goes to OUTPUT_ROOT/NAME/VERSION")
    p.add_argument("--version", type=int,
                   help="SavedModel version folder (default: one more than the highest existing version)")
    p.add_argument("--output", help="tflite, onnx: the folder for model.tflite or model.onnx, labels.txt and "
                                    "classes.json (default OUTPUT_ROOT/NAME-tflite-QUANTIZE, OUTPUT_ROOT/NAME-onnx)")
    p.add_argument("--quantize", choices=["none", "float16", "int8"], default="none",
                   help="tflite: none (float32), float16 weights, or int8 (full-integer network, uint8 input)")
    p.add_argument("--calibration-data",
                   help="tflite int8: a VOC20xx folder (its train split), a TFRecord folder, a folder of images "
                        "(searched recursively), or "
                        "'synthetic' (the built-in set)")
    p.add_argument("--calibration-images", type=int, default=300,
                   help="tflite int8: how many calibration images to use (default 300)")
    p.add_argument("--opset", type=int, default=17, help="onnx: the ONNX opset (default 17)")
    p.add_argument("--license", default="unspecified",
                   help="tflite: the licence written into the model's metadata (default 'unspecified')")
    p.add_argument("--num-classes", type=int, help="for a bare .weights.h5 without classes.json beside it")
    p.add_argument("--dtype", choices=["float32", "model"], default="float32",
                   help="float32 (default): a float16/bfloat16-trained model is served in float32; "
                        "model: keep the model's own compute dtype")
    p.add_argument("--score-threshold", type=float, default=0.05, help="detections below this score are dropped")
    p.add_argument("--iou-threshold", type=float, default=0.5, help="per-class NMS IoU threshold")
    p.add_argument("--max-detections", type=int, default=100, help="detections kept per image")
    p.add_argument("--quiet", action="store_true", help="no progress display (on a terminal a bar, else a line "
                                                         "per 10 %%)")
    return p


def main(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    if args.quiet:
        from ssd_tf.progress import set_quiet
        set_quiet()
    if args.format == "saved_model" and args.output:
        p.error("--output is for --format tflite or onnx")
    if args.format != "tflite" and (args.quantize != "none" or args.calibration_data):
        p.error("--quantize and --calibration-data are for --format tflite")
    if args.format != "saved_model" and args.version is not None:
        p.error("--version is for --format saved_model; give --output for a TFLite or ONNX model")

    from ssd_tf.cli import errors as cli

    from ssd_tf.cli.export import export_saved_model_from
    from ssd_tf.export import export_onnx, export_tflite
    thresholds = dict(score_threshold=args.score_threshold, iou_threshold=args.iou_threshold,
                      max_detections=args.max_detections)
    with cli.user_errors(ImportError, flags={"output_dir": "--output", "source": "--model"}):
        if args.format == "onnx":
            output = args.output or os.path.join(args.output_root, f"{args.name}-onnx")
            path = export_onnx(args.model, output, args.opset, args.num_classes, **thresholds)
            print(f"ONNX model written to {path} ({os.path.getsize(path) / 1e6:.1f} MB, opset {args.opset}), "
                  f"with labels.txt and classes.json beside it")
            return
        if args.format == "tflite":
            output = args.output or os.path.join(args.output_root, f"{args.name}-tflite-{args.quantize}")
            path = export_tflite(args.model, output, args.quantize, args.calibration_data,
                                 args.calibration_images, args.num_classes, model_name=args.name,
                                 license=args.license, **thresholds)
            print(f"TFLite model written to {path} ({os.path.getsize(path) / 1e6:.1f} MB, {args.quantize}), "
                  f"with labels.txt and classes.json beside it")
            return
        path = export_saved_model_from(args.model, args.output_root, args.name, args.version, args.num_classes,
                                       args.dtype, **thresholds)
    print(f"SavedModel written to {path} (signatures: serving_default [image_bytes], serve_images [images]; "
          f"warm-up requests in assets.extra)")


if __name__ == "__main__":
    main()
