"""Trains a teacher or a plain student.

  python -m trainers.train --flagfile=configs/bpr_teacher.flags --workdir=/tmp/bpr_teacher
"""

from absl import app, flags

from tfkd import training
from trainers import common

FLAGS = flags.FLAGS
common.define_common_flags()
common.define_model_flags()


def main(argv):
  # absl's app.run exits with main's return value: a returned dict would exit 1.
  common.run(argv, common.train_config, training.train)


if __name__ == "__main__":
  app.run(main)
