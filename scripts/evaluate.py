"""COCO evaluation (pycocotools, bbox): the 12 COCO stats, per-class AP50 and AP, the confusion
matrix and the best-F1 score threshold; --output writes report.json, PR curves, the confusion
matrix and F1 against the score threshold.

    python scripts/evaluate.py --model runs/RUN                       # the built-in set's val split
    python scripts/evaluate.py --model runs/RUN --dataset voc --data-dir VOCdevkit/VOC2012 --split val
    python scripts/evaluate.py --model saved_models/ssd300/1 --dataset coco --data-dir COCO --split val2017
    python scripts/evaluate.py --model runs/RUN --dataset yolo --data-dir my-yolo-set --output eval/
    python scripts/evaluate.py --model saved_models/ssd300-tflite-int8/model.tflite --dataset voc --data-dir VOC2012
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ssd_tf.cli import arguments as a  # noqa: E402
from ssd_tf.cli import errors as cli  # noqa: E402
from ssd_tf.data.kinds import parse_classes  # noqa: E402


def build_parser():
    p = a.parser(__doc__)
    p.add_argument("--model", required=True,
                   help="run folder, .keras file, exported SavedModel folder, .tflite or .onnx file")
    a.add_data(p, what="data set to score on")
    p.add_argument("--batch-size", type=a.positive_int, default=8, help="images per batch for a Keras model")
    p.add_argument("--seed", type=int, default=0, help="synthetic: the training run's --seed")
    p.add_argument("--synthetic-images", type=a.positive_int, default=64,
                   help="synthetic: the training run's --synthetic-images; with the val split (the default) this "
                        "scores the images that run validated on")
    p.add_argument("--output", help="a new folder for report.json, pr_curves.png, confusion_matrix.png, "
                                    "confusion_matrix_normalized.png and f1_curve.png (default: print only)")
    p.add_argument("--score-threshold", type=a.fraction, default=0.25,
                   help="the confusion matrix counts detections at or above this score (mAP uses them all)")
    a.add_quiet(p)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from ssd_tf.cli import checks
    from ssd_tf.data.kinds import default_split

    with cli.user_errors(ImportError):  # before TensorFlow loads and before anything is written
        checks.check_model_path(args.model)
        checks.runtime_for(args.model)
        checks.check_layout(args.dataset, args.data_dir, [args.split or default_split(args.dataset, "val")])
        if args.output:
            checks.refuse_existing(args.output, "choose a new output folder")
    if args.quiet:
        from ssd_tf.progress import set_quiet
        set_quiet()
    from ssd_tf.cli.native_logs import load_tensorflow
    load_tensorflow()
    from ssd_tf.cli.evaluate import evaluate_model_from
    from ssd_tf.evaluation import coco_metric as evaluation
    with cli.user_errors(ImportError):  # ImportError: a missing extra, named in its message
        report, dataset = evaluate_model_from(
            args.model, args.dataset, args.data_dir, args.split, parse_classes(args.classes), args.batch_size,
            args.seed, args.synthetic_images, score_threshold=args.score_threshold)
    print(f"{args.model} on {dataset.name} ({len(dataset)} images, {report['num_detections']} detections; "
          f"{dataset.report.summary()})")
    print(evaluation.format_report(report))
    if args.output:
        from ssd_tf.evaluation.plots import write_report_plots
        paths = write_report_plots(report, args.output)
        with open(os.path.join(args.output, "report.json"), "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote report.json, {', '.join(os.path.basename(p) for p in paths)} to {args.output}")


if __name__ == "__main__":
    main()
