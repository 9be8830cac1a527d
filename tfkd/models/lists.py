"""Scoring lists of items (or users): the paths distillation needs beyond `score` / `score_all`.

Methods score long lists per row (RRD's and DCD's lists, CD's samples) and the transposed forms
(the item side). Every `Recommender` can: the functions below fall back to `score`. A model whose
structure allows faster paths opts in by inheriting `ListScoring` and overriding them (or by
defining a method of the same name) (BPR and
Caser: dot products with the item factors; CDAE: one decoder pass per user, its corrupted row
shared with the training step). The built-in models all do.
"""

import functools

import tensorflow as tf


class ListScoring:
  """Mixin of a `Recommender` with list-scoring paths of its own. Each method's definition here
  is the generic one (through `score` / `score_all`); models override what they can do faster."""

  # True when score_all is one product with the catalog's item factors (BPR, CDAE, Caser): then
  # scoring long lists per user is cheaper through score_all than through one gathered factor
  # row per list entry (and its gradient is dense, not a scatter of every entry).
  factored = False

  def reads_full_rows(self, width):
    """True when lists of static `width` are cheaper read from full score rows than scored one
    entry at a time: the model is `factored` and they cover at least 1/8 of the catalog."""
    return self.factored and width is not None and width * 8 >= self.num_items

  def score_lists(self, users, items):
    """score(users, items) for lists of a static width; gathers from score_all when
    `reads_full_rows` says so."""
    if self.reads_full_rows(items.shape[1]):
      return tf.gather(self.score_all(users), tf.cast(items, tf.int32), batch_dims=1)
    return self.score(users, items)

  def score_users(self, items):
    """items [B] -> [B, num_users]: the score of every user for each item."""
    users = tf.range(self.num_users)
    items = tf.broadcast_to(tf.cast(items, tf.int32)[None, :],
                            [self.num_users, tf.shape(items)[0]])
    return tf.transpose(self.score(users, items))

  def score_item_users(self, items, users):
    """items [B], users [B, N] -> [B, N]: S(users[b, n], items[b])."""
    shape = tf.shape(users)
    flat_items = tf.reshape(tf.repeat(tf.cast(items, tf.int32), shape[1]), [-1, 1])
    return tf.reshape(self.score(tf.reshape(users, [-1]), flat_items), shape)

  def call_with_lists(self, inputs, lists, training=False):
    """call(inputs) with `lists` [B, W] scored in the same pass (same corruption, dropout):
    [B, N + W], the batch's own items first. By default one call over the widened items; models
    whose pass is shared per user (CDAE) score the lists more cheaply."""
    items = tf.concat([tf.cast(inputs["item"], tf.int32), tf.cast(lists, tf.int32)], axis=1)
    return self({**inputs, "item": items}, training=training)

  def lists_as_pairs(self, width):
    """True when lists of static `width`, mostly padding, are cheaper scored in the training pass
    as their valid entries only (`call_with_pairs`) than as a dense [B, W] block. False unless a
    model says otherwise."""
    return False

  def call_with_pairs(self, inputs, lists, where, training=False):
    """`call_with_lists` keeping only the entries of `lists` [B, W] at `where` [P, 2] (row,
    column; `tf.where` of the valid mask): (own [B, N], pair scores [P]). By default the dense
    pass, then those entries; models whose `lists_as_pairs` can be true score only them."""
    own = inputs["item"].shape[1]
    y = call_with_lists(self, inputs, lists, training=training)
    return y[:, :own], tf.gather_nd(y[:, own:], where)


def _path(model, name):
  """The model's own `name` path (ListScoring's, or one it defines), else the generic one."""
  own = getattr(model, name, None)
  return own if own is not None else functools.partial(getattr(ListScoring, name), model)


def score_lists(model, users, items):
  """users [B], items [B, W] -> [B, W]: `score`, or the model's faster path."""
  own = getattr(model, "score_lists", None)
  return own(users, items) if own is not None else model.score(users, items)


def score_users(model, items):
  """items [B] -> [B, num_users]: the score of every user for each item."""
  return _path(model, "score_users")(items)


def score_item_users(model, items, users):
  """items [B], users [B, N] -> [B, N]: S(users[b, n], items[b])."""
  return _path(model, "score_item_users")(items, users)


def call_with_lists(model, inputs, lists, training=False):
  """The training pass of `inputs` with `lists` [B, W] scored in it: [B, N + W]."""
  return _path(model, "call_with_lists")(inputs, lists, training=training)


def lists_as_pairs(model, width):
  own = getattr(model, "lists_as_pairs", None)
  return own is not None and own(width)


def call_with_pairs(model, inputs, lists, where, training=False):
  """(own [B, N], scores of `lists` at `where` [P]) from one training pass."""
  return _path(model, "call_with_pairs")(inputs, lists, where, training=training)
