"""Convert a data set (VOC, COCO, YOLO, the built-in set) to sharded TFRecords (TF Object Detection
API feature keys, the default), to COCO layout or to Ultralytics YOLO layout, in a new folder.

    python scripts/convert.py --dataset coco --data-dir COCO --output records/coco        # train2017, val2017
    python scripts/convert.py --dataset voc --data-dir VOCdevkit/VOC2012 --output records/voc
    python scripts/convert.py --dataset voc --data-dir VOCdevkit/VOC2007 --classes raccoon --to yolo \\
        --output raccoon-yolo
    python scripts/convert.py --dataset yolo --data-dir raccoon-yolo --to coco --images symlink --output raccoon-coco

Then: python scripts/train.py --dataset tfrecord --data-dir records/coco
TFRecords: every image is fully decoded once; unreadable images and bad boxes are skipped and listed.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ssd_tf.cli import arguments as a  # noqa: E402
from ssd_tf.cli import errors as cli  # noqa: E402
from ssd_tf.data.kinds import DEFAULT_SPLITS, parse_classes  # noqa: E402

TARGETS = ("tfrecord", "coco", "yolo")  # ssd_tf.data.conversion.TARGETS, without loading it
IMAGE_MODES = ("copy", "symlink")


def build_parser():
    p = a.parser(__doc__)
    a.add_data(p, splits="splits", what="data set to convert")
    p.add_argument("--output", required=True, help="a new folder for the converted set (e.g. records/coco)")
    p.add_argument("--to", choices=TARGETS, default="tfrecord",
                   help="tfrecord: shards and splits.json; coco: annotations/instances_<split>.json and <split>/; "
                        "yolo: data.yaml, images/<split>/, labels/<split>/")
    p.add_argument("--images", choices=IMAGE_MODES, default="copy",
                   help="coco, yolo: copy the image files, or symlink to them")
    p.add_argument("--images-per-shard", type=a.positive_int, default=1024, help="tfrecord: images per shard file")
    a.add_quiet(p)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.dataset == "tfrecord":
        cli.fail("--dataset tfrecord: convert.py reads voc, coco, yolo or synthetic sets (it writes TFRecords)")
    from ssd_tf.cli import checks

    with cli.user_errors():  # before TensorFlow loads and before anything is written
        checks.check_layout(args.dataset, args.data_dir, args.splits or DEFAULT_SPLITS[args.dataset])
        checks.refuse_existing(args.output, "choose a new output folder")
    if args.quiet:
        from ssd_tf.progress import set_quiet
        set_quiet()
    from ssd_tf.cli.native_logs import load_tensorflow
    load_tensorflow()
    from ssd_tf.data import conversion
    with cli.user_errors():
        metas = conversion.convert(args.dataset, args.data_dir, args.output, args.splits,
                                   parse_classes(args.classes), args.images_per_shard, to=args.to,
                                   images=args.images)
    for split, meta in metas.items():
        skipped = sum(meta["skipped"].values())
        where = f"in {len(meta['shards'])} shards" if "shards" in meta else f"as {args.to}"
        listed = f"{args.output}/{split}.json" if "shards" in meta else f"{args.output}/{split}-skipped.txt"
        print(f"{split}: {meta['images']} images, {meta['objects']} objects {where}"
              f" ({skipped} skipped{'; see ' + listed if skipped or 'shards' in meta else ''})")
        if meta.get("difficult_as_boxes"):
            print(f"{split}: {meta['difficult_as_boxes']} difficult objects written as ordinary boxes "
                  "(YOLO has no difficult flag)")
    print(json.dumps({s: {k: m[k] for k in ("images", "usable", "objects") if k in m} for s, m in metas.items()}))


if __name__ == "__main__":
    main()
