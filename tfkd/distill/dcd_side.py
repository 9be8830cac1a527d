"""One side of DCD's refresh (users over items, or items over users): candidate ranks, sampled
correction lists and their tf.Variable state (the method and its settings: `tfkd.distill.dcd`).

A refresh is three steps, so that its host work can run apart from the scoring (`--dcd_background`):
  scores   the student's masked score rows, in slices of at most `_SCORE_BYTES` (TF; the step's
           thread);
  compute  per chunk of rows: the candidates' teacher and student ranks and the draws (sorting,
           binary searches, sampling; NumPy or, with `--dcd_refresh_backend=device`, TF ops on the
           device holding the scores: `tfkd.distill.refresh_device`);
  assign   the lists into the variables the training steps read.
The inline refresh scores each slice just before ranking it; the background one scores every slice
first (`snapshot`). The draws depend on the scores, the seed and the chunk alone, so both give the
same lists. A refresh covers every row or, with `--dcd_refresh_parts`, the rows it is given (the
other rows keep their lists).
"""

import numpy as np
import tensorflow as tf

from tfkd.distill import losses_impl, ranks, refresh_device, samplers
from tfkd.errors import ConfigError

# A refresh scores and ranks at most this many bytes of float32 score rows at a time (a slice of
# a chunk of rows).
_SCORE_BYTES = ranks.SCORE_BYTES


