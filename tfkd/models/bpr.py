"""BPR-MF: Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback", UAI 2009.

score(u, i) = <p_u, q_i>. Loss per (u, i, j) triple, i observed and j an unobserved item drawn
uniformly: softplus(-(score(u, i) - score(u, j))) (= -log sigmoid, in its stable form), averaged
over the batch, plus `l2 * (||p_u||^2 + ||q_i||^2 + ||q_j||^2)` of the batch's own rows, averaged
over the batch (Rendle's per-sample regularisation).

Only the batch's rows are regularised, not the whole tables as the reference code's dense weight
decay does: this keeps the gradients sparse, so `tfkd.optimizers.LazyAdam` can update only the
batch's rows, and it validated at least as well as the dense form (RESULTS.md, "Per-row L2
instead of dense weight decay").
"""

import keras
import tensorflow as tf

from tfkd.models import ops
from tfkd.models.base import Recommender, sampled_bpr_loss
from tfkd.models.lists import ListScoring


@keras.saving.register_keras_serializable(package="tfkd")
class BPR(ListScoring, Recommender):
  """Matrix factorisation trained with the BPR pairwise loss."""

  factored = True
  xla_ready = True  # the training step keeps static shapes (`tfkd.xla`)

  def __init__(self, num_users, num_items, dim=20, l2=0.0, init_stddev=0.01, num_negatives=1,
               **kwargs):
    super().__init__(num_users, num_items, num_negatives=num_negatives, **kwargs)
    if dim <= 0:
      raise ValueError(f"dim must be positive, got {dim}")
    if l2 < 0:
      raise ValueError(f"l2 must be non-negative, got {l2}")
    self.dim, self.l2, self.init_stddev = int(dim), float(l2), float(init_stddev)
    init = keras.initializers.RandomNormal(stddev=init_stddev)
    self.user_embedding = keras.layers.Embedding(num_users, dim, embeddings_initializer=init,
                                                 name="user_embedding")
    self.item_embedding = keras.layers.Embedding(num_items, dim, embeddings_initializer=init,
                                                 name="item_embedding")

  def score(self, users, items):
    """users [B], items [B, N] -> [B, N]."""
    if ops.is_long(items):  # a distillation list: see `ops.gather_dot`
      return ops.gather_dot(self.user_embedding(users), self.item_embedding.embeddings, items)
    return ops.row_dot(self.user_embedding(users), self.item_embedding(items))

  def score_all(self, users):
    """users [B] -> [B, num_items]."""
    return tf.matmul(self.user_embedding(users), self.item_embedding.embeddings, transpose_b=True)

  def score_users(self, items):
    """items [B] -> [B, num_users]."""
    return tf.matmul(self.item_embedding(items), self.user_embedding.embeddings, transpose_b=True)

  def score_item_users(self, items, users):
    """items [B], users [B, N] -> [B, N]."""
    if ops.is_long(users):
      return ops.gather_dot(self.item_embedding(items), self.user_embedding.embeddings, users)
    return ops.row_dot(self.item_embedding(items), self.user_embedding(users))

  def data_loss(self, y_pred):
    """y_pred [B, 1 + k]: the observed item's score, then k sampled negatives' scores."""
    return sampled_bpr_loss(y_pred)

  def penalized_rows(self, users, items):
    return [self.user_embedding(users), self.item_embedding(items)]

  def get_config(self):
    config = super().get_config()
    config.update(dim=self.dim, l2=self.l2, init_stddev=self.init_stddev)
    return config
