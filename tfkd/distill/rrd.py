"""RRD: relaxed ranking distillation (Kang et al., DE-RRD, CIKM 2020), user and item side.

User side, per user u of a batch (`variant="sampled"`, the paper's): K "interesting" items drawn
from the teacher's top-P unobserved items with probability ~ exp(-(rank + 1) / T) and sorted by
teacher rank, and L "uninteresting" items drawn uniformly from u's unobserved items outside the
top-P; both redrawn at the start of every epoch for every user (as in the reference code), by a
callback, into variables from which each training step takes the rows of its batch's users (the
draw is seeded by (seed, epoch), so a resumed run draws the same lists). Loss: the relaxed
permutation loss (DCD eq. 1) with the K items ordered and the L items as the tail, averaged over
the batch's users, times `weight` (eq. 2: L_RS + lambda_RRD L_RRD).

Which rows get lists in a step: by default every distinct user (positive item) of the batch, as
the reference code does, so a user's list is scored in every batch the user has a pair in (~19
times per epoch on CiteULike at batch 1024). `list_pairs=N` scores the lists of the users (items)
of the batch's first N pairs only, a uniform sample of the shuffled batch: a row enters the loss
with about the same expected weight per epoch (in proportion to its pairs), from ~N / batch_size
as many list passes; DCD's correction lists follow the same rows.

`variant="full"`: the unsampled form the reference maintainer later recommended: all top-K items in
teacher order, every other unobserved item as the tail.

Item side (IR-RRD), enabled by `item_weight > 0`: the same for each positive item of the batch
(`list_items="batch"`: each item of the batch, its sampled negatives too), over the teacher's
ranking of the users who did not interact with it.
"""

import dataclasses
import functools

import numpy as np
import tensorflow as tf

from tfkd import seeds, xla
from tfkd.config_flags import check, setting
from tfkd.data import pipelines
from tfkd.distill import base, losses, samplers
from tfkd.errors import ConfigError
from tfkd.models import lists, ops


@dataclasses.dataclass
class RRDConfig:
  """RRD's settings; each is also a flag of `trainers.distill` (`tfkd.config_flags`)."""

  variant: str = setting("sampled", "Sampled RRD (paper) or all top-K items with every other "
                         "unobserved item as the tail.", choices=("sampled", "full"))
  num_interesting: int = setting(40, "Interesting items per user (K).", flag="rrd_k", lower=1)
  top: int = setting(500, "Teacher top list the K items are drawn from.", lower=1)
  temperature: float = setting(10.0, "T of p(rank) ~ exp(-(rank + 1) / T).", lower=1e-9)
  num_uninteresting: int = setting(40, "Uninteresting (tail) items per user (L).", flag="rrd_l",
                                   lower=0)
  weight: float = setting(1e-3, "lambda_RRD.", lower=0.0)
  item_num_interesting: int = setting(20, "Item side: interesting users per item.",
                                      flag="ir_rrd_k", lower=1)
  item_top: int = setting(100, "Item side: teacher top list of users.", flag="ir_rrd_top",
                          lower=1)
  item_temperature: float = setting(10.0, "Item side: T.", flag="ir_rrd_temperature",
                                    lower=1e-9)
  item_num_uninteresting: int = setting(20, "Item side: uninteresting users per item.",
                                        flag="ir_rrd_l", lower=0)
  item_weight: float = setting(0.0, "lambda of the item side (0 disables it).",
                               flag="ir_rrd_weight", lower=0.0)
  # The reference code scores a user's list in every batch the user is in (0); a sample of the
  # batch's pairs scores fewer lists per epoch.
  list_pairs: int = setting(
      0, "RRD / DCD: score the lists of the users (and positive items) of each batch's first N "
      "(user, item) pairs only, a uniform sample of the shuffled batch; 0: of all its pairs (the "
      "reference's schedule).", flag="list_pairs", lower=0)
  # "The items in the batch" (DCD's ICD, IR-RRD): the paper does not say whether the sampled
  # negatives count; the reference lineage reads it both ways (docs/dcd_fidelity.md, section 3).
  list_items: str = setting(
      "positives", "RRD / DCD item side: the lists of the batch's positive items only, or of "
      "every item of the batch (positives and the sampled negatives).", flag="list_items",
      choices=("positives", "batch"))
  seed: int = setting(0, common="seed")

  def validate(self):
    if self.num_interesting > self.top:
      raise ConfigError(f"rrd: K={self.num_interesting} interesting items cannot be drawn from "
                        f"a top list of {self.top}")
    if self.item_weight and self.item_num_interesting > self.item_top:
      raise ConfigError(f"rrd: item-side K={self.item_num_interesting} exceeds the item-side "
                        f"top list of {self.item_top}")
    if self.list_pairs < 0:
      raise ConfigError(f"list_pairs must be >= 0 (0: every pair of the batch), got "
                        f"{self.list_pairs}")
    for name in ("temperature", "item_temperature"):
      if getattr(self, name) <= 0:
        raise ConfigError(f"rrd: {name} must be positive, got {getattr(self, name)}")
    check(self, "rrd")


