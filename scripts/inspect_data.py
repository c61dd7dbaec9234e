"""A look at a data set before training: images, boxes and skipped items per split, boxes per class,
box sizes and aspect ratios against SSD300's default boxes, and default-box coverage (each box's
best IoU with the 8732 default boxes, as the loss matches them). Writes stats.json and PNGs to
--output, prints a summary, and warns when coverage is poor.

    python scripts/inspect_data.py --dataset voc --data-dir VOCdevkit/VOC2007 --classes raccoon --output look
    python scripts/inspect_data.py --dataset yolo --data-dir my-yolo-set --output look
    python scripts/inspect_data.py --dataset coco --data-dir COCO --splits val2017 --output look
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ssd_tf.cli import arguments as a  # noqa: E402
from ssd_tf.cli import errors as cli  # noqa: E402
from ssd_tf.data.kinds import parse_classes  # noqa: E402


def build_parser():
    p = a.parser(__doc__)
    a.add_data(p, splits="splits", what="data set to look at")
    p.add_argument("--output", required=True, help="a new folder for stats.json and the pictures")
    p.add_argument("--sample-images", type=a.non_negative_int, default=6, help="images drawn with their boxes")
    p.add_argument("--seed", type=int, default=0, help="picks the sample images")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from ssd_tf.cli import checks
    from ssd_tf.data.kinds import DEFAULT_SPLITS

    splits = args.splits or list(DEFAULT_SPLITS[args.dataset])
    with cli.user_errors():  # before TensorFlow loads and before anything is written
        checks.check_layout(args.dataset, args.data_dir, splits)
        checks.refuse_existing(args.output, "choose a new output folder")
    from ssd_tf.cli.native_logs import load_tensorflow
    load_tensorflow()
    from ssd_tf.data.kinds import read_dataset
    from ssd_tf.evaluation import data_inspection

    with cli.user_errors():
        sets = [read_dataset(args.dataset, args.data_dir, split, parse_classes(args.classes)) for split in splits]
        report, paths = data_inspection.inspect_data(sets, splits, args.output, args.sample_images, args.seed)
    for line in data_inspection.summary(report):
        print(line)
    print(f"wrote {', '.join(p.name for p in paths)} to {args.output}")


if __name__ == "__main__":
    main()
