"""Distils a teacher into a student: the project's main job.

  python -m trainers.distill --flagfile=configs/dcd.flags

Runs end to end from nothing: prepares the data, trains the teacher into --teacher_dir when it
holds none (with the settings of --teacher_flagfile), computes the teacher's rankings, distils the
student with --method, and writes the student's workdir (checkpoint, flags, TensorBoard logs,
metrics.json shaped like trainers.train's).
"""

import os

from absl import app, flags

from tfkd import distill, training
from tfkd.errors import ConfigError
from trainers import common

FLAGS = flags.FLAGS
common.define_common_flags()
common.define_model_flags()
flags.DEFINE_string("teacher_dir", None, "The teacher's work directory (trained there first "
                    "when it holds no model).")
flags.DEFINE_string("teacher_flagfile", "configs/bpr_teacher.flags",
                    "trainers.train flagfile used to train the teacher when --teacher_dir "
                    "holds none.")
flags.DEFINE_enum("method", None, sorted(distill.METHODS), "Distillation method (required: "
                  "every distillation config sets it).")
flags.DEFINE_integer("knowledge_chunk_size", 1024, "Users (items) per chunk when ranking with "
                     "the teacher or the student.", lower_bound=1)
flags.DEFINE_integer("refresh_every", None, "Epochs between refreshes of the student's ranks "
                     "(DCD) or redraws of the samples (CD); default: the refresh_every of the "
                     "method's config (tfkd.distill.DCDConfig, CDConfig).", lower_bound=1)
# Every method's own settings, generated from its config dataclass (tfkd.config_flags).
distill.define_flags()


def distill_config():
  with common.one_line_errors():
    if FLAGS.method is None:
      # A default would silently run that method for a flagfile that names none (a student or
      # dataset config given alone).
      raise ConfigError(f"--method: no distillation method given; expected one of "
                        f"{', '.join(sorted(distill.METHODS))} (the configs of "
                        f"configs/ that distil set it)")
    teacher = None
    if not os.path.isfile(os.path.join(FLAGS.teacher_dir or "", training.MODEL_FILE)):
      teacher = common.train_config_from_flagfile(
          FLAGS.teacher_flagfile, dataset=FLAGS.dataset, data_dir=FLAGS.data_dir,
          dataset_kwargs=common.dataset_kwargs(), split_seed=FLAGS.split_seed,
          num_candidates=FLAGS.num_candidates, eval_protocol=FLAGS.eval_protocol,
          verbose=FLAGS.verbose, deterministic=FLAGS.deterministic, strategy=FLAGS.strategy,
          logical_cpus=FLAGS.logical_cpus)
    return common.train_config(
        cls=training.DistillConfig, teacher_dir=FLAGS.teacher_dir, teacher=teacher,
        method=FLAGS.method, method_config=distill.config_from_flags(FLAGS.method),
        knowledge_chunk_size=FLAGS.knowledge_chunk_size)


def main(argv):
  # absl's app.run exits with main's return value: a returned dict would exit 1.
  common.run(argv, distill_config, training.distill)


if __name__ == "__main__":
  flags.mark_flag_as_required("teacher_dir")
  app.run(main)
