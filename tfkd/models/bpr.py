"""BPR-MF: Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback", UAI 2009.

score(u, i) = <p_u, q_i>. Loss per (u, i, j) triple, i observed and j an unobserved item drawn
uniformly: softplus(-(score(u, i) - score(u, j))) (= -log sigmoid, in its stable form), averaged
over the batch, plus `l2 * 0.5 * (||P||^2 + ||Q||^2)` over the whole embedding tables. This is the
coupled weight decay of the DE-RRD/DCD reference code (PyTorch Adam `weight_decay=1e-3` with a loss
summed over a batch of 1024 equals `l2` ~= 1e-3 / 1024 here, where the loss is a batch mean).
"""

import keras
import tensorflow as tf

from tfkd.data import pipelines
from tfkd.models.base import Recommender


@keras.saving.register_keras_serializable(package="tfkd")
class BPR(Recommender):
  """Matrix factorisation trained with the BPR pairwise loss."""

  def __init__(self, num_users, num_items, dim=20, l2=0.0, init_stddev=0.01, **kwargs):
    super().__init__(num_users, num_items, **kwargs)
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
    return tf.einsum("bd,bnd->bn", self.user_embedding(users), self.item_embedding(items))

  def score_all(self, users):
    """users [B] -> [B, num_items]."""
    return tf.matmul(self.user_embedding(users), self.item_embedding.embeddings, transpose_b=True)

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
    """y_pred [B, 1 + k]: the observed item's score, then k sampled negatives' scores."""
    margin = y_pred[:, :1] - y_pred[:, 1:]
    loss = tf.reduce_mean(tf.nn.softplus(-margin))
    if self.l2:
      loss += self.l2 * 0.5 * (tf.reduce_sum(tf.square(self.user_embedding.embeddings)) +
                               tf.reduce_sum(tf.square(self.item_embedding.embeddings)))
    return loss

  def make_train_dataset(self, dataset, batch_size, seed, num_negatives=1):
    return pipelines.pairwise(dataset, batch_size, num_negatives=num_negatives, seed=seed)

  def get_config(self):
    config = super().get_config()
    config.update(dim=self.dim, l2=self.l2, init_stddev=self.init_stddev)
    return config
