"""Rank of each user's held-out item under the full or the sampled protocol.

- full: the held-out item against every item the user did not interact with in training (and,
  at test time, not the validation item either): those are masked out.
- sampled: the held-out item against the user's stored candidates (N unobserved items; the
  DE-RRD/DCD protocol with N = 499).

Ties count against the held-out item: its rank is the number of other unmasked items scoring at
least as high. A model that scores everything equally ranks last, never first.

Users are processed in batches of `batch_size`, so memory is O(batch_size * num_items) whatever the
number of users; masked items are subtracted from the count rather than written into a dense mask.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from tfkd.evaluation import metrics as metrics_lib

PROTOCOLS = ("full", "sampled")


@dataclasses.dataclass
class EvalResult:
  users: np.ndarray  # int32 [U]
  ranks: np.ndarray  # int64 [U], 0-based
  per_user: dict  # metric name -> float64 [U]
  metrics: dict  # metric name -> mean


class Evaluator:
  """Evaluates a `Recommender` on one split of a `tfkd.data.Dataset` under one protocol."""

  def __init__(self, dataset, split="valid", protocol="sampled", cutoffs=(5, 10),
               batch_size=1024):
    if protocol not in PROTOCOLS:
      raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if protocol == "sampled" and dataset.num_candidates == 0:
      raise ValueError("the sampled protocol needs candidates; the dataset has none")
    if batch_size <= 0:
      raise ValueError(f"batch_size must be positive, got {batch_size}")
    self.dataset, self.split, self.protocol = dataset, split, protocol
    self.cutoffs, self.batch_size = tuple(cutoffs), int(batch_size)
    self.users = dataset.heldout_users(split)
    self.targets = dataset.heldout_items(split)[self.users]
    if protocol == "full":
      self._masks = self._build_masks()

  def _build_masks(self):
    """Per evaluated user, the items to exclude from the ranking (never the target)."""
    d = self.dataset
    indptr, indices = d.train_csr()
    rows = [indices[indptr[u]:indptr[u + 1]] for u in self.users]
    if self.split == "test":
      valid = d.valid_items[self.users]
      rows = [np.append(r, v) if v >= 0 else r for r, v in zip(rows, valid)]
    rows = [np.unique(r[r != t]) for r, t in zip(rows, self.targets)]
    lengths = np.array([len(r) for r in rows], np.int64)
    flat = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    return np.concatenate([[0], np.cumsum(lengths)]), flat.astype(np.int32)

  def ranks(self, model):
    """0-based rank of each evaluated user's held-out item, int64 [U]."""
    out = []
    for start in range(0, len(self.users), self.batch_size):
      stop = min(start + self.batch_size, len(self.users))
      users = tf.constant(self.users[start:stop])
      targets = tf.constant(self.targets[start:stop])
      if self.protocol == "sampled":
        candidates = tf.constant(self.dataset.candidates[self.users[start:stop]])
        out.append(_sampled_ranks(model, users, targets, candidates).numpy())
      else:
        indptr, flat = self._masks
        lo, hi = indptr[start], indptr[stop]
        row = np.repeat(np.arange(stop - start), np.diff(indptr[start:stop + 1]))
        out.append(_full_ranks(model, users, targets, tf.constant(row, tf.int32),
                               tf.constant(flat[lo:hi])).numpy())
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)

  def evaluate(self, model):
    ranks = self.ranks(model)
    per_user = metrics_lib.per_user_metrics(ranks, self.cutoffs)
    return EvalResult(self.users, ranks, per_user, metrics_lib.summarize(per_user))


@tf.function(reduce_retracing=True)
def _sampled_ranks(model, users, targets, candidates):
  items = tf.concat([targets[:, None], candidates], axis=1)
  scores = model.score(users, items)
  return tf.reduce_sum(tf.cast(scores[:, 1:] >= scores[:, :1], tf.int64), axis=1)


@tf.function(reduce_retracing=True)
def _full_ranks(model, users, targets, mask_rows, mask_items):
  scores = model.score_all(users)  # [B, I]
  target = tf.gather(scores, targets, batch_dims=1)  # [B]
  at_least = tf.reduce_sum(tf.cast(scores >= target[:, None], tf.int64), axis=1) - 1
  masked = tf.gather_nd(scores, tf.stack([mask_rows, mask_items], axis=1))
  masked_at_least = tf.math.unsorted_segment_sum(
      tf.cast(masked >= tf.gather(target, mask_rows), tf.int64), mask_rows, tf.shape(users)[0])
  return at_least - masked_at_least
