"""Samplers of the distillation methods, as stateless TF ops usable inside `tf.data.map`.

Sampling without replacement with probabilities proportional to weights w uses the Gumbel-top-k
trick: the k largest of log w + Gumbel noise are distributed exactly as k successive draws without
replacement (what `torch.multinomial(..., replacement=False)` does in the reference code).
`weighted_without_replacement_np` is the same draw in one vectorised NumPy pass (DCD's
`--dcd_draws=numpy`).
"""

import numpy as np
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


def weighted_without_replacement_np(weights, k, rng, deterministic=False):
  """`weighted_without_replacement` in NumPy, with a `np.random.Generator` for the noise: the k
  largest of w / E, E ~ Exp(1) independently per entry (float32 unless `weights` are float64),
  largest first (column 0 is the first draw). log(w / E) = log w + G with G = -log E a standard
  Gumbel variable: the Gumbel-top-k draw, from one exponential per entry and no logarithms.

  Zero weights are never drawn; a row with fewer than k positive weights returns its positive
  columns first and marks the rest invalid. Returns (indices int32 [B, k], valid bool [B, k]).
  """
  weights = np.asarray(weights)
  dtype = np.float64 if weights.dtype == np.float64 else np.float32
  positive = weights > 0
  keys = np.where(positive, weights, 0).astype(dtype, copy=False)
  if not deterministic:  # w / E > 0 for w > 0, 0 for w = 0
    keys /= rng.standard_exponential(size=keys.shape, dtype=dtype)
  top = top_k_indices(keys, k)
  return top, np.take_along_axis(positive, top, axis=1)


def top_k_indices(values, k):
  """`tf.math.top_k(values, k).indices` in NumPy for rows without NaN: int32 [B, k], each row's k
  largest, largest first, equal values by column. One partition of each row instead of a sort;
  the rows where the k-th largest value is tied beyond the k picked take their first columns
  holding it."""
  values = np.asarray(values)
  rows, n = values.shape
  if not 0 <= k <= n:
    raise ValueError(f"k must be in [0, {n}], got {k}")
  if k == 0 or rows == 0:
    return np.zeros((rows, k), np.int32)
  cols = np.argpartition(-values, k - 1, axis=1)[:, :k]
  kth = np.take_along_axis(values, cols, axis=1).min(axis=1, keepdims=True)
  tied = np.flatnonzero((values >= kth).sum(axis=1) > k)
  if tied.size:  # the columns above the k-th value, then the first ones holding it
    v, t = values[tied], kth[tied]
    at = v == t
    take = (v > t) | (at & (np.cumsum(at, axis=1) <= k - (v > t).sum(axis=1, keepdims=True)))
    cols[tied] = np.flatnonzero(take).reshape(len(tied), k) % n
  cols.sort(axis=1)
  order = np.argsort(-np.take_along_axis(values, cols, axis=1), axis=1, kind="stable")
  return np.take_along_axis(cols, order, axis=1).astype(np.int32)


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


RANK_SCHEMES = ("uniform", "linear", "exponential")


def rank_aware_positions(counts, width, scheme, slope, seed):
  """CD's rank-aware sampling: `width` positions per row in [0, n) of a row's n ranked entries,
  drawn independently (with replacement, as the paper's Algorithm 1 draws).

  With r_k the relative rank of position k (0 = top):
    "uniform":     p(k) = 1 / n                                          (CD-Base)
    "linear":      p(k) ~ 1 - r_k, r_k = (k + 1/2) / n: p(k) = (2 (n - k) - 1) / n^2
    "exponential": p(k) ~ exp(-r_k / slope), r_k = k / n
  Exact by inversion: a continuous relative rank x in [0, 1) is drawn from the density 2 (1 - x)
  (linear) or ~ exp(-x / slope) (exponential) and floor(x n) is its position; each position's
  probability is the density's mass over [k / n, (k + 1) / n), which is the formula above. The
  paper's rejection sampler has the same distribution, one uniform draw per sample instead of a
  random number of them.

  Args:
    counts: int [B], n per row (rows with n = 0 get position 0; mask them).
    width: samples per row.
    scheme: one of RANK_SCHEMES.
    slope: the exponential scheme's slope (> 0).
    seed: int64 [2] stateless seed.
  Returns: int32 [B, width].
  """
  if scheme not in RANK_SCHEMES:
    raise ValueError(f"scheme must be one of {RANK_SCHEMES}, got {scheme!r}")
  counts = tf.cast(counts, tf.float64)
  u = tf.random.stateless_uniform(tf.stack([tf.shape(counts)[0], width]), seed=seed,
                                  dtype=tf.float64)
  if scheme == "uniform":
    x = u
  elif scheme == "linear":
    x = 1.0 - tf.sqrt(1.0 - u)
  else:
    x = -slope * tf.math.log1p(u * tf.math.expm1(tf.constant(-1.0 / slope, tf.float64)))
  positions = tf.floor(x * counts[:, None])
  positions = tf.clip_by_value(positions, 0.0, tf.maximum(counts[:, None] - 1.0, 0.0))
  return tf.cast(positions, tf.int32)


def rank_aware_probabilities(n, scheme, slope=1.0):
  """float64 [n]: the probability of each position under `rank_aware_positions` (for tests/docs)."""
  k = tf.range(n, dtype=tf.float64)
  n = tf.cast(n, tf.float64)
  if scheme == "uniform":
    return tf.fill(tf.shape(k), 1.0 / n)
  if scheme == "linear":
    return (2.0 * (n - k) - 1.0) / n ** 2
  if scheme == "exponential":
    step = 1.0 / (n * slope)
    total = -tf.math.expm1(tf.constant(-1.0 / slope, tf.float64))
    return tf.exp(-k * step) * -tf.math.expm1(-step) / total
  raise ValueError(f"scheme must be one of {RANK_SCHEMES}, got {scheme!r}")
