"""RD: Ranking Distillation (Tang and Wang, KDD 2018), the baseline of the CD paper.

The teacher's top-K unobserved items of a user are extra positives of the student, position r
(1 = the teacher's best) weighted by

  static   w_r ~ exp(-r / lam), normalised to sum to 1 over the K positions;
  dynamic  w_r <- w_r * tanh(max(mu (R^_S(r) - r), 0)) from epoch `dynamic_start` on, where R^_S
           is the student's rank of the item estimated from `num_samples` items drawn uniformly
           from the catalog: (I - 1) x (the fraction of them the student scores higher), floored.
           Items the student already ranks at or above the teacher's position stop counting.

  L_KD = -sum_r w_r log sigmoid(s_u,pi_r)       per user of the batch, averaged
  L    = (1 - weight) L_CF + weight L_KD         (L_CF: the student's own loss, penalty included)

The CD paper runs it with weight 0.5 and K = 15 (CDAE) or 10 (Caser); the reference code's
defaults are lam = 1, mu = 0.1, 100 samples, dynamic weights from epoch 10. `dynamic_start = -1`
keeps the static weights throughout.
"""

import dataclasses

import keras
import tensorflow as tf

from tfkd.config_flags import check, setting
from tfkd.distill import base, losses, losses_impl
from tfkd.errors import ConfigError


@dataclasses.dataclass
class RDConfig:
  """RD's settings; each is also a flag of `trainers.distill`."""

  top: int = setting(15, "RD: the teacher's top-K items taken as positives.", lower=1)
  lam: float = setting(1.0, "RD: position weights exp(-r / lambda).", flag="rd_lambda",
                       lower=1e-12)
  weight: float = setting(0.5, "RD: lambda of (1 - lambda) L_CF + lambda L_KD.", lower=0.0,
                          upper=1.0)
  dynamic_start: int = setting(10, "RD: first epoch (0-based) of the dynamic weights (-1: "
                               "never).", lower=-1)
  mu: float = setting(0.1, "RD: mu of the dynamic weights.", lower=1e-12)
  num_samples: int = setting(100, "RD: items sampled to estimate the student's ranks.", lower=1)
  seed: int = setting(0, common="seed")

  def validate(self):
    if self.top <= 0:
      raise ConfigError(f"rd: top K must be positive, got {self.top}")
    if self.lam <= 0:
      raise ConfigError(f"rd: lam must be positive, got {self.lam}")
    if not 0.0 <= self.weight <= 1.0:
      raise ConfigError(f"rd: weight must be in [0, 1], got {self.weight}")
    if self.mu <= 0:
      raise ConfigError(f"rd: mu must be positive, got {self.mu}")
    if self.num_samples <= 0:
      raise ConfigError(f"rd: num_samples must be positive, got {self.num_samples}")
    if self.dynamic_start < -1:
      raise ConfigError(f"rd: dynamic_start must be an epoch >= 0, or -1 (never), "
                        f"got {self.dynamic_start}")
    check(self, "rd")


def estimated_ranks(top_scores, sample_scores, num_items):
  """top_scores [B, K], sample_scores [B, n] of uniform items -> float32 [B, K]: RD's estimate of
  each top item's rank, floor((num_items - 1) * #{samples scoring higher} / n)."""
  higher = tf.reduce_sum(tf.cast(sample_scores[:, None, :] > top_scores[:, :, None], tf.float32),
                         axis=2)
  n = tf.cast(tf.shape(sample_scores)[1], tf.float32)
  return tf.floor(higher * float(num_items - 1) / n)


@base.register("rd", RDConfig)
class RD(base.Method):

  def __init__(self, config: RDConfig):
    config.validate()
    self.config = config
    self.user_k = config.top

  def setup(self, dataset, student, teacher, knowledge):
    c = self.config
    if c.top > dataset.num_items:
      raise ConfigError(f"rd: top K={c.top} exceeds the catalog's {dataset.num_items} items")
    self.num_items = dataset.num_items
    self.topk = tf.constant(knowledge["user_topk"][:, :c.top], tf.int32)
    self.static = losses_impl.rd_position_weights(c.top, c.lam)
    self.epoch = tf.Variable(0, trainable=False, dtype=tf.int32, name="rd_epoch")
    self.seed_generator = keras.random.SeedGenerator(c.seed)

  def student_part(self, student, x, out):
    if out is None:
      return {}
    return {"cf_loss": (1.0 - self.config.weight) * student.objective(x, out.scores)}

  def part_names(self):
    return ["cf_loss", "rd_loss"]

  def weights(self, student, users, top_scores):
    """[B, K] weights of the users' top-K items: static, times dynamic once it is on."""
    c = self.config
    static = tf.broadcast_to(self.static[None, :], tf.shape(top_scores))
    if c.dynamic_start < 0:
      return static
    sampled = keras.random.randint(tf.stack([tf.shape(users)[0], c.num_samples]), 0,
                                   self.num_items, seed=self.seed_generator, dtype="int32")
    est = estimated_ranks(top_scores, student.score(users, sampled), self.num_items)
    dynamic = losses_impl.discrepancy(est, tf.range(c.top, dtype=tf.float32)[None, :], c.mu)
    return tf.where(self.epoch >= c.dynamic_start, static * dynamic, static)

  def loss_parts(self, student, x, out=None):
    users = tf.unique(tf.cast(x["user"], tf.int32)).y
    scores = student.score(users, tf.gather(self.topk, users))
    w = tf.stop_gradient(self.weights(student, users, scores))
    kd = tf.reduce_mean(losses.WeightedLogSigmoid(reduction=None)(w, scores))
    return {**self.student_part(student, x, out), "rd_loss": self.config.weight * kd}

  def callbacks(self):
    return [base.EpochCallback(self.epoch.assign)]

  def state_variables(self):
    return [self.epoch, self.seed_generator.state]
