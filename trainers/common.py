"""Flags every trainer understands, and the one-line error handling of the entry points."""

import contextlib
import logging as std_logging
import os
import sys

from absl import app, flags, logging

import dataclasses

from tfkd import io, models, optimizers, plan, training
from tfkd.data import flags as data_flags
from tfkd.errors import TfkdError

FLAGS = flags.FLAGS


def define_common_flags(fv=FLAGS):
  """The flags of every trainer, defined on `fv` (FLAGS, or a private FlagValues): the dataset
  flags of `tfkd.data.flags`, then the training flags.

  Idempotent: every entry point defines them, and tests import several entry points.
  """
  data_flags.define_data_flags(fv)
  if "workdir" in fv:
    return
  d = dict(flag_values=fv)
  flags.DEFINE_string("workdir", None, "Output directory (checkpoint, flags, logs, metrics).", **d)
  flags.DEFINE_integer("seed", 0, "Seed of initialisation and sampling.", **d)
  flags.DEFINE_integer("epochs", 500, "Maximum number of epochs.", lower_bound=1, **d)
  flags.DEFINE_integer("batch_size", 1024, "Training batch size.", lower_bound=1, **d)
  flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.", lower_bound=0.0, **d)
  flags.DEFINE_enum("optimizer", "adam", sorted(optimizers.OPTIMIZERS), "Adam, Adam that "
                    "updates only the embedding rows of each batch (much faster), or plain SGD.",
                    **d)
  flags.DEFINE_list("pretrained", [], "Work directories of trained models that initialise this "
                    "one (NeuMF: a --towers=gmf and a --towers=mlp run).", **d)
  flags.DEFINE_float("pretrain_alpha", 0.5, "NeuMF pre-training: the GMF tower's share of the "
                     "output layer (the MLP's is 1 - alpha).", lower_bound=0.0, upper_bound=1.0,
                     **d)
  flags.DEFINE_enum("eval_protocol", "sampled", ["sampled", "full"],
                    "Rank the held-out item against sampled candidates or all items.", **d)
  flags.DEFINE_integer("eval_every", 5, "Evaluate on validation every this many epochs.",
                       lower_bound=1, **d)
  flags.DEFINE_integer("patience", 10, "Stop after this many evaluations without improvement.",
                       lower_bound=1, **d)
  flags.DEFINE_string("early_stop_metric", "H@5", "Validation metric for early stopping.", **d)
  flags.DEFINE_list("cutoffs", ["5", "10"], "List lengths N of the reported metrics.", **d)
  flags.DEFINE_integer("eval_batch_size", 1024, "Users per evaluation batch.", lower_bound=1, **d)
  flags.DEFINE_integer("steps_per_execution", 32, "Training steps per compiled call (fewer "
                       "Python round trips).", lower_bound=1, **d)
  flags.DEFINE_bool("jit_compile", False, "XLA-compile each training step (forward, loss, "
                    "gradients, update): faster on CPU for BPR students and RRD / DCD; other "
                    "models and methods are refused.", **d)
  flags.DEFINE_integer("verbose", 1, "Console output: 0, a line per validation; 1, also "
                       "Keras's progress bar per epoch (loss parts, ETA); 2, a line per epoch "
                       "instead of the bar.", lower_bound=0, upper_bound=2, **d)
  flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker"],
                    "tf.distribute strategy: one device, every device of this host, or the "
                    "workers of TF_CONFIG.", **d)
  flags.DEFINE_integer("logical_cpus", 0, "Split the CPU into this many logical devices (for "
                       "--strategy=mirrored on a CPU-only host).", lower_bound=0, **d)
  flags.DEFINE_bool("deterministic", False, "TensorFlow op determinism: the same seed gives "
                    "identical metrics (slower on some ops).", **d)
  flags.DEFINE_bool("dry_run", False, "Print the plan, prepare the data (downloading what is "
                    "missing) and stop before any training.", **d)
  flags.mark_flag_as_required("workdir", flag_values=fv)


