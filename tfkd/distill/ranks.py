"""Exact ranks of a few query entries within long score rows, without sorting the rows.

rank(q) = number of entries in the row that score strictly higher than q (0 = first), exact. The
reference code argsorts every row twice (a sort plus the inverse permutation, with indices); here
each row's values are sorted once, without indices, by NumPy's SIMD sort, and the P queries are
found in it by binary search: faster than placing every entry among the sorted queries with
`tf.searchsorted`, the O(I log P) alternative (timings: docs/speed.md).

Rows are users (columns: items) on the user side and items (columns: users) on the item side;
`SideScorer` hides the difference and masks each row's observed columns with -inf.
"""

import concurrent.futures
import os
import weakref

import numpy as np
import tensorflow as tf

from tfkd.models import lists


_WORKERS = max(1, min(4, os.cpu_count() or 1))
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=_WORKERS)
_BLOCK_BYTES = 16 << 20


def _ranks_block(scores, queries):
  ascending = np.sort(scores, axis=1)  # NumPy's vectorised sort; releases the GIL
  return _ranks_in(ascending, scores, queries)


def _ranks_top_block(scores, queries, k):
  ascending = np.sort(scores, axis=1)
  return _ranks_in(ascending, scores, queries), _top_columns(scores, ascending, k)


def _ranks_in(ascending, scores, queries):
  query_scores = np.take_along_axis(scores, queries, axis=1)
  n = scores.shape[1]
  out = np.empty(queries.shape, np.int32)
  for b in range(scores.shape[0]):
    out[b] = n - np.searchsorted(ascending[b], query_scores[b], side="right")
  return out


def _top_columns(scores, ascending, k):
  """Each row's k best columns, best first, ties in column order (`tf.math.top_k`'s order), read
  off the row's ascending sort: the columns at or above its k-th largest value (the first ones
  by column where that value is tied past k), then those k sorted."""
  n = scores.shape[1]
  kth = ascending[:, n - k][:, None]
  take = scores >= kth
  counts = take.sum(axis=1)
  tied_rows = np.flatnonzero(counts > k)
  if tied_rows.size:  # drop the last (count - k) columns holding the tied k-th value
    tied = take[tied_rows] & (scores[tied_rows] == kth[tied_rows])
    from_end = np.cumsum(tied[:, ::-1], axis=1)[:, ::-1]
    take[tied_rows] &= ~(tied & (from_end <= (counts[tied_rows] - k)[:, None]))
  # Column order within each row, from the flat indices modulo the row length: one index array
  # instead of np.nonzero's two (faster, docs/speed.md).
  cols = (np.flatnonzero(take) % n).reshape(-1, k).astype(np.int32)
  order = _descending_block(np.take_along_axis(scores, cols, axis=1))  # stable: ties by column
  return np.take_along_axis(cols, order, axis=1)


def ranks_and_top(scores, queries, k):
  """`ranks_of(scores, queries)` and each row's top k columns (`tf.math.top_k(scores, k)`'s
  indices: best first, ties by column) from the same sort of each row: int32 [B, P], [B, k].
  DCD's union refresh needs both; reading the top k off the sort costs a small part of a
  separate `tf.math.top_k` (docs/speed.md). Masked (-inf) entries come last; rows must hold no
  NaN."""
  scores = np.asarray(scores)
  queries = np.asarray(queries)
  if not 0 < k <= scores.shape[1]:
    raise ValueError(f"k must be in [1, {scores.shape[1]}], got {k}")
  if scores.shape[0] == 0:
    return np.zeros(queries.shape, np.int32), np.zeros((0, k), np.int32)
  return _blocks(lambda s, q: _ranks_top_block(s, q, k), scores, queries)


def ranks_of(scores, queries):
  """scores [B, N] (masked entries -inf), queries int [B, P] column ids -> int32 [B, P] ranks.

  Each row is sorted once (NumPy's SIMD sort, values only) and the queries are located in it by
  binary search; blocks of rows are sorted on parallel threads.
  """
  scores = np.asarray(scores)
  queries = np.asarray(queries)
  if scores.shape[0] == 0:
    return np.zeros(queries.shape, np.int32)
  return _blocks(_ranks_block, scores, queries)


