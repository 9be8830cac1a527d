"""Rank discrepancy of trained students against a teacher (DCD's Fig. 1a): mean |R_S - R_T| over
the teacher's top-50, user side and item side, for students that do not record it themselves
(plain students; `trainers.distill` writes it into metrics.json).

  python benchmarks/rank_gaps.py --teacher_dir=workdirs/caser_teacher \
      --students=workdirs/bench/caser_student/seed0,workdirs/bench/caser_student/seed1
"""

import os

import numpy as np
from absl import app, flags

from tfkd import distill, training
from trainers import common

flags.DEFINE_string("teacher_dir", None, "The teacher's work directory.", required=True)
flags.DEFINE_list("students", [], "Student work directories (trained on the teacher's data).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  with common.one_line_errors():
    _report()


def _report():
  dataset = training.config_dataset(common.workdir_train_config(FLAGS.teacher_dir))
  teacher, _ = training.load_model(FLAGS.teacher_dir, dataset)
  knowledge = distill.teacher.load_or_compute(
      teacher, FLAGS.teacher_dir, os.path.join(FLAGS.teacher_dir, training.WEIGHTS_FILE), dataset,
      *distill.ranks.gap_depths(dataset))
  gaps = []
  for workdir in FLAGS.students:
    student, _ = training.load_model(workdir, dataset)
    side_gaps = distill.ranks.final_rank_gaps(student, dataset, knowledge)
    gaps.append([side_gaps["user"], side_gaps["item"]])
    print(f"{workdir}: user {gaps[-1][0]:.1f} / item {gaps[-1][1]:.1f}")
  if len(gaps) > 1:
    mean = np.mean(gaps, axis=0)
    print(f"mean of {len(gaps)}: user {mean[0]:.1f} / item {mean[1]:.1f}")


if __name__ == "__main__":
  app.run(main)
