"""COCO evaluation (pycocotools, bbox): the 12 COCO stats, per-class AP50 and AP, the confusion
matrix and the best-F1 score threshold; --plots draws PR curves, the confusion matrix and F1.

    python scripts/evaluate.py --model runs/RUN --dataset voc --split val \
        --data-dir ../shared/data/voc2012_sample/VOC2012
    python scripts/evaluate.py --model saved_models/ssd300/1 --dataset coco --data-dir COCO --split val2017
    python scripts/evaluate.py --model runs/RUN --dataset tfrecord --data-dir records/coco
    python scripts/evaluate.py --model runs/RUN --dataset synthetic --plots plots/ --output report.json
    python scripts/evaluate.py --model saved_models/ssd300-tflite-int8/model.tflite --dataset voc --data-dir VOC2012
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ssd_tf.cli import errors as cli  # noqa: E402
from ssd_tf.data.kinds import KINDS, parse_classes  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True,
                   help="run folder, .keras file, exported SavedModel folder, .tflite or .onnx file")
    p.add_argument("--dataset", choices=KINDS, required=True, help="the kind of data set to score on")
    p.add_argument("--data-dir", help="VOC: the VOC20xx folder; COCO: the folder with annotations/ and the image "
                                      "folders; tfrecord: a folder written by scripts/convert.py")
    p.add_argument("--split", help="VOC: ImageSets/Main name (default val); COCO: e.g. val2017 (default); "
                                   "tfrecord: a split name or role (default val); synthetic: val (default) or train")
    p.add_argument("--classes", help="VOC class names, comma-separated (default: the model's classes)")
    p.add_argument("--batch-size", type=int, default=8, help="images per batch for a Keras model (default 8)")
    p.add_argument("--seed", type=int, default=0, help="synthetic: the training run's --seed (default 0)")
    p.add_argument("--synthetic-images", type=int, default=64,
                   help="synthetic: the training run's --synthetic-images (default 64); with --split val (the "
                        "default) this scores the images that run validated on")
    p.add_argument("--output", help="also write the report as JSON here")
    p.add_argument("--plots", metavar="DIR", help="write pr_curves.png, confusion_matrix.png, "
                                                  "confusion_matrix_normalized.png and f1_curve.png here")
    p.add_argument("--confusion-score", type=float, default=0.25,
                   help="the confusion matrix counts detections from this score up (default 0.25)")
    p.add_argument("--quiet", action="store_true", help="no progress display (on a terminal a bar, else a line "
                                                         "per 10 %%)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.quiet:
        from ssd_tf.progress import set_quiet
        set_quiet()
    from ssd_tf.cli.evaluate import evaluate_model_from  # after parsing: --help answers without TensorFlow
    from ssd_tf.evaluation import coco_metric as evaluation
    with cli.user_errors(ImportError):  # ImportError: a missing extra, named in its message
        report, dataset = evaluate_model_from(
            args.model, args.dataset, args.data_dir, args.split, parse_classes(args.classes), args.batch_size,
            args.seed, args.synthetic_images, score_threshold=args.confusion_score)
    print(f"{args.model} on {dataset.name} ({len(dataset)} images, {report['num_detections']} detections; "
          f"{dataset.report.summary()})")
    print(evaluation.format_report(report))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(report, f, indent=2)
    if args.plots:
        from ssd_tf.evaluation.plots import write_report_plots
        paths = write_report_plots(report, args.plots)
        print(f"plots: {', '.join(str(p) for p in paths)}")


if __name__ == "__main__":
    main()