def _blocks(fn, *arrays):
  """fn over blocks of rows of `arrays` on the thread pool, its output (an array or a tuple of
  arrays) concatenated along rows."""
  n = arrays[0].shape[0]
  # Blocks of at most _BLOCK_BYTES of the first array, at least one per worker: each block's
  # sorted copy is what a worker holds at a time, so the peak stays ~2 x 16 MB above the chunk
  # itself whatever the chunk's size (two 1024 x 25,181 halves were 103 MB). Slices are views.
  row_bytes = max(1, arrays[0][:1].nbytes)
  size = max(1, min(-(-n // _WORKERS), _BLOCK_BYTES // row_bytes))
  blocks = [slice(start, min(start + size, n)) for start in range(0, n, size)]
  parts = list(_POOL.map(lambda rows: fn(*(a[rows] for a in arrays)), blocks))
  if isinstance(parts[0], tuple):
    return tuple(np.concatenate(p, axis=0) for p in zip(*parts))
  return np.concatenate(parts, axis=0)


def descending_order(scores):
  """scores [B, N] (masked entries -inf) -> int32 [B, N]: each row's columns, best first; ties
  (and the masked entries, last) in column order. Blocks of rows sort on parallel threads."""
  scores = np.asarray(scores)
  if scores.shape[0] == 0:
    return np.zeros(scores.shape, np.int32)
  return _blocks(_descending_block, scores)


def _descending_block(scores):
  """The stable descending order as one integer sort: each entry becomes the 64-bit key
  (order-preserving integer of its negated float32 score, column), so equal scores (the masked
  -inf tail among them) come out in column order. About 2x faster than a stable argsort on this
  CPU (1000 x 5,595 on one free core: 0.28 s against 0.60 s). Other dtypes and rows with NaN take
  the stable argsort."""
  if scores.dtype != np.float32:
    return np.argsort(-scores, axis=1, kind="stable").astype(np.int32)
  negated = -scores + np.float32(0)  # -0.0 -> 0.0: ties with 0.0, as in the comparison sort
  bits = negated.view(np.int32).astype(np.int64)
  bits = np.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # float order as signed integer order
  keys = np.sort((bits << 32) | np.arange(scores.shape[1], dtype=np.int64), axis=1)
  order = (keys & 0xFFFFFFFF).astype(np.int32)
  nan = np.isnan(scores).any(axis=1)
  if nan.any():
    order[nan] = np.argsort(-scores[nan], axis=1, kind="stable")
  return order


def rank_gaps(scores, teacher_top):
  """scores [B, N] (masked -inf), teacher_top int [B, n] the teacher's best n columns in order ->
  float32 [B, n]: |R_S - R_T| of each, the measure of the DCD paper's Figure 1a."""
  return gaps_of(ranks_of(scores, teacher_top))


def gaps_of(student_ranks):
  """|R_S - R_T| for ranks [B, n] of the teacher's top-n in teacher order (R_T = 0 .. n-1)."""
  student_ranks = np.asarray(student_ranks)
  return np.abs(student_ranks - np.arange(student_ranks.shape[1])).astype(np.float32)


def row_chunks(num_rows, chunk_size):
  """Consecutive row ids as int32 arrays of `chunk_size` (the last shorter): the chunks every
  pass over a whole side scores (teacher rankings, refreshes, draws, discrepancies), so memory
  stays O(chunk x catalog)."""
  for start in range(0, num_rows, chunk_size):
    yield np.arange(start, min(start + chunk_size, num_rows), dtype=np.int32)


# The passes that hold whole score rows of one model (DCD's refresh, the final rank gaps) hold at
# most this many bytes of float32 scores at a time: 333 CiteULike users, where a chunk of 1,024
# users is 103 MB (and was the main job's peak, as the final rank gaps; docs/memory.md).
SCORE_BYTES = 32 << 20


def mean_rank_gap(model, scorer, teacher_top, chunk_size=1024):
  """Mean |R_S - R_T| of `model` over `teacher_top` [num_rows, n] (all rows of `scorer`'s side),
  computed in chunks of at most `chunk_size` rows and SCORE_BYTES of scores."""
  total, count = 0.0, 0
  size = max(1, min(chunk_size, SCORE_BYTES // (4 * scorer.num_cols)))
  for rows in row_chunks(scorer.num_rows, size):
    gaps = rank_gaps(scorer.scores(model, rows), teacher_top[rows])
    total += float(gaps.sum())
    count += gaps.size
  return total / max(count, 1)


GAP_TOP = 50  # the teacher's list over which a student's final rank discrepancy is measured


def gap_depths(dataset, top=GAP_TOP):
  """(user_k, item_k): how deep the teacher's rankings must go for `final_rank_gaps`."""
  return min(top, dataset.num_items), min(top, dataset.num_users)


def final_rank_gaps(model, dataset, knowledge, top=GAP_TOP, chunk_size=1024):
  """The DCD paper's Fig. 1a for a trained model: {"user": g, "item": g}, mean |R_S - R_T| over
  the teacher's top-`top` of every row on each side (knowledge from `teacher.load_or_compute`,
  at least `gap_depths` deep)."""
  return {side: mean_rank_gap(model, SideScorer(dataset, side),
                              knowledge[f"{side}_topk"][:, :top], chunk_size)
          for side in ("user", "item")}


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
    """float32 NumPy [len(rows), num_cols], observed entries at -inf (masked in place)."""
    rows = np.asarray(rows, np.int32)
    pos, cols = self.observed(rows)
    scores = score_rows(model, rows, self.side).numpy()
    scores[pos, cols] = -np.inf
    return scores


def score_rows(model, rows, side):
  """float32 tensor [len(rows), num_cols]: `model`'s scores of `side`'s rows, unmasked."""
  return _scoring_function(model, side)(tf.constant(np.asarray(rows, np.int32)))


# One tf.function per (model, side). A single function taking the model as an argument traced
# once per model, side and slice length, and TensorFlow warned of excessive retracing in every
# run of the chunked refresh (teacher and student, both sides). Each of these traces at most
# twice: a second length relaxes the row dimension (reduce_retracing). Weak keys: a model's
# functions go with it (they hold a weak reference to it, and its variables).
_SCORING = weakref.WeakKeyDictionary()


def _scoring_function(model, side):
  functions = _SCORING.setdefault(model, {})
  if side not in functions:
    ref = weakref.ref(model)
    score = ((lambda rows: ref().score_all(rows)) if side == "user"
             else (lambda rows: lists.score_users(ref(), rows)))
    functions[side] = tf.function(score, reduce_retracing=True)
  return functions[side]
