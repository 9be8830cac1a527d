"""DCD: Dual Correction strategy for ranking Distillation (Lee and Kim, CIKM 2021), eq. 1-9.

Loss (eq. 9): L_RS + lambda_RRD L_RRD + lambda_UCD L_UCD + lambda_ICD L_ICD.

Every `refresh_every` epochs (and before the first), for every user u (item i) the student's
ranks R_S of a candidate set are compared with the teacher's R_T:
  D(S, T) = tanh(max(mu (R_S - R_T), 0))   under-estimation (eq. 3), D(T, S) over-estimation (4);
M_l under- and M_h over-estimated items (users) are drawn with probability proportional to them
(eq. 5-6; `deterministic=True` takes the largest, the paper's "w/o sampling" ablation). UCD / ICD
(eq. 7-8) are relaxed permutation losses with the M_l entries in teacher order and the M_h entries
as the tail, for the users (positive items) of each batch.

Ranks count only unobserved entries (a user's training items are not ranked). Which entries are
candidates, which the paper leaves open, is `candidates`:
  "teacher_top": the teacher's top-P list (teacher ranks known, student ranks computed exactly);
  "union":       the teacher's top-P and the student's top-P (the teacher's rank of every entry
                 is computed at the first refresh and kept, int16 when the catalog allows, if
                 it fits in `cache_bytes`: later refreshes then neither score nor sort the
                 teacher's rows; same ranks either way);
  "all":         every unobserved entry (two full rankings per refresh; slow on large catalogs).
At every refresh the Fig. 1a measure, mean |R_S - R_T| over the teacher's top-50, is logged.
"""

import dataclasses
import time

import numpy as np
import tensorflow as tf
from absl import logging

from tfkd import seeds
from tfkd.config_flags import check, setting
from tfkd.distill import base, losses_impl, ranks, rrd, samplers
from tfkd.distill.rrd import RRDConfig
from tfkd.errors import ConfigError

# A refresh scores and ranks at most this many bytes of float32 score rows at a time (a slice of
# a chunk of rows: 333 CiteULike users, where a 1,024-user chunk is 103 MB).
_SCORE_BYTES = 32 << 20

CANDIDATES = ("teacher_top", "union", "all")


@dataclasses.dataclass
class DCDConfig:
  """DCD's settings (RRD's included); each is also a flag of `trainers.distill`."""

  rrd: RRDConfig = setting(nested="rrd_", default_factory=RRDConfig)
  mu: float = setting(1e-3, "mu of the discrepancy tanh(max(mu (R_S - R_T), 0)).", lower=1e-12)
  candidates: str = setting("union", "Entries whose ranks enter the discrepancy.",
                            choices=CANDIDATES)
  top: int = setting(500, "User side: length P of the candidate lists.", lower=1)
  item_top: int = setting(100, "Item side: length P of the candidate lists.", lower=1)
  num_under: int = setting(40, "User side: under-estimated items M_l.", lower=1)
  num_over: int = setting(40, "User side: over-estimated items M_h.", lower=0)
  item_num_under: int = setting(40, "Item side: under-estimated users.", lower=1)
  item_num_over: int = setting(40, "Item side: over-estimated users.", lower=0)
  user_weight: float = setting(1e-4, "lambda_UCD (0 disables the user side).", lower=0.0)
  item_weight: float = setting(1e-4, "lambda_ICD (0 disables the item side).", lower=0.0)
  deterministic: bool = setting(False, "Take the largest errors instead of sampling.")
  refresh_every: int = setting(5, common="refresh_every")
  discrepancy_top: int = setting(50, "The teacher's top list over which each refresh reports "
                                 "the mean rank discrepancy.", lower=1)
  chunk_size: int = setting(1024, common="knowledge_chunk_size")
  cache_bytes: int = setting(
      1 << 30, "Union candidates: keep each side's teacher rank of every (row, column) between "
      "refreshes when that side's ranks fit in this many MiB (2 bytes per entry for catalogs "
      "under 32,768, else 4; 0: score and sort the teacher's rows at every refresh).",
      flag="dcd_cache_mb", scale=1 << 20, lower=0)
  seed: int = setting(0, common="seed")

  def validate(self):
    self.rrd.validate()
    if self.cache_bytes < 0:
      raise ConfigError(f"dcd cache_bytes must be >= 0, got {self.cache_bytes}")
    if self.candidates not in CANDIDATES:
      raise ConfigError(f"dcd candidates must be one of {CANDIDATES}, got {self.candidates!r}")
    if self.refresh_every <= 0:
      raise ConfigError(f"dcd refresh_every must be positive, got {self.refresh_every}")
    if self.mu <= 0:
      raise ConfigError(f"dcd mu must be positive, got {self.mu}")
    check(self, "dcd")


