"""tf.data pipelines: training pairs with negatives sampled inside the pipeline.

Each epoch's permutation and negatives are drawn with stateless random ops from that epoch's
seed (`epoch_batches`), so a run is reproducible from its seed and draws fresh negatives each
epoch; nothing is sampled in Python.
"""

import numpy as np
import tensorflow as tf

from tfkd import seeds


class SeenSet:
  """Membership of (user, item) pairs, as a static hash table over user * num_items + item."""

  def __init__(self, users, items, num_items):
    keys = np.unique(np.asarray(users, np.int64) * num_items + np.asarray(items, np.int64))
    self.num_items = int(num_items)
    self.table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(keys, tf.int64),
                                            tf.ones(len(keys), tf.int32)), default_value=0)

  def contains(self, users, items):
    """users [B], items [B, k] -> bool [B, k]."""
    keys = tf.cast(users, tf.int64)[:, None] * self.num_items + tf.cast(items, tf.int64)
    return self.table.lookup(keys) > 0


def sample_unobserved(seen: SeenSet, users, k, seed, max_rounds=1000):
  """Draws k items per user uniformly among the items the user has not seen (exact rejection).

  Every position is drawn uniformly over the catalog and redrawn while it hits a seen item; only
  the rejected positions are looked up again, so a round after the first costs what it rejects.

  Args:
    seen: the observed pairs.
    users: int [B].
    k: items per user.
    seed: int64 scalar seed (stateless).
    max_rounds: bound on the redraw rounds (a user who saw all items would loop forever).
  Returns: int32 [B, k].
  """
  users = tf.cast(users, tf.int32)
  seed = tf.cast(seed, tf.int64)
  first = tf.random.stateless_uniform(tf.stack([tf.shape(users)[0], k]),
                                      seed=tf.stack([seed, 0]), minval=0,
                                      maxval=seen.num_items, dtype=tf.int32)
  rejected = tf.where(seen.contains(users, first))  # int64 [n, 2] positions to redraw

  def cond(round_, items, rejected):
    return tf.logical_and(round_ < max_rounds, tf.shape(rejected)[0] > 0)

  def body(round_, items, rejected):
    redraw = tf.random.stateless_uniform(tf.shape(rejected)[:1],
                                         seed=tf.stack([seed, tf.cast(round_, tf.int64)]),
                                         minval=0, maxval=seen.num_items, dtype=tf.int32)
    items = tf.tensor_scatter_nd_update(items, rejected, redraw)
    hit = seen.contains(tf.gather(users, rejected[:, 0]), redraw[:, None])[:, 0]
    return round_ + 1, items, tf.boolean_mask(rejected, hit)

  _, items, _ = tf.while_loop(cond, body, (tf.constant(1), first, rejected),
                              shape_invariants=(tf.TensorShape([]), first.shape,
                                                tf.TensorShape([None, 2])))
  return items


def epoch_batches(num_examples, batch_size, seed, make_epoch, first_epoch=None):
  """One epoch per iteration: a stateless permutation of the examples, cut into batches; each
  iteration of the dataset (each epoch of `model.fit(data, epochs=n)`) is a new epoch.

  The permutation and the epoch's random draws derive from the epoch's seed:
  - `first_epoch=None`: drawn by `tf.data.Dataset.random(seed, rerandomize_each_iteration=True)`;
  - `first_epoch=k`: iteration i is epoch k + i, seeded by (seed, k + i) alone (an epoch counter
    variable counts the iterations). A run resumed at epoch k sees exactly the batches the
    uninterrupted run saw from epoch k on; the trainers use this mode.
  Shuffling and sampling are vectorised ops over the whole epoch, run once at its start; a batch
  is then a slice. (Drawing each batch's negatives in its own `map` call cost about as much as a
  BPR student's step: docs/speed.md.)

  Args:
    make_epoch: (example indices int32 [num_examples] in this epoch's order, epoch seed int64
      scalar) -> a structure of tensors [num_examples, ...], the epoch's rows in that order.
  """
  batches = -(-num_examples // batch_size)

  def epoch(epoch_seed):
    perm = tf.random.experimental.stateless_shuffle(
        tf.range(num_examples, dtype=tf.int32), seed=tf.stack([epoch_seed, 0]))
    rows = make_epoch(perm, epoch_seed)

    def batch(b):
      b32 = tf.cast(b, tf.int32)
      start, stop = b32 * batch_size, tf.minimum((b32 + 1) * batch_size, num_examples)
      return tf.nest.map_structure(lambda t: t[start:stop], rows)

    return tf.data.Dataset.range(batches).map(batch)

  if first_epoch is None:
    epoch_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
  else:
    with tf.init_scope():  # a plain variable, outside any function or distribution scope
      counter = tf.Variable(int(first_epoch), dtype=tf.int64, trainable=False)

    def epoch_seed(_):
      epoch = counter.assign_add(1) - 1
      # A stateless mix of (seed, epoch) into one int64. (`stateless_fold_in` returns a key whose
      # first element does not depend on the data folded in: taking it alone, as 8bee24f did,
      # gave every epoch the same permutation and the same negatives.)
      key = tf.random.experimental.stateless_fold_in(tf.constant([seed, 0x7fdcd], tf.int64),
                                                     epoch)
      return tf.random.stateless_uniform([], seed=key, minval=None, maxval=None, dtype=tf.int64)

    epoch_seeds = tf.data.Dataset.from_tensors(0).map(epoch_seed)
  # flat_map hides the epoch's length from tf.data; stating it lets Keras size its progress bar
  # and end the epoch on the count instead of on an exhausted iterator (its "input ran out of
  # data" warning).
  return (epoch_seeds.flat_map(epoch).apply(tf.data.experimental.assert_cardinality(batches))
          .prefetch(tf.data.AUTOTUNE))


def pairwise(dataset, batch_size, num_negatives=1, seed=0, extra=None, first_epoch=None):
  """Batches of {"user": [B], "item": [B, 1 + num_negatives]}, one epoch per pass (epochs counted
  from `first_epoch` when given; see `epoch_batches`).

  Column 0 of "item" is the observed item; the other columns are uniform unobserved items, drawn
  for the whole epoch at its start.
  `extra`: {name: array [num_train, ...]} of per-interaction inputs (in the dataset's training
  order), batched alongside (Caser's previous items).
  """
  extra = {name: tf.constant(value) for name, value in (extra or {}).items()}
  seen = SeenSet(dataset.train_users, dataset.train_items, dataset.num_items)
  users = tf.constant(dataset.train_users, tf.int32)
  items = tf.constant(dataset.train_items, tf.int32)

  def make_epoch(indices, epoch_seed):
    u, i = tf.gather(users, indices), tf.gather(items, indices)
    negatives = sample_unobserved(seen, u, num_negatives,
                                  seeds.for_epoch(epoch_seed, 0, "negatives"))
    return {"user": u, "item": tf.concat([i[:, None], negatives], axis=1),
            **{name: tf.gather(value, indices) for name, value in extra.items()}}

  return epoch_batches(dataset.num_train, batch_size, seed, make_epoch, first_epoch)
