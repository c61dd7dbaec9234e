"""Convert a data set to sharded TFRecords (TF Object Detection API feature keys).

    python scripts/convert.py --dataset coco --data-dir COCO --output records/coco        # train2017, val2017
    python scripts/convert.py --dataset voc --data-dir VOCdevkit/VOC2012 --output records/voc
    python scripts/convert.py --dataset voc --data-dir ../shared/data/raccoon/VOC2007 --classes raccoon \\
        --output records/raccoon

Then: python scripts/train.py --dataset tfrecord --data-dir records/coco
Every image is fully decoded once here; unreadable images and bad boxes are skipped and listed.
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ssd_tf.data import conversion  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=["voc", "coco", "synthetic"], required=True)
    p.add_argument("--data-dir")
    p.add_argument("--output", required=True, help="folder for the shards (e.g. records/coco)")
    p.add_argument("--splits", help="comma-separated split names; the first is used for training, the second "
                                    "for validation (default: voc train,val; coco train2017,val2017)")
    p.add_argument("--classes", help="VOC class names, comma-separated (default: the 20 VOC classes)")
    p.add_argument("--images-per-shard", type=int, default=1024)
    args = p.parse_args(argv)
    try:
        metas = conversion.convert(args.dataset, args.data_dir, args.output,
                                 args.splits.split(",") if args.splits else None,
                                 [c.strip() for c in args.classes.split(",")] if args.classes else None,
                                 args.images_per_shard)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    for split, meta in metas.items():
        skipped = sum(meta["skipped"].values())
        print(f"{split}: {meta['images']} images, {meta['objects']} objects in {len(meta['shards'])} shards"
              f" ({skipped} skipped; see {args.output}/{split}.json)")
    print(json.dumps({s: {k: m[k] for k in ("images", "usable", "objects")} for s, m in metas.items()}))


if __name__ == "__main__":
    main()
