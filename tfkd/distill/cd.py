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

from tfkd import seeds
from tfkd.config_flags import check, setting
from tfkd.distill import base, losses, ranks, samplers
from tfkd.errors import ConfigError
from tfkd.models import lists as model_lists
from tfkd.models.base import selective_log_loss

GUIDES = ("uniform", "teacher", "student")
KD_PASSES = ("clean", "training")


@dataclasses.dataclass
class CDConfig:
  """CD's settings; each is also a flag of `trainers.distill`."""

  guide: str = setting("teacher", "CD: whose ranking the samples follow: uniform (CD-Base), "
                       "teacher (CD-TG), student (CD-SG).", choices=GUIDES)
  scheme: str = setting("linear", "CD: rank-aware sampling (ignored by the uniform guide).",
                        choices=("linear", "exponential"))
  slope: float = setting(0.1, "CD: slope of the exponential scheme.", lower=1e-12)
  sample_ratio: float = setting(0.5, "CD: sample ceil(ratio x the user's training items).",
                                lower=0.0)
  sample_size: int = setting(0, "CD: sample this many items per user instead (> 0).", lower=0)
  alpha: float = setting(2.0, "CD: soft target sigmoid((t - beta) / alpha).", lower=1e-12)
  beta: float = setting(1.0, "CD: soft target shift beta.")
  weight: float = setting(0.5, "CD: lambda of (1 - lambda) L_CF + lambda L_KD.", lower=0.0,
                          upper=1.0)
  cf_loss: str = setting("selective", "CD: the student's loss on observed items only (the "
                         "paper), or its own loss.", choices=("selective", "full"))
  kd_pass: str = setting("clean", "CD: score L_KD's sampled items in a clean pass of the "
                         "student, or in the CF term's training pass (CDAE's corrupted rows, "
                         "Caser's dropout).", choices=KD_PASSES)
  refresh_every: int = setting(1, common="refresh_every")
  chunk_size: int = setting(1024, common="knowledge_chunk_size")
  cache_bytes: int = setting(
      1 << 30, "CD: keep the teacher's score rows (and for CD-TG / CD-Base the guide's order of "
      "every user's items) between draws when they fit in this many MiB (4 bytes per user x "
      "item, 8 with the order; 0: recompute at every draw).", flag="cd_cache_mb", scale=1 << 20,
      lower=0)
  seed: int = setting(0, common="seed")

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
    check(self, "cd")


@base.register("cd", CDConfig)
class CD(base.Method):

  def __init__(self, config: CDConfig):
    config.validate()
    self.config = config
    self.draws = []
    # L_KD per row (the methods weigh the rows themselves: see `loss_parts`).
    self.kd_loss = losses.SoftTargetBCE(config.alpha, config.beta, reduction=None)

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
    seed = tf.constant([seeds.for_epoch(c.seed, epoch, "cd_draws"), int(rows[0])],
                       tf.int64)
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
      return base.Forward(student(x, training=True))
    # Each row (u, i, negatives) followed by u's sample: one pass, one corruption per user.
    users = tf.cast(x["user"], tf.int32)
    lists = tf.gather(self.lists, users)
    if model_lists.lists_as_pairs(student, lists.shape[1]):  # the valid entries' scores only, at `where`
      where = tf.where(tf.gather(self.valid, users))
      own, pair_scores = model_lists.call_with_pairs(student, x, lists, where, training=True)
      return base.Forward(own, pair_scores, where)
    y = model_lists.call_with_lists(student, x, lists, training=True)
    own = x["item"].shape[1]
    return base.Forward(y[:, :own], y[:, own:])

  def student_part(self, student, x, out):
    if out is None:
      return {}
    if self.config.cf_loss == "full":
      return {"cf_loss": (1.0 - self.config.weight) * student.objective(x, out.scores)}
    loss = (1.0 - self.config.weight) * selective_log_loss(out.scores)
    return {"cf_loss": loss + student.regularization(x)}

  def part_names(self):
    return ["cf_loss", "cd_loss"]

  def loss_parts(self, student, x, out=None):
    """The paper's objective is per user: sum of CE over the user's observed items plus sum of
    BCE over the user's sample. A batch here holds interactions, so user u's sample enters with
    weight c_u / n_u (c_u of u's n_u training items are in the batch): over an epoch every user's
    sample counts once, each sampled item as much as one observed item, and both sums are divided
    by the batch size as the selective CE is. With kd_pass "training" the sample's scores are
    those `forward` computed, one copy per row of u (weight 1 / n_u each: the same sum)."""
    parts = self.student_part(student, x, out)
    c = self.config
    batch = tf.cast(tf.shape(x["user"])[0], tf.float32)
    in_pass = c.kd_pass == "training" and out is not None and out.list_scores is not None
    if in_pass and out.where is not None:
      # The valid entries only, at the positions `forward` scored them.
      users, where = tf.cast(x["user"], tf.int32), out.where
      targets = tf.gather_nd(tf.gather(self.targets, users), where)
      share = tf.gather(1.0 / tf.gather(self.positives, users), where[:, 0])
      bce = self.kd_loss(targets[:, None], out.list_scores[:, None])
      return {**parts, "cd_loss": c.weight * tf.reduce_sum(share * bce) / batch}
    if in_pass:
      users = tf.cast(x["user"], tf.int32)
      scores, share = out.list_scores, 1.0 / tf.gather(self.positives, users)
    else:
      users, _, counts = tf.unique_with_counts(tf.cast(x["user"], tf.int32))
      scores = model_lists.score_lists(student, users, tf.gather(self.lists, users))
      share = tf.cast(counts, tf.float32) / tf.gather(self.positives, users)
    valid = tf.gather(self.valid, users)
    per_item = self.kd_loss({"logits": tf.gather(self.targets, users), "valid": valid},
                            scores)  # mean over the valid entries
    per_user = per_item * tf.reduce_sum(tf.cast(valid, tf.float32), axis=1)  # their sum
    return {**parts, "cd_loss": c.weight * tf.reduce_sum(share * per_user) / batch}

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