def permutation_loss(scores, k, mask=None, row_weight=None):
  """Mean relaxed permutation NLL of [B, k + tail] scores (first k ordered); with `row_weight`
  float [B] (0 or 1: `ops.first_of_run`), the mean over the rows of weight 1."""
  loss = losses.RelaxedPermutationLoss(k, masked=mask is not None, reduction=None)
  nll = loss(scores if mask is None else mask, scores)
  if row_weight is None:
    return tf.reduce_mean(nll)
  return tf.reduce_sum(row_weight * nll) / tf.maximum(tf.reduce_sum(row_weight), 1.0)


@dataclasses.dataclass
class ListTerm:
  """One weighted permutation loss over a list of columns per row: `columns` [B, k + tail] on the
  `side` ("user": rows are the batch's users, columns items; "item": the reverse), the first `k`
  ordered, the rest the tail, `valid` an optional bool mask of the same shape."""

  part: str
  side: str
  columns: tf.Tensor
  k: int
  weight: float
  valid: object = None


def list_losses(student, users, items, terms):
  """{part: weight * mean permutation loss} of `terms` over the rows `users` / `items` (from
  `ops.distinct`: under XLA the repeated rows are there too and weigh 0). All lists of a side are
  scored in one call (one gather and one product instead of one per list)."""
  parts = {}
  for side, rows, score_fn in (("user", users, student.score),
                               ("item", items, functools.partial(lists.score_item_users, student))):
    side_terms = [t for t in terms if t.side == side]
    if not side_terms:
      continue
    widths = [t.columns.shape[1] for t in side_terms]
    scores = score_fn(rows, tf.concat([t.columns for t in side_terms], axis=1))
    row_weight = ops.first_of_run(rows) if xla.in_xla() else None
    for term, term_scores in zip(side_terms, tf.split(scores, widths, axis=1)):
      parts[term.part] = term.weight * permutation_loss(term_scores, term.k, term.valid,
                                                        row_weight)
  return parts


class SideSampler:
  """RRD sampling on one side: rows (users, or items) -> ordered + tail columns."""

  def __init__(self, topk, observed_rows, observed_cols, num_cols, k, top, temperature, tail):
    topk = np.asarray(topk)[:, :top]
    self.k, self.top, self.temperature, self.tail = k, top, temperature, tail
    self.topk = tf.constant(topk, tf.int32)
    rows = np.repeat(np.arange(topk.shape[0]), topk.shape[1])
    self.excluded = pipelines.SeenSet(np.concatenate([observed_rows, rows]),
                                      np.concatenate([observed_cols, topk.reshape(-1)]), num_cols)

  def sample(self, rows, seed):
    """rows int [B] -> int32 [B, k + tail]: k ordered columns then the uniform tail."""
    positions = samplers.rank_positions(tf.shape(rows)[0], self.top, self.k, self.temperature,
                                        tf.stack([seed, 1]))
    ordered = tf.gather(tf.gather(self.topk, rows), positions, batch_dims=1)
    tail = pipelines.sample_unobserved(self.excluded, rows, self.tail, seed + 7919)
    return tf.concat([ordered, tail], axis=1)


