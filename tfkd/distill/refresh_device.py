"""Where DCD's refresh scores and ranks: on the host in NumPy, or on the device holding the scores.

`HostOps` is the default (`--dcd_refresh_backend=numpy`): score rows are copied to the host and
ranked there (`tfkd.distill.ranks`: NumPy's SIMD sort and binary searches). `DeviceOps`
(`--dcd_refresh_backend=device`, chosen by `auto` when TF sees a GPU) keeps every score row where
TF computed it: the masking is a scatter, ranks are `tf.sort` (or one `tf.math.top_k` over the
whole row when the row's top columns are needed too) and `tf.searchsorted`; only small arrays go
to the host (a row's queried ranks, the teacher's kept ranks once). Both define
rank(q) = number of the row's entries scoring strictly higher than q, so they give the same ranks,
top columns (`tf.math.top_k`'s: best first, ties by column) and therefore the same draws (tested
on CPU, tests/test_refresh_paths.py).

UNTESTED ON REAL GPUs: this machine has none; the device path has only run on CPU, where it is
much slower than the NumPy one (TF's CPU sort is a full top-k). Measure it on a GPU before
relying on it.
"""

import numpy as np
import tensorflow as tf

from tfkd.distill import ranks

BACKENDS = ("numpy", "device", "auto")


def resolve(backend):
  """"auto" -> "device" when TF sees a GPU, else "numpy"; other names unchanged."""
  if backend == "auto":
    return "device" if tf.config.list_logical_devices("GPU") else "numpy"
  if backend not in BACKENDS[:2]:
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
  return backend


class HostOps:
  """Scores copied to the host as NumPy arrays, ranked by `tfkd.distill.ranks`."""

  @staticmethod
  def scores(scorer, model, rows):
    return scorer.scores(model, rows)

  @staticmethod
  def ranks_of(scores, queries):
    return ranks.ranks_of(scores, queries)

  @staticmethod
  def ranks_and_top(scores, queries, k):
    return ranks.ranks_and_top(scores, queries, k)

  @staticmethod
  def all_ranks(scores):
    """int [B, N] NumPy: the rank of every entry of each row."""
    every = np.broadcast_to(np.arange(scores.shape[1], dtype=np.int32), scores.shape)
    return ranks.ranks_of(scores, every)

  @staticmethod
  def rank_gaps(scores, teacher_top):
    return ranks.rank_gaps(scores, teacher_top)


class DeviceOps:
  """Scores kept as tensors on the device that computed them, ranked there by TF ops."""

  @staticmethod
  def scores(scorer, model, rows):
    """float32 tensor [len(rows), num_cols], observed entries at -inf: `SideScorer.scores`
    without the copy to the host (the same scoring function, then a scatter)."""
    rows = np.asarray(rows, np.int32)
    pos, cols = scorer.observed(rows)
    raw = ranks.score_rows(model, rows, scorer.side)
    where = tf.constant(np.stack([pos, cols], axis=1).astype(np.int32))
    return tf.tensor_scatter_nd_update(raw, where, tf.fill([len(pos)], -np.inf))

  @staticmethod
  def ranks_of(scores, queries):
    return _ranks_in(tf.sort(scores, axis=1), scores, queries)

  @staticmethod
  def ranks_and_top(scores, queries, k):
    """One full `tf.math.top_k` of each row: its values give the ranks, its first k indices the
    top columns (ties by column, as `tf.math.top_k(scores, k)`)."""
    n = scores.shape[1]
    if not 0 < k <= n:
      raise ValueError(f"k must be in [1, {n}], got {k}")
    top = tf.math.top_k(scores, k=n)
    ascending = tf.reverse(top.values, axis=[1])
    return _ranks_in(ascending, scores, queries), top.indices[:, :k]

  @staticmethod
  def all_ranks(scores):
    """int32 [B, N] NumPy (the teacher's kept ranks live on the host, as with HostOps)."""
    return _ranks_in(tf.sort(scores, axis=1), scores, None).numpy()

  @staticmethod
  def rank_gaps(scores, teacher_top):
    return ranks.gaps_of(DeviceOps.ranks_of(scores, teacher_top).numpy())


def _ranks_in(ascending, scores, queries):
  """rank = N - (entries <= the query's score), the entries located by binary search in the
  row's ascending sort; `queries` None ranks every entry."""
  values = scores if queries is None else tf.gather(scores, queries, batch_dims=1)
  n = tf.shape(scores, out_type=tf.int32)[1]
  return n - tf.searchsorted(ascending, values, side="right", out_type=tf.int32)
