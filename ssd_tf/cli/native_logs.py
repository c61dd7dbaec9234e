"""Keep TensorFlow's native start-up notices off a user's terminal.

TensorFlow's C++ code writes 6 to 9 lines to the process's stderr as it loads and first looks for
devices, before its logging is configured, so ``TF_CPP_MIN_LOG_LEVEL=2`` does not silence them
(TF 2.21): "All log messages before absl::InitializeLog()", oneDNN's round-off notice, "Could not
find cuda drivers", the CPU-instructions notice and, on a machine without a GPU, "failed call to
cuInit: ... UNKNOWN ERROR (303)", which reads like a failure and is none. The scripts import
TensorFlow through ``load_tensorflow``: file descriptor 2 goes to a temporary file while
TensorFlow loads and lists its devices, then every captured line that is not one of these notices
is written back to stderr. ``SSD_TF_NATIVE_LOGS=1`` shows them all.
"""

import os
import re
import sys
import tempfile

# The start-up notices, as TF 2.18-2.21 print them.
NOTICES = re.compile(
    r"All log messages before absl::InitializeLog"
    r"|oneDNN custom operations are on"
    r"|cudart_stub\.cc|Could not find cuda drivers"
    r"|cpu_feature_guard\.cc|This TensorFlow binary is optimized|^To enable the following instructions"
    r"|failed call to cuInit|cuda_platform\.cc|cuda_executor\.cc|cuda_diagnostics\.cc"
    r"|Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered"
    r"|TF-TRT Warning: Could not find TensorRT"
)


def load_tensorflow():
    """Import TensorFlow and list its devices, its start-up notices held back. Returns the module."""
    if "tensorflow" in sys.modules or os.environ.get("SSD_TF_NATIVE_LOGS") == "1":
        import tensorflow as tf
        return tf
    sys.stderr.flush()
    saved = os.dup(2)
    failed = True
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf
            tf.config.list_physical_devices()  # the device probe prints the cuInit line
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines()
            # A failed import shows everything: the cause may be among the notices.
            kept = [line for line in lines if line.strip() and (failed or not NOTICES.search(line))]
            if kept:
                print("\n".join(kept), file=sys.stderr)
    return tf
