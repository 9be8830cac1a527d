"""XLA-compiled training steps (`--jit_compile`).

Keras compiles the whole training step (forward, loss, gradients, optimizer update) into one XLA
computation when a model is compiled with `jit_compile=True`, fusing the many small ops of a BPR
student's step and of RRD's / DCD's list losses (timings: docs/speed.md). XLA needs static
shapes, so the few ops whose output size depends on the data have a second form, taken while XLA
traces (`in_xla()`):

- a batch's distinct users (items) for the list losses: `tf.unique` gives each once; under XLA
  every row of the batch is kept, sorted, and the repeats weigh 0 (`tfkd.models.ops.distinct`);
- a list's scores: `ops.gather_dot`'s table gradient, a sparse x dense product, is the same
  dense gradient as one scatter-add (XLA has no sparse ops);
- the optimizers' embedding (`IndexedSlices`) gradients: summed into dense rows with segment sums
  over the table's rows instead of `tf.unique` over the batch's (`tfkd.optimizers`).

Each form computes the same loss and the same update as the other (tested). Models and methods
whose steps keep other data-dependent shapes (ragged rows, `tf.where`) say `xla_ready = False`
and are refused with one line (`check_model`, `check_method`).
"""

import tensorflow as tf
# The test TF's own ops use to pick their XLA forms (e.g. in `tf.while_loop`).
from tensorflow.python.ops import control_flow_util  # pylint: disable=g-direct-tensorflow-import

from tfkd.errors import ConfigError


def in_xla():
  """True while tracing a function that XLA compiles (`tf.function(jit_compile=True)`, or a
  function called from one)."""
  return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


def check_model(model_cls, strategy):
  """Raises a one-line ConfigError when `--jit_compile` cannot train a `model_cls` under the
  strategy named `strategy`."""
  if not getattr(model_cls, "xla_ready", False):
    raise ConfigError(f"--jit_compile: model {model_cls.__name__} has data-dependent shapes in "
                      "its training step that XLA cannot compile; add --nojit_compile "
                      "(supported: BPR)")
  if strategy != "default":
    raise ConfigError(f"--jit_compile runs with --strategy=default, got --strategy={strategy} "
                      "(XLA-compiled steps fail across logical CPU devices); add "
                      "--nojit_compile")


def check_method(method):
  """Raises a one-line ConfigError when `--jit_compile` cannot run the distillation `method`."""
  if not method.xla_ready:
    raise ConfigError(f"--jit_compile: method {method.name!r} with these settings has "
                      "data-dependent shapes in its loss that XLA cannot compile; add "
                      "--nojit_compile (supported: rrd with --rrd_variant=sampled, and dcd on "
                      "it)")
