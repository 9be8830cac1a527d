"""Loss math in plain TF, apart from the Keras wrappers (TF-Ranking's `losses_impl` pattern).

All functions take scores in any float dtype. The permutation loss is exact for rows whose
scores span less than ~700 (float64 inside, one shift per row; tested at +-100) and stays finite
beyond.
"""

import numpy as np
import tensorflow as tf

# Fill value for masked-out logits: exp(_MASKED - max) underflows to exactly 0 for any logit
# a model produces, yet stays finite so gradients never see inf - inf.
_MASKED = -1e9


def relaxed_permutation_nll(ordered, tail, ordered_mask=None, tail_mask=None):
  """Negative log of the relaxed Plackett-Luce probability (DCD eq. 1, 7, 8), per row.

      -log p(pi | S) = -sum_k [ s_k - log( sum_{j>=k} exp s_j + sum_l exp t_l ) ]

  Args:
    ordered: [B, K] scores of the ordered list, best first.
    tail: [B, L] scores of the unordered tail (ranked below every ordered entry).
    ordered_mask: optional bool [B, K]; False entries are left out of the list (a shorter list).
    tail_mask: optional bool [B, L]; False entries are left out of the tail.
  Returns: [B] negative log-likelihoods.
  """
  ordered = tf.convert_to_tensor(ordered)
  tail = tf.cast(tail, ordered.dtype)
  masked = tf.cast(_MASKED, ordered.dtype)
  if ordered_mask is None:
    weights = tf.ones_like(ordered)
  else:
    ordered = tf.where(ordered_mask, ordered, masked)
    weights = tf.cast(ordered_mask, ordered.dtype)
  if tail_mask is not None:
    tail = tf.where(tail_mask, tail, masked)
  if tail.shape[1] == 0:
    tail_lse = tf.fill([tf.shape(ordered)[0], 1], masked)  # contributes exp(-1e9) = 0
  else:
    tail_lse = tf.reduce_logsumexp(tail, axis=1, keepdims=True)
  return _plackett_luce_nll(ordered, tail_lse, weights)


# Up to this many ordered entries, a row's suffix (prefix) sums are one product with a triangular
# matrix of ones, faster than `tf.math.cumsum` along short rows (docs/speed.md) but O(B n^2), so
# longer lists keep the scan.
_TRIANGULAR_MAX = 128


def _cumsum(x, reverse=False):
  """tf.math.cumsum(x, axis=1, reverse=reverse) of a [B, n] float tensor."""
  n = x.shape[1]
  if n is None or n > _TRIANGULAR_MAX:
    return tf.math.cumsum(x, axis=1, reverse=reverse)
  ones = tf.ones([n, n], x.dtype)
  # out[:, k] = sum_j x[:, j] m[j, k]: m[j, k] = 1 for j >= k (suffix) or j <= k (prefix).
  return tf.matmul(x, tf.linalg.band_part(ones, -1, 0) if reverse else
                   tf.linalg.band_part(ones, 0, -1))


@tf.custom_gradient
def _plackett_luce_nll(ordered, tail_lse, weights):
  """-sum_k w_k (s_k - D_k), D_k = log(sum_{j>=k} e^s_j + e^tau), with an analytic gradient.

  Computed in float64 with one shift per row (the row's largest score): the suffix sums are
  exact while the row's scores span less than ~700 (logits within +-350; a log-space cumulative
  op would be twice as slow here), and clamped, finite, beyond. The gradient,
      d/ds_j = exp(s_j + C_j) - w_j,  d/dtau = exp(tau + C_K),  C_j = log sum_{k<=j} w_k e^-D_k,
  is one more shifted cumulative sum; s_j + C_j <= log K (D_k >= s_j for k <= j), so it never
  overflows.
  """
  k = tf.shape(ordered)[1]
  x = tf.cast(tf.concat([ordered, tail_lse], axis=1), tf.float64)
  shift = tf.reduce_max(x, axis=1, keepdims=True)
  suffix = _cumsum(tf.exp(x - shift), reverse=True)[:, :k]
  denominator = shift + tf.math.log(tf.maximum(suffix, 1e-300))
  w = tf.cast(weights, tf.float64)
  nll = -tf.reduce_sum(w * (x[:, :k] - denominator), axis=1)

  def grad(upstream):
    neg = tf.where(w > 0, -denominator, tf.constant(-np.inf, tf.float64))
    top = tf.reduce_max(neg, axis=1, keepdims=True)
    top = tf.where(tf.math.is_finite(top), top, tf.zeros_like(top))  # rows with no entry
    log_prefix = tf.math.log(_cumsum(w * tf.exp(neg - top)))
    up = tf.cast(upstream, tf.float64)[:, None]
    d_ordered = (tf.exp(x[:, :k] + top + log_prefix) - w) * up
    d_tail = tf.exp(x[:, k:] + top + log_prefix[:, -1:]) * up
    return tf.cast(d_ordered, ordered.dtype), tf.cast(d_tail, ordered.dtype), None

  return tf.cast(nll, ordered.dtype), grad


def discrepancy(student_rank, teacher_rank, mu):
  """DCD eq. 3-4: tanh(max(mu * (student_rank - teacher_rank), 0)).

  With (student, teacher) it is the under-estimation error D(S, T); swap them for D(T, S).
  """
  diff = tf.cast(student_rank, tf.float32) - tf.cast(teacher_rank, tf.float32)
  return tf.tanh(tf.maximum(mu * diff, 0.0))


def soft_target_bce(student_logits, teacher_logits, alpha=1.0, beta=0.0, mask=None):
  """CD's L_KD per row: the mean over the row's entries of the binary cross-entropy between the
  student's probability sigmoid(s) and the teacher's soft target q = sigmoid((t - beta) / alpha)
  (alpha: the temperature, scaling; beta: the shift; alpha = 1, beta = 0 is the plain logistic).

      -[q log sigmoid(s) + (1 - q) log(1 - sigmoid(s))] = q softplus(-s) + (1 - q) softplus(s)

  Args:
    student_logits, teacher_logits: [B, N].
    mask: optional bool [B, N]; False entries are left out (a row without any gives 0).
  Returns: [B].
  """
  s = tf.convert_to_tensor(student_logits)
  q = tf.sigmoid((tf.cast(teacher_logits, s.dtype) - beta) / alpha)
  bce = q * tf.nn.softplus(-s) + (1.0 - q) * tf.nn.softplus(s)
  if mask is None:
    return tf.reduce_mean(bce, axis=1)
  w = tf.cast(mask, s.dtype)
  return tf.reduce_sum(w * bce, axis=1) / tf.maximum(tf.reduce_sum(w, axis=1), 1.0)


def weighted_log_sigmoid_nll(logits, weights):
  """RD's L_KD per row: -sum_r w_r log sigmoid(s_r), the teacher's top-K items taken as positives
  with weights w ([B, K] each)."""
  logits = tf.convert_to_tensor(logits)
  return tf.reduce_sum(tf.cast(weights, logits.dtype) * tf.nn.softplus(-logits), axis=1)


def rd_position_weights(k, lam):
  """RD's static weights of the teacher's top-k positions r = 1..k: exp(-r / lam), normalised to
  sum to 1. float32 [k]."""
  w = tf.exp(-tf.range(1, k + 1, dtype=tf.float64) / lam)
  return tf.cast(w / tf.reduce_sum(w), tf.float32)
