"""Exports a trained model as a SavedModel that TF-Serving serves for top-N retrieval.

  python -m export.saved_model --workdir=workdirs/dcd --export_dir=exports/student

Writes `<export_dir>/<version>/` (the next free integer unless --version is given) atomically,
never overwriting a version, and `models.config` for TF-Serving next to `export_dir`. The data
the model was trained on is reloaded from the workdir's flags.txt (--data_dir overrides where it
is read from). Signatures and semantics: `tfkd.serving`.
"""

import os

from absl import app, flags

from tfkd import serving, training
from tfkd.errors import ConfigError
from trainers import common

FLAGS = flags.FLAGS
# workdir and data_dir share names with the trainers' flags: defined once when both are imported
# in one process (tests).
if "workdir" not in FLAGS:
  flags.DEFINE_string("workdir", None, "Work directory of trainers.train or trainers.distill.")
flags.DEFINE_string("export_dir", None, "Model base path: versions are written below it.")
flags.DEFINE_integer("version", None, "Version number (default: the next free one).",
                     lower_bound=0)
flags.DEFINE_integer("top_n", 50, "Items returned per user.", lower_bound=1)
flags.DEFINE_string("model_name", None, "Name in models.config and warm-up requests "
                    "(default: the base name of --export_dir).")
flags.DEFINE_string("serving_root", "/models", "Where export_dir's parent is mounted in the "
                    "serving container (the base_path prefix in models.config).")
if "data_dir" not in FLAGS:
  flags.DEFINE_string("data_dir", None, "Where the source data is read (default: as trained).")


def run(workdir, export_dir, top_n=50, version=None, model_name=None, serving_root="/models",
        data_dir=None):
  """Exports the model of `workdir`; returns (version path, models.config path)."""
  if not os.path.isdir(workdir):
    raise ConfigError(f"--workdir {workdir!r} is not a directory")
  config = common.workdir_train_config(workdir, **({"data_dir": data_dir} if data_dir else {}))
  dataset = training.config_dataset(config)
  model, _ = training.load_model(workdir, dataset)
  path = serving.export(model, dataset, export_dir, top_n=top_n, version=version,
                        model_name=model_name)
  root = os.path.dirname(os.path.abspath(export_dir))
  return path, serving.write_models_config(root, serving_root)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  with common.one_line_errors():
    path, config = run(FLAGS.workdir, FLAGS.export_dir, FLAGS.top_n, FLAGS.version,
                       FLAGS.model_name, FLAGS.serving_root, FLAGS.data_dir)
  print(f"exported {path}")
  print(f"wrote {config}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir", "export_dir"])
  app.run(main)
