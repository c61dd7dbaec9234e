"""Import NVIDIA's COCO-trained SSD300 v1.1 (PyTorch checkpoint) as a model folder.

    python scripts/import_nvidia.py nvidia_ssdpyt_amp_200703.pt --output models/nvidia-coco

writes models/nvidia-coco/final.keras and classes.json (background + COCO's 80 categories with
their category ids); evaluate.py, predict.py, export.py and train.py --init-from take the folder.
Needs torch to read the file: pip install "ssd-tf[torch]".
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ssd_tf.cli import arguments as a  # noqa: E402
from ssd_tf.cli import errors as cli  # noqa: E402


def build_parser():
    p = a.parser(__doc__)
    p.add_argument("checkpoint", help="NVIDIA's training checkpoint (.pt), or a bare state dict of the same network")
    p.add_argument("--output", required=True, help="a new folder for final.keras and classes.json")
    p.add_argument("--num-classes", type=a.class_count, default=81,
                   help="labels per box including background (81: NVIDIA's COCO model); another count imports "
                        "with generic class names")
    a.add_quiet(p)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from ssd_tf.cli import checks

    with cli.user_errors():  # before TensorFlow loads and before anything is written
        checks.existing(args.checkpoint, "NVIDIA's checkpoint, a .pt file")
        checks.refuse_existing(args.output, "choose a new output folder")
        checks.torch_installed("reading a PyTorch checkpoint")
    if args.quiet:
        from ssd_tf.progress import set_quiet
        set_quiet()
    from ssd_tf.cli.native_logs import load_tensorflow
    load_tensorflow()
    from ssd_tf.modeling import nvidia, torch_weights

    with cli.user_errors(torch_weights.WeightsError, ImportError):
        output, model = nvidia.import_nvidia(args.checkpoint, args.output, args.num_classes)
    print(f"imported {args.checkpoint}: {model.count_params():,} parameters, {args.num_classes} labels "
          f"-> {output / 'final.keras'} and {output / 'classes.json'}")


if __name__ == "__main__":
    main()
