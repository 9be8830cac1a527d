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

How a refresh runs (each setting opt-in; the defaults are the original path, same lists):
  refresh_backend  "numpy": score rows copied to the host, ranked by NumPy (`tfkd.distill.ranks`);
                   "device": scored, ranked and drawn by TF ops where the scores are (untested on
                   real GPUs, `tfkd.distill.refresh_device`); "auto": device when TF sees a GPU.
                   Same ranks and lists either way.
  draws            "tf": stateless TF ops per chunk; "numpy": one vectorised Gumbel top-k per
                   chunk with a NumPy generator seeded from the same seed (same distribution,
                   other random numbers, so other lists).
  refresh_parts    N > 1: the first refresh recomputes every row's lists, refresh k >= 1 only
                   those of part (k - 1) mod N of each side's rows (every N-th user and item,
                   `rows_due`); the others keep theirs. A row's lists are recomputed every N
                   refreshes, each refresh costs ~1/N of a whole one, and the discrepancy it
                   logs is that of its part's rows.
  background       every refresh after epoch 0's in two halves. At the start of epoch e the
                   student's scores are taken on the training thread (the student after epoch
                   e-1: the weights and seed the inline refresh uses, so the same lists); the
                   ranking and draws run on a worker thread while epoch e trains, and the lists
                   are assigned when epoch e ends (before its checkpoint, so a resumed run has
                   them), in force from epoch e+1. So each refresh's lists come into force one
                   epoch later than inline: with refresh_every = r, those of the refresh at
                   epoch k r (k >= 1) are read in epochs k r + 1 .. (k + 1) r instead of
                   k r .. (k + 1) r - 1, and epoch 0's (inline) in epochs 0 .. r; with r = 1,
                   epoch e >= 1 reads the lists of the student after epoch e - 2 (inline:
                   e - 1). Both sides' score rows are held from the epoch's start until ranked
                   (4 bytes x users x items per side: 1.05 GB on CiteULike).
