"""CDAE: Wu et al., "Collaborative Denoising Auto-Encoders for Top-N Recommender Systems", WSDM 2016.

A user's training row y_u (the items they interacted with), corrupted during training by dropping
each item with probability q and scaling the survivors by 1 / (1 - q), plus a user node:

  z_u = sigmoid(sum_{i in y~_u} W_i + V_u + b)        (hidden size `dim`: teacher 100, student 10)
  score(u, i) = W'_i . z_u + b'_i

Trained with sampled negatives as the paper does: per (u, i, j_1..j_k) row, i observed and j_k
unobserved, the logistic loss softplus(-s_ui) + sum_k softplus(s_uj_k) over 1 + k, plus
`l2 * (squared norms of the batch's rows of W', V)` averaged over the batch.

Scoring needs each user's training row, so the model keeps it as state: the rows as a CSR index
(`row_splits` [num_users + 1], `row_items` [num_interactions]) in non-trainable variables, filled by
`attach(dataset)` and saved with the weights (the config records `num_interactions`, so a reloaded
model has the right shapes). Build it with `models.build_for(name, dataset)`.
"""

import keras
import tensorflow as tf

from tfkd.models import ops
from tfkd.models.base import Recommender
from tfkd.models.lists import ListScoring

# How a batch's (corrupted) rows meet W. Sparse: a sparse [B, num_items] x dense product, whose
# forward and gradient into W cost a constant per (row entry x dim); dense: the rows scattered
# into a dense [B, num_items] matrix and one matmul, whose cost per cell grows with dim. With the
# two constants measured on ML-100K steps (docs/speed.md, "Measurements behind choices in the
# code"), dense is the cheaper when density x dim > 1 + 0.024 dim; it is used then, as long as
# users x items stays small.
DENSE_INPUT_MAX_CELLS = 1 << 26


