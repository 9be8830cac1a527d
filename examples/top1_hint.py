"""A "top-1 hint": a new distillation method in one file.

For each training row, the student should score the teacher's best unobserved item for the user
above the row's sampled negative: weight * softplus(s(u, neg) - s(u, top1)), averaged over the
batch. A toy, but a complete method: settings (with their flags), teacher knowledge, a loss part.
"""

import dataclasses

import tensorflow as tf

from tfkd import distill
from tfkd.config_flags import check, setting


@dataclasses.dataclass
class Top1HintConfig:
  weight: float = setting(0.1, "Top-1 hint: lambda of the hint term.", lower=0.0)

  def validate(self):
    check(self, "top1_hint")


@distill.register("top1_hint", Top1HintConfig, flag_prefix="hint_")
class Top1Hint(distill.Method):
  user_k = 1  # the length of the teacher's top list per user this method reads

  def __init__(self, config: Top1HintConfig):
    config.validate()
    self.config = config

  def setup(self, dataset, student, teacher, knowledge):
    self.top1 = tf.constant(knowledge["user_topk"][:, 0], tf.int32)

  def part_names(self):
    return ["base_loss", "hint_loss"]  # the student's own loss, then the hint

  def loss_parts(self, student, x, out=None):
    users = tf.cast(x["user"], tf.int32)
    hint = student.score(users, tf.gather(self.top1, users)[:, None])
    negative = student.score(users, tf.cast(x["item"][:, 1:2], tf.int32))
    loss = self.config.weight * tf.reduce_mean(tf.nn.softplus(negative - hint))
    return {**self.student_part(student, x, out), "hint_loss": loss}