class Side:
  """One side's candidate ranks, sampled correction lists and their tf.Variable state."""

  def __init__(self, name, dataset, topk, top, num_under, num_over, config, backend="numpy"):
    self.name, self.top, self.config = name, top, config
    self.num_under, self.num_over = num_under, num_over
    self.scorer = ranks.SideScorer(dataset, name)
    self.ops = refresh_device.DeviceOps() if backend == "device" else refresh_device.HostOps()
    if top > self.scorer.num_cols:
      raise ConfigError(f"dcd: {name}-side top list of {top} exceeds the "
                        f"{self.scorer.num_cols} columns of the catalog")
    self.topk = np.asarray(topk)[:, :top].astype(np.int32)
    pool = {"teacher_top": top, "union": 2 * top, "all": self.scorer.num_cols}[config.candidates]
    if max(num_under, num_over) > pool:
      raise ConfigError(f"dcd: {name} side draws {num_under} under- and {num_over} "
                        f"over-estimated entries from a candidate list of only {pool} "
                        f"({config.candidates}, top {top})")
    width = num_under + num_over
    self.state = tf.Variable(tf.zeros([self.scorer.num_rows, width], tf.int32), trainable=False)
    self.valid = tf.Variable(tf.zeros([self.scorer.num_rows, width], tf.bool), trainable=False)
    # union: the teacher's rank of every (row, column), built by the first refresh if it fits.
    cells = self.scorer.num_rows * self.scorer.num_cols
    self._rank_dtype = np.int16 if self.scorer.num_cols <= np.iinfo(np.int16).max else np.int32
    self._cache_ranks = (config.candidates == "union"
                         and cells * np.dtype(self._rank_dtype).itemsize <= config.cache_bytes)
    self.teacher_ranks = None

  def _teacher_ranks_of(self, teacher, rows, queries):
    """The teacher's ranks of `queries` [len(rows), Q] in `rows`: from the kept ranks, or by
    scoring and sorting the teacher's rows."""
    if self.teacher_ranks is not None:  # one gather of the queried entries, no row copy
      return self.teacher_ranks[rows[:, None], np.asarray(queries)].astype(np.int32)
    return self.ops.ranks_of(self.ops.scores(self.scorer, teacher, rows), queries)

  def _keep_teacher_ranks(self, teacher):
    """Union candidates, if they fit: the teacher's rank of every (row, column), computed once
    (the first refresh, or the first after a resume) and read by every later one."""
    if not self._cache_ranks or self.teacher_ranks is not None:
      return
    kept = np.empty((self.scorer.num_rows, self.scorer.num_cols), self._rank_dtype)
    for chunk in self.chunks():
      for part in self._slices(chunk):
        kept[part] = self.ops.all_ranks(self.ops.scores(self.scorer, teacher, part))
    self.teacher_ranks = kept

  def _candidates(self, s_scores, teacher, rows):
    """For `rows` and the student's masked scores of them: the candidate entries, their teacher
    and student ranks, which are valid, and |R_S - R_T| over the teacher's top-N (Fig. 1a)."""
    c = self.config
    top_rows = self.topk[rows]
    teacher_top = tf.constant(top_rows)
    if c.candidates == "teacher_top":
      cand = teacher_top
      rt = tf.broadcast_to(tf.range(self.top), tf.shape(cand))
      rs = self.ops.ranks_of(s_scores, top_rows)
      valid = tf.ones(tf.shape(cand), tf.bool)
    elif c.candidates == "union":
      # One sort of each student row gives the teacher-top entries' ranks and its top P.
      rs_teacher_top, student_top = self.ops.ranks_and_top(s_scores, top_rows, self.top)
      cand = tf.concat([teacher_top, student_top], axis=1)
      rt_student_top = self._teacher_ranks_of(teacher, rows, student_top)
      rt = tf.concat([tf.broadcast_to(tf.range(self.top), tf.shape(teacher_top)),
                      rt_student_top], axis=1)
      rs = tf.concat([rs_teacher_top,
                      tf.broadcast_to(tf.range(self.top), tf.shape(student_top))], axis=1)
      # A student-top entry with teacher rank < P is already in the teacher's list.
      valid = tf.concat([tf.ones(tf.shape(teacher_top), tf.bool), rt_student_top >= self.top], 1)
    else:
      t_scores = self.ops.scores(self.scorer, teacher, rows)
      cand = tf.broadcast_to(tf.range(self.scorer.num_cols), tf.shape(s_scores))
      rt, rs = ranks.full_ranks(t_scores), ranks.full_ranks(s_scores)
      valid = tf.math.is_finite(s_scores)
    n = min(c.discrepancy_top, self.top)
    if c.candidates == "all":
      gap = self.ops.rank_gaps(s_scores, top_rows[:, :n])
    else:  # the first P candidates are the teacher's list: their ranks are already known
      gap = ranks.gaps_of(np.asarray(rs)[:, :n])
    return cand, rt, rs, valid, gap

  def _slices(self, rows):
    """A chunk's rows in slices of at most _SCORE_BYTES of scores (the peak memory)."""
    slices = -(-len(rows) * self.scorer.num_cols * 4 // _SCORE_BYTES)
    return np.array_split(rows, max(1, min(len(rows), slices)))  # none empty

  def chunks(self, rows=None):
    """`rows` (default: every row) in chunks of `chunk_size`: the units of a refresh's draws."""
    rows = np.arange(self.scorer.num_rows) if rows is None else np.asarray(rows)
    size = self.config.chunk_size  # with every row: ranks.row_chunks's chunks
    return [rows[i:i + size].astype(np.int32) for i in range(0, len(rows), size)]

  def snapshot(self, student, rows=None):
    """Every slice's masked student scores of `rows` (default: all), keyed by the slice's first
    row: what `compute` reads when the scoring and the rest run apart (4 x rows x columns
    bytes)."""
    return {int(part[0]): self.ops.scores(self.scorer, student, part)
            for chunk in self.chunks(rows) for part in self._slices(chunk)}

  def compute(self, scores_of, teacher, seed, rows=None):
    """The correction lists of `rows` (default: every row) from the student's scores
    (`scores_of(rows)`, masked, per slice): (entries int32 [len(rows), M_l + M_h], valid bool,
    mean |R_S - R_T| over those rows' teacher top-N). Builds the kept teacher ranks first if
    they are kept and not built yet (union candidates)."""
    c, gaps, states, valids = self.config, [], [], []
    self._keep_teacher_ranks(teacher)
    draw = sample if c.draws == "tf" else sample_numpy
    for chunk in self.chunks(rows):
      # Scored and ranked slice by slice, then sampled together: the draws depend on the chunk.
      pieces = list(zip(*(self._candidates(scores_of(part), teacher, part)
                          for part in self._slices(chunk))))
      cand, rt, rs, valid = (tf.concat(p, axis=0) for p in pieces[:4])
      gaps.append(np.concatenate(pieces[4]))
      state, ok = draw(cand, rt, rs, valid, c.mu, self.num_under, self.num_over,
                       (seed, int(chunk[0])), c.deterministic)
      states.append(state)
      valids.append(ok)
    return (tf.concat(states, axis=0), tf.concat(valids, axis=0),
            float(np.mean(np.concatenate(gaps))))

  def assign(self, state, valid, rows=None):
    """Puts the lists of `rows` (default: every row) into the variables; other rows keep
    theirs."""
    if rows is not None:
      state, valid = _into(self.state, rows, state), _into(self.valid, rows, valid)
    self.state.assign(state)
    self.valid.assign(valid)

  def refresh(self, student, teacher, seed, rows=None):
    """Recomputes the correction lists of `rows` (default: all); returns their mean
    |R_S - R_T| over the teacher's top-N."""
    state, valid, gap = self.compute(lambda part: self.ops.scores(self.scorer, student, part),
                                     teacher, seed, rows)
    self.assign(state, valid, rows)
    return gap


def _into(variable, rows, values):
  """The variable's value with `rows` replaced by `values`, on the host, so that a partial
  refresh assigns the whole variable as a whole refresh does."""
  full = variable.numpy()
  full[np.asarray(rows)] = np.asarray(values)
  return full


def sample(cand, rt, rs, valid, mu, num_under, num_over, seed, deterministic):
  """Draws M_l under-estimated entries (sorted by teacher rank) and M_h over-estimated ones, with
  TF's stateless ops seeded by `seed` (two ints: the refresh's and the chunk's first row)."""
  seed = tf.constant(seed, tf.int64)
  validf = tf.cast(valid, tf.float32)
  under = losses_impl.discrepancy(rs, rt, mu) * validf
  over = losses_impl.discrepancy(rt, rs, mu) * validf
  idx_l, ok_l = samplers.weighted_without_replacement(under, num_under, seed, deterministic)
  idx_h, ok_h = samplers.weighted_without_replacement(over, num_over, seed + 1, deterministic)
  rt_l = tf.where(ok_l, tf.gather(rt, idx_l, batch_dims=1), tf.int32.max)
  order = tf.argsort(rt_l, axis=1, stable=True)  # teacher order, invalid entries last
  idx_l, ok_l = tf.gather(idx_l, order, batch_dims=1), tf.gather(ok_l, order, batch_dims=1)
  entries = tf.concat([tf.gather(cand, idx_l, batch_dims=1), tf.gather(cand, idx_h, batch_dims=1)],
                      axis=1)
  return tf.cast(entries, tf.int32), tf.concat([ok_l, ok_h], axis=1)


def sample_numpy(cand, rt, rs, valid, mu, num_under, num_over, seed, deterministic):
  """`sample` in one vectorised NumPy pass (`--dcd_draws=numpy`): the same distribution (DCD eq.
  5-6), other random numbers: a `np.random.Generator` seeded by `seed` (the two ints)."""
  cand, rt, rs, valid = (np.asarray(a) for a in (cand, rt, rs, valid))
  diff = rs.astype(np.int32) - rt
  error = np.tanh(np.float32(mu) * np.abs(diff).astype(np.float32))  # float32, as `sample`
  under = np.where(valid & (diff > 0), error, 0.0)  # D(S, T), eq. 3
  over = np.where(valid & (diff < 0), error, 0.0)  # D(T, S), eq. 4
  rng = np.random.default_rng([seed[0] % (1 << 64), seed[1]])
  idx_l, ok_l = samplers.weighted_without_replacement_np(under, num_under, rng, deterministic)
  idx_h, ok_h = samplers.weighted_without_replacement_np(over, num_over, rng, deterministic)
  rt_l = np.where(ok_l, np.take_along_axis(rt, idx_l, axis=1), np.iinfo(np.int32).max)
  order = np.argsort(rt_l, axis=1, kind="stable")  # teacher order, invalid entries last
  idx_l, ok_l = (np.take_along_axis(a, order, axis=1) for a in (idx_l, ok_l))
  entries = np.concatenate([np.take_along_axis(cand, idx_l, axis=1),
                            np.take_along_axis(cand, idx_h, axis=1)], axis=1)
  return entries.astype(np.int32), np.concatenate([ok_l, ok_h], axis=1)