@keras.saving.register_keras_serializable(package="tfkd")
class CDAE(ListScoring, Recommender):
  """Denoising auto-encoder over a user's interaction row, with a per-user input node."""

  factored = True

  def __init__(self, num_users, num_items, dim=100, corruption=0.5, l2=0.0, num_negatives=1,
               init_stddev=0.01, num_interactions=None, **kwargs):
    super().__init__(num_users, num_items, num_negatives=num_negatives, **kwargs)
    if dim <= 0:
      raise ValueError(f"dim must be positive, got {dim}")
    if not 0.0 <= corruption < 1.0:
      raise ValueError(f"corruption must be in [0, 1), got {corruption}")
    if l2 < 0:
      raise ValueError(f"l2 must be non-negative, got {l2}")
    self.dim, self.corruption, self.l2 = int(dim), float(corruption), float(l2)
    self.init_stddev = float(init_stddev)
    init = keras.initializers.RandomNormal(stddev=init_stddev)
    self.item_in = keras.layers.Embedding(num_items, dim, embeddings_initializer=init,
                                          name="item_in")
    self.user_node = keras.layers.Embedding(num_users, dim, embeddings_initializer=init,
                                            name="user_node")
    self.item_out = keras.layers.Embedding(num_items, dim, embeddings_initializer=init,
                                           name="item_out")
    for layer in (self.item_in, self.user_node, self.item_out):
      layer.build()
    # The corruption's random state: a variable (in `variables`), so a resumed run continues it.
    self.seed_generator = keras.random.SeedGenerator()
    self.hidden_bias = self.add_weight(name="hidden_bias", shape=(dim,), initializer="zeros")
    self.item_bias = self.add_weight(name="item_bias", shape=(num_items,), initializer="zeros")
    self.num_interactions = None
    if num_interactions is not None:
      self._make_state(int(num_interactions))

  # -- the training rows as state --------------------------------------------------------------

  def _make_state(self, num_interactions):
    self.num_interactions = num_interactions
    cells = self.num_users * self.num_items
    self.dense_input = (num_interactions * self.dim * 10.0 > cells * (10.0 + 0.24 * self.dim)
                        and cells <= DENSE_INPUT_MAX_CELLS)
    self.row_splits = self.add_weight(name="row_splits", shape=(self.num_users + 1,),
                                      dtype="int64", initializer="zeros", trainable=False)
    self.row_items = self.add_weight(name="row_items", shape=(num_interactions,), dtype="int32",
                                   initializer="zeros", trainable=False)

  def attach(self, dataset):
    """Stores the dataset's training rows (the input of every user's encoding)."""
    indptr, items = dataset.train_csr()
    if self.num_interactions is None:
      self._make_state(len(items))
    elif self.num_interactions != len(items):
      raise ValueError(f"this CDAE holds {self.num_interactions} training interactions, the "
                       f"dataset {dataset.name} has {len(items)}")
    self.row_splits.assign(indptr)
    self.row_items.assign(items)

  def _check_state(self):
    if self.num_interactions is None:
      raise ValueError("CDAE scores from each user's training row: build it with "
                       "tfkd.models.build_for(name, dataset) (or call attach(dataset))")

  # -- scoring -------------------------------------------------------------------------------

  def encode(self, users, training=False):
    """users [B] -> z [B, dim] from the users' (corrupted, when training) training rows."""
    self._check_state()
    users = tf.cast(users, tf.int64)
    rows, items = ops.csr_rows(self.row_splits, self.row_items, users)
    items = tf.cast(items, tf.int64)
    values = tf.ones(tf.shape(items), tf.float32)
    if training and self.corruption > 0:
      keep = keras.random.uniform(tf.shape(items), seed=self.seed_generator) >= self.corruption
      values = tf.where(keep, values / (1.0 - self.corruption), 0.0)
    # The rows as a [B, num_items] matrix times W (dense or sparse, whichever is cheaper);
    # either way the gradient is one product into W, not a scatter of every gathered row.
    index = tf.stack([rows, items], axis=1)
    shape = tf.stack([tf.shape(users, out_type=tf.int64)[0], self.num_items])
    if self.dense_input:
      summed = tf.matmul(tf.scatter_nd(index, values, shape), self.item_in.embeddings)
    else:
      summed = tf.sparse.sparse_dense_matmul(tf.sparse.SparseTensor(index, values, shape),
                                             self.item_in.embeddings)
    return tf.sigmoid(summed + self.user_node(users) + self.hidden_bias)

  def _decode(self, z, items):
    """z [B, dim], items [B, N] -> [B, N]."""
    return (ops.row_dot(z, self.item_out(items)) +
            tf.gather(self.item_bias, items))

  def score(self, users, items):
    """users [B], items [B, N] -> [B, N] (no corruption)."""
    return self._decode(self.encode(users), tf.cast(items, tf.int32))

  def _encode_distinct(self, users, training):
    """A training batch repeats active users: encode each distinct user once (one corruption of
    their row per step, as CDAE's per-user updates). -> (z [U, dim], index [B] into it)."""
    distinct, index = tf.unique(tf.cast(users, tf.int32))
    return self.encode(distinct, training=training), index

  def _decode_all(self, z):
    """z [B, dim] -> [B, num_items]."""
    return tf.matmul(z, self.item_out.embeddings, transpose_b=True) + self.item_bias

  def call(self, inputs, training=False):
    z, index = self._encode_distinct(inputs["user"], training)
    return self._decode(tf.gather(z, index), tf.cast(inputs["item"], tf.int32))

  def call_with_lists(self, inputs, lists, training=False):
    """As the default (one encoding, one corruption per distinct user), but wide lists are read
    from each distinct user's full decoded row: a [U, num_items] product whose gradient is dense,
    instead of one gathered output row per (row, list entry) (ML-100K CD, 1024 rows x ~560
    entries: ~4x the step time)."""
    if not self.reads_full_rows(lists.shape[1]):
      return super().call_with_lists(inputs, lists, training=training)
    z, index = self._encode_distinct(inputs["user"], training)
    own = self._decode(tf.gather(z, index), tf.cast(inputs["item"], tf.int32))
    # One flat gather: no [rows, num_items] copy of the distinct users' rows.
    flat = index[:, None] * self.num_items + tf.cast(lists, tf.int32)
    return tf.concat([own, tf.gather(tf.reshape(self._decode_all(z), [-1]), flat)], axis=1)

  def lists_as_pairs(self, width):
    # Narrow lists padded to the widest user's (Amazon Music CD: width 203, ~25 valid entries
    # per row): one gathered output row per valid entry instead of per padded one.
    return not self.reads_full_rows(width)

  def call_with_pairs(self, inputs, lists, where, training=False):
    """As `call_with_lists` (one encoding, one corruption per distinct user), scoring only the
    entries of narrow lists at `where` [P, 2]: (own [B, N], pair scores [P])."""
    if not self.lists_as_pairs(lists.shape[1]):
      return super().call_with_pairs(inputs, lists, where, training=training)
    z, index = self._encode_distinct(inputs["user"], training)
    own = self._decode(tf.gather(z, index), tf.cast(inputs["item"], tf.int32))
    pair_z = tf.gather(z, tf.gather(index, where[:, 0]))
    items = tf.gather_nd(tf.cast(lists, tf.int32), where)
    return own, self._decode(pair_z, items[:, None])[:, 0]

  def score_all(self, users):
    """users [B] -> [B, num_items]."""
    return self._decode_all(self.encode(users))

  def score_users(self, items):
    """items [B] -> [B, num_users]: every user's encoding against the items' output rows."""
    z = self.encode(tf.range(self.num_users))
    items = tf.cast(items, tf.int32)
    return tf.matmul(self.item_out(items), z, transpose_b=True) + tf.gather(self.item_bias,
                                                                            items)[:, None]

  def build_for_dataset(self):
    self._check_state()
    super().build_for_dataset()

  # -- training ------------------------------------------------------------------------------

  def penalized_rows(self, users, items):
    return [self.user_node(users), self.item_out(items)]

  def get_config(self):
    config = super().get_config()
    config.update(dim=self.dim, corruption=self.corruption, l2=self.l2,
                  init_stddev=self.init_stddev, num_interactions=self.num_interactions)
    return config
