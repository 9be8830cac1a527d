"""CD: Collaborative Distillation (Lee et al., ICDM 2019), with its three training tactics.

  L = (1 - weight) L_CF + weight L_KD

L_CF, the student's *selective* cross-entropy: -log sigmoid(s) over the batch's observed items only
(the sampled negatives of the student's pipeline are left out), plus the student's own penalty;
`cf_loss="full"` keeps the student's own loss instead (its sampled negatives included).
L_KD: the binary cross-entropy between the student's probability sigmoid(s_ui) and the teacher's
soft target sigmoid((t_ui - beta) / alpha), summed over a sample of the user's unobserved items;
each sampled item weighs as much as one observed item (see `loss_parts`).

The sample is drawn by rank-aware sampling (`samplers.rank_aware_positions`) over the user's
unobserved items ranked by the `guide`:
  "uniform"  CD-Base: no ranking, uniform over the unobserved items;
  "teacher"  CD-TG: the teacher's ranking (fixed);
  "student"  CD-SG: the student's current ranking; the teacher is asked for the soft targets of
             the items the student picked.
`kd_pass` says which forward pass of the student L_KD scores: "clean" (default) scores the
sampled items without corruption or dropout, apart from the CF term's pass; "training" scores them
in the CF term's own training pass (`forward` widens the batch with the users' samples), so a
CDAE student matches the teacher's soft targets from its corrupted row and a Caser student with
dropout on, as an autoencoder that decodes every item from one corrupted input computes both.

`scheme` is "linear" (p ~ 1 - relative rank; the paper's Algorithm 1) or "exponential"
(p ~ exp(-relative rank / slope)). The sample size per user is `sample_size` when positive, else
ceil(sample_ratio x the user's training items) (paper: 0.5, 0.8 on ML-100K; 50 items for Caser).

The samples and the teacher's logits of them are drawn for every user, in chunks of users, every
`refresh_every` epochs (and before the first) by a callback, seeded by (seed, epoch), into
variables each training step reads its users' rows from. For CD-SG this is when the student's
ranking is refreshed (the paper queries at every step; a full ranking per step would dominate).
The teacher and uniform guides do not change during training: their order of every user's items
and the teacher's score rows are computed at the first draw and kept when both fit in
`cache_bytes` (8 bytes per user x item; 0 disables), so later draws only sample positions (the
same draws, without the sort of every row that was ~2.5 s of a 10 s Amazon Music CDAE epoch).
The student guide keeps the teacher's rows only (4 bytes per user x item) and sorts the
student's rows at every draw.
"""

import dataclasses
import time

import numpy as np
import tensorflow as tf
from absl import logging

from tfkd.distill import base, losses_impl, ranks, samplers
from tfkd.errors import ConfigError
from tfkd.models.base import selective_log_loss

GUIDES = ("uniform", "teacher", "student")
KD_PASSES = ("clean", "training")


@dataclasses.dataclass
class CDConfig:
  guide: str = "teacher"
  scheme: str = "linear"  # or "exponential" (ignored by the uniform guide)
  slope: float = 0.1  # the exponential scheme's slope
  sample_ratio: float = 0.5  # sample ceil(ratio x the user's training items) ...
  sample_size: int = 0  # ... or this many, when positive
  alpha: float = 2.0  # soft target sigmoid((t - beta) / alpha)
  beta: float = 1.0
  weight: float = 0.5  # lambda
  cf_loss: str = "selective"  # or "full": the student's own loss, sampled negatives included
  kd_pass: str = "clean"  # or "training": L_KD in the CF term's training forward pass
  refresh_every: int = 1
  chunk_size: int = 1024
  cache_bytes: int = 1 << 30  # guides' orders (fixed guides) and teacher rows are kept up to this
  seed: int = 0

  def validate(self):
    if self.guide not in GUIDES:
      raise ConfigError(f"cd guide must be one of {GUIDES}, got {self.guide!r}")
    if self.scheme not in ("linear", "exponential"):
      raise ConfigError(f"cd scheme must be 'linear' or 'exponential', got {self.scheme!r}")
    if self.slope <= 0:
      raise ConfigError(f"cd slope must be positive, got {self.slope}")
    if self.sample_size < 0 or (self.sample_size == 0 and self.sample_ratio <= 0):
      raise ConfigError(f"cd needs a positive sample_size or sample_ratio, got "
                        f"{self.sample_size} and {self.sample_ratio}")
    if self.alpha <= 0:
      raise ConfigError(f"cd alpha must be positive, got {self.alpha}")
    if not 0.0 <= self.weight <= 1.0:
      raise ConfigError(f"cd weight must be in [0, 1], got {self.weight}")
    if self.cf_loss not in ("selective", "full"):
      raise ConfigError(f"cd cf_loss must be 'selective' or 'full', got {self.cf_loss!r}")
    if self.kd_pass not in KD_PASSES:
      raise ConfigError(f"cd kd_pass must be one of {KD_PASSES}, got {self.kd_pass!r}")
    if self.cache_bytes < 0:
      raise ConfigError(f"cd cache_bytes must be >= 0, got {self.cache_bytes}")
    if self.refresh_every <= 0:
      raise ConfigError(f"cd refresh_every must be positive, got {self.refresh_every}")


