"""Flags every trainer understands, and the one-line error handling of the entry points."""

import contextlib
import os
import sys

from absl import flags, logging

from tfkd import io, models
from tfkd.data import catalog
from tfkd.errors import TfkdError

FLAGS = flags.FLAGS


def define_common_flags():
  flags.DEFINE_enum("dataset", "citeulike-derrd", catalog.names(), "Catalog dataset.")
  flags.DEFINE_string("data_dir", None, "First directory searched for source data files "
                      f"(then ${catalog.DATA_DIR_ENV}, then the tfkd cache).")
  flags.DEFINE_string("workdir", None, "Output directory (checkpoint, flags, logs, metrics).")
  flags.DEFINE_integer("seed", 0, "Seed of initialisation and sampling.")
  flags.DEFINE_integer("split_seed", 0, "Seed of the random split and evaluation candidates.")
  flags.DEFINE_integer("num_candidates", 499, "Unobserved items per user for the sampled "
                       "protocol.", lower_bound=0)
  flags.DEFINE_integer("epochs", 500, "Maximum number of epochs.", lower_bound=1)
  flags.DEFINE_integer("batch_size", 1024, "Training batch size.", lower_bound=1)
  flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.", lower_bound=0.0)
  flags.DEFINE_enum("eval_protocol", "sampled", ["sampled", "full"],
                    "Rank the held-out item against sampled candidates or all items.")
  flags.DEFINE_integer("eval_every", 5, "Evaluate on validation every this many epochs.",
                       lower_bound=1)
  flags.DEFINE_integer("patience", 10, "Stop after this many evaluations without improvement.",
                       lower_bound=1)
  flags.DEFINE_string("early_stop_metric", "H@5", "Validation metric for early stopping.")
  flags.DEFINE_list("cutoffs", ["5", "10"], "List lengths N of the reported metrics.")
  flags.DEFINE_integer("eval_batch_size", 1024, "Users per evaluation batch.", lower_bound=1)
  flags.DEFINE_integer("verbose", 0, "Keras progress output (0, 1 or 2).")
  flags.mark_flag_as_required("workdir")


def define_model_flags():
  flags.DEFINE_enum("model", "bpr", sorted(models.MODELS), "Model.")
  flags.DEFINE_integer("dim", 20, "Embedding size.", lower_bound=1)
  flags.DEFINE_float("l2", 0.0, "L2 coefficient (see the model's docstring).", lower_bound=0.0)


def cutoffs():
  try:
    values = tuple(int(c) for c in FLAGS.cutoffs)
  except ValueError:
    raise TfkdError(f"--cutoffs must be integers, got {','.join(FLAGS.cutoffs)}") from None
  if not values or min(values) <= 0:
    raise TfkdError(f"--cutoffs must be positive integers, got {','.join(FLAGS.cutoffs)}")
  return values


def write_flags(workdir):
  """Writes the resolved tfkd flags (not absl's own) as a reusable flagfile."""
  lines = []
  for module, module_flags in FLAGS.flags_by_module_dict().items():
    if "trainers" not in module and module != "__main__":
      continue
    lines.extend(flag.serialize() for flag in module_flags)
  io.write_text(os.path.join(workdir, "flags.txt"), "\n".join(sorted(set(lines))) + "\n")


@contextlib.contextmanager
def one_line_errors():
  """Turns a TfkdError into 'tfkd: <message>' on stderr and exit status 1."""
  try:
    yield
  except TfkdError as e:
    logging.flush()
    print(f"tfkd: error: {e}", file=sys.stderr)
    sys.exit(1)