def define_model_flags(fv=FLAGS):
  if "model" in fv:
    return
  d = dict(flag_values=fv)
  flags.DEFINE_enum("model", "bpr", sorted(models.MODELS), "Model.", **d)
  flags.DEFINE_integer("dim", 20, "Embedding size (CDAE: hidden units).", lower_bound=1, **d)
  flags.DEFINE_float("l2", 0.0, "L2 coefficient (see the model's docstring).", lower_bound=0.0, **d)
  flags.DEFINE_integer("num_negatives", 1, "Unobserved items sampled per observed one.",
                       lower_bound=1, **d)
  flags.DEFINE_list("hidden", [], "NeuMF: MLP layer sizes (default: one layer of --dim).", **d)
  flags.DEFINE_float("corruption", None, "CDAE: probability of dropping each input item "
                     "(default 0.5).", lower_bound=0.0, upper_bound=0.99, **d)
  flags.DEFINE_float("dropout", None, "Caser: dropout before its dense layer (default 0.5).",
                     lower_bound=0.0, upper_bound=0.99, **d)
  flags.DEFINE_integer("seq_len", None, "Caser: previous items L it reads (default 5).",
                       lower_bound=1, **d)
  flags.DEFINE_enum("loss", None, list(models.neumf.LOSSES), "NeuMF: pointwise log loss (bce, the "
                    "default) or pairwise BPR.", **d)
  flags.DEFINE_enum("towers", None, list(models.neumf.TOWERS), "NeuMF: both towers (the default), "
                    "or GMF or MLP alone (to pre-train a NeuMF, see --pretrained).", **d)


_MODEL_FLAGS = ("dim", "l2", "num_negatives", "hidden", "loss", "corruption", "dropout",
                "seq_len", "towers")


def model_config(fv=FLAGS):
  """The --model's constructor arguments from the model flags; a flag set away from its default
  for a model that has no such argument is an error, not silently ignored."""
  import inspect
  accepted = inspect.signature(models.get(fv.model).__init__).parameters
  config = {}
  for name in _MODEL_FLAGS:
    value = fv[name].value
    if name in accepted:
      if name == "hidden":
        try:
          value = [int(h) for h in value]
        except ValueError:
          raise TfkdError(f"--hidden must be integers, got {','.join(value)}") from None
      if value not in (None, []):
        config[name] = value
    elif value != fv[name].default and value not in (None, []):
      raise TfkdError(f"--{name} does not apply to --model={fv.model}")
  return config


def cutoffs(fv=FLAGS):
  try:
    values = tuple(int(c) for c in fv.cutoffs)
  except ValueError:
    raise TfkdError(f"--cutoffs must be integers, got {','.join(fv.cutoffs)}") from None
  if not values or min(values) <= 0:
    raise TfkdError(f"--cutoffs must be positive integers, got {','.join(fv.cutoffs)}")
  return values


def dataset_kwargs(fv=FLAGS):
  """load_dataset's spec / recipe / split / accept arguments from the data flags
  (`tfkd.data.flags`, shared with `python -m tfkd.data.inspect`)."""
  return data_flags.dataset_kwargs(fv)


def train_config(fv=FLAGS, cls=training.TrainConfig, **extra):
  """A TrainConfig (or subclass) from the common and model flags of `fv`."""
  return cls(
      workdir=fv.workdir, model=fv.model, model_config=model_config(fv),
      dataset=fv.dataset, data_dir=fv.data_dir, dataset_kwargs=dataset_kwargs(fv),
      split_seed=fv.split_seed,
      num_candidates=fv.num_candidates, seed=fv.seed, epochs=fv.epochs,
      batch_size=fv.batch_size, learning_rate=fv.learning_rate, optimizer=fv.optimizer,
      eval_protocol=fv.eval_protocol, eval_every=fv.eval_every, patience=fv.patience,
      early_stop_metric=fv.early_stop_metric, cutoffs=cutoffs(fv),
      eval_batch_size=fv.eval_batch_size, steps_per_execution=fv.steps_per_execution,
      jit_compile=fv.jit_compile, verbose=fv.verbose, deterministic=fv.deterministic,
      strategy=fv.strategy,
      logical_cpus=fv.logical_cpus, pretrained=tuple(fv.pretrained),
      pretrain_alpha=fv.pretrain_alpha, **extra)


def _train_flag_values():
  """A private FlagValues with the common and model flags (not the process's own FLAGS)."""
  fv = flags.FlagValues()
  define_common_flags(fv)
  define_model_flags(fv)
  return fv