class _Side:
  """One side's candidate ranks, sampled correction lists and their tf.Variable state."""

  def __init__(self, name, dataset, topk, top, num_under, num_over, config):
    self.name, self.top, self.config = name, top, config
    self.num_under, self.num_over = num_under, num_over
    self.scorer = ranks.SideScorer(dataset, name)
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

  def _teacher_ranks_of(self, teacher, rows, queries, building):
    """The teacher's ranks of `queries` [len(rows), Q] in `rows`: from the kept ranks, or by
    scoring and sorting the teacher's rows (then filling `building`, if given, for later)."""
    if self.teacher_ranks is not None:  # one gather of the queried entries, no row copy
      return self.teacher_ranks[rows[:, None], queries].astype(np.int32)
    t_scores = self.scorer.scores(teacher, rows)
    if building is None:
      return ranks.ranks_of(t_scores, queries)
    every = np.broadcast_to(np.arange(self.scorer.num_cols, dtype=np.int32), t_scores.shape)
    row_ranks = ranks.ranks_of(t_scores, every)
    building[rows] = row_ranks
    return np.take_along_axis(row_ranks, queries, axis=1)

  def _candidates(self, student, teacher, rows, building):
    """For `rows`: the candidate entries, their teacher and student ranks, which are valid, and
    |R_S - R_T| over the teacher's top-N (DCD's Fig. 1a)."""
    c = self.config
    s_scores = self.scorer.scores(student, rows)
    top_rows = self.topk[rows]
    teacher_top = tf.constant(top_rows)
    if c.candidates == "teacher_top":
      cand = teacher_top
      rt = tf.broadcast_to(tf.range(self.top), tf.shape(cand))
      rs = ranks.ranks_of(s_scores, cand)
      valid = tf.ones(tf.shape(cand), tf.bool)
    elif c.candidates == "union":
      # One sort of each student row gives the teacher-top entries' ranks and its top P.
      rs_teacher_top, student_top = ranks.ranks_and_top(s_scores, top_rows, self.top)
      cand = tf.concat([teacher_top, student_top], axis=1)
      rt_student_top = self._teacher_ranks_of(teacher, rows, student_top, building)
      rt = tf.concat([tf.broadcast_to(tf.range(self.top), tf.shape(teacher_top)),
                      rt_student_top], axis=1)
      rs = tf.concat([rs_teacher_top,
                      tf.broadcast_to(tf.range(self.top), tf.shape(student_top))], axis=1)
      # A student-top entry with teacher rank < P is already in the teacher's list.
      valid = tf.concat([tf.ones(tf.shape(teacher_top), tf.bool), rt_student_top >= self.top], 1)
    else:
      t_scores = self.scorer.scores(teacher, rows)
      cand = tf.broadcast_to(tf.range(self.scorer.num_cols), tf.shape(s_scores))
      rt, rs = ranks.full_ranks(t_scores), ranks.full_ranks(s_scores)
      valid = tf.math.is_finite(s_scores)
    n = min(c.discrepancy_top, self.top)
    if c.candidates == "all":
      gap = ranks.rank_gaps(s_scores, teacher_top[:, :n])
    else:  # the first P candidates are the teacher's list: their ranks are already known
      gap = ranks.gaps_of(np.asarray(rs)[:, :n])
    return cand, rt, rs, valid, gap

  def refresh(self, student, teacher, seed):
    """Recomputes the correction lists; returns mean |R_S - R_T| over the teacher's top-N."""
    c, gaps = self.config, []
    states, valids = [], []
    building = (np.empty((self.scorer.num_rows, self.scorer.num_cols), self._rank_dtype)
                if self._cache_ranks and self.teacher_ranks is None else None)
    for rows in ranks.row_chunks(self.scorer.num_rows, c.chunk_size):
      # The chunk's rows are scored and ranked in slices of at most _SCORE_BYTES of scores (the
      # peak memory), then sampled together: the draws depend on the chunk alone.
      slices = -(-len(rows) * self.scorer.num_cols * 4 // _SCORE_BYTES)
      pieces = list(zip(*(self._candidates(student, teacher, part, building)
                          for part in np.array_split(rows, slices))))
      cand, rt, rs, valid = (tf.concat(p, axis=0) for p in pieces[:4])
      gaps.append(np.concatenate(pieces[4]))
      state, ok = _sample(cand, rt, rs, valid, c.mu, self.num_under, self.num_over,
                          tf.constant([seed, int(rows[0])], tf.int64), c.deterministic)
      states.append(state)
      valids.append(ok)
    self.state.assign(tf.concat(states, axis=0))
    self.valid.assign(tf.concat(valids, axis=0))
    if building is not None:  # complete: every row was filled
      self.teacher_ranks = building
    return float(np.mean(np.concatenate(gaps)))


def _sample(cand, rt, rs, valid, mu, num_under, num_over, seed, deterministic):
  """Draws M_l under-estimated entries (sorted by teacher rank) and M_h over-estimated ones."""
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


@base.register("dcd", DCDConfig)
class DCD(base.Method):

  def __init__(self, config: DCDConfig):
    config.validate()
    self.config = config
    self.rrd = rrd.RRD(config.rrd)
    self.xla_ready = self.rrd.xla_ready  # the correction lists are gathered like RRD's
    self.user_k = max(self.rrd.user_k, config.top if config.user_weight else 0)
    self.item_k = max(self.rrd.item_k, config.item_top if config.item_weight else 0)
    self.refreshes = []

  def setup(self, dataset, student, teacher, knowledge):
    c = self.config
    self.student, self.teacher = student, teacher
    self.rrd.setup(dataset, student, teacher, knowledge)
    self.user_side = (_Side("user", dataset, knowledge["user_topk"], c.top, c.num_under,
                            c.num_over, c) if c.user_weight else None)
    self.item_side = (_Side("item", dataset, knowledge["item_topk"], c.item_top,
                            c.item_num_under, c.item_num_over, c) if c.item_weight else None)

  def part_names(self):
    names = list(self.rrd.part_names())
    if self.user_side:
      names.append("ucd_loss")
    if self.item_side:
      names.append("icd_loss")
    return names

  def refresh(self, epoch):
    """Recomputes both sides' correction lists from the student's current ranks; returns the
    mean rank discrepancy of each side and the refresh's seconds (TensorBoard scalars)."""
    start, record = time.time(), {"epoch": epoch}
    seed = seeds.for_epoch(self.config.seed, epoch, "dcd_refresh")
    for side in (self.user_side, self.item_side):
      if side is not None:
        record[f"{side.name}_discrepancy"] = side.refresh(self.student, self.teacher, seed)
    record["refresh_seconds"] = round(time.time() - start, 3)
    self.refreshes.append(record)
    logging.info("dcd refresh at epoch %d: rank discrepancy %s (%.2f s)", epoch,
                 ", ".join(f"{k.split('_')[0]} side {v:.1f}" for k, v in record.items()
                           if k.endswith("_discrepancy")) or "not computed",
                 record["refresh_seconds"])
    return {f"dcd/{k}": v for k, v in record.items() if k != "epoch"}

  def loss_parts(self, student, x, out=None):
    """RRD's parts plus UCD / ICD. The correction lists are read from the refreshed variables
    here, in the training step, and scored in one call with RRD's lists of the same side."""
    c = self.config
    users, items = self.rrd.batch_rows(x)
    terms = []
    if self.user_side:
      terms.append(rrd.ListTerm("ucd_loss", "user", tf.gather(self.user_side.state, users),
                                c.num_under, c.user_weight, tf.gather(self.user_side.valid, users)))
    if self.item_side:
      terms.append(rrd.ListTerm("icd_loss", "item", tf.gather(self.item_side.state, items),
                                c.item_num_under, c.item_weight,
                                tf.gather(self.item_side.valid, items)))
    return {**self.student_part(student, x, out), **self.rrd.parts(student, users, items, terms)}

  def callbacks(self):
    # Refreshed before epoch 0 and every `refresh_every` epochs, each at the start of its epoch
    # (so a run resumed at any epoch refreshes exactly when the uninterrupted run does).
    return [*self.rrd.callbacks(), base.EpochCallback(self.refresh, self.config.refresh_every)]

  def state_variables(self):
    sides = [s for s in (self.user_side, self.item_side) if s is not None]
    return [*self.rrd.state_variables(), *(v for s in sides for v in (s.state, s.valid))]

  def get_history(self):
    return {"refreshes": self.refreshes}

  def set_history(self, history):
    self.refreshes = list(history.get("refreshes", []))

  def extra_metrics(self):
    return {"refreshes": self.refreshes}
