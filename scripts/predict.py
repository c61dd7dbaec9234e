"""Detect objects in images; write drawn images and detections.json (pixel boxes).

    python scripts/predict.py --model runs/RUN IMAGE_OR_FOLDER --output predictions/
    python scripts/predict.py --model saved_models/ssd300/1 photo.jpg --output out/ --score-threshold 0.5
    python scripts/predict.py --model saved_models/ssd300-tflite-int8/model.tflite photo.jpg --output out/
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ssd_tf.cli import arguments as a  # noqa: E402
from ssd_tf.cli import errors as cli  # noqa: E402


def build_parser():
    p = a.parser(__doc__)
    p.add_argument("--model", required=True,
                   help="run folder, .keras file, exported SavedModel folder, .tflite or .onnx file")
    p.add_argument("inputs", help="an image or a folder of images")
    p.add_argument("--output", required=True, help="a new folder for the drawn images and detections.json")
    p.add_argument("--score-threshold", type=a.fraction, default=0.3,
                   help="draw and list detections at or above this score")
    a.add_quiet(p)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from ssd_tf.cli import checks
    from ssd_tf.data.images import list_images

    with cli.user_errors(ImportError):  # before TensorFlow loads and before anything is written
        checks.check_model_path(args.model)
        checks.runtime_for(args.model)
        images = list_images(args.inputs)
        if not images:
            raise FileNotFoundError(f"{args.inputs}: no images in this folder (.jpg, .jpeg, .png, .bmp, .gif, .webp)")
        checks.readable_images(images)  # headers only; a file that fails to decode later is skipped and named
        checks.refuse_existing(args.output, "choose a new output folder")
    if args.quiet:
        from ssd_tf.progress import set_quiet
        set_quiet()
    from ssd_tf.cli.native_logs import load_tensorflow
    load_tensorflow()
    from ssd_tf.inference import prediction
    from ssd_tf.inference.detector import Detector
    with cli.user_errors(ImportError):  # ImportError: a missing extra, named in its message
        detector = Detector.load(args.model)
        payload = prediction.predict_files(detector, images, args.output, args.score_threshold, progress=True)
    total = sum(len(i["detections"]) for i in payload["images"])
    skipped = payload["skipped"]
    if not payload["images"]:
        cli.fail(f"no image could be read: {len(skipped)} skipped (first: {skipped[0] if skipped else 'none'})")
    print(f"{len(payload['images'])} image(s), {total} detection(s) >= {args.score_threshold} -> {args.output}/"
          + (f"; skipped {len(skipped)}: " + "; ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else "")
             if skipped else ""))


if __name__ == "__main__":
    main()
