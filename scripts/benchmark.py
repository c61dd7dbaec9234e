"""Benchmarks. `data`: training-pipeline images/s; `train`: training images/s.

    python scripts/benchmark.py data [--data-dir ../shared/data/voc2012_sample/VOC2012]
    python scripts/benchmark.py train [--batch-size 8] [--precision float32|float16|bfloat16]
"""

import argparse
import json

from ssd_tf import benchmark, data


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    d = sub.add_parser("data", help="images/s of the full training pipeline")
    d.add_argument("--data-dir", default="../shared/data/voc2012_sample/VOC2012", help="a VOC20xx folder")
    d.add_argument("--split", default="trainval")
    d.add_argument("--batch-size", type=int, default=8)
    d.add_argument("--passes", type=int, default=5)
    t = sub.add_parser("train", help="training images/s on random inputs")
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--steps", type=int, default=5)
    t.add_argument("--precision", choices=["float32", "float16", "bfloat16"], default="float32")
    args = parser.parse_args(argv)
    if args.what == "data":
        result = benchmark.data_throughput(data.read_voc(args.data_dir, args.split), args.batch_size, args.passes)
        print(f"data pipeline: {result['images_per_s_median']:.1f} images/s (median of {args.passes} passes "
              f"over {result['images']} images, batch {args.batch_size}) on {result['machine']}")
    else:
        result = benchmark.train_throughput(args.batch_size, args.steps, args.precision)
        print(f"training: {result['images_per_s_median']:.2f} images/s, {result['step_s_median']:.2f} s/step "
              f"(median of {args.steps}, batch {args.batch_size}, {args.precision}) on {result['machine']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