@base.register("cd")
class CD(base.Method):

  def __init__(self, config: CDConfig):
    config.validate()
    self.config = config
    self.draws = []

  def setup(self, dataset, student, teacher, knowledge):
    c = self.config
    self.student, self.teacher = student, teacher
    self.scorer = ranks.SideScorer(dataset, "user")
    positives = np.diff(self.scorer.indptr)
    self.positives = tf.constant(np.maximum(positives, 1), tf.float32)
    self.unobserved = (dataset.num_items - positives).astype(np.int32)
    if c.sample_size:
      self.sizes = np.full(dataset.num_users, c.sample_size, np.int32)
    else:
      self.sizes = np.maximum(np.ceil(c.sample_ratio * positives), 1).astype(np.int32)
    width = int(self.sizes.max())
    shape = [dataset.num_users, width]
    self.lists = tf.Variable(tf.zeros(shape, tf.int32), trainable=False, name="cd_items")
    self.targets = tf.Variable(tf.zeros(shape, tf.float32), trainable=False, name="cd_targets")
    self.valid = tf.Variable(tf.zeros(shape, tf.bool), trainable=False, name="cd_valid")
    # {first row of a chunk: (order, teacher rows)}, filled at the first draw; the student guide
    # (its order changes every draw) keeps the teacher's rows only: 4 bytes per user x item.
    per_entry = 4 if c.guide == "student" else 8
    fits = per_entry * dataset.num_users * dataset.num_items <= c.cache_bytes
    self._cache = {} if fits else None

  def _ranked_rows(self, rows):
    """(order of each row's items by the guide, best first; the teacher's masked score rows).
    Cache entries are (order, teacher rows); the student guide's order (None there) is sorted
    at every draw."""
    key = int(rows[0])
    entry = self._cache.get(key) if self._cache is not None else None
    if entry is None:
      t_scores = self.scorer.scores(self.teacher, rows)
      if self.config.guide == "teacher":
        order = ranks.descending_order(t_scores)
      elif self.config.guide == "uniform":  # the unobserved items in id order, observed ones last
        guide = np.zeros_like(t_scores)
        guide[~np.isfinite(t_scores)] = -np.inf
        order = ranks.descending_order(guide)
      else:
        order = None
      entry = order, t_scores
      if self._cache is not None:
        self._cache[key] = entry
    order, t_scores = entry
    if order is None:
      order = ranks.descending_order(self.scorer.scores(self.student, rows))
    return order, t_scores

  def draw_rows(self, rows, epoch):
    """(items int32, teacher logits float32, valid bool), each [len(rows), width], for `rows`."""
    c, width = self.config, self.lists.shape[1]
    order, t_scores = self._ranked_rows(rows)
    scheme = "uniform" if c.guide == "uniform" else c.scheme
    seed = tf.constant([c.seed * 1000003 + epoch, int(rows[0])], tf.int64)
    positions = samplers.rank_aware_positions(self.unobserved[rows], width, scheme, c.slope,
                                              seed).numpy()
    items = np.take_along_axis(order, positions, axis=1)
    valid = ((np.arange(width)[None, :] < self.sizes[rows][:, None]) &
             (self.unobserved[rows][:, None] > 0))
    return items, np.take_along_axis(t_scores, items, axis=1), valid

  def refresh(self, epoch):
    start, c = time.time(), self.config
    parts = [self.draw_rows(rows, epoch)
             for rows in ranks.row_chunks(self.scorer.num_rows, c.chunk_size)]
    for variable, i in ((self.lists, 0), (self.targets, 1), (self.valid, 2)):
      variable.assign(np.concatenate([p[i] for p in parts], axis=0))
    self.draws.append({"epoch": epoch, "seconds": round(time.time() - start, 3)})
    logging.info("cd (%s guide) drew its samples at epoch %d in %.2f s", c.guide, epoch,
                 self.draws[-1]["seconds"])
    return {"cd/draw_seconds": self.draws[-1]["seconds"]}

  def forward(self, student, x):
    if self.config.kd_pass == "clean":
      return student(x, training=True)
    # Each row (u, i, negatives) followed by u's sample: one pass, one corruption per user.
    users = tf.cast(x["user"], tf.int32)
    lists = tf.gather(self.lists, users)
    if student.lists_as_pairs(lists.shape[1]):  # (own scores, valid entries' scores, where)
      where = tf.where(tf.gather(self.valid, users))
      return (*student.call_with_pairs(x, lists, where, training=True), where)
    return student.call_with_lists(x, lists, training=True)

  @staticmethod
  def _own(x, y_pred):
    """The scores of the batch's own items (`forward` may append the sample's, as columns or as
    the second of (own, pair scores, their positions))."""
    if isinstance(y_pred, (tuple, list)):
      return y_pred[0]
    return y_pred[:, :x["item"].shape[1]]

  def base_parts(self, student, x, y, y_pred, training):
    y_pred = self._own(x, y_pred)
    if self.config.cf_loss == "full":
      return {"cf_loss": (1.0 - self.config.weight) * student.objective(x, y_pred)}
    loss = (1.0 - self.config.weight) * selective_log_loss(y_pred)
    return {"cf_loss": loss + student.regularization(x)}

  def base_part_names(self):
    return ["cf_loss"]

  def part_names(self):
    return ["cd_loss"]

  def loss_parts(self, student, x, y_pred=None):
    """The paper's objective is per user: sum of CE over the user's observed items plus sum of
    BCE over the user's sample. A batch here holds interactions, so user u's sample enters with
    weight c_u / n_u (c_u of u's n_u training items are in the batch): over an epoch every user's
    sample counts once, each sampled item as much as one observed item, and both sums are divided
    by the batch size as the selective CE is. With kd_pass "training" the sample's scores are the
    columns `forward` appended, one copy per row of u (weight 1 / n_u each: the same sum)."""
    c = self.config
    batch = tf.cast(tf.shape(x["user"])[0], tf.float32)
    own = x["item"].shape[1]
    if c.kd_pass == "training" and isinstance(y_pred, (tuple, list)):
      # The valid entries only, at the positions `forward` scored them.
      users, (_, pair_scores, where) = tf.cast(x["user"], tf.int32), y_pred
      targets = tf.gather_nd(tf.gather(self.targets, users), where)
      share = tf.gather(1.0 / tf.gather(self.positives, users), where[:, 0])
      bce = losses_impl.soft_target_bce(pair_scores[:, None], targets[:, None], c.alpha, c.beta)
      return {"cd_loss": c.weight * tf.reduce_sum(share * bce) / batch}
    if c.kd_pass == "training" and y_pred is not None and y_pred.shape[1] > own:
      users = tf.cast(x["user"], tf.int32)
      scores, share = y_pred[:, own:], 1.0 / tf.gather(self.positives, users)
    else:
      users, _, counts = tf.unique_with_counts(tf.cast(x["user"], tf.int32))
      scores = student.score_lists(users, tf.gather(self.lists, users))
      share = tf.cast(counts, tf.float32) / tf.gather(self.positives, users)
    valid = tf.gather(self.valid, users)
    per_item = losses_impl.soft_target_bce(scores, tf.gather(self.targets, users), c.alpha,
                                           c.beta, valid)  # mean over the valid entries
    per_user = per_item * tf.reduce_sum(tf.cast(valid, tf.float32), axis=1)  # their sum
    return {"cd_loss": c.weight * tf.reduce_sum(share * per_user) / batch}

  def callbacks(self):
    return [base.EpochCallback(self.refresh, self.config.refresh_every)]

  def state_variables(self):
    return [self.lists, self.targets, self.valid]

  def get_history(self):
    return {"draws": self.draws}

  def set_history(self, history):
    self.draws = list(history.get("draws", []))

  def extra_metrics(self):
    seconds = [d["seconds"] for d in self.draws]
    return {"cd_draws": len(seconds), "cd_draw_seconds": round(float(np.sum(seconds)), 3)}
