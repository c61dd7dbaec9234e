"""Detect objects in images; write drawn images and detections.json (pixel boxes).

    python scripts/predict.py --model runs/RUN IMAGE_OR_FOLDER --output predictions/
    python scripts/predict.py --model saved_models/ssd300/1 photo.jpg --output out/ --min-score 0.5
    python scripts/predict.py --model saved_models/ssd300-tflite-int8/model.tflite photo.jpg --output out/
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ssd_tf.cli import errors as cli  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True,
                   help="run folder, .keras file, exported SavedModel folder, .tflite or .onnx file")
    p.add_argument("inputs", help="an image or a folder of images")
    p.add_argument("--output", required=True, help="folder for drawn images and detections.json")
    p.add_argument("--min-score", type=float, default=0.3, help="draw and list detections at or above this score")
    p.add_argument("--quiet", action="store_true", help="no progress display (on a terminal a bar, else a line "
                                                         "per 10 %%)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.quiet:
        from ssd_tf.progress import set_quiet
        set_quiet()
    from ssd_tf.data.images import list_images  # after parsing: --help answers without TensorFlow
    from ssd_tf.inference import prediction
    from ssd_tf.inference.detector import Detector
    with cli.user_errors(ImportError):  # ImportError: a missing extra, named in its message
        detector = Detector.load(args.model)
        payload = prediction.predict_files(detector, list_images(args.inputs), args.output, args.min_score,
                                               progress=True)
    total = sum(len(i["detections"]) for i in payload["images"])
    print(f"{len(payload['images'])} image(s), {total} detection(s) >= {args.min_score} -> {args.output}/"
          + (f"; skipped {len(payload['skipped'])}: " + "; ".join(payload["skipped"]) if payload["skipped"] else ""))


if __name__ == "__main__":
    main()
