"""Samplers of the distillation methods, as stateless TF ops usable inside `tf.data.map`.

Sampling without replacement with probabilities proportional to weights w uses the Gumbel-top-k
trick: the k largest of log w + Gumbel noise are distributed exactly as k successive draws without
replacement (what `torch.multinomial(..., replacement=False)` does in the reference code).
"""

import tensorflow as tf


def _gumbel(shape, seed):
  u = tf.random.stateless_uniform(shape, seed=seed, minval=1e-20, maxval=1.0)
  return -tf.math.log(-tf.math.log(u))


def weighted_without_replacement(weights, k, seed, deterministic=False):
  """Draws k of n columns per row with probability proportional to `weights` [B, n].

  Zero weights are never drawn; a row with fewer than k positive weights returns its positive
  columns first and marks the rest invalid. With `deterministic=True` the k largest weights are
  taken (no sampling).

  Returns (indices int32 [B, k], valid bool [B, k]).
  """
  weights = tf.convert_to_tensor(weights, tf.float32)
  logw = tf.math.log(tf.maximum(weights, 1e-30))
  positive = weights > 0
  keys = logw if deterministic else logw + _gumbel(tf.shape(weights), seed)
  keys = tf.where(positive, keys, tf.fill(tf.shape(keys), -1e30))
  top = tf.math.top_k(keys, k=k)
  return top.indices, tf.gather(positive, top.indices, batch_dims=1)


def rank_positions(batch_size, top, k, temperature, seed):
  """RRD's interesting positions: k of `top` ranks with p(r) ~ exp(-(r + 1) / T), sorted.

  Returns int32 [batch_size, k], ascending (teacher order).
  """
  logits = -(tf.range(top, dtype=tf.float32) + 1.0) / temperature
  keys = logits[None, :] + _gumbel(tf.stack([batch_size, top]), seed)
  return tf.sort(tf.math.top_k(keys, k=k).indices, axis=1)


def rank_probabilities(top, temperature):
  """The single-draw probabilities behind `rank_positions` (for tests and docs)."""
  logits = -(tf.range(top, dtype=tf.float64) + 1.0) / temperature
  return tf.nn.softmax(logits)
