"""Trains a teacher or a plain student.

  python -m trainers.train --flagfile=configs/bpr_teacher.flags --workdir=/tmp/bpr_teacher
"""

import os

from absl import app, flags

from tfkd import training
from trainers import common

FLAGS = flags.FLAGS
common.define_common_flags()
common.define_model_flags()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  with common.one_line_errors():
    config = common.train_config()
    config.validate()
    training.prepare_workdir(config.workdir)
    common.write_flags(config.workdir)
    metrics = training.train(config)
  print("test: " + " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics["test"].items())))
  print(f"wrote {os.path.join(config.workdir, training.METRICS_FILE)}")


if __name__ == "__main__":
  app.run(main)
