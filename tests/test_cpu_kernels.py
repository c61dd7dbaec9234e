"""ssd_tf turns TensorFlow's oneDNN kernels on where TensorFlow would leave them off (ssd_tf.cpu_kernels)."""

import os
import platform
import subprocess
import sys

import pytest

REPORT = ("from tensorflow.python.util import _pywrap_util_port as port; "
          "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'), port.IsMklEnabled())")


def _run(code, **env):
    """What a fresh Python prints, without the test process's TF_ENABLE_ONEDNN_OPTS unless given."""
    environ = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"} | env
    out = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="oneDNN is only preferred on x86")
def test_importing_ssd_tf_first_turns_onednn_on_and_a_users_choice_stands():
    # On AVX-512 VNNI and AMX CPUs TensorFlow is on by itself; the variable shows ssd_tf set it.
    assert _run("import os, ssd_tf, tensorflow; " + REPORT) == ["1", "True"]
    # A user's choice stands (TensorFlow itself then keeps Eigen's kernels; not loaded here, to save 4 s).
    assert _run("import os, ssd_tf; print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'))", TF_ENABLE_ONEDNN_OPTS="0") == ["0"]
    # TensorFlow already loaded: too late to matter, so the environment is left as it was.
    assert _run("import os, sys; sys.modules['tensorflow'] = None; import ssd_tf; "
                "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'))") == ["None"]
