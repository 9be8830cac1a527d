"""Loss math in plain TF, apart from the Keras wrappers (TF-Ranking's `losses_impl` pattern).

All functions take scores in any float dtype and are computed in log space, stable for logits of
+-100 and beyond (no exp().cumsum().log()).
"""

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


@tf.custom_gradient
def _plackett_luce_nll(ordered, tail_lse, weights):
  """-sum_k w_k (s_k - D_k), D_k = log(sum_{j>=k} e^s_j + e^tau), with an analytic gradient.

  The denominators are one reverse cumulative log-sum-exp over [s, tau]. The gradient,
      d/ds_j = -w_j + exp(s_j + C_j),  d/dtau = exp(tau + C_K),  C_j = log sum_{k<=j} w_k e^-D_k,
  takes one more cumulative log-sum-exp; s_j + C_j <= log K (D_k >= s_j for k <= j), so nothing
  overflows. Autodiff through `cumulative_logsumexp` costs several times more.
  """
  k = tf.shape(ordered)[1]
  denominator = tf.math.cumulative_logsumexp(tf.concat([ordered, tail_lse], axis=1), axis=1,
                                             reverse=True)[:, :k]
  nll = -tf.reduce_sum(weights * (ordered - denominator), axis=1)

  def grad(upstream):
    masked = tf.cast(_MASKED, ordered.dtype)
    c = tf.math.cumulative_logsumexp(tf.where(weights > 0, -denominator, masked), axis=1)
    d_ordered = (tf.exp(ordered + c) - weights) * upstream[:, None]
    d_tail = tf.exp(tail_lse + c[:, -1:]) * upstream[:, None]
    return d_ordered, d_tail, None

  return nll, grad


def discrepancy(student_rank, teacher_rank, mu):
  """DCD eq. 3-4: tanh(max(mu * (student_rank - teacher_rank), 0)).

  With (student, teacher) it is the under-estimation error D(S, T); swap them for D(T, S).
  """
  diff = tf.cast(student_rank, tf.float32) - tf.cast(teacher_rank, tf.float32)
  return tf.tanh(tf.maximum(mu * diff, 0.0))
