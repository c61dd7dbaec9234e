"""Import NVIDIA's COCO-trained SSD300 v1.1 (PyTorch checkpoint) as a model folder.

    python scripts/import_nvidia.py nvidia_ssdpyt_amp_200703.pt --output models/nvidia-coco

writes models/nvidia-coco/final.keras and classes.json (background + COCO's 80 categories with
their category ids); evaluate.py, predict.py, export.py and train.py --init-from take the folder.
Needs torch to read the file: pip install "ssd-tf[torch]".
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="NVIDIA's training checkpoint (.pt), or a bare state dict of the same network")
    p.add_argument("--output", required=True, help="model folder to write (must not hold a final.keras yet)")
    p.add_argument("--num-classes", type=int, default=81,
                   help="labels per box including background (default 81, NVIDIA's COCO model); another count "
                        "imports with generic class names")
    p.add_argument("--quiet", action="store_true", help="no progress display (on a terminal a bar, else a line "
                                                         "per 10 %%)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.quiet:
        from ssd_tf.progress import set_quiet
        set_quiet()
    from ssd_tf.cli import errors as cli  # after parsing: --help answers without TensorFlow
    from ssd_tf.modeling import nvidia
    from ssd_tf.modeling import torch_weights

    with cli.user_errors(torch_weights.WeightsError, ImportError):
        output, model = nvidia.import_nvidia(args.checkpoint, args.output, args.num_classes)
    print(f"imported {args.checkpoint}: {model.count_params():,} parameters, {args.num_classes} labels "
          f"-> {output / 'final.keras'} and {output / 'classes.json'}")


if __name__ == "__main__":
    main()
