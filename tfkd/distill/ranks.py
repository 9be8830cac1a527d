"""Exact ranks of a few query entries within long score rows, without sorting the rows.

rank(q) = number of entries in the row that score strictly higher than q (0 = first). Sorting a
row of I scores costs O(I log I) per row (the reference code's two full argsorts); here only the
P query scores are sorted and each of the I entries is placed among them by binary search, so
the cost is O(I log P), and the result is exact.

Rows are users (columns: items) on the user side and items (columns: users) on the item side;
`SideScorer` hides the difference and masks each row's observed columns with -inf.
"""

import numpy as np
import tensorflow as tf


@tf.function(reduce_retracing=True)
def ranks_of(scores, queries):
  """scores [B, N] (masked entries -inf), queries int [B, P] column ids -> int32 [B, P] ranks."""
  query_scores = tf.gather(scores, queries, batch_dims=1)
  order = tf.argsort(query_scores, axis=1, stable=True)  # ascending
  ascending = tf.gather(query_scores, order, batch_dims=1)
  below = tf.searchsorted(ascending, scores, side="left")  # [B, N]: queries strictly below
  p = tf.shape(queries)[1]
  b = tf.shape(scores)[0]
  flat = below + tf.range(b)[:, None] * (p + 1)
  hist = tf.reshape(tf.math.bincount(tf.reshape(flat, [-1]), minlength=b * (p + 1),
                                     maxlength=b * (p + 1)), [b, p + 1])
  # Entries above the j-th smallest query are those with `below` > j.
  at_most = tf.cumsum(hist, axis=1)[:, :p]
  above_sorted = tf.shape(scores)[1] - at_most
  inverse = tf.argsort(order, axis=1)
  return tf.gather(above_sorted, inverse, batch_dims=1)


def rank_gaps(scores, teacher_top):
  """scores [B, N] (masked -inf), teacher_top int [B, n] the teacher's best n columns in order ->
  float32 [B, n]: |R_S - R_T| of each, the measure of the DCD paper's Figure 1a."""
  n = tf.shape(teacher_top)[1]
  return tf.cast(tf.abs(ranks_of(scores, teacher_top) - tf.range(n)), tf.float32)


def mean_rank_gap(model, scorer, teacher_top, chunk_size=1024):
  """Mean |R_S - R_T| of `model` over `teacher_top` [num_rows, n] (all rows of `scorer`'s side),
  computed in chunks of rows."""
  total, count = 0.0, 0
  for start in range(0, scorer.num_rows, chunk_size):
    rows = np.arange(start, min(start + chunk_size, scorer.num_rows), dtype=np.int32)
    gaps = rank_gaps(scorer.scores(model, rows), tf.constant(teacher_top[rows], tf.int32))
    total += float(tf.reduce_sum(gaps))
    count += int(tf.size(gaps))
  return total / max(count, 1)


def full_ranks(scores):
  """[B, N] -> int32 [B, N]: the rank of every entry (ties broken by column order)."""
  order = tf.argsort(scores, axis=1, direction="DESCENDING", stable=True)
  return tf.argsort(order, axis=1, stable=True)


class SideScorer:
  """Masked score rows of a model on one side: rows of users (items) over items (users)."""

  def __init__(self, dataset, side):
    if side not in ("user", "item"):
      raise ValueError(f"side must be 'user' or 'item', got {side!r}")
    self.side = side
    rows, cols = ((dataset.train_users, dataset.train_items) if side == "user"
                  else (dataset.train_items, dataset.train_users))
    self.num_rows = dataset.num_users if side == "user" else dataset.num_items
    self.num_cols = dataset.num_items if side == "user" else dataset.num_users
    order = np.argsort(rows, kind="stable")
    self.indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=self.num_rows))])
    self.indices = np.asarray(cols)[order].astype(np.int32)

  def observed(self, rows):
    """(row positions, column ids) of the observed entries of `rows`."""
    counts = self.indptr[rows + 1] - self.indptr[rows]
    pos = np.repeat(np.arange(len(rows)), counts).astype(np.int32)
    cols = (np.concatenate([self.indices[self.indptr[r]:self.indptr[r + 1]] for r in rows])
            if len(rows) else np.zeros(0, np.int32))
    return pos, cols.astype(np.int32)

  def scores(self, model, rows):
    """float32 [len(rows), num_cols], observed entries at -inf."""
    rows = np.asarray(rows, np.int32)
    pos, cols = self.observed(rows)
    return _masked(model, tf.constant(rows), tf.constant(pos), tf.constant(cols),
                   self.side == "user")


@tf.function(reduce_retracing=True)
def _masked(model, rows, pos, cols, user_side):
  scores = model.score_all(rows) if user_side else model.score_users(rows)
  return tf.tensor_scatter_nd_update(scores, tf.stack([pos, cols], axis=1),
                                     tf.fill(tf.shape(pos), tf.constant(-np.inf, scores.dtype)))
