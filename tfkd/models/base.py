"""The `Recommender` contract every tfkd model implements.

Evaluation, teacher rankings, distillation and export need two things of a model (RecBole's
`predict` / `full_sort_predict`):

- `score(users, items)`: users int [B], items int [B, N] -> scores float32 [B, N];
- `score_all(users)`: users int [B] -> scores float32 [B, num_items].

Higher scores rank first. A subclass fills in those two, its training objective's data term
`data_loss(y_pred)` (default: the pointwise log loss), the parameter rows its `l2` penalises
(`penalized_rows`, default none) and `get_config`; `attach`, `make_train_dataset` and
`warm_start` are optional hooks. Training goes through Keras `fit`: `compute_loss` is the one hook
(TFRS `models/base.py`), `data_loss(y_pred) + regularization(x)`, split so that a distillation
method (CD's selective cross-entropy) can replace the data term and keep the penalty. The default
pipeline gives rows of (user, observed item, `num_negatives` uniform unobserved items);
`sampled_log_loss`, `sampled_bpr_loss`, `selective_log_loss` and `rows_l2` are the losses computed
over them. Faster paths for scoring long lists, which distillation uses, are opt-in
(`tfkd.models.lists`); `FitModel` (`tfkd.models.fit`) carries what Keras needs under a strategy.
"""

import tensorflow as tf

from tfkd import distribute
from tfkd.data import pipelines
from tfkd.models.fit import FitModel


def sampled_log_loss(y_pred):
  """y_pred [B, 1 + k]: observed item, then k negatives -> mean over rows of
  (softplus(-s_pos) + sum softplus(s_neg)) / (1 + k), the pointwise log loss."""
  per_row = tf.nn.softplus(-y_pred[:, 0]) + tf.reduce_sum(tf.nn.softplus(y_pred[:, 1:]), 1)
  return tf.reduce_mean(per_row / tf.cast(tf.shape(y_pred)[1], y_pred.dtype))


def sampled_bpr_loss(y_pred):
  """y_pred [B, 1 + k] -> mean of softplus(-(s_pos - s_neg)) over the B x k pairs."""
  return tf.reduce_mean(tf.nn.softplus(-(y_pred[:, :1] - y_pred[:, 1:])))


def selective_log_loss(y_pred):
  """y_pred [B, 1 + k] -> mean softplus(-s_pos): the CD paper's selective cross-entropy, over the
  observed items only (column 0); the sampled negatives are left out."""
  return tf.reduce_mean(tf.nn.softplus(-y_pred[:, 0]))


def rows_l2(l2, batch_size, *rows):
  """l2 * (sum of squares of the batch's embedding rows) / batch_size (per-sample L2)."""
  squares = tf.add_n([tf.reduce_sum(tf.square(r)) for r in rows])
  return l2 * squares / tf.cast(batch_size, squares.dtype)


class Recommender(FitModel):
  """Base class: a Keras 3 model over `num_users` x `num_items` with the scoring contract."""

  # True while exporting: scoring must use only ops every TF runtime runs (no XLA-compiled
  # functions, which TF-Serving runs only behind an experimental flag). Models whose fast path
  # needs XLA check it.
  portable = False

  # True when the training step keeps static shapes, so `--jit_compile` can XLA-compile it
  # (`tfkd.xla`); models with ragged per-user rows (CDAE) or other data-dependent shapes say no.
  xla_ready = False

  def __init__(self, num_users, num_items, num_negatives=1, **kwargs):
    super().__init__(**kwargs)
    if num_users <= 0 or num_items <= 0:
      raise ValueError(f"num_users and num_items must be positive, got {num_users}, {num_items}")
    if num_negatives <= 0:
      raise ValueError(f"num_negatives must be positive, got {num_negatives}")
    self.num_users = int(num_users)
    self.num_items = int(num_items)
    self.num_negatives = int(num_negatives)

  def score(self, users, items):
    raise NotImplementedError

  def score_all(self, users):
    raise NotImplementedError

  def call(self, inputs, training=False):
    """inputs: {"user": [B], "item": [B, N]} -> scores [B, N]."""
    users = tf.cast(inputs["user"], tf.int32)  # a strategy's build may feed float ids
    items = tf.cast(inputs["item"], tf.int32)
    return self.score(users, items)

  def attach(self, dataset):
    """Stores what the model scores from besides its weights (CDAE: users' training rows; Caser:
    their latest items) as non-trainable variables. Nothing for most models."""

  def data_loss(self, y_pred):
    """The model's objective over a batch's scores y_pred [B, 1 + k] (observed item first); the
    pointwise log loss unless a model says otherwise."""
    return sampled_log_loss(y_pred)

  # The L2 weight of the batch's parameter rows (models that take `l2` set it).
  l2 = 0.0

  def penalized_rows(self, users, items):
    """The parameter rows a batch of users [B] and items [B, N] touches, as a list of tensors:
    what `l2` penalises. None by default."""
    return []

  def regularization(self, x):
    """The penalty on the batch's parameters: `l2` x the squares of `penalized_rows` per batch
    row (`rows_l2`); 0 without `l2`."""
    if not self.l2:
      return tf.constant(0.0)
    rows = self.penalized_rows(tf.cast(x["user"], tf.int32), tf.cast(x["item"], tf.int32))
    return rows_l2(self.l2, tf.shape(x["user"])[0], *rows) if rows else tf.constant(0.0)

  def objective(self, x, y_pred):
    """The model's training loss over a batch: `data_loss(y_pred) + regularization(x)`."""
    return self.data_loss(y_pred) + self.regularization(x)

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
    """Keras' loss hook: the objective, divided by the replicas under a distribution strategy
    (as Keras' own losses are)."""
    return distribute.scale_for_replicas(self.objective(x, y_pred))

  def make_train_dataset(self, dataset, batch_size, seed, first_epoch=None):
    """The model's training pipeline over a `tfkd.data.Dataset`, one epoch per iteration (epochs
    `first_epoch`, `first_epoch` + 1, ... when given: `pipelines.epoch_batches`); by default
    {"user": [B], "item": [B, 1 + num_negatives]} rows, the observed item first."""
    return pipelines.pairwise(dataset, batch_size, num_negatives=self.num_negatives, seed=seed,
                              first_epoch=first_epoch)

  def warm_start(self, pretrained, alpha=0.5):
    """Initialises the weights from trained models (`pretrained`: {name: model}); NeuMF takes
    a GMF and an MLP tower. A model without pre-training refuses."""
    raise ValueError(f"{type(self).__name__} has no pre-training (got {', '.join(pretrained)})")

  def build_for_dataset(self):
    """Creates the variables (so weights can be loaded before any training step)."""
    self({"user": tf.zeros([1], tf.int32), "item": tf.zeros([1, 1], tf.int32)})

  def get_config(self):
    config = super().get_config()
    config.update(num_users=self.num_users, num_items=self.num_items,
                  num_negatives=self.num_negatives)
    return config
