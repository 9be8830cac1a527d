"""Keras losses of the distillation methods, serializable and registered under string keys.

The methods compute every distillation term through these classes (with `reduction=None`, then
their own weighting over rows), so the loss a user passes to `model.compile` is the one training
uses; the math is in `losses_impl` (pure TF, tested without Keras).
"""

import keras
import tensorflow as tf

from tfkd.distill import losses_impl

_LOSSES = {}


def register(key):
  def wrap(cls):
    _LOSSES[key] = cls
    return keras.saving.register_keras_serializable(package="tfkd")(cls)
  return wrap


def get(identifier, **kwargs):
  """A loss instance from a registered key (or a config dict from `serialize`)."""
  if isinstance(identifier, keras.losses.Loss):
    return identifier
  if isinstance(identifier, dict):
    return keras.losses.deserialize(identifier)
  try:
    return _LOSSES[identifier](**kwargs)
  except KeyError:
    raise ValueError(f"unknown loss {identifier!r}; expected one of "
                     f"{', '.join(sorted(_LOSSES))}") from None


def keys():
  return sorted(_LOSSES)


@register("relaxed_permutation")
class RelaxedPermutationLoss(keras.losses.Loss):
  """Relaxed permutation loss (RRD; DCD eq. 1): -log p(pi | S), averaged over rows.

  `y_pred` [B, K + L]: the first `num_ordered` columns are the ordered list (best first), the rest
  the unordered tail. `y_true` is the validity mask of the same shape (1 = use the entry;
  0 = padding); with `masked=False` every entry counts and `y_true` is not read (pass `y_pred`).
  """

  def __init__(self, num_ordered, masked=True, name="relaxed_permutation",
               reduction="sum_over_batch_size", **kwargs):
    super().__init__(name=name, reduction=reduction, **kwargs)
    if int(num_ordered) <= 0:
      raise ValueError(f"num_ordered must be positive, got {num_ordered}")
    self.num_ordered, self.masked = int(num_ordered), bool(masked)

  def call(self, y_true, y_pred):
    k = self.num_ordered
    if not self.masked:
      return losses_impl.relaxed_permutation_nll(y_pred[:, :k], y_pred[:, k:])
    mask = tf.cast(y_true, tf.bool)
    return losses_impl.relaxed_permutation_nll(y_pred[:, :k], y_pred[:, k:], mask[:, :k],
                                               mask[:, k:])

  def get_config(self):
    return dict(super().get_config(), num_ordered=self.num_ordered, masked=self.masked)


@register("soft_target_bce")
class SoftTargetBCE(keras.losses.Loss):
  """CD's knowledge-distillation loss: binary cross-entropy between the student's probability
  sigmoid(y_pred) and the teacher's soft target sigmoid((y_true - beta) / alpha), where y_true
  holds the teacher's logits of the same [B, N] entries, or {"logits": [B, N], "valid": [B, N]}
  to leave the invalid entries out; mean over (valid) entries, then over rows."""

  def __init__(self, alpha=1.0, beta=0.0, name="soft_target_bce",
               reduction="sum_over_batch_size", **kwargs):
    super().__init__(name=name, reduction=reduction, **kwargs)
    if alpha <= 0:
      raise ValueError(f"alpha must be positive, got {alpha}")
    self.alpha, self.beta = float(alpha), float(beta)

  def call(self, y_true, y_pred):
    if isinstance(y_true, dict):
      return losses_impl.soft_target_bce(y_pred, y_true["logits"], self.alpha, self.beta,
                                         tf.cast(y_true["valid"], tf.bool))
    return losses_impl.soft_target_bce(y_pred, y_true, self.alpha, self.beta)

  def get_config(self):
    return dict(super().get_config(), alpha=self.alpha, beta=self.beta)


@register("weighted_log_sigmoid")
class WeightedLogSigmoid(keras.losses.Loss):
  """RD's knowledge-distillation loss: -sum_r w_r log sigmoid(y_pred_r), the teacher's top-K items
  as weighted positives; y_true holds the weights w [B, K]."""

  def __init__(self, name="weighted_log_sigmoid", reduction="sum_over_batch_size", **kwargs):
    super().__init__(name=name, reduction=reduction, **kwargs)

  def call(self, y_true, y_pred):
    return losses_impl.weighted_log_sigmoid_nll(y_pred, y_true)
