"""COCO evaluation (pycocotools, bbox): the 12 COCO stats and per-class AP50.

    python scripts/evaluate.py --model runs/RUN --dataset voc --data-dir ../shared/data/voc2012_sample/VOC2012 --split val
    python scripts/evaluate.py --model saved_models/ssd300/1 --dataset coco --data-dir COCO --split val2017
    python scripts/evaluate.py --model runs/RUN --dataset synthetic
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ssd_tf import artifacts, evaluation  # noqa: E402
from ssd_tf.data import read_dataset  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="run folder, .keras file or exported SavedModel folder")
    p.add_argument("--dataset", choices=["voc", "coco", "synthetic"], required=True)
    p.add_argument("--data-dir")
    p.add_argument("--split", help="VOC: ImageSets/Main name (default val); COCO: e.g. val2017")
    p.add_argument("--classes", help="VOC class names, comma-separated (default: the model's classes)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=1000, help="synthetic: which generated set (training validates on 1000)")
    p.add_argument("--output", help="also write the report as JSON here")
    args = p.parse_args(argv)

    predictor = artifacts.Predictor(args.model, score_threshold=0.05)
    classes = args.classes.split(",") if args.classes else list(predictor.class_names[1:])
    split = args.split or {"voc": "val", "coco": "val2017"}.get(args.dataset)
    dataset = read_dataset(args.dataset, args.data_dir, split, classes, synthetic_images=16, seed=args.seed)
    if dataset.num_classes != len(predictor.class_names):
        raise SystemExit(f"the model has {len(predictor.class_names) - 1} classes, the data set "
                         f"{dataset.num_classes - 1}: evaluate on the data the model was trained for")
    report = evaluation.evaluate_predictor(predictor, dataset, args.batch_size)
    print(f"{args.model} on {dataset.name} ({len(dataset)} images, {report['num_detections']} detections; "
          f"{dataset.report.summary()})")
    print(evaluation.format_report(report))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
