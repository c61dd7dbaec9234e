"""Export a trained model for TF Serving: saved_models/<name>/<version>/.

    python scripts/export.py --model runs/RUN                   # -> saved_models/ssd300/<next version>
    python scripts/export.py --model model.keras --name raccoon --version 3
    python scripts/export.py --model runs/RUN/checkpoints/latest.weights.h5 --num-classes 21
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ssd_tf import export  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="run folder, .keras file, or .weights.h5 checkpoint")
    p.add_argument("--output-root", default="saved_models")
    p.add_argument("--name", default="ssd300")
    p.add_argument("--version", type=int, help="default: one more than the highest existing version")
    p.add_argument("--num-classes", type=int, help="for a bare .weights.h5 without classes.json beside it")
    p.add_argument("--score-threshold", type=float, default=0.05)
    p.add_argument("--iou-threshold", type=float, default=0.5)
    p.add_argument("--max-detections", type=int, default=100)
    args = p.parse_args(argv)
    path = export.export_from_artifact(
        args.model, args.output_root, args.name, args.version, args.num_classes,
        score_threshold=args.score_threshold, iou_threshold=args.iou_threshold, max_detections=args.max_detections)
    print(f"SavedModel written to {path} (signatures: serving_default [image_bytes], serve_images [images])")


if __name__ == "__main__":
    main()
