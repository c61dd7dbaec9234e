"""TensorFlow's oneDNN CPU kernels, switched on before TensorFlow loads."""

import os
import platform
import sys


def prefer_onednn():
    """Set ``TF_ENABLE_ONEDNN_OPTS=1`` unless it is set already or TensorFlow is loaded.

    TensorFlow switches its oneDNN kernels on by itself only on x86 CPUs with AVX-512 VNNI/BF16 or
    AMX; on AVX2-only ones (an AMD EPYC, for one) it runs Eigen's. There, measured on an AVX2 EPYC
    with 2 cores: SSD300's training step at batch 8 took 9.4 s with Eigen and 6.9 s with oneDNN, and
    the 38x38 heads' filter gradients 0.50 s against 0.04 s. TensorFlow reads the variable once, as
    it loads, so this only helps when ``ssd_tf`` is imported first (the scripts do).
    ``TF_ENABLE_ONEDNN_OPTS=0`` keeps Eigen. Other architectures keep TensorFlow's own choice."""
    if "tensorflow" in sys.modules or platform.machine().lower() not in ("x86_64", "amd64"):
        return
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