@base.register("rrd", RRDConfig)
class RRD(base.Method):

  def __init__(self, config: RRDConfig):
    config.validate()
    self.config = config
    self.user_k = config.top if config.variant == "sampled" else config.num_interesting
    # The full variant's tail mask comes from ragged rows: no static shape for XLA.
    self.xla_ready = config.variant == "sampled"
    self.item_k = config.item_top if config.item_weight else 0

  def setup(self, dataset, student, teacher, knowledge):
    c = self.config
    if self.user_k > dataset.num_items:
      raise ConfigError(f"rrd: teacher list of {self.user_k} exceeds {dataset.num_items} items")
    self.num_users, self.num_items = dataset.num_users, dataset.num_items
    if c.variant == "sampled":
      self.users = SideSampler(knowledge["user_topk"], dataset.train_users, dataset.train_items,
                               dataset.num_items, c.num_interesting, c.top, c.temperature,
                               c.num_uninteresting)
    else:
      self.full_topk = tf.constant(knowledge["user_topk"][:, :c.num_interesting], tf.int32)
      indptr, indices = dataset.train_csr()
      self.train_rows = tf.RaggedTensor.from_row_splits(indices.astype(np.int32), indptr)
    if c.item_weight:
      self.items = SideSampler(knowledge["item_topk"], dataset.train_items, dataset.train_users,
                               dataset.num_users, c.item_num_interesting, c.item_top,
                               c.item_temperature, c.item_num_uninteresting)
    self.setup_lists()

  def part_names(self):
    return ["base_loss", "rrd_loss"] + (["ir_rrd_loss"] if self.config.item_weight else [])

  def setup_lists(self):
    c = self.config
    self.lists = {}
    if c.variant == "sampled":
      self.lists["user"] = tf.Variable(
          tf.zeros([self.num_users, c.num_interesting + c.num_uninteresting], tf.int32),
          trainable=False, name="rrd_user_lists")
    if c.item_weight:
      self.lists["item"] = tf.Variable(
          tf.zeros([self.num_items, c.item_num_interesting + c.item_num_uninteresting], tf.int32),
          trainable=False, name="rrd_item_lists")
    self._draw = tf.function(self._draw_lists)

  def _draw_lists(self, seed):
    if "user" in self.lists:
      self.lists["user"].assign(self.users.sample(tf.range(self.num_users), seed))
    if "item" in self.lists:
      self.lists["item"].assign(self.items.sample(tf.range(self.num_items),
                                                    seed + seeds.ITEM_SIDE))

  def resample(self, epoch):
    """Draws this epoch's lists for every user (item); seeded by (seed, epoch)."""
    if self.lists:
      seed = seeds.for_epoch(self.config.seed, epoch, "rrd_lists")
      self._draw(tf.constant(seed, tf.int64))

  def callbacks(self):
    return [base.EpochCallback(self.resample)] if self.lists else []

  def state_variables(self):
    return [self.lists[side] for side in sorted(self.lists)]

  def batch_rows(self, x):
    """The batch's distinct users, and its distinct positive items (item side; with
    `list_items="batch"` its distinct items, the sampled negatives too); under XLA all of them,
    sorted, the repeats weighed 0 by `list_losses` (`ops.distinct`). With `list_pairs`, those of
    the batch's first `list_pairs` pairs only (each replica its share)."""
    users, items = x["user"], x["item"]
    if self.config.list_pairs:
      replicas = tf.distribute.get_strategy().num_replicas_in_sync
      n = -(-self.config.list_pairs // replicas)
      users, items = users[:n], items[:n]
    items = items[:, 0] if self.config.list_items == "positives" else tf.reshape(items, [-1])
    return ops.distinct(users), ops.distinct(items)

  def full_user_loss(self, student, users):
    c = self.config
    top = tf.gather(self.full_topk, users)
    ordered = student.score(users, top)  # [B, K]
    scores = student.score_all(users)  # [B, I]
    observed = tf.gather(self.train_rows, users)
    rows = tf.range(tf.shape(ordered)[0])
    top_index = tf.stack([tf.repeat(rows, c.num_interesting), tf.reshape(top, [-1])], 1)
    observed_index = tf.stack([tf.cast(observed.value_rowids(), tf.int32),
                               observed.flat_values], axis=1)
    excluded = tf.concat([observed_index, top_index], axis=0)
    tail_mask = tf.tensor_scatter_nd_update(tf.ones(tf.shape(scores), tf.bool), excluded,
                                            tf.zeros(tf.shape(excluded)[:1], tf.bool))
    loss = losses.RelaxedPermutationLoss(c.num_interesting, reduction=None)
    mask = tf.concat([tf.ones(tf.shape(ordered), tf.bool), tail_mask], axis=1)
    return tf.reduce_mean(loss(mask, tf.concat([ordered, scores], axis=1)))

  def list_terms(self, users, items):
    """The sampled lists of this epoch for the batch's users (and positive items)."""
    c, terms = self.config, []
    if c.variant == "sampled":
      terms.append(ListTerm("rrd_loss", "user", tf.gather(self.lists["user"], users),
                            c.num_interesting, c.weight))
    if c.item_weight:
      terms.append(ListTerm("ir_rrd_loss", "item", tf.gather(self.lists["item"], items),
                            c.item_num_interesting, c.item_weight))
    return terms

  def parts(self, student, users, items, extra_terms=()):
    """RRD's loss parts, plus the parts of `extra_terms` scored together with RRD's lists."""
    c = self.config
    parts = list_losses(student, users, items, [*self.list_terms(users, items), *extra_terms])
    if c.variant == "full":
      parts["rrd_loss"] = c.weight * self.full_user_loss(student, users)
    return parts

  def loss_parts(self, student, x, out=None):
    return {**self.student_part(student, x, out), **self.parts(student, *self.batch_rows(x))}
