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


def config_from_flags():
  return training.TrainConfig(
      workdir=FLAGS.workdir, model=FLAGS.model, model_config=dict(dim=FLAGS.dim, l2=FLAGS.l2),
      dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, split_seed=FLAGS.split_seed,
      num_candidates=FLAGS.num_candidates, seed=FLAGS.seed, epochs=FLAGS.epochs,
      batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate,
      eval_protocol=FLAGS.eval_protocol, eval_every=FLAGS.eval_every, patience=FLAGS.patience,
      early_stop_metric=FLAGS.early_stop_metric, cutoffs=common.cutoffs(),
      eval_batch_size=FLAGS.eval_batch_size, verbose=FLAGS.verbose)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  with common.one_line_errors():
    config = config_from_flags()
    config.validate()
    training.prepare_workdir(config.workdir)
    common.write_flags(config.workdir)
    metrics = training.train(config)
  print(f"test: " + " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics["test"].items())))
  print(f"wrote {os.path.join(config.workdir, training.METRICS_FILE)}")


if __name__ == "__main__":
  app.run(main)
