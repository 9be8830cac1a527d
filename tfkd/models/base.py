"""The `Recommender` contract every tfkd model implements.

Evaluation, teacher rankings, distillation and export need exactly two things of a model
(RecBole's `predict` / `full_sort_predict`):

- `score(users, items)`: users int [B], items int [B, N] -> scores float32 [B, N];
- `score_all(users)`: users int [B] -> scores float32 [B, num_items].

Item-side distillation also needs the transposed forms, `score_users(items)` (items int [B] ->
float32 [B, num_users], every user's score of each item) and `score_item_users(items, users)`
(items int [B], users int [B, N] -> [B, N]); their defaults go through `score`, and a model
whose scores factor (BPR: dot products) overrides them.

Higher scores rank first. Training goes through Keras `fit`: a model's `compute_loss` is the one
hook (TFRS `models/base.py`), and `make_train_dataset` builds the `tf.data` pipeline its loss
expects, so trainers stay model-agnostic. `compute_loss` is `data_loss(y_pred) +
regularization(x)`, split so that a distillation method (CD's selective cross-entropy) can replace
the data term and keep the model's penalty. The default pipeline gives rows of (user, observed
item, `num_negatives` uniform unobserved items); `sampled_log_loss`, `sampled_bpr_loss`,
`selective_log_loss` and `rows_l2` are the losses computed over them.
"""

import tensorflow as tf

from tfkd import distribute
from tfkd.data import pipelines


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


class Recommender(distribute.FitModel):
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
    items = tf.broadcast_to(tf.cast(items, tf.int32)[None, :], [self.num_users, tf.shape(items)[0]])
    return tf.transpose(self.score(users, items))

  def score_item_users(self, items, users):
    """items [B], users [B, N] -> [B, N]: S(users[b, n], items[b])."""
    shape = tf.shape(users)
    flat_items = tf.reshape(tf.repeat(tf.cast(items, tf.int32), shape[1]), [-1, 1])
    return tf.reshape(self.score(tf.reshape(users, [-1]), flat_items), shape)

  def call(self, inputs, training=False):
    """inputs: {"user": [B], "item": [B, N]} -> scores [B, N]."""
    users = tf.cast(inputs["user"], tf.int32)  # a strategy's build may feed float ids
    items = tf.cast(inputs["item"], tf.int32)
    return self.score(users, items)

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
    y = self.call_with_lists(inputs, lists, training=training)
    return y[:, :own], tf.gather_nd(y[:, own:], where)

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
