"""Caser: Tang and Wang, "Personalized Top-N Sequential Recommendation via Convolutional Sequence
Embedding", WSDM 2018.

The user's last L items (L = `seq_len`, 5) as an L x d matrix of item embeddings, through
horizontal convolutions (`num_h` filters for each height 1..L, ReLU, max over time) and vertical
convolutions (`num_v` filters of L x 1), concatenated, dropout, a dense ReLU layer to d, then
joined with the user's embedding:

  z = relu(W1 [conv_h ; conv_v] + b1);   score(u, i) = W2_i . [z ; P_u] + b2_i     (T = 1 target)

Trained with sampled negatives (binary cross-entropy: softplus(-s_pos) + sum softplus(s_neg),
averaged over the 1 + k columns) on every position t >= 1 of each user's training sequence (in time
order), the L items before t as the input (padded with id `num_items` where shorter); l2 on the
batch's rows of P and W2, averaged over the batch.

Scoring a user needs their most recent L training items: the model keeps them as state
(`recent` [num_users, L] in a non-trainable variable, filled by `attach(dataset)`, saved with the
weights). Requires a dataset split by timestamp, so that the training order is the time order.
"""

import keras
import numpy as np
import tensorflow as tf

from tfkd.data import pipelines
from tfkd.models import ops
from tfkd.models.base import Recommender
from tfkd.models.lists import ListScoring


def sequences(dataset, seq_len):
  """Per training interaction (in time order): the user's previous `seq_len` items, padded with
  `num_items` on the left. Returns (inputs int32 [n_train, L], recent int32 [num_users, L])."""
  indptr, items = dataset.train_csr()
  pad = dataset.num_items
  inputs = np.full((len(items), seq_len), pad, np.int32)
  recent = np.full((dataset.num_users, seq_len), pad, np.int32)
  for u in range(dataset.num_users):
    row = items[indptr[u]:indptr[u + 1]]
    history = np.concatenate([np.full(seq_len, pad, np.int32), row])
    windows = np.lib.stride_tricks.sliding_window_view(history, seq_len)  # [n + 1, L]
    inputs[indptr[u]:indptr[u + 1]] = windows[:-1]
    recent[u] = windows[-1]
  return inputs, recent


def _windows(L):
  """int32 [L, L]: position t's window t, t + 1, ..., clipped at L - 1."""
  return np.minimum(np.arange(L)[:, None] + np.arange(L)[None, :], L - 1).astype(np.int32)


def _valid_positions(L, n_h):
  """float32 [L, L n_h]: 1 where filter h (columns (h - 1) n_h ..) is defined at position t."""
  heights = np.repeat(np.arange(1, L + 1), n_h)
  return (np.arange(L)[:, None] <= L - heights[None, :]).astype(np.float32)


