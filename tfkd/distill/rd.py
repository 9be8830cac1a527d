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

from tfkd.distill import base, losses_impl
from tfkd.errors import ConfigError


@dataclasses.dataclass
class RDConfig:
  top: int = 15  # K
  lam: float = 1.0  # position weights exp(-r / lam)
  weight: float = 0.5  # lambda of (1 - lambda) L_CF + lambda L_KD
  dynamic_start: int = 10  # first epoch (0-based) of the dynamic weights; -1: never
  mu: float = 0.1
  num_samples: int = 100
  seed: int = 0

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


def estimated_ranks(top_scores, sample_scores, num_items):
  """top_scores [B, K], sample_scores [B, n] of uniform items -> float32 [B, K]: RD's estimate of
  each top item's rank, floor((num_items - 1) * #{samples scoring higher} / n)."""
  higher = tf.reduce_sum(tf.cast(sample_scores[:, None, :] > top_scores[:, :, None], tf.float32),
                         axis=2)
  n = tf.cast(tf.shape(sample_scores)[1], tf.float32)
  return tf.floor(higher * float(num_items - 1) / n)


@base.register("rd")
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

  def base_parts(self, student, x, y, y_pred, training):
    return {"cf_loss": (1.0 - self.config.weight) * student.objective(x, y_pred)}

  def base_part_names(self):
    return ["cf_loss"]

  def part_names(self):
    return ["rd_loss"]

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

  def loss_parts(self, student, x, y_pred=None):
    users = tf.unique(tf.cast(x["user"], tf.int32)).y
    scores = student.score(users, tf.gather(self.topk, users))
    w = tf.stop_gradient(self.weights(student, users, scores))
    kd = tf.reduce_mean(losses_impl.weighted_log_sigmoid_nll(scores, w))
    return {"rd_loss": self.config.weight * kd}

  def callbacks(self):
    return [base.EpochCallback(self.epoch.assign)]

  def state_variables(self):
    return [self.epoch, self.seed_generator.state]