def _parsed_train_config(fv, args, source, overrides):
  try:
    fv(["trainer", *args])
  except flags.Error as e:
    raise TfkdError(f"{source}: {e}") from None
  return dataclasses.replace(train_config(fv), **overrides)


def train_config_from_flagfile(path, **overrides):
  """Parses a trainers.train flagfile into a TrainConfig, apart from the process's own flags."""
  if not os.path.isfile(path):
    raise TfkdError(f"flagfile {path!r} not found")
  return _parsed_train_config(_train_flag_values(), [f"--flagfile={path}", "--workdir=unused"],
                              path, overrides)


def workdir_train_config(workdir, **overrides):
  """The TrainConfig a trainer ran with, from the flags.txt it wrote in `workdir`.

  Only the common and model flags are read (a distillation workdir's method flags are skipped),
  so the data a model was trained on can be reloaded exactly, e.g. to export it.
  """
  path = os.path.join(workdir, "flags.txt")
  if not os.path.isfile(path):
    raise TfkdError(f"{workdir}: no flags.txt (not a trainers.train / trainers.distill workdir)")
  fv = _train_flag_values()
  args = []
  with open(path) as f:
    for line in f:
      line = line.strip()
      if not line.startswith("--"):
        continue
      name = line[2:].split("=", 1)[0]
      if name in fv or ("=" not in line and name.startswith("no") and name[2:] in fv):
        args.append(line)
  return _parsed_train_config(fv, args, path, overrides)


def write_flags(workdir):
  """Writes the resolved tfkd flags (not absl's own) as a reusable flagfile."""
  lines = []
  for module, module_flags in FLAGS.flags_by_module_dict().items():
    # The trainers' flags, and the methods' generated from their configs (tfkd.config_flags).
    if "trainers" not in module and module not in ("__main__", "tfkd.config_flags"):
      continue
    lines.extend(flag.serialize() for flag in module_flags)
  io.write_text(os.path.join(workdir, "flags.txt"), "\n".join(sorted(set(lines))) + "\n")


class _ConsoleFormatter(std_logging.Formatter):
  """'HH:MM:SS message' for INFO, with the level named above it ('HH:MM:SS warning: ...')."""

  def format(self, record):
    level = "" if record.levelno <= std_logging.INFO else f"{record.levelname.lower()}: "
    return f"{self.formatTime(record, '%H:%M:%S')} {level}{record.getMessage()}"


def console_logging():
  """Log lines as a user reads them: time and message, not absl's file:line prefix (absl's
  --log_dir and --logtostderr keep their meaning)."""
  logging.get_absl_handler().setFormatter(_ConsoleFormatter())


def run(argv, make_config, job):
  """The body of every entry point: config from flags, workdir checked, resolved flags written,
  `job(config)` run, test metrics printed; a TfkdError becomes one line and exit status 1."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  console_logging()
  with one_line_errors():
    config = make_config()
    config.validate()
    print(plan.describe(config), flush=True)
    # The data first: a bad input stops the run before anything is written to the workdir.
    summary = training.config_dataset(config).summary()
    if FLAGS.dry_run:
      print(summary)
      print("dry run: data prepared, nothing trained")
      return None
    created = not os.path.exists(config.workdir)
    training.prepare_workdir(config.workdir)
    write_flags(config.workdir)
    try:
      metrics = job(config)
    except TfkdError:
      if created:
        _remove_if_unused(config.workdir)
      raise
  print("test: " + " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics["test"].items())))
  print(f"wrote {os.path.join(config.workdir, training.METRICS_FILE)}")
  return metrics


def _remove_if_unused(workdir):
  """Removes a workdir this run created when the run failed before writing anything but its
  flags.txt (empty directories aside): a refused input leaves no workdir behind."""
  files = [os.path.join(d, f) for d, _, names in os.walk(workdir) for f in names]
  if files and files != [os.path.join(workdir, "flags.txt")]:
    return
  for path in files:
    os.unlink(path)
  for d, _, _ in sorted(os.walk(workdir), key=lambda entry: -len(entry[0])):
    os.rmdir(d)


@contextlib.contextmanager
def one_line_errors():
  """Turns a TfkdError into 'tfkd: <message>' on stderr and exit status 1."""
  try:
    yield
  except TfkdError as e:
    logging.flush()
    print(f"tfkd: error: {e}", file=sys.stderr)
    sys.exit(1)
