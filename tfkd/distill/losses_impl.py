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
  if ordered_mask is not None:
    ordered = tf.where(ordered_mask, ordered, tf.cast(_MASKED, ordered.dtype))
  if tail_mask is not None:
    tail = tf.where(tail_mask, tail, tf.cast(_MASKED, ordered.dtype))
  # The tail enters every denominator as one log-sum-exp: append it as a last column, and one
  # reverse cumulative log-sum-exp gives log(sum_{j>=k} e^s_j + sum_l e^t_l) for every k.
  if tail.shape[1] == 0:
    columns = ordered
  else:
    columns = tf.concat([ordered, tf.reduce_logsumexp(tail, axis=1, keepdims=True)], axis=1)
  denominator = tf.math.cumulative_logsumexp(columns, axis=1, reverse=True)[:, :tf.shape(ordered)[1]]
  terms = ordered - denominator
  if ordered_mask is not None:
    terms = tf.where(ordered_mask, terms, tf.zeros_like(terms))
  return -tf.reduce_sum(terms, axis=1)


def discrepancy(student_rank, teacher_rank, mu):
  """DCD eq. 3-4: tanh(max(mu * (student_rank - teacher_rank), 0)).

  With (student, teacher) it is the under-estimation error D(S, T); swap them for D(T, S).
  """
  diff = tf.cast(student_rank, tf.float32) - tf.cast(teacher_rank, tf.float32)
  return tf.tanh(tf.maximum(mu * diff, 0.0))