@keras.saving.register_keras_serializable(package="tfkd")
class Caser(ListScoring, Recommender):
  """Convolutional sequence embedding over the last L items, plus a user embedding."""

  factored = True

  def __init__(self, num_users, num_items, dim=50, seq_len=5, num_h=16, num_v=4, dropout=0.5,
               l2=0.0, num_negatives=3, init_stddev=None, **kwargs):
    super().__init__(num_users, num_items, num_negatives=num_negatives, **kwargs)
    for name, value in (("dim", dim), ("seq_len", seq_len), ("num_h", num_h), ("num_v", num_v)):
      if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    if not 0.0 <= dropout < 1.0:
      raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if l2 < 0:
      raise ValueError(f"l2 must be non-negative, got {l2}")
    self.dim, self.seq_len, self.num_h, self.num_v = int(dim), int(seq_len), int(num_h), int(num_v)
    self.dropout_rate, self.l2 = float(dropout), float(l2)
    self.init_stddev = init_stddev
    init = (keras.initializers.RandomNormal(stddev=init_stddev) if init_stddev
            else keras.initializers.RandomNormal(stddev=1.0 / dim))
    L, d = self.seq_len, self.dim
    self.item_embedding = keras.layers.Embedding(num_items + 1, d, embeddings_initializer=init,
                                                 name="item_embedding")  # id num_items = pad
    self.user_embedding = keras.layers.Embedding(num_users, d, embeddings_initializer=init,
                                                 name="user_embedding")
    # The convolutions' weights, in Conv2D's layout (kernel [h, d, 1, n]); `_convolve` applies
    # them as matrix products rather than calling the layers.
    self.h_convs = [keras.layers.Conv2D(self.num_h, (h, d), activation="relu", name=f"conv_h{h}")
                    for h in range(1, L + 1)]
    self.v_conv = keras.layers.Conv2D(self.num_v, (L, 1), name="conv_v")
    self.fc = keras.layers.Dense(d, activation="relu", name="fc")
    self.drop = keras.layers.Dropout(self.dropout_rate)
    self.out_embedding = keras.layers.Embedding(num_items, 2 * d, embeddings_initializer=init,
                                                name="out_embedding")
    self.out_bias = keras.layers.Embedding(num_items, 1, embeddings_initializer="zeros",
                                           name="out_bias")
    for layer in (self.item_embedding, self.user_embedding, self.out_embedding, self.out_bias):
      layer.build()
    for conv in self.h_convs + [self.v_conv]:
      conv.build((None, L, d, 1))
    self.fc.build((None, self.num_h * L + self.num_v * d))
    self.recent = self.add_weight(name="recent", shape=(num_users, L), dtype="int32",
                                  initializer="zeros", trainable=False)

  def attach(self, dataset):
    """Stores each user's most recent L training items (the input of scoring)."""
    _, recent = sequences(dataset, self.seq_len)
    self.recent.assign(recent)

  # -- scoring -------------------------------------------------------------------------------

  def encode(self, users, seq=None, training=False):
    """users [B], seq [B, L] (default: the users' recent items) -> [B, 2d] = [z ; P_u]."""
    users = tf.cast(users, tf.int32)
    if seq is None:
      seq = tf.gather(self.recent, users)
    e = self.item_embedding(tf.cast(seq, tf.int32))  # [B, L, d]
    z = self.fc(self.drop(self._convolve(e), training=training))
    return tf.concat([z, self.user_embedding(users)], axis=1)

  def _convolve(self, e):
    """[B, L, d] -> [B, n_h L + n_v d]: the horizontal and vertical convolutions, computed with
    the Conv2D layers' own kernels but as one matrix product each.

    TF's CPU Conv2D gradient for these shapes (kernel as wide as the input, L = 5) took 250 ms of
    a 257 ms teacher step at batch 1024. Here each position t gets the window of the next L rows
    e[t], e[t + 1], ... (index clipped at L - 1) as one L x d vector, and one matmul applies every
    filter: filter h reads the window's first h rows (its kernel, zero-padded to L rows). Filter h
    is defined at t <= L - h only; after the ReLU the other positions are set to 0, which cannot
    change the max over t since the valid values are >= 0.
    """
    L, d, n_h = self.seq_len, self.dim, self.num_h
    windows = tf.gather(e, _windows(L), axis=1)  # [B, L, L, d]: row t is e[t], e[t + 1], ...
    kernels = tf.concat(
        [tf.concat([conv.kernel[:, :, 0, :], tf.zeros([L - h, d, n_h], conv.kernel.dtype)], 0)
         for h, conv in enumerate(self.h_convs, start=1)], axis=2)  # [L, d, L n_h]
    bias = tf.concat([conv.bias for conv in self.h_convs], axis=0)
    out = tf.matmul(tf.reshape(windows, [-1, L * d]), tf.reshape(kernels, [L * d, L * n_h]))
    out = tf.nn.relu(tf.reshape(out, [-1, L, L * n_h]) + bias) * _valid_positions(L, n_h)
    horizontal = tf.reduce_max(out, axis=1)  # [B, L n_h], filters of height 1, 2, ... in order
    # Vertical: out[b, k, f] = sum_l e[b, l, k] V[l, f] + c_f, flattened (k, f) as Conv2D's
    # [B, 1, d, n_v] output is.
    vertical = (tf.einsum("blk,lf->bkf", e, self.v_conv.kernel[:, 0, 0, :]) +
                self.v_conv.bias)
    return tf.concat([horizontal, tf.reshape(vertical, [-1, self.num_v * d])], axis=1)

  def _decode(self, x, items):
    items = tf.cast(items, tf.int32)
    return (ops.row_dot(x, self.out_embedding(items)) +
            tf.squeeze(self.out_bias(items), -1))

  def score(self, users, items):
    """users [B], items [B, N] -> [B, N], from the users' most recent items."""
    return self._decode(self.encode(users), items)

  def call(self, inputs, training=False):
    """inputs: {"user", "item", and "seq" [B, L] in training batches (else the recent items)}."""
    return self._decode(self.encode(inputs["user"], inputs.get("seq"), training), inputs["item"])

  def score_all(self, users):
    return (tf.matmul(self.encode(users), self.out_embedding.embeddings, transpose_b=True) +
            tf.transpose(self.out_bias.embeddings))

  def score_users(self, items):
    x = self.encode(tf.range(self.num_users))
    items = tf.cast(items, tf.int32)
    return tf.matmul(self.out_embedding(items), x, transpose_b=True) + self.out_bias(items)

  def build_for_dataset(self):
    self({"user": tf.zeros([1], tf.int32), "item": tf.zeros([1, 1], tf.int32)})

  # -- training ------------------------------------------------------------------------------

  def penalized_rows(self, users, items):
    return [self.user_embedding(users), self.out_embedding(items)]

  def make_train_dataset(self, dataset, batch_size, seed, first_epoch=None):
    """The pairwise pipeline plus each example's previous L items ("seq")."""
    inputs, _ = sequences(dataset, self.seq_len)
    return pipelines.pairwise(dataset, batch_size, num_negatives=self.num_negatives, seed=seed,
                              extra={"seq": inputs}, first_epoch=first_epoch)

  def get_config(self):
    config = super().get_config()
    config.update(dim=self.dim, seq_len=self.seq_len, num_h=self.num_h, num_v=self.num_v,
                  dropout=self.dropout_rate, l2=self.l2, init_stddev=self.init_stddev)
    return config
