"""What the entry points print: TensorFlow's start-up lines filtered out, Keras's progress.

TensorFlow 2.21 writes its start-up lines (oneDNN, CUDA stub, cpu_feature_guard, cuInit) from C++
before absl's logging is initialised, straight to file descriptor 2: `TF_CPP_MIN_LOG_LEVEL` does
not reach them. `import_tensorflow_quietly` imports TensorFlow with descriptor 2 sent to a file,
then writes back every line that is not one of those start-up lines. It must run before anything
else imports TensorFlow; the entry-point packages call it on import.
"""

import os
import re
import sys
import tempfile

LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
# Lines TensorFlow prints while it loads, whatever the program does; none calls for action.
_START_UP = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler"
    r"|[IWE]\d{4} [\d:. ]+\s+\d+ (port|cudart_stub|cpu_feature_guard|cuda_platform|cuda_dnn"
    r"|cuda_blas|cuda_fft|computation_placer|cuda_executor)\.cc:\d+\] )")


def is_start_up_line(line):
  return bool(_START_UP.match(line))


def import_tensorflow_quietly():
  """Imports TensorFlow (and finds its devices) with its start-up lines filtered out.

  Sets `TF_CPP_MIN_LOG_LEVEL` to 1 (warnings and errors) unless the user set it; with it set to
  0 nothing is filtered. Idempotent; a no-op once TensorFlow is imported.
  """
  os.environ.setdefault(LOG_LEVEL_ENV, "1")
  if "tensorflow" in sys.modules or os.environ[LOG_LEVEL_ENV] == "0":
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return tf
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile(mode="w+b") as captured:
    os.dup2(captured.fileno(), 2)
    try:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      tf.config.list_physical_devices()  # loads the device plugins (the cuInit line)
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      text = captured.read().decode("utf-8", "replace")
  kept = [line for line in text.splitlines(keepends=True) if not is_start_up_line(line)]
  if kept:
    sys.stderr.write("".join(kept))
    sys.stderr.flush()
  return tf