"""

import concurrent.futures
import dataclasses
import time

import numpy as np
import tensorflow as tf
from absl import logging

from tfkd import seeds
from tfkd.config_flags import check, setting
from tfkd.distill import base, rrd
from tfkd.distill.dcd_side import Side
from tfkd.distill.refresh_device import BACKENDS, resolve
from tfkd.distill.rrd import RRDConfig
from tfkd.errors import ConfigError

CANDIDATES = ("teacher_top", "union", "all")
DRAWS = ("tf", "numpy")
# The background refreshes' thread (one refresh pending at a time).
_WORKER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="dcd_refresh")


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
  refresh_backend: str = setting(
      "numpy", "Where a refresh scores, ranks and draws: numpy (ranks on the host), device (TF "
      "ops where the scores are; untested on real GPUs), auto (device when TF sees a GPU).",
      choices=BACKENDS)
  draws: str = setting("tf", "How a refresh draws M_l / M_h: tf (stateless TF ops per chunk) or "
                       "numpy (one vectorised Gumbel top-k; same distribution, other lists).",
                       choices=DRAWS)
  refresh_parts: int = setting(
      1, "Refresh every row's lists at the first refresh, then those of one of N interleaved "
      "parts of the users and of the items at each later one (a row every N refreshes, at 1/N "
      "of the cost; tfkd/distill/dcd.py).", lower=1)
  background: bool = setting(
      False, "Rank and draw every refresh after epoch 0's on a worker thread while the epoch "
      "trains; its lists come into force one epoch later (tfkd/distill/dcd.py).")
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
    backend = resolve(c.refresh_backend)
    self.user_side = (Side("user", dataset, knowledge["user_topk"], c.top, c.num_under,
                           c.num_over, c, backend) if c.user_weight else None)
    self.item_side = (Side("item", dataset, knowledge["item_topk"], c.item_top,
                           c.item_num_under, c.item_num_over, c, backend)
                      if c.item_weight else None)
    self._pending = None  # (epoch, future, seconds on the training thread): `background`

  def sides(self):
    return [s for s in (self.user_side, self.item_side) if s is not None]

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
    start = time.time()
    seed = seeds.for_epoch(self.config.seed, epoch, "dcd_refresh")
    gaps = {side.name: side.refresh(self.student, self.teacher, seed, self.rows_due(side, epoch))
            for side in self.sides()}
    return self._record(epoch, gaps, time.time() - start)

  def rows_due(self, side, epoch):
    """The rows whose lists the refresh at `epoch` recomputes: None (every row) at the first
    refresh or with `refresh_parts` = 1; else part (k - 1) mod N of the refresh k >= 1 (rows
    part, part + N, ...). A function of the epoch alone, so a resumed run refreshes as the
    uninterrupted one does."""
    parts, count = self.config.refresh_parts, epoch // self.config.refresh_every
    if parts == 1 or count == 0:
      return None
    return np.arange((count - 1) % parts, side.scorer.num_rows, parts, dtype=np.int32)

  def begin_refresh(self, epoch):
    """The refresh of `epoch`, at its start. Inline at epoch 0 or without `background`; else the
    student's scores are taken here and ranked and drawn on the worker thread, and `end_refresh`
    assigns the lists (module docstring)."""
    self.end_refresh()  # none pending unless an earlier fit was interrupted mid-epoch
    if not self.config.background or epoch == 0:
      return self.refresh(epoch)
    start = time.time()
    seed = seeds.for_epoch(self.config.seed, epoch, "dcd_refresh")
    sides, teacher = self.sides(), self.teacher
    due = [self.rows_due(side, epoch) for side in sides]
    snapshots = [side.snapshot(self.student, rows) for side, rows in zip(sides, due)]

    def work():
      begun = time.time()
      out = [side.compute(lambda part, s=snap: s.pop(int(part[0])), teacher, seed, rows)
             for side, snap, rows in zip(sides, snapshots, due)]
      return out, time.time() - begun

    self._pending = (epoch, _WORKER.submit(work), time.time() - start)
    return None

  def end_refresh(self):
    """Waits for the pending background refresh, assigns its lists and records it; returns its
    scalars (None when none is pending)."""
    if self._pending is None:
      return None
    epoch, future, seconds = self._pending
    self._pending = None
    start = time.time()
    results, worker_seconds = future.result()
    for side, (state, valid, _) in zip(self.sides(), results):
      side.assign(state, valid, self.rows_due(side, epoch))
    gaps = {side.name: gap for side, (_, _, gap) in zip(self.sides(), results)}
    return self._record(epoch, gaps, seconds + time.time() - start, worker_seconds)

  def _record(self, epoch, gaps, seconds, background_seconds=None):
    """Keeps and logs a refresh's record: the discrepancies, the seconds the training thread
    spent on it and, for a background refresh, the worker's seconds."""
    record = {"epoch": epoch, **{f"{k}_discrepancy": v for k, v in gaps.items()},
              "refresh_seconds": round(seconds, 3)}
    if background_seconds is not None:
      record["background_seconds"] = round(background_seconds, 3)
    self.refreshes.append(record)
    logging.info("dcd refresh at epoch %d: rank discrepancy %s (%.2f s%s)", epoch,
                 ", ".join(f"{k} side {v:.1f}" for k, v in gaps.items()) or "not computed",
                 seconds, "" if background_seconds is None else
                 f"; {background_seconds:.2f} s on the worker thread")
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
    every = self.config.refresh_every
    if self.config.background:
      return [*self.rrd.callbacks(), BackgroundRefresh(self, every)]
    return [*self.rrd.callbacks(), base.EpochCallback(self.refresh, every)]

  def state_variables(self):
    return [*self.rrd.state_variables(), *(v for s in self.sides() for v in (s.state, s.valid))]

  def get_history(self):
    return {"refreshes": self.refreshes}

  def set_history(self, history):
    self.refreshes = list(history.get("refreshes", []))

  def extra_metrics(self):
    return {"refreshes": self.refreshes}


class BackgroundRefresh(base.EpochCallback):
  """DCD's refresh callback with `background=True`: each refresh begins at the start of its
  epoch (`DCD.begin_refresh`) and, unless inline, ends with that epoch (`DCD.end_refresh`):
  before the callbacks after it (the trainers' checkpoint) see the epoch's end. Its scalars are
  written at the refresh's epoch."""

  def __init__(self, method, every):
    super().__init__(method.begin_refresh, every)
    self.method = method

  def on_epoch_end(self, epoch, logs=None):
    self.write_scalars(self.method.end_refresh(), epoch)
